"""Detection as a Task of the engine: COCO, YOLO or VOC boxes in, a torchvision detector out.

Detectors run in float32 on every device, with IEEE matmuls (no TF32): under bf16 autocast
torchvision decodes boxes in bf16, whose spacing is 2 px between 256 and 512, which would
blur losses and mAP.
The score (EpochReport.val_accuracy, the status row's accuracy) is mAP@0.5 on validation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from shared.dataset_check import DatasetReport
from shared.images import DecodedImage
from worker.classification.task import plural
from worker.detection.annotations import DetectionDataset, load_detection_dataset
from worker.detection.augment import PIXEL_MAX, ZOOM_RANGES, DetectionAugment, Target
from worker.detection.check import DetectionCheck, check_detections
from worker.detection.data import (
    DetectionBatch,
    DetectionImages,
    decode,
    preprocessing_description,
    stretched,
)
from worker.detection.metrics import DetectionEvaluator, DetectionReport
from worker.detection.models import build_detector
from worker.engine.batchnorm import CALIBRATION_IMAGES, reestimate_batch_norm
from worker.engine.checkpoint import load_best_model
from worker.engine.config import DEFAULT_SEED, DEFAULT_VAL_FRACTION, TaskName, TrainConfig
from worker.engine.data import (
    EVAL_BATCH_FACTOR,
    DatasetError,
    LoadedData,
    batch_sizes,
    check_made_for,
    split_digest,
)
from worker.engine.device import Compute
from worker.engine.recipe import Strength
from worker.engine.task import Evaluation, Poll
from worker.export.detection import export_detector

# A best validation mAP@0.5 below this means the detector did not learn.
LEARNED_MAP = 0.05


@dataclass(frozen=True)
class CheckedDetections:
    """What check_dataset found and decoded, for load_data to train on."""

    root: Path
    options: tuple[Any, ...]  # the config's check_options it was made with
    check: DetectionCheck
    pixels: torch.Tensor | None  # every image stretched to image_size²; None: streamed


class DetectionTask:
    """One detector training: the engine's Task for model_type "detection"."""

    name: TaskName = "detection"
    score_name = "mAP@0.5"
    score_description = "mAP@0.5 on the validation images"
    loss_label = "detection loss"
    exporter = staticmethod(export_detector)
    skipped_noun = "unreadable or missing image"
    autocasts = False  # float32 on every device, TF32 off (see the module docstring)
    # Never compiled: its models take a list of images of any size and build the targets in
    # Python, which would recompile torch.compile's graph per size; not measured.
    compiles = False

    def __init__(self) -> None:
        self._datasets: dict[tuple[Path, float, int], DetectionDataset] = {}
        self._checked: CheckedDetections | None = None

    def dataset(
        self, root: Path, val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = DEFAULT_SEED
    ) -> DetectionDataset:
        """The annotations parsed and split once per job (describe, train and export share it)."""
        key = (root, val_fraction, seed)
        if key not in self._datasets:
            self._datasets[key] = load_detection_dataset(root, val_fraction, seed)
        return self._datasets[key]

    def learned_floor(self, num_classes: int) -> float:
        """mAP@0.5 below 0.05: the detector finds next to nothing."""
        return LEARNED_MAP

    def describe_dataset(self, dataset_dir: Path) -> str:
        dataset = self.dataset(dataset_dir)
        counts = dataset.counts
        notes = [
            f"{plural(counts.images, 'image')} with {plural(counts.boxes, 'box')} "
            f"({dataset.format.upper()}) in {plural(len(dataset.class_names), 'class')} "
            f"({', '.join(dataset.class_names[:10])})"
        ]
        if counts.clipped_boxes or counts.dropped_boxes:
            notes.append(f"{counts.clipped_boxes} clipped and {counts.dropped_boxes} dropped boxes")
        if counts.missing_images:
            notes.append(f"{plural(counts.missing_images, 'missing image')} skipped")
        if counts.rotated_images:
            notes.append(f"{plural(counts.rotated_images, 'photo')} turned upright by EXIF")
        return "; ".join(notes)

    def check_dataset(self, dataset_dir: Path, config: TrainConfig) -> DatasetReport:
        """Decode every image once and check it (worker.detection.check); the decode fills the
        training cache when the set fits config.cache_bytes."""
        dataset = self.dataset(dataset_dir, config.val_fraction, config.seed)
        images = dataset.train + dataset.val
        size = config.image_size
        pixels = None
        if len(images) * 3 * size * size <= config.cache_bytes:
            pixels = torch.zeros((len(images), 3, size, size), dtype=torch.uint8)

        def store(row: int, decoded: DecodedImage, _: Image.Image | None) -> None:
            assert pixels is not None
            pixels[row] = stretched(decoded.image, size)

        check = check_detections(
            dataset, size, config.threads, config.leakage, store if pixels is not None else None
        )
        self._checked = CheckedDetections(dataset_dir, config.check_options, check, pixels)
        return check.report

    def load_data(self, dataset_dir: Path, config: TrainConfig, compute: Compute) -> LoadedData:
        if not check_made_for(self._checked, dataset_dir, config):
            self._checked = None  # its cache goes before the next one is filled
            self.check_dataset(dataset_dir, config)  # fit() without the job, or a resumed run
        checked = self._checked
        assert checked is not None
        dataset = self.dataset(dataset_dir, config.val_fraction, config.seed)
        self.config, self.device, self.class_names = config, compute.device, dataset.class_names
        self.images = DetectionImages(
            dataset.train + dataset.val,
            config,
            self.device,
            checked.check.unreadable,
            checked.pixels,
        )
        skipped_rows = set(self.images.unreadable)
        unused = skipped_rows | set(checked.check.dropped)
        train_count = len(dataset.train)
        self.train_rows = [row for row in range(train_count) if row not in unused]
        self.val_rows = [
            row for row in range(train_count, len(self.images.images)) if row not in unused
        ]
        if not self.train_rows or not self.val_rows:
            raise DatasetError("no readable images left in the training or the validation set")
        skipped_files = tuple(
            self.images.images[row].path.relative_to(dataset.root).as_posix()
            for row in sorted(skipped_rows)
        )
        return LoadedData(
            class_names=dataset.class_names,
            train_images=len(self.train_rows),
            val_images=len(self.val_rows),
            skipped=dataset.counts.missing_images + len(skipped_rows),
            skipped_files=skipped_files,
            placement=self.images.placement,
            summary={"format": dataset.format, "counts": asdict(dataset.counts)},
            check=checked.check.report.as_json(),
            split=split_digest(
                {
                    name: [
                        self.images.images[row].path.relative_to(dataset.root).as_posix()
                        for row in rows
                    ]
                    for name, rows in (("train", self.train_rows), ("val", self.val_rows))
                }
            ),
        )

    def build_model(
        self, config: TrainConfig, resumed_pretrained: bool | None
    ) -> tuple[nn.Module, bool]:
        # A detector trained from ImageNet weights has that structure (frozen batch norm),
        # so a resumed one is rebuilt the same way before its own weights are loaded.
        pretrained = config.pretrained if resumed_pretrained is None else resumed_pretrained
        model, loaded = build_detector(
            config.architecture,
            len(self.class_names),
            config.image_size,
            pretrained,
            config.weights_dir,
        )
        return model.to(self.device), loaded if resumed_pretrained is None else resumed_pretrained

    def auto_augmentation(self, train_images: int, epochs: int, pretrained: bool) -> Strength:
        """Always the standard zoom and flip: detectors need them even in short runs.

        Measured (bench/quality.py, SSDlite from scratch, 240 training images, 20 epochs):
        held-out mAP@0.5 0.777 with them, 0.515 without.
        """
        return "standard"

    def prepare_training(
        self, generator: torch.Generator, augmentation: Strength, horizontal_flip: bool
    ) -> None:
        self.augment = DetectionAugment(
            self.config.image_size,
            generator,
            zoom=ZOOM_RANGES[augmentation],
            flip=horizontal_flip and augmentation != "none",
        )

    def train_batches(self, order: torch.Tensor, sizes: list[int]) -> Iterator[DetectionBatch]:
        return self.images.batches([self.train_rows[i] for i in order.tolist()], sizes)

    def training_loss(self, model: nn.Module, batch: DetectionBatch) -> tuple[torch.Tensor, int]:
        images, targets = batch
        inputs, moved = self.augment(images, targets)
        losses = model(list(inputs), moved)
        loss = sum(losses.values())
        assert isinstance(loss, torch.Tensor)
        return loss, len(moved)

    def before_evaluation(self, model: nn.Module, poll: Poll) -> None:
        """Re-estimate batch norm on the plain views of the first training images."""
        rows = self.train_rows[:CALIBRATION_IMAGES]
        sizes = batch_sizes(len(rows), self._eval_batch, True)

        def forward(model: nn.Module, batch: DetectionBatch) -> None:
            model(list(batch[0].float() / PIXEL_MAX))

        reestimate_batch_norm(model, self.images.batches(rows, sizes), forward, poll)

    def evaluate(self, model: nn.Module, poll: Poll) -> Evaluation:
        loss = self._validation_loss(model, poll)
        report = self._validation_map(model, poll)
        return Evaluation(
            loss=loss,
            score=report.map_50,
            best_payload={"report": asdict(report)},
            note=f", mAP@0.5:0.95 {report.map_50_95:.4f}",
        )

    @property
    def _eval_batch(self) -> int:
        return self.config.batch_size * EVAL_BATCH_FACTOR

    @torch.no_grad()
    def _validation_loss(self, model: nn.Module, poll: Poll) -> float:
        """The training loss on validation images, without updating anything."""
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        images_seen = 0
        sizes = batch_sizes(len(self.val_rows), self._eval_batch, False)
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        # torchvision detectors return losses only in training mode; Faster R-CNN then samples
        # proposals with the global generator, which must not change the training's stream.
        with _loss_mode(model), torch.random.fork_rng(devices=devices):
            for images, targets in self.images.batches(self.val_rows, sizes):
                poll()
                losses = model(list(images.float() / PIXEL_MAX), targets)
                loss_sum += sum(losses.values()).float() * len(targets)
                images_seen += len(targets)
        return (loss_sum / max(1, images_seen)).item()

    @torch.inference_mode()
    def _validation_map(self, model: nn.Module, poll: Poll) -> DetectionReport:
        model.eval()
        evaluator = DetectionEvaluator(len(self.class_names), self.class_names)
        sizes = batch_sizes(len(self.val_rows), self._eval_batch, False)
        for images, targets in self.images.batches(self.val_rows, sizes):
            poll()
            predictions = model(list(images.float() / PIXEL_MAX))
            evaluator.add(
                [_dataset_labels(p) for p in predictions],
                [{"boxes": t["boxes"].cpu(), "labels": t["labels"].cpu() - 1} for t in targets],
            )
        return evaluator.report()

    def final_report(self, best_payload: dict[str, Any]) -> DetectionReport | None:
        report = best_payload.get("report")
        return DetectionReport(**report) if report is not None else None

    def finalize(
        self, model: nn.Module, report: DetectionReport | None, poll: Poll
    ) -> tuple[DetectionReport | None, None]:
        """The report as it is: detectors ship their score threshold, and have no test split
        yet (test_fraction is classification's)."""
        return report, None

    def final_plots(self, report: DetectionReport, out_dir: Path) -> dict[str, Path]:
        return {}

    def preprocessing(self, image_size: int) -> dict[str, Any]:
        return preprocessing_description(image_size)

    def load_best(
        self, checkpoint: Path, weights_dir: Path | None
    ) -> tuple[nn.Module, tuple[str, ...], TrainConfig]:
        return load_best_detector(checkpoint, weights_dir)

    def variant_data(self, calibration_images: int) -> Any:
        """Detection exports are float32 only: the contract refuses export_precision."""
        raise ValueError("detection exports have no precision variants (float32 only)")

    def export_images(
        self, dataset_dir: Path, config: TrainConfig, count: int
    ) -> tuple[torch.Tensor, list[Path]]:
        """Up to count readable images, validation ones first, and no stored files: the
        detection exporter has no raw-file check yet (a detector's host steps, decode and
        stretch, are training's own code)."""
        dataset = self.dataset(dataset_dir, config.val_fraction, config.seed)
        chosen = []
        for image in dataset.val + dataset.train:
            decoded = decode(image.path, config.image_size)
            if decoded is not None:
                chosen.append(decoded)
            if len(chosen) == count:
                break
        return torch.stack(chosen).float() / PIXEL_MAX, []


def load_best_detector(
    checkpoint_path: Path, weights_dir: Path | None
) -> tuple[nn.Module, tuple[str, ...], TrainConfig]:
    """The best checkpoint's detector (eval mode, CPU), class names and config, for export.

    A detector trained from ImageNet weights has that structure (frozen batch norm), so
    rebuilding it needs the same weights file in weights_dir.
    """

    def untrained(config: TrainConfig, class_names: tuple[str, ...], pretrained: bool) -> nn.Module:
        return build_detector(
            config.architecture, len(class_names), config.image_size, pretrained, weights_dir
        )[0]

    return load_best_model(checkpoint_path, untrained)


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
