"""A tiny trained classifier, its check images, and one export of every format to share."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import mobilenet_v3_small
from torchvision.transforms.v2 import functional as F

from worker.export import FORMATS, Manifest, export_all
from worker.training.preprocessing import IMAGENET_MEAN, IMAGENET_STD

LABELS = ["blue sky", "grass", "red"]  # a space on purpose: labels are free text
COLOURS = torch.tensor([[0.15, 0.25, 0.8], [0.2, 0.7, 0.25], [0.8, 0.15, 0.15]])
IMAGE_SIZE = 48
PATCH = 16
ARCHITECTURE = "mobilenet_v3_small"
MODEL_VERSION = "alice/flowers@20260101T000000Z"
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


@dataclass
class ExportRun:
    manifest: Manifest
    out_dir: Path
    seconds: float


@pytest.fixture(scope="session")
def exported(
    classifier: nn.Module, check_images: torch.Tensor, tmp_path_factory: pytest.TempPathFactory
) -> ExportRun:
    """Every format exported once from the tiny classifier (about a minute on two cores)."""
    out_dir = tmp_path_factory.mktemp("exports")
    started = time.perf_counter()
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
    )
    return ExportRun(manifest, out_dir, time.perf_counter() - started)
