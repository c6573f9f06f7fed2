"""Phone-ready exports of a trained classifier, each checked against PyTorch, with a manifest.

Every format takes RGB in [0, 1] at image_size (NCHW float; Core ML: an image) and returns
class probabilities: ImageNet normalisation and softmax are inside. See docs/exports.md.
"""

from worker.export.checks import PROBABILITY_ATOL
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
    "FORMATS",
    "LABELS_FILE",
    "MANIFEST_FILE",
    "PROBABILITY_ATOL",
    "Check",
    "ExportFailed",
    "ExportedFile",
    "FormatResult",
    "Manifest",
    "ProbabilityClassifier",
    "export_all",
]
