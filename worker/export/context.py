"""What every format's exporter and check share: the wrapper, the labels and the reference."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from worker.classification.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from worker.export.manifest import ClassThresholds
from worker.export.wrapper import ProbabilityClassifier

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
PRODUCER = "AI Trainer"

FileRole = Literal["model", "state_dict"]


class ExportInterrupted(Exception):
    """The job asked the export to stop (a cancel, the wall-time limit, a lost claim):
    raised between formats and between variants, never swallowed as a format's failure."""

    def __init__(self, done: list[str]) -> None:
        self.done = done  # the formats and variants finished before the stop
        super().__init__(f"export interrupted after {', '.join(done) or 'nothing'}")


@dataclass
class ExportContext:
    """One export run: the wrapped model, what describes it, and the PyTorch reference output."""

    wrapper: ProbabilityClassifier
    labels: list[str]
    image_size: int
    architecture: str
    model_version: str
    check_images: torch.Tensor  # N×3×S×S float32 in [0, 1] on the CPU
    reference: torch.Tensor  # wrapper(check_images): the probabilities every export must match
    out_dir: Path
    class_thresholds: ClassThresholds | None = None
    # The stored files check_images were decoded from, in order (the raw-file check, whose
    # reference is then `reference`); may be empty.
    check_files: list[Path] = field(default_factory=list)
    # Built once on first use and shared (the TorchScript trace feeds torch, pytorchmobile
    # and coreml); a failure is not cached, so each format that needs it reports it itself.
    cache: dict[str, Any] = field(default_factory=dict)

    def sample(self, batch: int = 1) -> torch.Tensor:
        """batch check images (repeated if there are fewer) to trace or export with."""
        repeats = -(-batch // len(self.check_images))
        return self.check_images.repeat(repeats, 1, 1, 1)[:batch].clone()

    def string_metadata(self) -> dict[str, str]:
        """Self-description as string key/values: ONNX metadata_props, Core ML, TorchScript."""
        size = self.image_size
        return {
            "labels": json.dumps(self.labels),
            "image_size": str(size),
            "architecture": self.architecture,
            "model_version": self.model_version,
            "input": (
                f"{INPUT_NAME}: float32 NCHW RGB in [0, 1], {size}x{size}; "
                "ImageNet mean/std normalisation is applied inside the model"
            ),
            "output": f"{OUTPUT_NAME}: softmax probabilities in the order of labels",
            "mean": json.dumps(list(IMAGENET_MEAN)),
            "std": json.dumps(list(IMAGENET_STD)),
            "producer": PRODUCER,
            **(
                {"class_thresholds": self.class_thresholds.model_dump_json()}
                if self.class_thresholds is not None
                else {}
            ),
        }


@dataclass
class Exported:
    """The files one format wrote (model file first) and facts for the manifest."""

    files: list[tuple[Path, FileRole]]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def model_path(self) -> Path:
        return self.files[0][0]
