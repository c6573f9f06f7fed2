"""What a run reports: one EpochReport per epoch, a TrainResult at the end, and where its
files are (checkpoints, metrics.json, plots)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHECKPOINT_LAST = "checkpoint_last.pt"
CHECKPOINT_BEST = "checkpoint_best.pt"
METRICS_FILE = "metrics.json"
CURVES_PLOT = "training_curves.png"


@dataclass(frozen=True)
class EpochReport:
    """What one epoch did; sent to on_epoch after its checkpoint and metrics.json are written."""

    epoch: int  # 1-based
    epochs: int
    train_loss: float
    val_loss: float
    val_accuracy: float  # the task's score in [0, 1]: accuracy, or mAP@0.5 for detection
    learning_rate: float  # the rate this epoch trained with
    duration_s: float  # training and validation
    train_duration_s: float
    images_per_s: float  # training images per second of training
    train_images: int
    improved: bool  # a new best: checkpoint_best.pt was rewritten
    best_epoch: int
    best_val_accuracy: float
    pretrained: bool  # ImageNet weights were loaded (False: trained from scratch)
    skipped_images: int
    # The weights whose score this is: "trained", or "average" (their moving average) when
    # that validated better. Checkpoints from before it existed read as "trained".
    weights: str = "trained"
    # Their batch-norm statistics: "precise" (re-estimated on training images), "running"
    # (training's own averages) or "none" (no batch norm). Checkpoints from before the choice
    # read as "precise".
    batch_norm: str = "precise"


@dataclass(frozen=True)
class TrainResult:
    """A finished run: the best epoch's validation report and where the artifacts are."""

    task: str
    class_names: tuple[str, ...]
    best_epoch: int
    best_val_accuracy: float
    report: Any  # the task's report of the best checkpoint on the validation set (a dataclass)
    history: tuple[EpochReport, ...]
    skipped: int
    skipped_files: tuple[str, ...]
    pretrained: bool
    train_images: int
    val_images: int
    cache_placement: str
    checkpoint_best: Path
    checkpoint_last: Path
    metrics_path: Path
    # name → PNG: "curves" always, plus the task's own (classification: "confusion_matrix").
    plots: dict[str, Path] = field(default_factory=dict)
    # The run ended before its last epoch: patience epochs passed without a better score.
    stopped_early: bool = False
    # The best checkpoint's report on the test split, scored once (None: no test split).
    test_report: Any = None
    test_images: int = 0
    dataset_check: dict[str, Any] = field(default_factory=dict)  # the dataset check's report


@dataclass(frozen=True)
class ArtifactPaths:
    """The files a run writes in its output folder."""

    out_dir: Path

    @property
    def checkpoint_last(self) -> Path:
        return self.out_dir / CHECKPOINT_LAST

    @property
    def checkpoint_best(self) -> Path:
        return self.out_dir / CHECKPOINT_BEST

    @property
    def metrics(self) -> Path:
        return self.out_dir / METRICS_FILE

    @property
    def curves(self) -> Path:
        return self.out_dir / CURVES_PLOT


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON atomically, so an upload from the epoch callback never sees half a file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)
