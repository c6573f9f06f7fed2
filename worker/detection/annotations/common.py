"""What the annotation formats share: the public records, file helpers, header and box checks."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from shared import images
from shared.images import IMAGE_SUFFIXES
from worker.classification.data import IGNORED_NAMES, MAX_READ_THREADS
from worker.engine.data import DatasetError

DetectionFormat = Literal["coco", "yolo", "voc"]
Split = Literal["train", "val"]
Box = tuple[float, float, float, float]
# Enough notes to act on in a status message without making it a wall of text.
MAX_PROBLEMS = 20
# Float noise (YOLO's fractions times the image side) is not a box outside the image.
CLIP_TOLERANCE_PX = 1e-6


@dataclass(frozen=True)
class AnnotatedImage:
    """One usable image and its boxes, in pixels of the upright image (EXIF orientation
    applied, as the decoder applies it)."""

    path: Path  # absolute path of the image file
    width: int  # upright
    height: int
    boxes: tuple[Box, ...]  # x1, y1, x2, y2, clipped to the image, each with positive area
    labels: tuple[int, ...]  # 0-based index into DetectionDataset.class_names, one per box
    split: Split | None  # fixed by the layout; None when load_detection_dataset split the set


@dataclass(frozen=True)
class AnnotationCounts:
    """What was kept and what had to be fixed or skipped, for the user to see."""

    images: int  # images kept (train + val)
    boxes: int  # boxes kept
    background_images: int  # kept images with no box
    clipped_boxes: int  # boxes partly outside the image, clipped to it
    dropped_boxes: int  # degenerate, entirely outside, or COCO crowd regions
    missing_images: int  # annotated images whose file does not exist or cannot be read
    problems: tuple[str, ...]  # the first MAX_PROBLEMS notes, each naming a file under root
    rotated_images: int = 0  # kept images with an EXIF orientation, turned upright with boxes


@dataclass(frozen=True)
class DetectionDataset:
    """A checked detection dataset split into train and val, each sorted by path."""

    root: Path  # the folder holding the annotations (inside a single wrapping folder, if any)
    format: DetectionFormat
    class_names: tuple[str, ...]
    train: tuple[AnnotatedImage, ...]
    val: tuple[AnnotatedImage, ...]
    counts: AnnotationCounts


@dataclass(frozen=True)
class AnnotationSet:
    """One set of annotations in a layout: where they are and where their images are."""

    split: Split | None  # None: the only set, split by us
    annotations: Path  # COCO: the JSON file; YOLO: the labels folder; VOC: the Annotations folder
    image_folders: tuple[Path, ...]  # where image names are looked up, in order


@dataclass(frozen=True)
class Layout:
    """A folder's detection annotations: the format and its sets (one, or train + val)."""

    root: Path
    format: DetectionFormat
    sets: tuple[AnnotationSet, ...]


@dataclass(frozen=True)
class RawBox:
    coords: Box  # x1, y1, x2, y2: pixels, or fractions of width and height when normalised
    label: int
    where: str  # names the box in notes: "labels/a.txt line 3"


@dataclass(frozen=True)
class RawImage:
    """An image as its annotations describe it, before its file is looked at."""

    path: Path
    split: Split | None
    source: str  # the annotation file that names the image, relative to root
    boxes: tuple[RawBox, ...]
    normalised: bool = False  # YOLO: coordinates are fractions of the image's sides
    declared_size: tuple[int, int] | None = None  # width, height per the annotation file


@dataclass
class Tally:
    """Counts and the first notes, gathered in dataset order so they are deterministic."""

    clipped: int = 0
    dropped: int = 0
    missing: int = 0
    rotated: int = 0
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.notes) < MAX_PROBLEMS:
            self.notes.append(text)


@dataclass
class ParsedSets:
    """A format parser's answer: classes, images and what it dropped on the way."""

    class_names: tuple[str, ...]
    images: list[RawImage]
    tally: Tally = field(default_factory=Tally)


def relative(path: Path, root: Path) -> str:
    """A path as users see it in messages: relative to the dataset root, with forward slashes."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def is_visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.name not in IGNORED_NAMES


def child_dir(folder: Path, *names: str) -> Path | None:
    """The visible subfolder named one of names, ignoring case; earlier names win."""
    return _child(folder, names, Path.is_dir)


def child_file(folder: Path, *names: str) -> Path | None:
    """The visible file named one of names, ignoring case; earlier names win."""
    return _child(folder, names, Path.is_file)


def _child(folder: Path, names: tuple[str, ...], kind: Callable[[Path], bool]) -> Path | None:
    if not folder.is_dir():
        return None
    entries = {p.name.lower(): p for p in sorted(folder.iterdir()) if is_visible(p) and kind(p)}
    return next((entries[name.lower()] for name in names if name.lower() in entries), None)


def files_under(folder: Path, suffixes: Iterable[str]) -> list[Path]:
    """Files with one of suffixes anywhere under folder, hidden entries pruned, sorted by path."""
    wanted = frozenset(suffixes)
    found: list[Path] = []
    for current, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if is_visible(Path(d))]
        for filename in filenames:
            path = Path(current, filename)
            if is_visible(path) and path.suffix.lower() in wanted:
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def image_files(folder: Path) -> list[Path]:
    return files_under(folder, IMAGE_SUFFIXES)


def safe_relative(name: str) -> PurePosixPath | None:
    """An annotation's image name as a path that stays inside its folder, or None."""
    path = PurePosixPath(name.strip().replace("\\", "/"))
    if not path.parts or path.is_absolute() or ".." in path.parts:
        return None
    return path


