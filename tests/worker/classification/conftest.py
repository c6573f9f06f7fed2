"""Generated colour-class datasets and one trained run shared by the engine tests."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from worker.classification.task import ClassificationTask
from worker.engine.config import TrainConfig
from worker.engine.loop import fit
from worker.engine.results import EpochReport, TrainResult

# Each class is a background colour; random rectangles of any colour are the distraction.
CLASS_COLOURS = {"blue": (40, 60, 200), "green": (40, 180, 60), "red": (210, 40, 40)}
IMAGE_SIDE = 32
COLOUR_JITTER = 40
# Small enough that a random crop of the smallest scale is still mostly background.
DISTRACTORS = 2
DISTRACTOR_SIDE = (2, 5)

# Small enough to train in seconds on two cores, big enough to learn the colours.
FAST_CONFIG = TrainConfig(
    epochs=8,
    learning_rate=0.01,
    image_size=IMAGE_SIDE,
    batch_size=8,
    step_size=4,
    gamma=0.5,
    architecture="resnet18",
    pretrained="scratch",
    num_workers=1,
)


def write_images(
    folder: Path,
    colour: tuple[int, int, int],
    count: int,
    seed: int = 0,
    suffix: str = ".png",
) -> list[Path]:
    """count images of one colour class in folder, varied in size, tint and clutter."""
    folder.mkdir(parents=True, exist_ok=True)
    # Same-named class folders of train/ and val/ get different pictures: one picture in two
    # splits is leakage, whose copy the dataset check drops.
    split = folder.parent.name if folder.parent.name in ("train", "val", "test") else None
    key = (
        f"{seed}/{folder.name}/{suffix}"
        if split is None
        else f"{seed}/{split}/{folder.name}/{suffix}"
    )
    rng = random.Random(key)
    paths = []
    for index in range(count):
        tint = tuple(
            max(0, min(255, c + rng.randint(-COLOUR_JITTER, COLOUR_JITTER))) for c in colour
        )
        image = Image.new("RGB", (IMAGE_SIDE + rng.randint(0, 16), IMAGE_SIDE), tint)
        draw = ImageDraw.Draw(image)
        for _ in range(DISTRACTORS):
            x, y = rng.randint(0, IMAGE_SIDE - 8), rng.randint(0, IMAGE_SIDE - 8)
            fill = tuple(rng.randint(0, 255) for _ in range(3))
            side = rng.randint(*DISTRACTOR_SIDE)
            draw.rectangle([x, y, x + side, y + side], fill=fill)
        path = folder / f"img_{index:03d}{suffix}"
        image.save(path)
        paths.append(path)
    return paths


def make_dataset(
    root: Path, per_class: int = 24, layout: str = "class_folders", classes: int = 3
) -> Path:
    """A colour dataset in either seed layout (train/val gets per_class // 4 val images)."""
    for name, colour in list(CLASS_COLOURS.items())[:classes]:
        if layout == "train_val":
            write_images(root / "train" / name, colour, per_class - per_class // 4)
            write_images(root / "val" / name, colour, per_class // 4, seed=1)
        else:
            write_images(root / name, colour, per_class)
    return root


@pytest.fixture
def images() -> Callable[..., list[Path]]:
    """write_images(folder, colour, count, seed=0, suffix=".png")."""
    return write_images


@pytest.fixture
def dataset_factory() -> Callable[..., Path]:
    """make_dataset(root, per_class=24, layout="class_folders", classes=3)."""
    return make_dataset


@pytest.fixture
def fast_config() -> TrainConfig:
    return FAST_CONFIG


@dataclass(frozen=True)
class TrainedRun:
    dataset: Path
    out_dir: Path
    result: TrainResult
    reports: list[EpochReport]


@pytest.fixture(scope="session")
def colour_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("colours"))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, colour_dataset: Path) -> TrainedRun:
    out_dir = tmp_path_factory.mktemp("run")
    reports: list[EpochReport] = []
    result = fit(
        ClassificationTask(), colour_dataset, out_dir, FAST_CONFIG, on_epoch=reports.append
    )
    return TrainedRun(colour_dataset, out_dir, result, reports)
