"""Which detection format a folder holds, and where its train and val sets are."""

from __future__ import annotations

import os
from pathlib import Path

from worker.detection.annotations.common import (
    AnnotationSet,
    DatasetError,
    DetectionFormat,
    Layout,
    Split,
    child_dir,
    child_file,
    is_visible,
    relative,
)

COCO_FILES = ("annotations.json", "_annotations.coco.json")  # the second is Roboflow's name
COCO_INSTANCES_PREFIX = "instances_"
TRAIN_DIRS = ("train",)
VAL_DIRS = ("val", "valid")  # Roboflow exports name it `valid`
YOLO_IMAGES, YOLO_LABELS = "images", "labels"
VOC_ANNOTATIONS = ("Annotations", "annotations")
VOC_IMAGES = ("JPEGImages", "images")


def find_layout(root: Path) -> Layout | None:
    """The detection layout in root, or in the single folder wrapping it; None when there is none.

    fetch's dataset_root only enters wrappers whose contents are all folders (classification's
    rule), so a zip of `dataset/` holding `annotations.json` beside its images arrives here
    still wrapped.
    """
    folder = root
    while folder.is_dir():
        layout = _layout_in(folder)
        if layout is not None:
            return layout
        children = [p for p in folder.iterdir() if is_visible(p)]
        if len(children) != 1 or not children[0].is_dir():
            return None
        folder = children[0]
    return None


def _layout_in(folder: Path) -> Layout | None:
    found = _sets_in(folder, folder, None)
    if found is not None:
        return Layout(folder, found[0], found[1])
    train = child_dir(folder, *TRAIN_DIRS)
    if train is None:
        return None
    vals = [path for name in VAL_DIRS if (path := child_dir(folder, name)) is not None]
    if len(vals) > 1:
        raise DatasetError(
            f"'{folder.name}' has both a 'val' and a 'valid' folder; keep the one to validate with"
        )
    if not vals:
        # A lone train/ (an export with only its training split) is split by us.
        only = _sets_in(folder, train, None)
        return None if only is None else Layout(folder, only[0], only[1])
    train_found = _sets_in(folder, train, "train")
    if train_found is None:
        return None
    val_found = _sets_in(folder, vals[0], "val")
    if val_found is None or val_found[0] != train_found[0]:
        got = "no detection annotations" if val_found is None else f"{val_found[0]} annotations"
        raise DatasetError(
            f"'{train.name}' holds {train_found[0]} annotations but '{vals[0].name}' holds {got}; "
            "both splits need the same format"
        )
    return Layout(folder, train_found[0], train_found[1] + val_found[1])


def _sets_in(
    root: Path, folder: Path, split: Split | None
) -> tuple[DetectionFormat, tuple[AnnotationSet, ...]] | None:
    """The annotation sets that folder holds directly, with the format; first match wins."""
    for name in COCO_FILES:
        if (path := child_file(folder, name)) is not None:
            return "coco", (AnnotationSet(split, path, _existing(folder, folder / "images")),)
    coco = _coco_instances(root, folder, split)
    if coco:
        return "coco", coco
    images, labels = child_dir(folder, YOLO_IMAGES), child_dir(folder, YOLO_LABELS)
    if images is not None and labels is not None and _holds(labels, ".txt"):
        return "yolo", _yolo_sets(images, labels, split)
    annotations = child_dir(folder, *VOC_ANNOTATIONS)
    if annotations is not None and _holds(annotations, ".xml"):
        image_folders = [p for name in VOC_IMAGES if (p := child_dir(folder, name)) is not None]
        return "voc", (
            AnnotationSet(split, annotations, tuple(image_folders) or (folder / VOC_IMAGES[0],)),
        )
    return None


def _coco_instances(root: Path, folder: Path, split: Split | None) -> tuple[AnnotationSet, ...]:
    """COCO's own layout: annotations/instances_<name>.json, images in <name>/ or images/."""
    annotations = child_dir(folder, "annotations")
    if annotations is None:
        return ()
    files = sorted(
        path
        for path in annotations.iterdir()
        if is_visible(path)
        and path.is_file()
        and path.suffix.lower() == ".json"
        and path.name.lower().startswith(COCO_INSTANCES_PREFIX)
    )
    if len(files) <= 1:
        return tuple(
            AnnotationSet(split, path, _coco_image_folders(folder, path)) for path in files
        )
    by_split: dict[Split, list[Path]] = {"train": [], "val": []}
    for path in files:
        name = path.stem.lower()
        if "train" in name:
            by_split["train"].append(path)
        elif "val" in name:
            by_split["val"].append(path)
    if split is None and len(by_split["train"]) == 1 and len(by_split["val"]) == 1:
        return tuple(
            AnnotationSet(part, paths[0], _coco_image_folders(folder, paths[0]))
            for part, paths in by_split.items()
        )
    listed = ", ".join(relative(path, root) for path in files)
    raise DatasetError(
        f"found several COCO annotation files ({listed}); keep one, or exactly one with "
        "'train' and one with 'val' in its name"
    )


def _coco_image_folders(folder: Path, annotations: Path) -> tuple[Path, ...]:
    # instances_train2017.json → train2017/ (COCO) or images/train2017/; else images/ or beside.
    name = annotations.stem[len(COCO_INSTANCES_PREFIX) :]
    images = folder / "images"
    return _existing(folder / name, images / name, images, folder)


def _yolo_sets(images: Path, labels: Path, split: Split | None) -> tuple[AnnotationSet, ...]:
    """images/ + labels/, or Ultralytics' images/{train,val}/ + labels/{train,val}/."""
    train = child_dir(images, *TRAIN_DIRS)
    if split is not None or train is None:
        return (AnnotationSet(split, labels, (images,)),)
    val = child_dir(images, *VAL_DIRS)
    if val is None:
        return (AnnotationSet(None, labels / train.name, (train,)),)
    return (
        AnnotationSet("train", labels / train.name, (train,)),
        AnnotationSet("val", labels / val.name, (val,)),
    )


def _existing(*folders: Path) -> tuple[Path, ...]:
    """The folders that exist, in order; the first one when none does (for the messages)."""
    found = tuple(dict.fromkeys(p for p in folders if p.is_dir()))
    return found or folders[:1]


def _holds(folder: Path, suffix: str) -> bool:
    """Whether a visible file with suffix lies anywhere under folder (stops at the first)."""
    for _current, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if is_visible(Path(d))]
        if any(is_visible(Path(f)) and f.lower().endswith(suffix) for f in filenames):
            return True
    return False
