"""Training a detector: the classification engine's contract (config, epoch reports, resume,
cancel, warm stop, checkpoints, metrics.json, curves) with boxes, a detection loss and mAP.

Every image is stretched to image_size² (no crop, so no box is lost); boxes are scaled with
it. The detector normalises its own input, so batches reach it as RGB in [0, 1].
Detectors run in float32 on every device: under bf16 autocast torchvision decodes boxes in
bf16, whose spacing is 2 px between 256 and 512, which would blur losses and mAP.
`accuracy` everywhere (EpochReport.val_accuracy, the status row) is mAP@0.5 on validation.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import SGD
from torch.optim.lr_scheduler import StepLR
from torchvision.transforms.v2 import functional as F

from worker.detection.annotations import AnnotatedImage, DetectionDataset, load_detection_dataset
from worker.detection.augment import MIN_BOX_SIDE, PIXEL_MAX, DetectionAugment, Target
from worker.detection.metrics import DetectionEvaluator, DetectionReport
from worker.detection.models import build_detector
from worker.training.batches import batch_sizes
from worker.training.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from worker.training.data import DatasetError
from worker.training.engine import (
    AUGMENT_SEED_OFFSET,
    EVAL_BATCH_FACTOR,
    MAX_AUTO_WORKERS,
    MOMENTUM,
    ArtifactPaths,
    EpochReport,
    TrainConfig,
    TrainingInterrupted,
    cpu_state,
    load_resumable,
    never,
    poll_cancel,
    synchronize,
)
from worker.training.metrics import write_json
from worker.training.plots import plot_curves
from worker.training.preprocessing import open_upright_rgb

log = logging.getLogger(__name__)

# Training images whose plain (unaugmented) views re-estimate batch-norm statistics before
# each evaluation; a few hundred give stable estimates.
RECALIBRATION_IMAGES = 256


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite: the learning rate is too high for this data."""


@dataclass(frozen=True)
class DetectionTrainResult:
    """A finished detector run: the best epoch's validation report and the artifacts."""

    class_names: tuple[str, ...]
    best_epoch: int
    best_val_accuracy: float  # mAP@0.5 of the best epoch
    report: DetectionReport
    history: tuple[EpochReport, ...]
    skipped: int  # images not trained on: missing or undecodable
    skipped_files: tuple[str, ...]
    pretrained: bool
    train_images: int
    val_images: int
    cache_placement: str
    checkpoint_best: Path
    checkpoint_last: Path
    metrics_path: Path
    curves_plot: Path


@dataclass
class _Best:
    epoch: int = 0
    accuracy: float = -1.0
    model: dict[str, torch.Tensor] | None = None
    report: dict[str, Any] | None = None


class DetectionImages:
    """The dataset's images as uint8 (3, S, S) and their targets in those pixels.

    Decoded once into memory when they fit config.cache_bytes (on the GPU when half its free
    memory holds them), otherwise decoded batch by batch by a thread pool.
    """

    def __init__(self, images: Sequence[AnnotatedImage], config: TrainConfig, device: torch.device):
        self.images = list(images)
        self.size = config.image_size
        self.device = device
        self.threads = config.num_workers or min(MAX_AUTO_WORKERS, os.cpu_count() or 1)
        self.targets = [_target(image, self.size, device) for image in self.images]
        self.pixels: torch.Tensor | None = None
        self.placement = "streamed"
        self.unreadable: list[int] = []
        needed = len(self.images) * 3 * self.size * self.size
        if needed <= config.cache_bytes:
            pixels = torch.zeros((len(self.images), 3, self.size, self.size), dtype=torch.uint8)
            for row, decoded in enumerate(self._decode_all(range(len(self.images)))):
                if decoded is None:
                    self.unreadable.append(row)
                else:
                    pixels[row] = decoded
            self.placement = "host"
            if device.type == "cuda" and needed <= 0.5 * torch.cuda.mem_get_info(device)[0]:
                pixels, self.placement = pixels.to(device), "device"
            self.pixels = pixels
        else:
            # Streaming finds unreadable files as it goes; check them all once up front.
            self.unreadable = [
                row for row, image in enumerate(self.images) if not _readable(image.path)
            ]

    def batch(self, rows: list[int]) -> tuple[torch.Tensor, list[Target]]:
        """uint8 images on the device and their targets, in the order of rows."""
        if self.pixels is not None:
            index = torch.tensor(rows, device=self.pixels.device)
            images = self.pixels.index_select(0, index)
        else:
            decoded = self._decode_all(rows)
            unreadable = [
                self.images[row].path
                for row, image in zip(rows, decoded, strict=True)
                if image is None
            ]
            if unreadable:
                # Checked readable at the start: the file changed under the job.
                raise DatasetError(f"'{unreadable[0]}' could not be decoded any more")
            images = torch.stack([image for image in decoded if image is not None])
        return images.to(self.device, non_blocking=True), [self.targets[row] for row in rows]

    def _decode_all(self, rows: Sequence[int]) -> list[torch.Tensor | None]:
        with ThreadPoolExecutor(self.threads) as pool:
            return list(pool.map(lambda row: _decode(self.images[row].path, self.size), rows))


