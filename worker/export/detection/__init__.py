"""Phone-ready exports of a trained torchvision detector, each checked against PyTorch.

Every format takes one RGB image in [0, 1] at image_size² (NCHW float; Core ML: an image)
and returns boxes, scores and 0-based labels after its own NMS. See docs/exports.md.
"""

from worker.export.detection.coreml import ARCHITECTURES as COREML_ARCHITECTURES
from worker.export.detection.coreml import refusal as coreml_refusal
from worker.export.detection.exporter import DETECTION_FORMATS, export_detector
from worker.export.detection.parity import BOX_ATOL_PX, SCORE_ATOL
from worker.export.detection.wrapper import (
    DEFAULT_SCORE_THRESHOLD,
    MAX_DETECTIONS,
    DetectorExport,
)

__all__ = [
    "BOX_ATOL_PX",
    "COREML_ARCHITECTURES",
    "DEFAULT_SCORE_THRESHOLD",
    "DETECTION_FORMATS",
    "MAX_DETECTIONS",
    "SCORE_ATOL",
    "DetectorExport",
    "coreml_refusal",
    "export_detector",
]
