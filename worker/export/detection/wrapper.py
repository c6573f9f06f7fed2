"""The one module every detector format is exported from: [0, 1] RGB in, 0-based detections out.

No ``from __future__ import annotations`` here: torch.jit.script reads the annotations.
"""

from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.ssd import SSD
from torchvision.ops.misc import FrozenBatchNorm2d

from shared.contract import DETECTION_ARCHITECTURES
from worker.export.manifest import DetectionThresholds
from worker.export.wrapper import cpu_copy

# torchvision's own score thresholds (0.001 to 0.2) are made for mAP, where every low score
# still counts; on a phone they mean dozens of junk boxes. 0.25 is what YOLO apps default to.
DEFAULT_SCORE_THRESHOLD = 0.25
# torchvision keeps up to 300 (SSD, RetinaNet) or 100 per image; nobody draws more than 100.
MAX_DETECTIONS = 100
# The model class each architecture name must be: a mismatch would export another contract.
MODEL_CLASSES: dict[str, type[nn.Module]] = {
    "ssd": SSD,
    "fasterrcnn": FasterRCNN,
    "retinanet": RetinaNet,
    "fcos": FCOS,
}


class DetectorExport(nn.Module):
    """1×3×S×S RGB float in [0, 1] → boxes (K×4 x1 y1 x2 y2 px), scores (K), labels (K, 0-based).

    The detector's own transform normalises (and leaves an S×S image at its size), its own
    post-processing decodes, thresholds and runs NMS with the thresholds set on it. Only
    torchvision's background class is taken away: label 0 is the first line of labels.txt.
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if not torch.jit.is_tracing() and image.shape[0] != 1:
            raise ValueError("the detector takes one image per call (batch 1)")
        detections = self._detect([image[0]])
        # RetinaNet and FCOS score every class with a sigmoid, torchvision's background
        # column included; it never trains positive, but a detection of it is no label.
        keep = detections["labels"] > 0
        labels = detections["labels"][keep] - 1
        return detections["boxes"][keep], detections["scores"][keep], labels

    def _detect(self, images: list[Tensor]) -> dict[str, Tensor]:
        if torch.jit.is_scripting():
            # Scripted torchvision detectors always return (losses, detections).
            return self.detector(images)[1][0]
        return self._eager(images)

    @torch.jit.unused
    def _eager(self, images: list[Tensor]) -> dict[str, Tensor]:
        return self.detector(images)[0]


def wrap_detector(
    model: nn.Module, architecture: str, score_threshold: float
) -> tuple[DetectorExport, DetectionThresholds]:
    """The export wrapper around a CPU copy of model with the delivered thresholds set on it."""
    expected = model_class(architecture)
    if not isinstance(model, expected):
        raise ValueError(
            f"architecture '{architecture}' is a torchvision {expected.__name__}, "
            f"but the model is a {type(model).__name__}"
        )
    detector = cpu_copy(model)
    thresholds = apply_thresholds(detector, score_threshold)
    # torchvision warns once per scripted module that it returns (losses, detections);
    # the wrapper unpacks that, so the app would only see noise.
    detector._has_warned = True  # type: ignore[assignment]
    return DetectorExport(detector).eval(), thresholds


def model_class(architecture: str) -> type[nn.Module]:
    """The torchvision class an architecture name builds."""
    if architecture not in DETECTION_ARCHITECTURES:
        allowed = ", ".join(DETECTION_ARCHITECTURES)
        raise ValueError(f"architecture must be one of {allowed} (got {architecture!r})")
    return next(cls for prefix, cls in MODEL_CLASSES.items() if architecture.startswith(prefix))


def apply_thresholds(detector: nn.Module, score_threshold: float) -> DetectionThresholds:
    """Set the delivered score threshold and detection cap; NMS IoU stays the model's own."""
    heads: Any = detector.roi_heads if isinstance(detector, FasterRCNN) else detector
    heads.score_thresh = float(score_threshold)
    heads.detections_per_img = min(int(heads.detections_per_img), MAX_DETECTIONS)
    return DetectionThresholds(
        score_threshold=float(score_threshold),
        nms_iou_threshold=float(heads.nms_thresh),
        max_detections=int(heads.detections_per_img),
    )


def num_classes(detector: nn.Module) -> int:
    """How many classes the detector scores, torchvision's background included."""
    if isinstance(detector, SSD):
        return int(detector.head.classification_head.num_columns)
    if isinstance(detector, FasterRCNN):
        return int(detector.roi_heads.box_predictor.cls_score.out_features)
    if isinstance(detector, RetinaNet | FCOS):
        return int(detector.head.classification_head.num_classes)
    raise ValueError(f"not a supported torchvision detector: {type(detector).__name__}")


def normalisation(detector: nn.Module) -> tuple[list[float], list[float]]:
    """The mean and std the detector's own transform normalises with."""
    transform: Any = detector.transform
    return [float(v) for v in transform.image_mean], [float(v) for v in transform.image_std]


def has_frozen_batch_norm(detector: nn.Module) -> bool:
    """Whether the backbone was built pretrained (torchvision freezes its batch norm then)."""
    return any(isinstance(module, FrozenBatchNorm2d) for module in detector.modules())