def train_detector(
    dataset_dir: Path,
    out_dir: Path,
    config: TrainConfig,
    on_epoch: Callable[[EpochReport], None] | None = None,
    resume_from: Path | None = None,
    cancelled: Callable[[], bool] | None = None,
    stop_after_epoch: Callable[[], bool] | None = None,
) -> DetectionTrainResult:
    """Train a detector on dataset_dir, writing checkpoints, metrics and curves to out_dir."""
    if config.task != "detection":
        raise ValueError(f"train_detector() trains detectors, not task {config.task!r}")
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out_dir.mkdir(parents=True, exist_ok=True)
    resumed = load_resumable(resume_from, config) if resume_from else None
    should_cancel = cancelled or never

    random.seed(config.seed)
    torch.manual_seed(config.seed)
    dataset = load_detection_dataset(dataset_dir, config.val_fraction, config.seed)
    data = DetectionImages(dataset.train + dataset.val, config, device)
    skipped_rows = set(data.unreadable)
    train_rows = [row for row in range(len(dataset.train)) if row not in skipped_rows]
    val_rows = [
        row for row in range(len(dataset.train), len(data.images)) if row not in skipped_rows
    ]
    if not train_rows or not val_rows:
        raise DatasetError("no readable images left in the training or the validation set")
    skipped_files = [
        str(data.images[row].path.relative_to(dataset.root)) for row in sorted(skipped_rows)
    ]
    skipped = dataset.counts.missing_images + len(skipped_rows)

    class_names = dataset.class_names
    if resumed:
        if tuple(resumed["class_names"]) != class_names:
            raise ValueError(
                f"resume_from checkpoint was trained on classes {resumed['class_names']}, "
                f"the dataset has {list(class_names)}"
            )
        pretrained = bool(resumed["pretrained"])
        model, _ = build_detector(
            config.architecture, len(class_names), config.image_size, pretrained, config.weights_dir
        )
    else:
        model, pretrained = build_detector(
            config.architecture,
            len(class_names),
            config.image_size,
            config.pretrained,
            config.weights_dir,
        )
    model.to(device)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = SGD(parameters, lr=config.learning_rate, momentum=MOMENTUM)
    scheduler = StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    generators = {
        "shuffle": torch.Generator().manual_seed(config.seed),
        "augment": torch.Generator(device).manual_seed(config.seed + AUGMENT_SEED_OFFSET),
    }
    augment = DetectionAugment(config.image_size, generators["augment"])

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
        _save_best(paths.checkpoint_best, best, config, class_names, pretrained)
        if resume_from and resume_from.resolve() != paths.checkpoint_last.resolve():
            shutil.copyfile(resume_from, paths.checkpoint_last)
    log.info(
        "training %s on %d classes: %d train, %d val images (%d skipped), cache %s, device %s",
        config.architecture,
        len(class_names),
        len(train_rows),
        len(val_rows),
        skipped,
        data.placement,
        device,
    )

    for epoch in range(first_epoch, config.epochs + 1):
        poll = partial(poll_cancel, should_cancel, epoch)
        learning_rate = optimizer.param_groups[0]["lr"]
        order = torch.randperm(len(train_rows), generator=generators["shuffle"]).tolist()
        shuffled = [train_rows[i] for i in order]
        sizes = batch_sizes(len(shuffled), config.batch_size, drop_single_last=True)
        synchronize(device)
        started = time.perf_counter()
        train_loss, train_images = _train_one_epoch(
            model, optimizer, _batches(data, shuffled, sizes), augment, device, poll
        )
        train_duration = time.perf_counter() - started
        if not math.isfinite(train_loss):
            raise TrainingDiverged(
                f"training diverged in epoch {epoch} (the loss became {train_loss}); "
                f"try a smaller learning_rate than {config.learning_rate}"
            )
        scheduler.step()
        calibration = train_rows[:RECALIBRATION_IMAGES]
        eval_batch = config.batch_size * EVAL_BATCH_FACTOR
        calibration_sizes = batch_sizes(len(calibration), eval_batch, True)
        if calibration_sizes:  # one lone image cannot estimate batch statistics
            _recalibrate_batch_norm(
                model, _batches(data, calibration, calibration_sizes), device, poll
            )
        eval_sizes = batch_sizes(len(val_rows), eval_batch, False)
        val_loss = _validation_loss(model, _batches(data, val_rows, eval_sizes), device, poll)
        report_now = _evaluate(
            model, _batches(data, val_rows, eval_sizes), class_names, device, poll
        )
        duration = time.perf_counter() - started

        # Strictly better only: on a tie the earlier (less trained) epoch stays best.
        improved = report_now.map_50 > best.accuracy
        if improved:
            best = _Best(epoch, report_now.map_50, cpu_state(model), asdict(report_now))
        report = EpochReport(
            epoch=epoch,
            epochs=config.epochs,
            train_loss=train_loss,
            val_loss=val_loss,
            val_accuracy=report_now.map_50,
            learning_rate=learning_rate,
            duration_s=duration,
            train_duration_s=train_duration,
            images_per_s=train_images / train_duration,
            train_images=train_images,
            improved=improved,
            best_epoch=best.epoch,
            best_val_accuracy=best.accuracy,
            pretrained=pretrained,
            skipped_images=skipped,
        )
        history.append(report)
        log.info(
            "epoch %d/%d: train loss %.4f, val loss %.4f, mAP@0.5 %.4f, mAP@0.5:0.95 %.4f, "
            "%.0f images/s",
            epoch,
            config.epochs,
            train_loss,
            val_loss,
            report_now.map_50,
            report_now.map_50_95,
            report.images_per_s,
        )
        model_state = model.state_dict()
        save_checkpoint(
            {
                "epoch": epoch,
                "config": config.to_dict(),
                "class_names": list(class_names),
                "pretrained": pretrained,
                "model": model_state,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "history": [asdict(r) for r in history],
                "best": {
                    "epoch": best.epoch,
                    "accuracy": best.accuracy,
                    "model": model_state if improved else best.model,
                    "report": best.report,
                },
                "rng": capture_rng(generators),
            },
            paths.checkpoint_last,
        )
        if improved:
            _save_best(paths.checkpoint_best, best, config, class_names, pretrained)
        metrics = _metrics(config, dataset, data, skipped, skipped_files, pretrained, history, best)
        write_json(paths.metrics, metrics)
        if on_epoch:
            on_epoch(report)
        if epoch < config.epochs and stop_after_epoch and stop_after_epoch():
            raise TrainingInterrupted(epoch)

    if best.report is None:
        raise RuntimeError("no epoch was evaluated; nothing to report")
    plot_curves(
        [r.epoch for r in history],
        [r.train_loss for r in history],
        [r.val_loss for r in history],
        [r.val_accuracy for r in history],
        paths.curves,
        loss_label="detection loss",
        accuracy_title="Validation mAP@0.5",
    )
    return DetectionTrainResult(
        class_names=class_names,
        best_epoch=best.epoch,
        best_val_accuracy=best.accuracy,
        report=DetectionReport(**best.report),
        history=tuple(history),
        skipped=skipped,
        skipped_files=tuple(skipped_files),
        pretrained=pretrained,
        train_images=len(train_rows),
        val_images=len(val_rows),
        cache_placement=data.placement,
        checkpoint_best=paths.checkpoint_best,
        checkpoint_last=paths.checkpoint_last,
        metrics_path=paths.metrics,
        curves_plot=paths.curves,
    )


