"""The training loop: load_data, train_one_epoch, evaluate and train, reporting per epoch."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F
from torch.optim import SGD
from torch.optim.lr_scheduler import StepLR

# The seed's defaults and the smallest image size (every classifier here downsamples by 32)
# live in the contract, so the API, the engine and the docs cannot disagree.
from shared.contract import (
    CLASSIFICATION_ARCHITECTURES,
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_GAMMA,
    DEFAULT_IMAGE_SIZE,
    DEFAULT_LEARNING_RATE,
    DEFAULT_STEP_SIZE,
    DETECTION_ARCHITECTURES,
    MIN_IMAGE_SIZE,
)
from worker.training.augment import BatchTransforms
from worker.training.batches import (
    BatchPair,
    BatchSource,
    CachedBatches,
    ImageCache,
    StreamedBatches,
    batch_sizes,
    cache_bytes_needed,
)
from worker.training.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from worker.training.data import (
    DEFAULT_VAL_FRACTION,
    DatasetSplit,
    ImageFile,
    find_images,
    read_dataset,
)
from worker.training.metrics import (
    ClassificationReport,
    classification_report,
    confusion_update,
    write_json,
)
from worker.training.models import (
    DEFAULT_ARCHITECTURE,
    PRETRAINED_POLICIES,
    PretrainedPolicy,
    build_model,
)
from worker.training.plots import plot_confusion, plot_curves
from worker.training.preprocessing import eval_transform, preprocessing_description

__all__ = [
    "EpochReport",
    "TrainConfig",
    "TrainResult",
    "TrainingCancelled",
    "TrainingInterrupted",
    "TrainingStopped",
    "eval_transform",
    "load_best",
    "preprocessing_description",
    "train",
]

log = logging.getLogger(__name__)

DEFAULT_SEED = 0
DEFAULT_CACHE_BYTES = 8 * 2**30
MOMENTUM = 0.9
# Evaluation keeps no activations for backward, so it can take bigger batches.
EVAL_BATCH_FACTOR = 2
MAX_AUTO_WORKERS = 16
# Offsets the augmentation stream from the shuffle stream that shares the run's seed.
AUGMENT_SEED_OFFSET = 1

CHECKPOINT_LAST = "checkpoint_last.pt"
CHECKPOINT_BEST = "checkpoint_best.pt"
METRICS_FILE = "metrics.json"
CURVES_PLOT = "training_curves.png"
CONFUSION_PLOT = "confusion_matrix.png"

Task = Literal["classification", "detection"]
ARCHITECTURES: dict[Task, tuple[str, ...]] = {
    "classification": CLASSIFICATION_ARCHITECTURES,
    "detection": DETECTION_ARCHITECTURES,
}

# The options that decide a run's result; a resume must not change them. The rest (where
# weights, memory and workers come from) may differ between the machines of one run.
RESULT_DEFINING_FIELDS = (
    "task",
    "epochs",
    "learning_rate",
    "image_size",
    "batch_size",
    "step_size",
    "gamma",
    "architecture",
    "seed",
    "val_fraction",
)


@dataclass(frozen=True)
class TrainConfig:
    """The parameters of one run; invalid values fail here, naming the option."""

    epochs: int = DEFAULT_EPOCHS
    learning_rate: float = DEFAULT_LEARNING_RATE
    image_size: int = DEFAULT_IMAGE_SIZE
    batch_size: int = DEFAULT_BATCH_SIZE
    step_size: int = DEFAULT_STEP_SIZE
    gamma: float = DEFAULT_GAMMA
    architecture: str = DEFAULT_ARCHITECTURE
    pretrained: PretrainedPolicy = "fail"
    weights_dir: Path | None = None
    seed: int = DEFAULT_SEED
    device: str | None = None  # None: CUDA when available, else CPU
    cache_bytes: int = DEFAULT_CACHE_BYTES  # RAM for decoded images; beyond it, stream files
    num_workers: int | None = None  # decode threads and loader workers; None: one per core
    val_fraction: float = DEFAULT_VAL_FRACTION
    task: Task = "classification"  # detection: worker.detection.engine trains it

    def __post_init__(self) -> None:
        architectures = ARCHITECTURES.get(self.task, ())
        problems = [
            f"{name} {rule} (got {value!r})"
            for name, value, ok, rule in (
                ("epochs", self.epochs, self.epochs >= 1, "must be at least 1"),
                ("learning_rate", self.learning_rate, self.learning_rate > 0, "must be > 0"),
                (
                    "image_size",
                    self.image_size,
                    self.image_size >= MIN_IMAGE_SIZE,
                    f"must be at least {MIN_IMAGE_SIZE}",
                ),
                ("batch_size", self.batch_size, self.batch_size >= 1, "must be at least 1"),
                ("step_size", self.step_size, self.step_size >= 1, "must be at least 1"),
                ("gamma", self.gamma, 0 < self.gamma <= 1, "must be in (0, 1]"),
                (
                    "task",
                    self.task,
                    self.task in ARCHITECTURES,
                    f"must be one of {', '.join(ARCHITECTURES)}",
                ),
                (
                    "architecture",
                    self.architecture,
                    self.architecture in architectures,
                    f"must be one of {', '.join(architectures)} for {self.task}",
                ),
                (
                    "pretrained",
                    self.pretrained,
                    self.pretrained in PRETRAINED_POLICIES,
                    f"must be one of {', '.join(PRETRAINED_POLICIES)}",
                ),
                ("cache_bytes", self.cache_bytes, self.cache_bytes >= 0, "must be >= 0"),
                (
                    "num_workers",
                    self.num_workers,
                    self.num_workers is None or self.num_workers >= 0,
                    "must be >= 0",
                ),
                ("val_fraction", self.val_fraction, 0 < self.val_fraction < 1, "must be in (0, 1)"),
            )
            if not ok
        ]
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain values only, for checkpoints and metrics.json."""
        values = asdict(self)
        values["weights_dir"] = str(self.weights_dir) if self.weights_dir else None
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The inverse of to_dict; unknown keys (from a newer engine) are ignored."""
        known = {f.name for f in fields(cls)}
        kept = {key: value for key, value in values.items() if key in known}
        if kept.get("weights_dir"):
            kept["weights_dir"] = Path(kept["weights_dir"])
        return cls(**kept)


@dataclass(frozen=True)
class EpochReport:
    """What one epoch did; sent to on_epoch after its checkpoint and metrics.json are written."""

    epoch: int  # 1-based
    epochs: int
    train_loss: float
    val_loss: float
    val_accuracy: float  # fraction in [0, 1]
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


@dataclass(frozen=True)
class TrainResult:
    """A finished run: the best epoch's validation report and where the artifacts are."""

    class_names: tuple[str, ...]
    best_epoch: int
    best_val_accuracy: float
    report: ClassificationReport  # of the best checkpoint on the validation set
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
    curves_plot: Path
    confusion_plot: Path


