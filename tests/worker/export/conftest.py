"""A tiny trained classifier, its check images, and one export of every format and precision
to share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import mobilenet_v3_small
from torchvision.transforms.v2 import functional as F

from worker.classification.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from worker.export import FORMATS, Manifest, export_all
from worker.export.context import ExportContext
from worker.export.manifest import ClassThresholds
from worker.export.variants import VariantData
from worker.export.wrapper import ProbabilityClassifier

LABELS = ["blue sky", "grass", "red"]  # a space on purpose: labels are free text
COLOURS = torch.tensor([[0.15, 0.25, 0.8], [0.2, 0.7, 0.25], [0.8, 0.15, 0.15]])
IMAGE_SIZE = 48
PATCH = 16
ARCHITECTURE = "mobilenet_v3_small"
MODEL_VERSION = "alice/flowers@20260101T000000Z"
# What training ships with a classifier: into the manifest and every format's metadata.
THRESHOLDS = ClassThresholds(
    target_precision=0.9, thresholds={"blue sky": 0.62, "grass": None, "red": 0.875}
)
HEAD_STEPS = 80
# The parity every runnable format must meet on the check images (all float32 end to end;
# observed differences are 0 to ~2e-5).
ATOL = 1e-4
METRICS = {"best_epoch": 3, "val_accuracy": 0.93, "per_class": {"red": {"recall": 1.0}}}


def colour_images(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """count [0, 1] images whose class is the background colour, with noise and a random patch."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % len(LABELS)
    images = COLOURS[labels].view(count, 3, 1, 1).expand(count, 3, IMAGE_SIZE, IMAGE_SIZE)
    images = images + 0.15 * torch.randn(count, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    for index in range(count):
        x, y = torch.randint(0, IMAGE_SIZE - PATCH, (2,), generator=generator).tolist()
        images[index, :, y : y + PATCH, x : x + PATCH] = torch.rand(3, 1, 1, generator=generator)
    return images.clamp(0, 1), labels


def normalise(images: torch.Tensor) -> torch.Tensor:
    """What training feeds the classifier: the project-independent ImageNet normalisation."""
    return F.normalize(images, list(IMAGENET_MEAN), list(IMAGENET_STD))


def pytorch_probabilities(classifier: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The reference every export must match, computed without the export package."""
    with torch.no_grad():
        return torch.softmax(classifier(normalise(images)), dim=1)


def toy_context(
    wrapper: ProbabilityClassifier,
    images: torch.Tensor,
    out_dir: Path,
    check_files: list[Path] | None = None,
) -> ExportContext:
    """The tiny classifier's ExportContext as export_all sets one up: the reference is the
    wrapper's answer to the check images."""
    with torch.no_grad():
        reference = wrapper(images)
    return ExportContext(
        wrapper,
        LABELS,
        IMAGE_SIZE,
        ARCHITECTURE,
        MODEL_VERSION,
        images,
        reference,
        out_dir,
        check_files=check_files or [],
    )


@pytest.fixture(scope="session")
def classifier() -> nn.Module:
    """mobilenet_v3_small (random init) with calibrated BatchNorm and a head fitted to the colours.

    Backpropagating through the whole network takes minutes on two busy cores; BatchNorm
    statistics from a few forward passes plus a head fitted on the pooled features give,
    in about a second, a classifier with varied, not saturated, probabilities.
    """
    torch.manual_seed(0)
    model = mobilenet_v3_small(weights=None, num_classes=len(LABELS))
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # a cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for seed in range(4):
            model(normalise(colour_images(24, seed=seed)[0]))
    model.eval()
    images, labels = colour_images(96, seed=10)
    with torch.no_grad():
        features = torch.flatten(model.avgpool(model.features(normalise(images))), 1)
    optimizer = torch.optim.Adam(model.classifier.parameters(), lr=1e-3)
    for _ in range(HEAD_STEPS):
        loss = nn.functional.cross_entropy(model.classifier(features), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="session")
def check_images() -> torch.Tensor:
    """Held-out images of every class, as the worker passes them: [0, 1], already cropped."""
    return colour_images(12, seed=1000)[0]


def views(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 eval views, as the worker's cache holds them, and their labels."""
    images, labels = colour_images(count, seed)
    return (images * 255).round().to(torch.uint8), labels


# The precision variants the shared export makes, and what they are scored and calibrated on.
PRECISIONS = ["int8", "fp32", "fp16"]
VALIDATION_IMAGES, VALIDATION_SEED = 90, 2000
CALIBRATION_IMAGES, CALIBRATION_SEED = 48, 3000
# The fixture's classifier is a fitted head on random features with soft probabilities:
# int8 moves more of its images across a class boundary than a trained network's
# (bench/export_precision.py measures those); 5 points lets the tests be about mechanics.
VARIANT_TOLERANCE = 0.05


@dataclass
class ExportRun:
    manifest: Manifest
    out_dir: Path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Whichever test first asks for the shared export pays for it in its own timeout (about
    three minutes on two quiet cores, against the suite's 300 s): give those tests room."""
    for item in items:
        if "exported" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.timeout(600))


@pytest.fixture(scope="session")
def exported(
    classifier: nn.Module, check_images: torch.Tensor, tmp_path_factory: pytest.TempPathFactory
) -> ExportRun:
    """Every format, and every precision variant of those that make them, exported once
    from the tiny classifier (about two minutes on two cores, most of it ExecuTorch's
    lowering): one export shared by the format tests and the variant tests."""
    out_dir = tmp_path_factory.mktemp("exports")
    validation, labels = views(VALIDATION_IMAGES, VALIDATION_SEED)
    calibration, _ = views(CALIBRATION_IMAGES, CALIBRATION_SEED)
    manifest = export_all(
        model=classifier,
        class_names=LABELS,
        image_size=IMAGE_SIZE,
        architecture=ARCHITECTURE,
        formats=list(FORMATS),
        check_images=check_images,
        out_dir=out_dir,
        metrics=METRICS,
        model_version=MODEL_VERSION,
        class_thresholds=THRESHOLDS,
        precisions=PRECISIONS,
        tolerance=VARIANT_TOLERANCE,
        variant_data=lambda: VariantData(validation, labels, calibration),
    )
    return ExportRun(manifest, out_dir)


# Detection: small torchvision detectors with random weights made to detect something.

DETECTION_LABELS = ["red box", "blue box"]
DETECTION_IMAGE_SIZE = 64
DETECTOR = "ssdlite320_mobilenet_v3_large"
# Random heads score everything near 1/3 (SSD) or near 0 (RetinaNet, FCOS); with the heads
# shaken, this threshold leaves a few detections on some images and none on others.
DETECTION_SCORE_THRESHOLD = 0.45
DETECTION_METRICS = {"best_val_accuracy": 0.5, "map_50_95": 0.3, "per_class_ap": {"red box": 0.6}}
RECTANGLE_COLOURS = torch.tensor([[0.95, 0.2, 0.15], [0.15, 0.3, 0.95]])


def rectangle_images(count: int, size: int, seed: int) -> torch.Tensor:
    """Textured dark images with one or two bright rectangles; the first one is blank."""
    generator = torch.Generator().manual_seed(seed)
    images = 0.1 + 0.15 * torch.rand(count, 3, size, size, generator=generator)
    for index in range(1, count):
        for _ in range(1 + index % 2):
            w, h = torch.randint(size // 5, size // 2, (2,), generator=generator).tolist()
            x = int(torch.randint(0, size - w, (1,), generator=generator))
            y = int(torch.randint(0, size - h, (1,), generator=generator))
            colour = RECTANGLE_COLOURS[int(torch.randint(0, 2, (1,), generator=generator))]
            images[index, :, y : y + h, x : x + w] = colour.view(3, 1, 1)
    return images.clamp(0, 1)


def random_detector(
    architecture: str, size: int = DETECTION_IMAGE_SIZE, seed: int = 0
) -> nn.Module:
    """A detector whose random weights give varied, image-dependent scores.

    Freshly initialised, batch norm without statistics shrinks the features to ~1e-20 and
    every score is the same: calibrate batch norm on noise (as the classifier fixture does),
    then give the classification layer weights large enough to spread the scores.
    """
    from worker.detection.models import build_detector

    torch.manual_seed(seed)
    model, _ = build_detector(architecture, len(DETECTION_LABELS), size, "scratch", None)
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None
    model.eval()
    model.backbone.train()
    with torch.no_grad():
        for _ in range(3):
            batch, _ = model.transform(list(torch.rand(8, 3, size, size, generator=generator)))
            model.backbone(batch.tensors)
        model.eval()
        if architecture.startswith("ssd"):
            layers = [block[-1] for block in model.head.classification_head.module_list]
        elif architecture.startswith("fasterrcnn"):
            layers = [model.roi_heads.box_predictor.cls_score]
        else:
            layers = [model.head.classification_head.cls_logits]
        for layer in layers:
            fan_in = layer.weight[0].numel()
            layer.weight.copy_(
                3 * torch.randn(layer.weight.shape, generator=generator) / fan_in**0.5
            )
            layer.bias.zero_()
    return model.requires_grad_(False)


def reference_detections(
    model: nn.Module, image: torch.Tensor, score_threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What every export must return for one image, computed without the export package."""
    import copy

    detector = copy.deepcopy(model).eval()
    heads = getattr(detector, "roi_heads", detector)
    heads.score_thresh = score_threshold
    heads.detections_per_img = min(heads.detections_per_img, 100)
    with torch.no_grad():
        (found,) = detector([image])
    keep = found["labels"] > 0  # RetinaNet and FCOS may score torchvision's background
    return found["boxes"][keep], found["scores"][keep], found["labels"][keep] - 1


@dataclass
class DetectionRun:
    model: nn.Module
    images: torch.Tensor
    manifest: Manifest
    out_dir: Path


@pytest.fixture(scope="session")
def ssdlite() -> nn.Module:
    return random_detector(DETECTOR)


@pytest.fixture(scope="session")
def detection_images() -> torch.Tensor:
    return rectangle_images(8, DETECTION_IMAGE_SIZE, seed=7)


@pytest.fixture(scope="session")
def detection_export(
    ssdlite: nn.Module, detection_images: torch.Tensor, tmp_path_factory: pytest.TempPathFactory
) -> DetectionRun:
    """SSDlite exported once to every detection format (about half a minute on two cores)."""
    from worker.export.detection import DETECTION_FORMATS, export_detector

    out_dir = tmp_path_factory.mktemp("detection-exports")
    manifest = export_detector(
        model=ssdlite,
        class_names=DETECTION_LABELS,
        image_size=DETECTION_IMAGE_SIZE,
        architecture=DETECTOR,
        formats=list(DETECTION_FORMATS),
        check_images=detection_images,
        out_dir=out_dir,
        metrics=DETECTION_METRICS,
        model_version=MODEL_VERSION,
        score_threshold=DETECTION_SCORE_THRESHOLD,
    )
    return DetectionRun(ssdlite, detection_images, manifest, out_dir)