def load_best_detector(
    checkpoint_path: Path, weights_dir: Path | None
) -> tuple[nn.Module, tuple[str, ...], TrainConfig]:
    """The best checkpoint's detector (eval mode, CPU), class names and config, for export.

    A detector trained from ImageNet weights has that structure (frozen batch norm), so
    rebuilding it needs the same weights file in weights_dir.
    """
    payload = load_checkpoint(checkpoint_path)
    config = TrainConfig.from_dict(payload["config"])
    class_names = tuple(payload["class_names"])
    model, _ = build_detector(
        config.architecture,
        len(class_names),
        config.image_size,
        bool(payload["pretrained"]),
        weights_dir,
    )
    model.load_state_dict(payload["model"])
    return model.eval(), class_names, config


def check_images(dataset_dir: Path, config: TrainConfig, count: int) -> torch.Tensor:
    """Up to count images as float (N, 3, S, S) in [0, 1], validation first: for export checks."""
    dataset = load_detection_dataset(dataset_dir, config.val_fraction, config.seed)
    chosen = []
    for image in dataset.val + dataset.train:
        decoded = _decode(image.path, config.image_size)
        if decoded is not None:
            chosen.append(decoded)
        if len(chosen) == count:
            break
    return torch.stack(chosen).float() / PIXEL_MAX


