"""What the loop needs of a task's data: batch sizes, a dataset summary, and its errors."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from worker.engine.config import TrainConfig

# Evaluation keeps no activations for backward, so it can take bigger batches.
EVAL_BATCH_FACTOR = 2


class DatasetError(ValueError):
    """The dataset folder breaks a rule; the message names the folder or file and the rule."""


class WeightsMissingError(FileNotFoundError):
    """The weights cache lacks the ImageNet weights an architecture needs."""


@dataclass(frozen=True)
class LoadedData:
    """A task's dataset as the loop sees it: readable images counted, skipped ones named."""

    class_names: tuple[str, ...]
    train_images: int  # readable training images
    val_images: int  # readable validation images
    skipped: int  # images not trained on (unreadable, or missing for detection)
    skipped_files: tuple[str, ...]  # relative to the dataset folder, the first few
    placement: str  # where decoded images live: "device", "host" or "streamed"
    summary: dict[str, Any] = field(default_factory=dict)  # the task's keys in metrics.json
    # Held out and scored once at the end with the best epoch's model (0: no test split).
    test_images: int = 0
    # What the task chose for the run's loss, for metrics.json's "recipe" (class weights).
    recipe: dict[str, Any] = field(default_factory=dict)
    # The dataset check's report (dataset_report.json), in metrics.json and the manifest.
    check: dict[str, Any] = field(default_factory=dict)
    # split_digest() of which file is in which split: a checkpoint's epochs were drawn over
    # its split, so a resume onto another one (the files, or the duplicate check, changed)
    # starts again instead.
    split: str = ""


def split_digest(splits: dict[str, Iterable[str]]) -> str:
    """SHA-256 of each split's files (relative names), in the order the task indexes them."""
    digest = hashlib.sha256()
    for name, files in splits.items():
        for file in files:
            digest.update(f"{name}\0{file}\n".encode())
    return digest.hexdigest()


class StoredCheck(Protocol):
    """What a task keeps of its dataset check for load_data: where and with what it ran."""

    @property
    def root(self) -> Path: ...

    @property
    def options(self) -> tuple[Any, ...]:  # the config's check_options
        ...


def check_made_for(checked: StoredCheck | None, dataset_dir: Path, config: TrainConfig) -> bool:
    """Whether a task's stored check serves this folder and config (else it checks again)."""
    return checked is not None and (checked.root, checked.options) == (
        dataset_dir,
        config.check_options,
    )


def batch_sizes(count: int, batch_size: int, drop_single_last: bool) -> list[int]:
    """Sizes of the batches covering count images; a last batch of one can be dropped."""
    sizes = [batch_size] * (count // batch_size)
    remainder = count % batch_size
    # BatchNorm cannot train on a single image, so a lone trailing image waits for next epoch.
    if remainder and not (drop_single_last and remainder == 1 and batch_size > 1):
        sizes.append(remainder)
    return sizes
