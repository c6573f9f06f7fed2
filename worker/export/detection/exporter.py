"""export_detector: every requested format of a torchvision detector, each checked, one manifest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from shared.contract import DETECTION_EXPORT_FORMATS
from worker.export.detection import coreml, onnx, torchscript
from worker.export.detection.context import DetectionContext, Detections
from worker.export.detection.wrapper import (
    DEFAULT_SCORE_THRESHOLD,
    normalisation,
    num_classes,
    wrap_detector,
)
from worker.export.exporter import FORMATS, Format, export_formats, validate_arguments
from worker.export.manifest import (
    ClassThresholds,
    DetectionOutputContract,
    Manifest,
)

# The formats that can carry a detector, from the contract: the lite interpreter and
# ExecuTorch cannot (torchvision's ImageList, data-dependent NMS).
DETECTION_FORMATS: tuple[str, ...] = DETECTION_EXPORT_FORMATS

EXPORTERS: dict[str, Format[DetectionContext]] = {
    "onnx": Format(onnx.export, onnx.check, (onnx.FILE_NAME,)),
    "coreml": Format(coreml.export, coreml.check, (coreml.FILE_NAME,)),
    "torch": Format(
        torchscript.export, torchscript.check, (torchscript.FILE_NAME, torchscript.STATE_DICT_FILE)
    ),
}
assert tuple(EXPORTERS) == DETECTION_FORMATS
CLASSIFIER_ONLY = tuple(name for name in FORMATS if name not in DETECTION_FORMATS)


def export_detector(
    model: nn.Module,
    class_names: list[str],
    image_size: int,
    architecture: str,
    formats: list[str],
    check_images: torch.Tensor,
    out_dir: Path,
    metrics: dict[str, Any],
    model_version: str,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    class_thresholds: ClassThresholds | None = None,
    interrupted: Callable[[], bool] | None = None,
) -> Manifest:
    """Export a torchvision detector in every requested format, check each, write the manifest.

    model is the trained detector (num_classes = len(class_names) + 1, 0 the background);
    every export takes one RGB image in [0, 1] at image_size² and returns boxes, scores and
    0-based labels after its own NMS, keeping scores above score_threshold. Returns the
    manifest when every format passed; raises ExportFailed (after writing the manifest for
    what passed) when any failed, and ValueError, before exporting anything, for arguments
    that make any export meaningless. interrupted() is asked before each format:
    ExportInterrupted (no manifest) when it says stop.
    """
    labels = list(class_names)
    if class_thresholds is not None:  # a detector's thresholds are its score_threshold
        raise ValueError("class_thresholds are a classifier's; detectors take score_threshold")
    if not formats:
        raise ValueError(f"formats must name at least one of {', '.join(DETECTION_FORMATS)}")
    validate_arguments(labels, image_size, check_images, metrics, min_classes=1)
    if not 0.0 < score_threshold < 1.0:
        raise ValueError(f"score_threshold must be between 0 and 1 (got {score_threshold})")
    wrapper, thresholds = wrap_detector(model, architecture, score_threshold)
    detector = wrapper.detector
    if num_classes(detector) != len(labels) + 1:
        raise ValueError(
            f"the detector scores {num_classes(detector) - 1} classes (plus background) "
            f"but class_names has {len(labels)}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    images = check_images.detach().to("cpu", torch.float32).contiguous()
    mean, std = normalisation(detector)
    ctx = DetectionContext(
        wrapper=wrapper,
        labels=labels,
        image_size=image_size,
        architecture=architecture,
        model_version=model_version,
        thresholds=thresholds,
        mean=mean,
        std=std,
        check_images=images,
        reference=[],
        out_dir=out_dir,
    )
    ctx.reference = ctx.run(wrapper)
    refused = {
        name: f"format '{name}' cannot carry a detector "
        f"(allowed for detection: {', '.join(DETECTION_FORMATS)})"
        for name in CLASSIFIER_ONLY
    }
    return export_formats(
        ctx,
        formats,
        EXPORTERS,
        metrics,
        refused,
        interrupted=interrupted,
        task="detection",
        input=ctx.input_contract(),
        output=output_contract(ctx),
        thresholds=thresholds,
    )


def output_contract(ctx: DetectionContext) -> DetectionOutputContract:
    """What every exported detector returns, with Core ML's form spelled out."""
    return DetectionOutputContract(
        shape=["detections", 4],
        core_ml=(
            f"{coreml.CONFIDENCE} (K×{len(ctx.labels)}, per-label confidence) and "
            f"{coreml.COORDINATES} (K×4, centre x, centre y, width, height relative to the "
            "image, origin top left); Vision turns them into VNRecognizedObjectObservation "
            "(labels, boundingBox with origin bottom left). Core ML's NMS gives each box one "
            "label (its best) where torchvision may keep a box for two labels"
        ),
    )


__all__ = ["DETECTION_FORMATS", "Detections", "export_detector"]