def preprocessing_description(image_size: int) -> dict[str, Any]:
    """What an exported detector expects as input, for metrics.json and the manifest."""
    return {
        "color_space": "RGB",
        "exif_orientation_applied": False,
        "resize": [image_size, image_size],
        "keep_aspect_ratio": False,
        "interpolation": "bilinear, antialiased",
        "scale": 1 / 255,
        "normalisation": "inside the model",
        "layout": "NCHW",
        "boxes": "x1, y1, x2, y2 in pixels of the resized input",
        "apple_vision_crop_and_scale": "scaleFill",
    }


def _train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterator[tuple[torch.Tensor, list[Target]]],
    augment: DetectionAugment,
    device: torch.device,
    poll: Callable[[], None],
) -> tuple[float, int]:
    model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    images_seen = 0
    for images, targets in batches:
        poll()
        inputs, moved = augment(images, targets)
        losses = model(list(inputs), moved)
        loss = sum(losses.values())
        assert isinstance(loss, torch.Tensor)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(moved)
        images_seen += len(moved)
    return (loss_sum / max(1, images_seen)).item(), images_seen


@torch.no_grad()
def _validation_loss(
    model: nn.Module,
    batches: Iterator[tuple[torch.Tensor, list[Target]]],
    device: torch.device,
    poll: Callable[[], None],
) -> float:
    """The training loss on validation images, without updating anything."""
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    images_seen = 0
    # torchvision detectors return losses only in training mode; Faster R-CNN then samples
    # proposals with the global generator, which must not change the training's stream.
    with _loss_mode(model), torch.random.fork_rng(devices=_cuda_devices(device)):
        for images, targets in batches:
            poll()
            losses = model(list(images.float() / PIXEL_MAX), targets)
            loss_sum += sum(losses.values()).float() * len(targets)
            images_seen += len(targets)
    return (loss_sum / max(1, images_seen)).item()


@torch.inference_mode()
def _evaluate(
    model: nn.Module,
    batches: Iterator[tuple[torch.Tensor, list[Target]]],
    class_names: tuple[str, ...],
    device: torch.device,
    poll: Callable[[], None],
) -> DetectionReport:
    model.eval()
    evaluator = DetectionEvaluator(len(class_names), class_names)
    for images, targets in batches:
        poll()
        predictions = model(list(images.float() / PIXEL_MAX))
        evaluator.add(
            [_dataset_labels(p) for p in predictions],
            [{"boxes": t["boxes"].cpu(), "labels": t["labels"].cpu() - 1} for t in targets],
        )
    return evaluator.report()


@torch.no_grad()
def _recalibrate_batch_norm(
    model: nn.Module,
    batches: Iterator[tuple[torch.Tensor, list[Target]]],
    device: torch.device,
    poll: Callable[[], None],
) -> None:
    """Replace batch-norm running statistics by their average over plain training images.

    Running averages lag behind weights that move fast: SSDlite's batch norm uses momentum
    0.03, so after a few hundred steps from scratch its eval-mode statistics describe an
    older network, and a detector that finds every box in training mode finds few in eval
    mode. Re-estimating them ("precise BN") costs one forward pass over a few hundred
    images. Frozen batch norm (pretrained backbones) is not a _BatchNorm and is left alone.
    """
    norms = [module for module in model.modules() if isinstance(module, _BatchNorm)]
    if not norms:
        return
    momenta = [norm.momentum for norm in norms]
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches below
        norm.train()
    try:
        for images, _ in batches:
            poll()
            model(list(images.float() / PIXEL_MAX))
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        model.eval()


