"""Finding, checking and splitting an object-detection dataset: COCO JSON, YOLO or Pascal VOC.

Boxes come out as x1, y1, x2, y2 in pixels of the stored image (EXIF orientation is not
applied), clipped to it, with labels indexing class_names. Each format's own rules are in
its module's docstring. What is fixed or skipped is counted and noted (AnnotationCounts);
what cannot be read as meant (malformed files, unknown class ids) raises DatasetError,
naming the file and the rule.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from pathlib import Path

from worker.detection.annotations import coco, voc, yolo
from worker.detection.annotations.common import (
    AnnotatedImage,
    AnnotationCounts,
    DetectionDataset,
    DetectionFormat,
    Layout,
    ParsedSets,
    RawImage,
    check_images,
    relative,
)
from worker.detection.annotations.layout import find_layout
from worker.engine.config import DEFAULT_SEED, DEFAULT_VAL_FRACTION
from worker.engine.data import DatasetError

__all__ = [
    "AnnotatedImage",
    "AnnotationCounts",
    "DatasetError",
    "DetectionDataset",
    "DetectionFormat",
    "detect_format",
    "load_detection_dataset",
]

PARSERS: dict[DetectionFormat, Callable[[Layout], ParsedSets]] = {
    "coco": coco.parse,
    "yolo": yolo.parse,
    "voc": voc.parse,
}
EXPECTED = (
    "COCO (annotations.json or _annotations.coco.json beside the images, or "
    "annotations/instances_*.json), YOLO (images/ + labels/ with data.yaml or classes.txt) "
    "or Pascal VOC (Annotations/*.xml + JPEGImages/), optionally inside train/ and val/"
)


def detect_format(root: Path) -> DetectionFormat | None:
    """The detection format in root (or its single wrapping folder); None when there is none.

    Raises DatasetError only for layouts that are detection but ambiguous (val/ and valid/).
    """
    layout = find_layout(root)
    return layout.format if layout is not None else None


def load_detection_dataset(
    root: Path, val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = DEFAULT_SEED
) -> DetectionDataset:
    """Find, parse and check the detection dataset in root; split it unless train/val is given.

    A single set is sorted by relative path, shuffled with seed, and val takes
    round(val_fraction × images) of it (at least 1, leaving train at least 1).
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, exclusive (got {val_fraction})")
    if not root.is_dir():
        raise DatasetError(f"dataset folder '{root}' does not exist or is not a folder")
    layout = find_layout(root)
    if layout is None:
        raise DatasetError(f"no detection annotations found in '{root.name}': expected {EXPECTED}")
    parsed = PARSERS[layout.format](layout)
    if not parsed.class_names:
        raise DatasetError(
            f"the {layout.format.upper()} annotations in '{layout.root.name}' name no class: "
            "a detector needs at least one labelled object"
        )
    raw = sorted(parsed.images, key=lambda image: relative(image.path, layout.root))
    _refuse_duplicates(layout.root, raw)
    tally = parsed.tally
    images = check_images(layout.root, raw, tally)
    counts = AnnotationCounts(
        images=len(images),
        boxes=sum(len(image.boxes) for image in images),
        background_images=sum(1 for image in images if not image.boxes),
        clipped_boxes=tally.clipped,
        dropped_boxes=tally.dropped,
        missing_images=tally.missing,
        problems=tuple(tally.notes),
        rotated_images=tally.rotated,
    )
    if not images:
        raise DatasetError(
            f"no usable images: all {tally.missing} annotated images are missing or unreadable"
            + _first_problem(counts)
        )
    if counts.boxes == 0:
        dropped = f" ({counts.dropped_boxes} dropped)" if counts.dropped_boxes else ""
        raise DatasetError(
            f"no boxes{dropped}: a detector needs at least one labelled object"
            + _first_problem(counts)
        )
    if any(image.split is not None for image in images):
        train = [image for image in images if image.split == "train"]
        val = [image for image in images if image.split == "val"]
    else:
        train, val = _split(images, layout.root, val_fraction, seed)
    for name, part in (("train", train), ("val", val)):
        if not part:
            raise DatasetError(f"the {name} split has no usable images" + _first_problem(counts))
    if not any(image.boxes for image in train):
        raise DatasetError(
            "no boxes in the train split: a detector needs at least one labelled object to learn "
            "from; add labelled images to it"
        )
    return DetectionDataset(
        root=layout.root,
        format=layout.format,
        class_names=parsed.class_names,
        train=tuple(train),
        val=tuple(val),
        counts=counts,
    )


def _split(
    images: list[AnnotatedImage], root: Path, val_fraction: float, seed: int
) -> tuple[list[AnnotatedImage], list[AnnotatedImage]]:
    """Seeded shuffle of the path-sorted images; both splits stay sorted by path."""
    if len(images) < 2:
        raise DatasetError(
            f"only 1 usable image ({relative(images[0].path, root)}); a detector needs at least "
            "2 (one to train on, one to validate with)"
        )
    shuffled = random.Random(seed).sample(images, len(images))  # noqa: S311 (reproducible)
    val_count = min(len(images) - 1, max(1, round(len(images) * val_fraction)))
    in_val = {image.path for image in shuffled[:val_count]}
    return (
        [image for image in images if image.path not in in_val],
        [image for image in images if image.path in in_val],
    )


def _refuse_duplicates(root: Path, images: list[RawImage]) -> None:
    for before, image in itertools.pairwise(images):
        if before.path == image.path:
            raise DatasetError(
                f"{relative(image.path, root)} is named twice (in {before.source} and "
                f"{image.source}); each image may be annotated once"
            )


def _first_problem(counts: AnnotationCounts) -> str:
    return f"; first problem: {counts.problems[0]}" if counts.problems else ""