def resolve_image(name: str, folders: tuple[Path, ...]) -> Path:
    """The first existing file for an annotation's image name, else where it should have been.

    Tries each folder with the name as given, then with its last part only (exports often
    keep the annotator's own folders in the name). Names that climb out (`..`, absolute)
    are only tried by their last part, so nothing outside the dataset is ever read.
    """
    path = safe_relative(name)
    base = PurePosixPath(name.strip().replace("\\", "/")).name
    tries = [rel for rel in (path, PurePosixPath(base) if base else None) if rel is not None]
    for rel in dict.fromkeys(tries):
        for folder in folders:
            candidate = folder.joinpath(*rel.parts)
            if candidate.is_file():
                return candidate
    return folders[0].joinpath(*tries[0].parts) if tries else folders[0] / "(no file name)"


def number(value: object) -> float | None:
    """A finite JSON/XML/text number as float; None for anything else (bool included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) else None


def read_header(path: Path) -> images.ImageHeader | str:
    """The image header (stored size and EXIF orientation), or why the file cannot be used."""
    if not path.is_file():
        return "does not exist"
    try:
        return images.read_header(path)
    except images.UnreadableImage as error:
        return f"cannot be read as an image ({error})"


def box_frame(declared: tuple[int, int] | None, header: images.ImageHeader) -> str:
    """Which pixels an image's boxes are in: "upright" when the annotation file declares the
    upright (EXIF-rotated) size and it differs from the stored one, else "stored" (YOLO's
    fractions, and every size that fits both, are taken as of the stored pixels)."""
    upright = header.upright_size
    if declared is not None and declared == upright and upright != header.stored_size:
        return "upright"
    return "stored"


def fit_box(box: Box, width: int, height: int) -> tuple[Box | None, str]:
    """Clip a box to the image: (box, "ok" | "clipped") or (None, why it was dropped)."""
    x1, y1, x2, y2 = box
    if x2 <= x1 or y2 <= y1:
        return None, "has no area"
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        return None, "lies outside the image"
    clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
    moved = max(abs(a - b) for a, b in zip(box, clipped, strict=True))
    return clipped, "clipped" if moved > CLIP_TOLERANCE_PX else "ok"


def check_images(root: Path, raw_images: list[RawImage], tally: Tally) -> list[AnnotatedImage]:
    """Read each image's header (in threads), then turn its boxes upright with the photo's
    EXIF orientation (as the decoder turns the pixels), and clip, drop and count them."""
    workers = max(1, min(MAX_READ_THREADS, os.cpu_count() or 1, len(raw_images)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        headers = list(pool.map(read_header, [raw.path for raw in raw_images]))
    kept: list[AnnotatedImage] = []
    for raw, header in zip(raw_images, headers, strict=True):
        name = relative(raw.path, root)
        if isinstance(header, str):
            tally.missing += 1
            named = f" (named in {raw.source})" if raw.source != name else ""
            tally.note(f"{name} {header}{named}; skipped")
            continue
        frame = box_frame(raw.declared_size, header)
        width, height = header.upright_size if frame == "upright" else header.stored_size
        declared = raw.declared_size
        if declared is not None and declared not in (header.stored_size, header.upright_size):
            tally.note(
                f"{raw.source}: '{name}' is {declared[0]}×{declared[1]} in the annotations but "
                f"{width}×{height} in the file; using the file's size"
            )
        if header.orientation != 1:
            tally.rotated += 1
        boxes: list[Box] = []
        labels: list[int] = []
        for raw_box in raw.boxes:
            coords = raw_box.coords
            if raw.normalised:
                coords = (
                    coords[0] * width,
                    coords[1] * height,
                    coords[2] * width,
                    coords[3] * height,
                )
            box, verdict = fit_box(coords, width, height)
            if box is None:
                tally.dropped += 1
                tally.note(f"{raw_box.where}: box {_shown(coords)} {verdict}; dropped")
                continue
            if verdict == "clipped":
                tally.clipped += 1
                tally.note(
                    f"{raw_box.where}: box {_shown(coords)} is partly outside the "
                    f"{width}×{height} image; clipped"
                )
            boxes.append(box if frame == "upright" else images.upright_box(box, header))
            labels.append(raw_box.label)
        upright_width, upright_height = header.upright_size
        kept.append(
            AnnotatedImage(
                raw.path,
                upright_width,
                upright_height,
                tuple(boxes),
                tuple(labels),
                raw.split,
            )
        )
    return kept


def _shown(box: Box) -> str:
    return "(" + ", ".join(f"{value:g}" for value in box) + ")"


def quoted(names: Iterable[str]) -> str:
    return ", ".join(f"'{name}'" for name in names) or "none"


def require(condition: bool, message: str) -> None:
    """Raise DatasetError(message) unless condition holds: keeps the parsers' checks one line."""
    if not condition:
        raise DatasetError(message)
