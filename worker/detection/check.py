"""The dataset check of a detection set (no torch: the CLI runs it too).

Every image of train + val decoded once (shared.dataset_check), duplicates and leaks found,
and the boxes counted; with leakage "drop", a picture in both train and val loses its val
copies (whether the split was given or seeded: the annotations are split before any pixel
is seen).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.contract import Leakage
from shared.dataset_check import (
    BoxedImage,
    CheckedImage,
    DatasetReport,
    OnDecoded,
    add_box_findings,
    dataset_report,
    duplicate_groups,
    leaked_rows,
    scan,
)
from worker.detection.annotations import DetectionDataset
from worker.detection.annotations.common import relative


@dataclass(frozen=True)
class DetectionCheck:
    """The report, and which rows of train + val training must leave out."""

    report: DatasetReport
    unreadable: list[int]  # rows the check could not decode
    dropped: list[int]  # val rows that repeat a training picture (leakage "drop")


def check_detections(
    dataset: DetectionDataset,
    image_size: int,
    threads: int,
    leakage: Leakage,
    on_decoded: OnDecoded | None = None,
) -> DetectionCheck:
    """Decode and check every image of dataset.train + dataset.val (in that row order)."""
    images = dataset.train + dataset.val
    facts = scan([image.path for image in images], image_size, threads, on_decoded)
    groups = duplicate_groups(facts)
    splits: list[str | None] = [*(["train"] * len(dataset.train)), *(["val"] * len(dataset.val))]
    leaking, leaked = leaked_rows(groups, splits)
    dropped = leaked if leakage == "drop" else set()
    final = [None if row in dropped else split for row, split in enumerate(splits)]
    checked = [
        CheckedImage(relative(image.path, dataset.root), None, image.split) for image in images
    ]
    report = dataset_report(
        checked, facts, groups, image_size, final, leakage, leaking, crops=False
    )
    boxed = [
        BoxedImage(relative(i.path, dataset.root), i.width, i.height, i.boxes, i.labels)
        for i in images
    ]
    add_box_findings(report, boxed, dataset.class_names)
    unreadable = [row for row, fact in enumerate(facts) if isinstance(fact, str)]
    return DetectionCheck(report, unreadable, sorted(dropped))
