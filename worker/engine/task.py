"""The Task protocol: what a kind of model (classification, detection) gives the fit loop.

The loop owns everything both tasks share (seeding, resume, optimiser and schedule,
epochs, the divergence guard, the best epoch, checkpoints, metrics.json, curves, stop and
cancel); a task owns its data, model, loss, evaluation, report and export. An instance
serves one job: it may keep what it parsed (describe_dataset, load_data) for later steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from worker.engine.config import TaskName, TrainConfig
from worker.engine.data import LoadedData
from worker.engine.device import Compute
from worker.engine.recipe import Strength

if TYPE_CHECKING:
    from shared.dataset_check import DatasetReport
    from worker.export.manifest import Manifest

Poll = Callable[[], None]
"""Called before every batch; raises TrainingCancelled when the run is to stop."""


@dataclass(frozen=True)
class Evaluation:
    """One epoch's validation: loss, the score that picks the best epoch, and what to keep."""

    loss: float
    score: float  # in [0, 1], higher is better; strictly better than the best makes a new best
    # Kept with the best epoch (in checkpoint_last.pt's "best" too): what final_report needs.
    best_payload: dict[str, Any]
    note: str = ""  # more figures for the epoch's log line


class Task(Protocol):
    """One kind of model the engine trains, from a dataset folder to checked exports."""

    name: TaskName
    score_name: str  # what EpochReport.val_accuracy measures: "accuracy", "mAP@0.5"
    score_description: str  # the same for metrics.json's "accuracy_is"
    loss_label: str  # the training loss, for the curves' axis
    skipped_noun: str  # what a skipped image is, for the final message
    autocasts: bool  # trains in the card's reduced precision (else float32 everywhere)
    compiles: bool  # its training step may run through torch.compile (config.compile_backend)

    @property
    def exporter(self) -> Callable[..., Manifest]:
        """Every requested format in out_dir, each checked against the model, and the
        manifest: exporter(model, class_names, image_size, architecture, formats, images,
        out_dir, metrics=, model_version=) -> Manifest."""
        ...

    def learned_floor(self, num_classes: int) -> float:
        """The best score below which the model learned nothing worth shipping."""
        ...

    def describe_dataset(self, dataset_dir: Path) -> str:
        """What the dataset holds, for the DOWNLOADED message; a broken dataset fails here."""
        ...

    def check_dataset(self, dataset_dir: Path, config: TrainConfig) -> DatasetReport:
        """Decode every image once and report what the dataset check finds
        (shared.dataset_check); the decode fills the training cache when the set fits, and
        the report's errors fail the job before training."""
        ...

    def load_data(self, dataset_dir: Path, config: TrainConfig, compute: Compute) -> LoadedData:
        """The checked, split and (when it fits) cached dataset for training; checks it
        first unless check_dataset ran with the same data options."""
        ...

    def build_model(
        self, config: TrainConfig, resumed_pretrained: bool | None
    ) -> tuple[nn.Module, bool]:
        """The model on its device and whether ImageNet weights were loaded.

        resumed_pretrained is the checkpoint's answer when resuming (its weights follow),
        None for a fresh run.
        """
        ...

    def auto_augmentation(self, train_images: int, epochs: int, pretrained: bool) -> Strength:
        """The strength augmentation "auto" means for this run (docs/training.md, Recipe)."""
        ...

    def prepare_training(
        self, generator: torch.Generator, augmentation: Strength, horizontal_flip: bool
    ) -> None:
        """Set up the training augmentation of this strength, drawing from the run's stream."""
        ...

    def train_batches(self, order: torch.Tensor, sizes: list[int]) -> Iterator[Any]:
        """Training batches in order (positions into the training images), of these sizes."""
        ...

    def training_loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        """The loss of one augmented batch (model in training mode) and its image count."""
        ...

    def before_evaluation(self, model: nn.Module, poll: Poll) -> None:
        """Re-estimate batch-norm statistics on plain training images (engine.batchnorm)."""
        ...

    def evaluate(self, model: nn.Module, poll: Poll) -> Evaluation:
        """Validation loss and score of the model as it is now."""
        ...

    def final_report(self, best_payload: dict[str, Any]) -> Any:
        """The best epoch's validation report (a dataclass) from what evaluate kept."""
        ...

    def finalize(self, model: nn.Module, report: Any, poll: Poll) -> tuple[Any, Any]:
        """After training, the best model (weights loaded) scored once in full precision:
        final_report's report completed with what ships with the model (classification: the
        decision thresholds), and the report on the held-out test split (None without one).
        The test split never picks an epoch or changes a weight."""
        ...

    def final_plots(self, report: Any, out_dir: Path) -> dict[str, Path]:
        """The task's own plots beyond the curves, by name."""
        ...

    def preprocessing(self, image_size: int) -> dict[str, Any]:
        """What an exported model expects as input, for metrics.json and the manifest."""
        ...

    def load_best(
        self, checkpoint: Path, weights_dir: Path | None
    ) -> tuple[nn.Module, tuple[str, ...], TrainConfig]:
        """The best checkpoint's model (eval mode, CPU), class names and config, for export."""
        ...

    def export_images(
        self, dataset_dir: Path, config: TrainConfig, count: int
    ) -> tuple[torch.Tensor, list[Path]]:
        """Up to count dataset images as float (N, 3, S, S) in [0, 1] to check exports on, and
        the stored files they were decoded from for the exporter's raw-file check (through
        host_preprocessing); no files for a task whose exporter has none."""
        ...

    def variant_data(self, calibration_images: int) -> Any:
        """After training: what the exports' precision variants are calibrated and scored on
        (worker.export.variants.VariantData). Raises ValueError for a task without them."""
        ...