class TrainingStopped(Exception):
    """Training ended early; epoch is the epoch it ended in."""

    def __init__(self, epoch: int, message: str):
        super().__init__(message)
        self.epoch = epoch


class TrainingInterrupted(TrainingStopped):
    """stop_after_epoch asked to stop; checkpoint_last.pt holds the finished epoch."""

    def __init__(self, epoch: int):
        super().__init__(epoch, f"training stopped after epoch {epoch}; resume from it")


class TrainingCancelled(TrainingStopped):
    """cancelled() returned True; the epoch in progress was abandoned."""

    def __init__(self, epoch: int):
        super().__init__(epoch, f"training cancelled during epoch {epoch}")


@dataclass
class _Evaluation:
    loss: float
    accuracy: float
    confusion: torch.Tensor  # (C, C) int64 on the CPU


@dataclass
class _Best:
    epoch: int = 0
    accuracy: float = -1.0
    model: dict[str, torch.Tensor] | None = None
    confusion: torch.Tensor | None = None


def train(
    dataset_dir: Path,
    out_dir: Path,
    config: TrainConfig,
    on_epoch: Callable[[EpochReport], None] | None = None,
    resume_from: Path | None = None,
    cancelled: Callable[[], bool] | None = None,
    stop_after_epoch: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train a classifier on dataset_dir, writing checkpoints, metrics and plots to out_dir."""
    if config.task != "classification":
        raise ValueError(f"train() trains classifiers; task {config.task!r} has its own engine")
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out_dir.mkdir(parents=True, exist_ok=True)
    resumed = load_resumable(resume_from, config) if resume_from else None
    should_cancel = cancelled or never

    random.seed(config.seed)
    torch.manual_seed(config.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    dataset, source = load_data(dataset_dir, config, device)
    num_classes = len(dataset.class_names)
    if resumed:
        if tuple(resumed["class_names"]) != dataset.class_names:
            raise ValueError(
                f"resume_from checkpoint was trained on classes {resumed['class_names']}, "
                f"the dataset has {list(dataset.class_names)}"
            )
        # The checkpoint brings its own weights, so ImageNet weights are not needed again.
        model, _ = build_model(config.architecture, num_classes, "scratch", None)
        pretrained = bool(resumed["pretrained"])
    else:
        model, pretrained = build_model(
            config.architecture, num_classes, config.pretrained, config.weights_dir
        )
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    optimizer = SGD(model.parameters(), lr=config.learning_rate, momentum=MOMENTUM)
    scheduler = StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    generators = {
        "shuffle": torch.Generator().manual_seed(config.seed),
        "augment": torch.Generator(device).manual_seed(config.seed + AUGMENT_SEED_OFFSET),
    }
    transforms = BatchTransforms(config.image_size, device, generators["augment"])
    train_rows = _rows(dataset.train)
    val_rows = _rows(dataset.val)
    val_batches = batch_sizes(len(val_rows), config.batch_size * EVAL_BATCH_FACTOR, False)

    paths = ArtifactPaths(out_dir)
    history: list[EpochReport] = []
    best = _Best()
    first_epoch = 1
    if resumed:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        restore_rng(resumed["rng"], generators)
        history = [EpochReport(**report) for report in resumed["history"]]
        best = _Best(**resumed["best"])
        first_epoch = resumed["epoch"] + 1
        _save_best(paths.checkpoint_best, best, config, dataset, pretrained)
        if resume_from and resume_from.resolve() != paths.checkpoint_last.resolve():
            shutil.copyfile(resume_from, paths.checkpoint_last)
    log.info(
        "training %s on %d classes: %d train, %d val images (%d skipped), cache %s, device %s",
        config.architecture,
        num_classes,
        len(train_rows),
        len(val_rows),
        dataset.skipped,
        source.placement,
        device,
    )

    for epoch in range(first_epoch, config.epochs + 1):
        learning_rate = optimizer.param_groups[0]["lr"]
        order = torch.randperm(len(train_rows), generator=generators["shuffle"])
        train_sizes = batch_sizes(len(train_rows), config.batch_size, drop_single_last=True)
        synchronize(device)
        started = time.perf_counter()
        train_loss, train_images = train_one_epoch(
            model,
            optimizer,
            source.batches(train_rows[order], train_sizes),
            transforms,
            device,
            partial(poll_cancel, should_cancel, epoch),
        )
        train_duration = time.perf_counter() - started
        scheduler.step()
        evaluation = evaluate(
            model,
            source.batches(val_rows, val_batches),
            transforms,
            device,
            num_classes,
            partial(poll_cancel, should_cancel, epoch),
        )
        duration = time.perf_counter() - started

        # Strictly better only: on a tie the earlier (less trained) epoch stays best.
        improved = evaluation.accuracy > best.accuracy
        if improved:
            best = _Best(epoch, evaluation.accuracy, cpu_state(model), evaluation.confusion)
        report = EpochReport(
            epoch=epoch,
            epochs=config.epochs,
            train_loss=train_loss,
            val_loss=evaluation.loss,
            val_accuracy=evaluation.accuracy,
            learning_rate=learning_rate,
            duration_s=duration,
            train_duration_s=train_duration,
            images_per_s=train_images / train_duration,
            train_images=train_images,
            improved=improved,
            best_epoch=best.epoch,
            best_val_accuracy=best.accuracy,
            pretrained=pretrained,
            skipped_images=dataset.skipped,
        )
        history.append(report)
        log.info(
            "epoch %d/%d: train loss %.4f, val loss %.4f, val accuracy %.4f, %.0f images/s",
            epoch,
            config.epochs,
            train_loss,
            evaluation.loss,
            evaluation.accuracy,
            report.images_per_s,
        )
        model_state = model.state_dict()
        save_checkpoint(
            {
                "epoch": epoch,
                "config": config.to_dict(),
                "class_names": list(dataset.class_names),
                "pretrained": pretrained,
                "model": model_state,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "history": [asdict(r) for r in history],
                "best": {
                    "epoch": best.epoch,
                    "accuracy": best.accuracy,
                    # The same tensors when this epoch is the best: torch.save stores them once.
                    "model": model_state if improved else best.model,
                    "confusion": best.confusion,
                },
                "rng": capture_rng(generators),
            },
            paths.checkpoint_last,
        )
        if improved:
            _save_best(paths.checkpoint_best, best, config, dataset, pretrained)
        write_json(paths.metrics, _metrics(config, dataset, source, pretrained, history, None))
        if on_epoch:
            on_epoch(report)
        # After the last epoch there is nothing left to resume: finish instead.
        if epoch < config.epochs and stop_after_epoch and stop_after_epoch():
            raise TrainingInterrupted(epoch)

    if best.confusion is None:
        raise RuntimeError("no epoch was evaluated; nothing to report")
    final = classification_report(best.confusion, dataset.class_names)
    plot_curves(
        [r.epoch for r in history],
        [r.train_loss for r in history],
        [r.val_loss for r in history],
        [r.val_accuracy for r in history],
        paths.curves,
    )
    plot_confusion(final.confusion_matrix, dataset.class_names, paths.confusion)
    write_json(paths.metrics, _metrics(config, dataset, source, pretrained, history, final))
    return TrainResult(
        class_names=dataset.class_names,
        best_epoch=best.epoch,
        best_val_accuracy=best.accuracy,
        report=final,
        history=tuple(history),
        skipped=dataset.skipped,
        skipped_files=dataset.skipped_files,
        pretrained=pretrained,
        train_images=len(dataset.train),
        val_images=len(dataset.val),
        cache_placement=source.placement,
        checkpoint_best=paths.checkpoint_best,
        checkpoint_last=paths.checkpoint_last,
        metrics_path=paths.metrics,
        curves_plot=paths.curves,
        confusion_plot=paths.confusion,
    )


def load_data(
    dataset_dir: Path, config: TrainConfig, device: torch.device
) -> tuple[DatasetSplit, BatchSource]:
    """Find, decode and split the dataset; cache it in memory when it fits config.cache_bytes."""
    layout = find_images(dataset_dir)
    workers = (
        config.num_workers
        if config.num_workers is not None
        else min(MAX_AUTO_WORKERS, os.cpu_count() or 1)
    )
    rows = len(layout.files)
    if cache_bytes_needed(rows, config.image_size) <= config.cache_bytes:
        cache = ImageCache(rows, config.image_size)
        # The decode that checks each file is the one that fills the cache.
        dataset = read_dataset(layout, config.val_fraction, config.seed, cache.read, workers or 1)
        labels = torch.tensor([image.label for image in layout.files], dtype=torch.int64)
        return dataset, CachedBatches(cache, labels, device)
    dataset = read_dataset(layout, config.val_fraction, config.seed, threads=workers or 1)
    streamed = StreamedBatches(
        dataset.train + dataset.val, rows, config.image_size, workers, device
    )
    return dataset, streamed


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterator[BatchPair],
    transforms: BatchTransforms,
    device: torch.device,
    poll: Callable[[], None],
) -> tuple[float, int]:
    """One pass over the training batches; returns the mean loss and the images seen."""
    model.train()
    # Summed on the device and read once at the end: a per-step .item() would stall the GPU.
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    images_seen = 0
    for images, labels in batches:
        poll()
        inputs = transforms.train(images)
        with autocast_for(device):
            loss = F.cross_entropy(model(inputs), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * labels.shape[0]
        images_seen += labels.shape[0]
    return (loss_sum / max(1, images_seen)).item(), images_seen


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    batches: Iterator[BatchPair],
    transforms: BatchTransforms,
    device: torch.device,
    num_classes: int,
    poll: Callable[[], None],
) -> _Evaluation:
    """Mean loss, accuracy and confusion matrix over the validation batches."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    confusion = torch.zeros((num_classes, num_classes), dtype=torch.int64, device=device)
    for images, labels in batches:
        poll()
        with autocast_for(device):
            logits = model(transforms.eval(images))
        loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum")
        confusion_update(confusion, labels, logits.argmax(dim=1))
    # Cloned out of inference mode so it can be saved and compared like any tensor.
    confusion_cpu = confusion.cpu().clone()
    total = int(confusion_cpu.sum())
    return _Evaluation(
        loss=loss_sum.item() / total,
        accuracy=int(confusion_cpu.trace()) / total,
        confusion=confusion_cpu,
    )


def load_best(checkpoint_path: Path) -> tuple[nn.Module, tuple[str, ...], TrainConfig]:
    """The best checkpoint's model (eval mode, CPU), class names and config, for export."""
    payload = load_checkpoint(checkpoint_path)
    config = TrainConfig.from_dict(payload["config"])
    class_names = tuple(payload["class_names"])
    model, _ = build_model(config.architecture, len(class_names), "scratch", None)
    model.load_state_dict(payload["model"])
    return model.eval(), class_names, config


@dataclass(frozen=True)
class ArtifactPaths:
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

    @property
    def confusion(self) -> Path:
        return self.out_dir / CONFUSION_PLOT


def load_resumable(path: Path, config: TrainConfig) -> dict[str, Any]:
    payload = load_checkpoint(path)
    # A checkpoint from before a field existed ran with that field's default (task: they
    # were all classifiers).
    saved = TrainConfig.from_dict(payload["config"]).to_dict()
    changed = [
        f"{name} {saved.get(name)!r} → {getattr(config, name)!r}"
        for name in RESULT_DEFINING_FIELDS
        if saved.get(name) != getattr(config, name)
    ]
    if changed:
        raise ValueError(f"resume_from '{path}' is a different run; changed: {', '.join(changed)}")
    return payload


def _save_best(
    path: Path, best: _Best, config: TrainConfig, dataset: DatasetSplit, pretrained: bool
) -> None:
    save_checkpoint(
        {
            "epoch": best.epoch,
            "val_accuracy": best.accuracy,
            "config": config.to_dict(),
            "class_names": list(dataset.class_names),
            "pretrained": pretrained,
            "model": best.model,
        },
        path,
    )


def _metrics(
    config: TrainConfig,
    dataset: DatasetSplit,
    source: BatchSource,
    pretrained: bool,
    history: list[EpochReport],
    final: ClassificationReport | None,
) -> dict[str, Any]:
    return {
        "class_names": list(dataset.class_names),
        "config": config.to_dict(),
        "pretrained": pretrained,
        "preprocessing": preprocessing_description(config.image_size),
        "dataset": {
            "layout": dataset.layout,
            "train_images": len(dataset.train),
            "val_images": len(dataset.val),
            "train_per_class": dataset.class_counts("train"),
            "val_per_class": dataset.class_counts("val"),
            "skipped": dataset.skipped,
            "skipped_files": list(dataset.skipped_files),
            "cache": source.placement,
        },
        "epochs": [asdict(report) for report in history],
        "best_epoch": history[-1].best_epoch,
        "best_val_accuracy": history[-1].best_val_accuracy,
        "final": asdict(final) if final else None,
    }


def _rows(images: tuple[ImageFile, ...]) -> torch.Tensor:
    return torch.tensor([image.row for image in images], dtype=torch.int64)


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in state.items()}


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def poll_cancel(should_cancel: Callable[[], bool], epoch: int) -> None:
    if should_cancel():
        raise TrainingCancelled(epoch)


def never() -> bool:
    return False
