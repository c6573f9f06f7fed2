"""Classification as a Task of the engine: class folders in, a softmax classifier out.

Images are decoded once to uint8 eval views (short side resized, centre-cropped) and
cached in memory when they fit; training crops and flips them on the device.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from shared.dataset_check import DatasetReport
from worker.classification.augment import CROP_SCALES, BatchTransforms
from worker.classification.batches import (
    BatchPair,
    BatchSource,
    CachedBatches,
    ImageCache,
    StreamedBatches,
    cache_bytes_needed,
)
from worker.classification.data import (
    DatasetLayout,
    DatasetSplit,
    ImageFile,
    find_images,
    read_dataset,
)
from worker.classification.device_decode import decode_plain_jpegs
from worker.classification.metrics import (
    ClassificationReport,
    class_weights,
    classification_report,
    confusion_update,
    decision_thresholds,
    precision_at_thresholds,
)
from worker.classification.models import build_model
from worker.classification.preprocessing import decode_image, preprocessing_description
from worker.engine.batchnorm import CALIBRATION_IMAGES, reestimate_batch_norm, spread
from worker.engine.checkpoint import load_best_model
from worker.engine.config import TaskName, TrainConfig
from worker.engine.data import (
    EVAL_BATCH_FACTOR,
    LoadedData,
    batch_sizes,
    check_made_for,
    split_digest,
)
from worker.engine.device import Compute, choose_device
from worker.engine.recipe import Strength, augmentation_strength
from worker.engine.task import Evaluation, Poll

if TYPE_CHECKING:
    from worker.export.manifest import Manifest
    from worker.export.variants import VariantData

CONFUSION_PLOT = "confusion_matrix.png"
# A best validation accuracy below this many times chance means the model did not learn.
LEARNED_OVER_CHANCE = 1.5


def decodes_jpegs_with_torchvision(decoder: str, device: torch.device) -> bool:
    """TrainConfig.jpeg_decoder on device: auto means torchvision on a GPU (nvJPEG)."""
    return decoder == "torchvision" or (decoder == "auto" and device.type == "cuda")


def plural(count: int, noun: str) -> str:
    """'1 image', '2 images', '3 classes'."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {noun}{'es' if noun.endswith(('s', 'x')) else 's'}"


@dataclass(frozen=True)
class CheckedData:
    """What check_dataset found and decoded, for load_data to train on."""

    root: Path
    options: tuple[Any, ...]  # the config's check_options it was made with
    split: DatasetSplit
    cache: ImageCache | None  # None: the set did not fit config.cache_bytes
    decoded_by_torchvision: int = 0  # of its images (worker/classification/device_decode.py)


