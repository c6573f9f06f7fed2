"""The worker's dataset check, run on this machine: `aitrainer check-dataset`, and `train`
before it uploads anything. Same code as the DOWNLOADED step (shared.dataset_check, through
the tasks' torch-free dataset readers), so the verdict here is the worker's."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cli.errors import CliError
from shared.contract import Leakage
from shared.dataset_check import DatasetReport
from worker.classification.data import MAX_READ_THREADS, load_dataset
from worker.detection.annotations import load_detection_dataset
from worker.detection.check import check_detections
from worker.engine.data import DatasetError
from worker.ingest.fetch import dataset_root
from worker.ingest.source import IngestError
from worker.ingest.unzip import ZipLimits, extract

# A local zip is the user's own file: the worker's default limits, which the upload meets
# anyway (worker/settings.py).
LOCAL_ZIP_LIMITS = ZipLimits(max_bytes=20 * 2**30, max_files=1_000_000, max_ratio=200.0)


def check_local_dataset(
    path: Path, model_type: str, image_size: int, leakage: Leakage
) -> DatasetReport:
    """The dataset check of a local folder or zip; a broken layout is a CliError."""
    if not path.exists():
        raise CliError(f"dataset '{path}' does not exist")
    with tempfile.TemporaryDirectory(prefix="aitrainer-check-") as scratch:
        folder = path
        try:
            if path.is_file():
                folder = Path(scratch) / "dataset"
                extract(path, folder, LOCAL_ZIP_LIMITS)
            root = dataset_root(folder)
            threads = min(MAX_READ_THREADS, os.cpu_count() or 1)
            if model_type == "detection":
                dataset = load_detection_dataset(root)
                return check_detections(dataset, image_size, threads, leakage).report
            split = load_dataset(root, image_size=image_size, leakage=leakage, threads=threads)
        except (DatasetError, IngestError) as error:
            raise CliError(f"dataset '{path}': {error}") from None
    assert split.report is not None
    return split.report


def print_report(console: Console, report: DatasetReport) -> None:
    """The report as tables: the counts, the classes (classification), then each finding."""
    body = report.body
    counts = Table("checked", "count", title="dataset check", title_justify="left")
    duplicates = body["duplicates"]
    rows = [
        ("images", body["images"]),
        ("unreadable", body["unreadable"]["count"]),
        (
            "duplicate groups (exact / near)",
            f"{duplicates['exact_groups']} / {duplicates['near_groups']}",
        ),
        ("pictures in two classes", duplicates["across_classes_count"]),
        (
            f"pictures in two of train/val/test ({body['leakage']['policy']})",
            body["leakage"]["groups"],
        ),
        (f"smaller than {body['image_size']} px", body["smaller_than_image_size"]["count"]),
        ("EXIF-rotated", body["exif_rotated"]),
        ("more than 8 bits per sample", body["high_bit_depth"]),
    ]
    if "extreme_aspect_ratio" in body:
        rows.append(("sides over 2:1 (cropped)", body["extreme_aspect_ratio"]["count"]))
    if "boxes" in body:
        boxes = body["boxes"]
        rows += [
            ("tiny boxes", boxes["tiny"]["count"]),
            ("boxes cut by the edge", boxes["cut_by_edge"]["count"]),
            ("images without boxes", boxes["images_without_boxes"]["count"]),
        ]
    for name, value in rows:
        counts.add_row(name, str(value))
    console.print(counts)
    if "classes" in body:
        classes = Table(
            "class", "train", "val", "test", title="images per class", title_justify="left"
        )
        for name, split in body["classes"].items():
            classes.add_row(name, str(split["train"]), str(split["val"]), str(split["test"]))
        console.print(classes)
    for error in report.errors:
        console.print(f"error: {error}", markup=False)
    for warning in report.warnings:
        console.print(f"warning: {warning}", markup=False)
    if not report.errors and not report.warnings:
        console.print("no problems found", markup=False)
