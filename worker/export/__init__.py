"""Phone-ready exports of a trained classifier or detector, each checked against PyTorch.

Every format takes RGB in [0, 1] at image_size (NCHW float; Core ML: an image) and returns
class probabilities (export_all) or boxes, scores and labels (export_detector); normalisation,
softmax and NMS are inside. See docs/exports.md.
"""

from worker.export.checks import PROBABILITY_ATOL
from worker.export.context import ExportInterrupted
from worker.export.detection import DETECTION_FORMATS, export_detector
from worker.export.exporter import FORMATS, ExportFailed, export_all
from worker.export.manifest import (
    LABELS_FILE,
    MANIFEST_FILE,
    Check,
    ExportedFile,
    FormatResult,
    Manifest,
)
from worker.export.wrapper import ProbabilityClassifier

__all__ = [
    "DETECTION_FORMATS",
    "FORMATS",
    "LABELS_FILE",
    "MANIFEST_FILE",
    "PROBABILITY_ATOL",
    "Check",
    "ExportFailed",
    "ExportInterrupted",
    "ExportedFile",
    "FormatResult",
    "Manifest",
    "ProbabilityClassifier",
    "export_all",
    "export_detector",
]