class ClassificationTask:
    """One classifier training: the engine's Task for model_type "classification"."""

    name: TaskName = "classification"
    score_name = "accuracy"
    score_description = "top-1 accuracy on the validation images"
    loss_label = "cross-entropy"

    @staticmethod
    def exporter(*args: Any, **kwargs: Any) -> Manifest:
        """worker.export.export_all, imported here: the exporters' libraries (onnx,
        coremltools, executorch) load for an export only, not for training."""
        from worker.export import export_all

        return export_all(*args, **kwargs)

    skipped_noun = "unreadable image"
    autocasts = True
    compiles = True

    def __init__(self) -> None:
        self._layouts: dict[Path, DatasetLayout] = {}
        self._checked: CheckedData | None = None

    def layout(self, dataset_dir: Path) -> DatasetLayout:
        """The dataset's files by class, listed once per job."""
        if dataset_dir not in self._layouts:
            self._layouts[dataset_dir] = find_images(dataset_dir)
        return self._layouts[dataset_dir]

    def learned_floor(self, num_classes: int) -> float:
        """1.5 × chance: a classifier below it does little better than guessing."""
        return LEARNED_OVER_CHANCE / num_classes

    def describe_dataset(self, dataset_dir: Path) -> str:
        layout = self.layout(dataset_dir)
        described = (
            f"{plural(len(layout.files), 'image')} in {plural(len(layout.class_names), 'class')}"
            f" ({', '.join(layout.class_names[:10])})"
        )
        return "; ".join((described, *layout.notes))

    def check_dataset(self, dataset_dir: Path, config: TrainConfig) -> DatasetReport:
        """Decode every image once, check it and split the set; the decode fills the training
        cache when the set fits config.cache_bytes (load_data then decodes nothing)."""
        layout = self.layout(dataset_dir)
        rows = len(layout.files)
        cache = None
        if cache_bytes_needed(rows, config.image_size) <= config.cache_bytes:
            cache = ImageCache(rows, config.image_size)
        predecoded = None
        device = choose_device(config.device)
        if cache is not None and decodes_jpegs_with_torchvision(config.jpeg_decoder, device):
            predecoded = decode_plain_jpegs(
                [image.path for image in layout.files], cache, device, config.threads
            )
        split = read_dataset(
            layout,
            config.val_fraction,
            config.seed,
            cache.store if cache is not None else None,
            config.threads,
            test_fraction=config.test_fraction,
            image_size=config.image_size,
            leakage=config.leakage,
            predecoded=predecoded,
        )
        decoded_by_torchvision = len(predecoded.headers) if predecoded is not None else 0
        self._checked = CheckedData(
            dataset_dir, config.check_options, split, cache, decoded_by_torchvision
        )
        assert split.report is not None
        return split.report

    def load_data(self, dataset_dir: Path, config: TrainConfig, compute: Compute) -> LoadedData:
        """The checked, split dataset as batches: from the cache check_dataset filled, or
        streamed from the files when it did not fit."""
        if not check_made_for(self._checked, dataset_dir, config):
            self._checked = None  # its cache goes before the next one is filled
            self.check_dataset(dataset_dir, config)  # fit() without the job, or a resumed run
        checked = self._checked
        assert checked is not None
        layout = self.layout(dataset_dir)
        self.config, self.compute, self.device = config, compute, compute.device
        device = compute.device
        split, cache = checked.split, checked.cache
        source: BatchSource
        if cache is not None:
            labels = torch.tensor([image.label for image in layout.files], dtype=torch.int64)
            source = CachedBatches(cache, labels, device)
        else:
            source = StreamedBatches(
                split.train + split.val + split.test,
                len(layout.files),
                config.image_size,
                config.loader_workers,
                device,
            )
        self.split, self.source = split, source
        self.train_rows, self.val_rows = _rows(split.train), _rows(split.val)
        self.test_rows = _rows(split.test)
        self.val_labels, self.test_labels = _labels(split.val), _labels(split.test)
        train_counts = split.class_counts("train")
        weights, applied = class_weights(list(train_counts.values()), config.class_weighting)
        self.class_weights = (
            None if weights is None else torch.tensor(weights, dtype=torch.float32, device=device)
        )
        return LoadedData(
            class_names=split.class_names,
            train_images=len(split.train),
            val_images=len(split.val),
            skipped=split.skipped,
            skipped_files=split.skipped_files,
            placement=source.placement,
            summary={
                "layout": split.layout,
                "train_per_class": train_counts,
                "val_per_class": split.class_counts("val"),
                "test_per_class": split.class_counts("test") if split.test else None,
                "test_source": _test_source(split, config.test_fraction),
                "notes": list(layout.notes),
                # Plain JPEGs decoded by torchvision (nvJPEG on a GPU); the rest by Pillow.
                "decoded_by_torchvision": checked.decoded_by_torchvision,
            },
            test_images=len(split.test),
            check=split.report.as_json() if split.report is not None else {},
            split=split_digest(
                {
                    name: [image.path.relative_to(dataset_dir).as_posix() for image in files]
                    for name, files in (
                        ("train", split.train),
                        ("val", split.val),
                        ("test", split.test),
                    )
                }
            ),
            recipe={
                "class_weighting": config.class_weighting,
                "class_weighting_applied": applied,
                "class_weights": (
                    None if weights is None else dict(zip(split.class_names, weights, strict=True))
                ),
            },
        )

    def build_model(
        self, config: TrainConfig, resumed_pretrained: bool | None
    ) -> tuple[nn.Module, bool]:
        num_classes = len(self.split.class_names)
        if resumed_pretrained is not None:
            # The checkpoint brings its own weights, so ImageNet weights are not needed again.
            model, _ = build_model(config.architecture, num_classes, "scratch", None)
            pretrained = resumed_pretrained
        else:
            model, pretrained = build_model(
                config.architecture, num_classes, config.pretrained, config.weights_dir
            )
        model.to(self.device)
        if self.device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        return model, pretrained

    def auto_augmentation(self, train_images: int, epochs: int, pretrained: bool) -> Strength:
        """What the run affords: none for short runs (measured), more for long ones."""
        return augmentation_strength("auto", train_images, epochs, pretrained)

    def prepare_training(
        self, generator: torch.Generator, augmentation: Strength, horizontal_flip: bool
    ) -> None:
        self.transforms = BatchTransforms(
            self.config.image_size,
            self.device,
            generator,
            crop_scale=CROP_SCALES[augmentation],
            flip=horizontal_flip and augmentation != "none",
        )

    def train_batches(self, order: torch.Tensor, sizes: list[int]) -> Any:
        return self.source.batches(self.train_rows[order], sizes)

    def training_loss(self, model: nn.Module, batch: BatchPair) -> tuple[torch.Tensor, int]:
        images, labels = batch
        inputs = self.transforms.train(images)
        with self.compute.autocast():
            loss = F.cross_entropy(
                model(inputs),
                labels,
                weight=self.class_weights,
                label_smoothing=self.config.label_smoothing,
            )
        return loss, labels.shape[0]

    def before_evaluation(self, model: nn.Module, poll: Poll) -> None:
        """Re-estimate batch norm on the plain views of training images from every class."""
        rows = spread(self.train_rows, CALIBRATION_IMAGES)
        sizes = batch_sizes(len(rows), self.config.batch_size * EVAL_BATCH_FACTOR, True)

        def forward(model: nn.Module, batch: BatchPair) -> None:
            with self.compute.autocast():
                model(self.transforms.eval(batch[0]))

        reestimate_batch_norm(model, self.source.batches(rows, sizes), forward, poll)

    def evaluate(self, model: nn.Module, poll: Poll) -> Evaluation:
        """Mean loss, accuracy and confusion matrix over the validation images."""
        loss, confusion, _ = self._scored(model, self.val_rows, poll, final=False)
        return Evaluation(
            loss=loss,
            score=int(confusion.trace()) / int(confusion.sum()),
            best_payload={"confusion": confusion},
        )

    def _scored(
        self, model: nn.Module, rows: torch.Tensor, poll: Poll, final: bool
    ) -> tuple[float, torch.Tensor, torch.Tensor | None]:
        """Mean loss, the confusion matrix and, when final, each image's class probabilities
        (CPU). final: the pass after training, in float32 as the exports compute (no
        autocast); an epoch's evaluation keeps no per-image probabilities."""
        model.eval()
        num_classes = len(self.split.class_names)
        sizes = batch_sizes(len(rows), self.config.batch_size * EVAL_BATCH_FACTOR, False)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        confusion = torch.zeros((num_classes, num_classes), dtype=torch.int64, device=self.device)
        scores = []
        with torch.inference_mode():
            for images, labels in self.source.batches(rows, sizes):
                poll()
                with self.compute.autocast(enabled=not final):
                    logits = model(self.transforms.eval(images))
                loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum")
                confusion_update(confusion, labels, logits.argmax(dim=1))
                if final:
                    scores.append(logits.float().softmax(dim=1))
        # Cloned outside inference mode: ordinary tensors, to save and compare like any other.
        confusion_cpu = confusion.cpu().clone()
        probabilities = torch.cat(scores).cpu().clone() if final else None
        return loss_sum.item() / int(confusion_cpu.sum()), confusion_cpu, probabilities

    def final_report(self, best_payload: dict[str, Any]) -> ClassificationReport | None:
        confusion = best_payload.get("confusion")
        if confusion is None:
            return None
        return classification_report(confusion, self.split.class_names)

    def finalize(
        self, model: nn.Module, report: ClassificationReport | None, poll: Poll
    ) -> tuple[ClassificationReport | None, ClassificationReport | None]:
        """The decision thresholds from the best model's float32 validation probabilities
        (what an export outputs), and the test split's report with the precision those
        thresholds reach on it."""
        if report is None:
            return None, None
        _, _, validation = self._scored(model, self.val_rows, poll, final=True)
        assert validation is not None
        thresholds = decision_thresholds(
            validation, self.val_labels, self.config.threshold_precision
        )
        report = replace(report, class_thresholds=thresholds)
        if not len(self.test_rows):
            return report, None
        _, confusion, scores = self._scored(model, self.test_rows, poll, final=True)
        assert scores is not None
        precision, cleared = precision_at_thresholds(scores, self.test_labels, thresholds)
        tested = replace(
            classification_report(confusion, self.split.class_names),
            class_thresholds=thresholds,
            precision_at_thresholds=precision,
            cleared_thresholds=cleared,
        )
        return report, tested

    def final_plots(self, report: ClassificationReport, out_dir: Path) -> dict[str, Path]:
        path = out_dir / CONFUSION_PLOT
        from worker.classification.plots import plot_confusion  # matplotlib, at the end only

        plot_confusion(report.confusion_matrix, self.split.class_names, path)
        return {"confusion_matrix": path}

    def preprocessing(self, image_size: int) -> dict[str, Any]:
        return preprocessing_description(image_size)

    def load_best(
        self, checkpoint: Path, weights_dir: Path | None
    ) -> tuple[nn.Module, tuple[str, ...], TrainConfig]:
        return load_best_classifier(checkpoint)

    def variant_data(self, calibration_images: int) -> VariantData:
        """The validation split's eval views and labels (at most MAX_SCORED_IMAGES, spread
        over every class) and up to calibration_images training views spread likewise: the
        run's own pixels (cache or files)."""
        # The exporters' side, not the training hot path: imported on use.
        from worker.export.variants import MAX_SCORED_IMAGES, VariantData

        scored = spread(torch.arange(len(self.val_rows)), MAX_SCORED_IMAGES)
        calibration = spread(self.train_rows, calibration_images)
        return VariantData(
            self._views(self.val_rows[scored]),
            self.val_labels[scored],
            self._views(calibration),
        )

    def _views(self, rows: torch.Tensor) -> torch.Tensor:
        """uint8 eval views of rows, in order, on the CPU."""
        sizes = batch_sizes(len(rows), self.config.batch_size * EVAL_BATCH_FACTOR, False)
        return torch.cat([images.cpu() for images, _ in self.source.batches(rows, sizes)])

    def export_images(
        self, dataset_dir: Path, config: TrainConfig, count: int
    ) -> tuple[torch.Tensor, list[Path]]:
        """Up to count readable images, validation ones first, from every class, and their
        stored files (the exports' raw-file check)."""
        layout = self.layout(dataset_dir)
        files = sorted(layout.files, key=lambda image: (image.split != "val", image.row))
        per_class = max(1, count // len(layout.class_names))
        chosen: list[torch.Tensor] = []
        paths: list[Path] = []
        taken: dict[int, int] = {}
        for image in files:
            if taken.get(image.label, 0) >= per_class:
                continue
            try:
                chosen.append(decode_image(image.path, config.image_size))
            except (OSError, ValueError, Image.DecompressionBombError):
                continue  # unreadable: training skipped it too
            paths.append(image.path)
            taken[image.label] = taken.get(image.label, 0) + 1
        return torch.stack(chosen).float() / 255, paths


def load_best_classifier(checkpoint_path: Path) -> tuple[nn.Module, tuple[str, ...], TrainConfig]:
    """The best checkpoint's classifier (eval mode, CPU), class names and config."""

    def untrained(config: TrainConfig, class_names: tuple[str, ...], _: bool) -> nn.Module:
        return build_model(config.architecture, len(class_names), "scratch", None)[0]

    return load_best_model(checkpoint_path, untrained)


def _test_source(split: DatasetSplit, test_fraction: float | None) -> str | None:
    """Where the test split came from: the dataset's test/ folder, test_fraction, or none."""
    if not split.test:
        return None
    return "test folder" if split.test[0].split == "test" else f"test_fraction {test_fraction:g}"


def _labels(images: tuple[ImageFile, ...]) -> torch.Tensor:
    return torch.tensor([image.label for image in images], dtype=torch.int64)


def _rows(images: tuple[ImageFile, ...]) -> torch.Tensor:
    return torch.tensor([image.row for image in images], dtype=torch.int64)
