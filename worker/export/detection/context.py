"""What every detector format's exporter and check share: the wrapper, labels and reference."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from worker.detection.data import preprocessing_description
from worker.export.context import INPUT_NAME, PRODUCER
from worker.export.detection.wrapper import DetectorExport
from worker.export.manifest import DetectionThresholds, InputContract, detection_input_contract

OUTPUT_NAMES = ("boxes", "scores", "labels")


class Detections(NamedTuple):
    """One image's detections: boxes K×4 (x1 y1 x2 y2 px), scores K, labels K (0-based)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    @classmethod
    def of(cls, boxes: Any, scores: Any, labels: Any) -> Detections:
        """From tensors or arrays, as float32 / int64 numpy."""

        def array(value: Any) -> np.ndarray:
            if isinstance(value, torch.Tensor):
                return value.detach().cpu().numpy()
            return np.asarray(value)

        return cls(
            array(boxes).astype(np.float32).reshape(-1, 4),
            array(scores).astype(np.float32).reshape(-1),
            array(labels).astype(np.int64).reshape(-1),
        )


@dataclass
class DetectionContext:
    """One detector export run: the wrapped model, what describes it, and the reference."""

    wrapper: DetectorExport
    labels: list[str]
    image_size: int
    architecture: str
    model_version: str
    thresholds: DetectionThresholds
    mean: list[float]
    std: list[float]
    check_images: torch.Tensor  # N×3×S×S float32 in [0, 1] on the CPU
    reference: list[Detections]  # the wrapper's detections on each check image
    out_dir: Path
    cache: dict[str, Any] = field(default_factory=dict)

    def sample(self) -> torch.Tensor:
        """One check image as a 1×3×S×S batch, to trace or export with."""
        return self.check_images[:1].clone()

    def run(self, model: Callable[[torch.Tensor], Sequence[Any]]) -> list[Detections]:
        """model's detections on every check image, one image per call."""
        with torch.no_grad():
            return [Detections.of(*model(image[None])) for image in self.check_images]

    def input_contract(self) -> InputContract:
        """The manifest's input: what every exported detector takes, as detection training
        saw it (the Core ML check reads its image input against it)."""
        return detection_input_contract(
            self.image_size, self.mean, self.std, preprocessing_description(self.image_size)
        )

    def string_metadata(self) -> dict[str, str]:
        """Self-description as string key/values: ONNX metadata_props, Core ML, TorchScript."""
        size = self.image_size
        return {
            "task": "detection",
            "labels": json.dumps(self.labels),
            "image_size": str(size),
            "architecture": self.architecture,
            "model_version": self.model_version,
            "input": (
                f"{INPUT_NAME}: float32 NCHW RGB in [0, 1], 1x3x{size}x{size} (one image per "
                f"call, stretched to {size}x{size}); normalisation is applied inside the model"
            ),
            "output": (
                f"boxes: float32 Kx4, x1 y1 x2 y2 in pixels of the {size}x{size} input; "
                "scores: float32 K, descending; labels: int64 K, 0-based index into labels; "
                "K may be 0"
            ),
            "score_threshold": str(self.thresholds.score_threshold),
            "nms_iou_threshold": str(self.thresholds.nms_iou_threshold),
            "max_detections": str(self.thresholds.max_detections),
            "mean": json.dumps(self.mean),
            "std": json.dumps(self.std),
            "producer": PRODUCER,
        }