def _dataset_labels(prediction: Target) -> Target:
    """A torchvision prediction on the CPU with 0-based dataset labels.

    RetinaNet and FCOS score the background column like any class, so an undertrained one
    can predict label 0: that is no class of the dataset, and is dropped.
    """
    labels = prediction["labels"].cpu()
    keep = labels > 0
    return {
        "boxes": prediction["boxes"].float().cpu()[keep],
        "scores": prediction["scores"].float().cpu()[keep],
        "labels": labels[keep] - 1,
    }


@contextmanager
def _loss_mode(model: nn.Module) -> Iterator[None]:
    """Training mode (losses out) with batch norm frozen, restoring eval mode after."""
    model.train()
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.eval()
    try:
        yield
    finally:
        model.eval()


def _batches(
    data: DetectionImages, rows: list[int], sizes: Sequence[int]
) -> Iterator[tuple[torch.Tensor, list[Target]]]:
    start = 0
    for size in sizes:
        yield data.batch(rows[start : start + size])
        start += size


def _target(image: AnnotatedImage, size: int, device: torch.device) -> Target:
    """Boxes scaled from the stored image to size², labels shifted past the background (0)."""
    scale = torch.tensor(
        [size / image.width, size / image.height, size / image.width, size / image.height]
    )
    boxes = torch.tensor(image.boxes, dtype=torch.float32).reshape(-1, 4) * scale
    labels = torch.tensor(image.labels, dtype=torch.int64) + 1
    # A box that shrinks below MIN_BOX_SIDE at this size is no object the detector can see
    # (and one that rounds to zero width makes torchvision refuse the whole batch).
    keep = (boxes[:, 2] - boxes[:, 0] >= MIN_BOX_SIDE) & (boxes[:, 3] - boxes[:, 1] >= MIN_BOX_SIDE)
    return {"boxes": boxes[keep].to(device), "labels": labels[keep].to(device)}


def _decode(path: Path, size: int) -> torch.Tensor | None:
    """The whole image stretched to size² as uint8 (3, size, size); None when unreadable."""
    try:
        with Image.open(path) as stored:
            # Boxes refer to the stored pixel grid, so EXIF rotation is not applied here.
            stored.draft("RGB", (size, size))
            rgb = stored.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return F.resize(F.pil_to_tensor(rgb), [size, size], antialias=True)


def _readable(path: Path) -> bool:
    try:
        open_upright_rgb(path, 1)
    except (OSError, ValueError, Image.DecompressionBombError):
        return False
    return True


def _cuda_devices(device: torch.device) -> list[int]:
    return [device.index or 0] if device.type == "cuda" else []


def _save_best(
    path: Path, best: _Best, config: TrainConfig, class_names: tuple[str, ...], pretrained: bool
) -> None:
    save_checkpoint(
        {
            "epoch": best.epoch,
            "val_accuracy": best.accuracy,
            "config": config.to_dict(),
            "class_names": list(class_names),
            "pretrained": pretrained,
            "model": best.model,
        },
        path,
    )


def _metrics(
    config: TrainConfig,
    dataset: DetectionDataset,
    data: DetectionImages,
    skipped: int,
    skipped_files: list[str],
    pretrained: bool,
    history: list[EpochReport],
    best: _Best,
) -> dict[str, Any]:
    return {
        "task": "detection",
        "class_names": list(dataset.class_names),
        "config": config.to_dict(),
        "pretrained": pretrained,
        "preprocessing": preprocessing_description(config.image_size),
        "dataset": {
            "format": dataset.format,
            "train_images": len(dataset.train),
            "val_images": len(dataset.val),
            "counts": asdict(dataset.counts),
            "skipped": skipped,
            "skipped_files": skipped_files,
            "cache": data.placement,
        },
        "accuracy_is": "mAP@0.5 on the validation images",
        "epochs": [asdict(report) for report in history],
        "best_epoch": best.epoch,
        "best_val_accuracy": best.accuracy,
        "final": best.report,
    }
