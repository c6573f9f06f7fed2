"""Finding, checking and splitting a labelled image folder."""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from shared.dataset_check import (
    CheckedImage,
    DatasetReport,
    ImageFacts,
    OnDecoded,
    Predecoded,
    dataset_report,
    duplicate_groups,
    leaked_rows,
    scan,
)
from shared.images import IMAGE_SUFFIXES, centre_view
from shared.limits import Leakage
from worker.engine.config import DEFAULT_IMAGE_SIZE, DEFAULT_SEED, DEFAULT_VAL_FRACTION
from worker.engine.data import DatasetError

# Archive debris that is never a class: macOS resource forks and Windows thumbnail caches.
IGNORED_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
TRAIN_DIR = "train"
VAL_DIR = "val"
TEST_DIR = "test"  # optional, beside train/ and val/: scored once, never trained on
# Enough names to act on in a status message without making it a wall of text.
MAX_LISTED_SKIPPED = 20
MAX_READ_THREADS = 32

Layout = Literal["train_val", "class_folders"]
Split = Literal["train", "val", "test"]


@dataclass(frozen=True)
class ImageFile:
    """One candidate image: where it is, its class, and its row in DatasetLayout.files."""

    path: Path
    label: int
    row: int
    split: Split | None  # fixed by a train/val layout; None until a class-folder split


@dataclass(frozen=True)
class DatasetLayout:
    """The image files of a dataset folder, found by name alone (nothing decoded yet)."""

    root: Path
    layout: Layout
    class_names: tuple[str, ...]
    files: tuple[ImageFile, ...]
    notes: tuple[str, ...] = ()  # what was found and left alone (a test/ folder that is no split)


@dataclass(frozen=True)
class DatasetSplit:
    """Readable images split into train and val, with what had to be skipped."""

    root: Path
    layout: Layout
    class_names: tuple[str, ...]
    train: tuple[ImageFile, ...]
    val: tuple[ImageFile, ...]
    skipped: int
    skipped_files: tuple[str, ...]  # relative to root, the first MAX_LISTED_SKIPPED
    rows: int  # len(DatasetLayout.files): the rows a cache indexed by ImageFile.row needs
    test: tuple[ImageFile, ...] = ()  # a test/ folder's images, or those test_fraction held out
    report: DatasetReport | None = None  # the dataset check's findings (dataset_report.json)

    def class_counts(self, split: Split) -> dict[str, int]:
        """Images per class in one split."""
        files = {"train": self.train, "val": self.val, "test": self.test}[split]
        counts = dict.fromkeys(self.class_names, 0)
        for image in files:
            counts[self.class_names[image.label]] += 1
        return counts


def load_dataset(
    root: Path,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = DEFAULT_SEED,
    test_fraction: float | None = None,
    leakage: Leakage = "drop",
    image_size: int = DEFAULT_IMAGE_SIZE,
    threads: int | None = None,
) -> DatasetSplit:
    """Find, check and split the dataset in root (train/<class>/ + val/<class>/ [+ test/], or
    <class>/)."""
    return read_dataset(
        find_images(root),
        val_fraction,
        seed,
        threads=threads,
        test_fraction=test_fraction,
        image_size=image_size,
        leakage=leakage,
    )


def find_images(root: Path) -> DatasetLayout:
    """List a dataset folder's image files by class, in either seed layout."""
    if not root.is_dir():
        raise DatasetError(f"dataset folder '{root}' does not exist or is not a folder")
    top = _visible_subfolders(root)
    names = {folder.name.lower(): folder for folder in top}
    notes: list[str] = []
    has_train, has_val = TRAIN_DIR in names, VAL_DIR in names
    if has_train != has_val:
        present, missing = (TRAIN_DIR, VAL_DIR) if has_train else (VAL_DIR, TRAIN_DIR)
        raise DatasetError(
            f"'{root}' has a '{present}' folder but no '{missing}' folder: use "
            f"{TRAIN_DIR}/<class>/ and {VAL_DIR}/<class>/, or put class folders directly in it"
        )
    if has_train:
        train_classes = _class_folders(names[TRAIN_DIR])
        val_classes = _class_folders(names[VAL_DIR])
        if train_classes.keys() != val_classes.keys():
            only_train = sorted(train_classes.keys() - val_classes.keys())
            only_val = sorted(val_classes.keys() - train_classes.keys())
            raise DatasetError(
                f"'{TRAIN_DIR}' and '{VAL_DIR}' must hold the same class folders; "
                f"only in {TRAIN_DIR}: {_quoted(only_train)}; "
                f"only in {VAL_DIR}: {_quoted(only_val)}"
            )
        class_names = tuple(sorted(train_classes))
        per_split: list[tuple[Split | None, dict[str, Path]]] = [
            ("train", train_classes),
            ("val", val_classes),
        ]
        layout: Layout = "train_val"
        if TEST_DIR in names:
            test_classes = _class_folders(names[TEST_DIR])
            # A test/ of other folders (or of loose, unlabelled images) is no split of these
            # classes: left alone, as before test splits existed, and said so.
            if test_classes.keys() == train_classes.keys():
                per_split.append(("test", test_classes))
            else:
                notes.append(
                    f"'{TEST_DIR}' ignored: its class folders ({_quoted(sorted(test_classes))})"
                    f" are not those of '{TRAIN_DIR}'"
                )
    else:
        classes = {folder.name: folder for folder in top}
        class_names = tuple(sorted(classes))
        per_split = [(None, classes)]
        layout = "class_folders"

    files: list[ImageFile] = []
    for split, folders in per_split:
        for label, name in enumerate(class_names):
            for path in _image_files(folders[name]):
                files.append(ImageFile(path, label, len(files), split))
    if not files:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise DatasetError(
            f"no images found in class folders under '{root}' (looked for {suffixes}); "
            "put each class's images in a folder named after the class"
        )
    if len(class_names) < 2:
        raise DatasetError(
            f"the dataset needs at least 2 class folders, found {len(class_names)}: "
            f"{_quoted(class_names)}"
        )
    return DatasetLayout(root, layout, class_names, tuple(files), tuple(notes))


def read_dataset(
    layout: DatasetLayout,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = DEFAULT_SEED,
    on_decoded: OnDecoded | None = None,
    threads: int | None = None,
    test_fraction: float | None = None,
    image_size: int = DEFAULT_IMAGE_SIZE,
    leakage: Leakage = "drop",
    predecoded: Predecoded | None = None,
) -> DatasetSplit:
    """Check every image once (shared.dataset_check) and split train/val (and test).

    on_decoded receives each decoded image: the engine fills its cache with it, so each file
    is decoded once in all; predecoded gives the rows the training GPU decoded itself. A
    test/ folder is the test split; without one, test_fraction holds out that share of each
    class (before the val split). With leakage "drop",
    duplicates stay on one side of a seeded split, and the val/test copies of a picture
    that the given folders put in several splits are dropped; "keep" only reports them.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, exclusive (got {val_fraction})")
    workers = threads or min(MAX_READ_THREADS, os.cpu_count() or 1)
    facts = scan(
        [image.path for image in layout.files],
        image_size,
        workers,
        on_decoded,
        view=lambda image: centre_view(image, image_size),
        predecoded=predecoded,
    )
    groups = duplicate_groups(facts)
    given = [image.split for image in layout.files]
    leaking, leaked = leaked_rows(groups, given)
    dropped = leaked if leakage == "drop" else set()
    # Rows of a duplicate group share a key, so a seeded split keeps them together.
    together = {row: group.rows[0] for group in groups for row in group.rows}
    if leakage == "keep":
        together = {}
    kept = [
        image
        for image, fact in zip(layout.files, facts, strict=True)
        if isinstance(fact, ImageFacts) and image.row not in dropped
    ]
    skipped = [
        image for image, fact in zip(layout.files, facts, strict=True) if isinstance(fact, str)
    ]
    test: list[ImageFile] = []
    if layout.layout == "train_val":
        train = [image for image in kept if image.split == "train"]
        val = [image for image in kept if image.split == "val"]
        test = [image for image in kept if image.split == "test"]
        _require_every_class(layout, train, skipped, "train", dropped)
        _require_every_class(layout, val, skipped, "val", dropped)
        if test_fraction is not None and not any(i.split == "test" for i in layout.files):
            test, train = _held_out(layout, train, test_fraction, seed, together)  # train/ only
    else:
        _require_every_class(layout, kept, skipped, None, dropped)
        rest = kept
        if test_fraction is not None:
            test, rest = _held_out(layout, kept, test_fraction, seed, together)
        train, val = _stratified_split(layout, rest, val_fraction, seed, together)
    final_splits: list[str | None] = [None] * len(layout.files)
    for split, part in (("train", train), ("val", val), ("test", test)):
        for image in part:
            final_splits[image.row] = split
    if layout.layout == "class_folders":  # what the split left together or, with keep, not
        leaking, _ = leaked_rows(groups, final_splits)
    checked = [
        CheckedImage(
            image.path.relative_to(layout.root).as_posix(),
            layout.class_names[image.label],
            image.split,
        )
        for image in layout.files
    ]
    report = dataset_report(
        checked, facts, groups, image_size, final_splits, leakage, leaking, crops=True
    )
    return DatasetSplit(
        root=layout.root,
        layout=layout.layout,
        class_names=layout.class_names,
        train=tuple(train),
        val=tuple(val),
        skipped=len(skipped),
        skipped_files=tuple(
            image.path.relative_to(layout.root).as_posix() for image in skipped[:MAX_LISTED_SKIPPED]
        ),
        rows=len(layout.files),
        test=tuple(test),
        report=report,
    )


def _held_out(
    layout: DatasetLayout,
    images: list[ImageFile],
    test_fraction: float,
    seed: int,
    together: dict[int, int],
) -> tuple[list[ImageFile], list[ImageFile]]:
    """test_fraction of each class (at least one image) as the test split, seeded per class
    like the validation split; every class keeps two images (to train and validate with, or
    in a train/ folder two to train with)."""
    return _share_per_class(
        layout,
        images,
        test_fraction,
        lambda name: f"{seed}/test/{name}",
        together,
        keep=2,
        too_few=lambda name, count: (
            f"class folder '{name}' has {count} readable images; test_fraction needs at "
            "least 3 in each class (to test, train and validate with)"
        ),
    )


def _share_per_class(
    layout: DatasetLayout,
    images: list[ImageFile],
    fraction: float,
    seed_of: Callable[[str], str],
    together: dict[int, int],
    keep: int,
    too_few: Callable[[str, int], str],
) -> tuple[list[ImageFile], list[ImageFile]]:
    """round(n × fraction) of each class's n images (at least 1, leaving keep), drawn by a
    per-class seeded shuffle, and the rest; a class with keep or fewer images fails.

    Rows with the same key in together (duplicates) go as one: the first of them drawn
    takes the group to the taken side only while the whole group fits in the class's share
    (else to the rest), so a picture never lands on both sides and a class made mostly of
    one picture keeps it to train on; without duplicates the split is the plain one.
    """
    taken: list[ImageFile] = []
    rest: list[ImageFile] = []
    side: dict[int, bool] = {}  # group key → taken
    for label, name in enumerate(layout.class_names):
        members = [image for image in images if image.label == label]
        if len(members) <= keep:
            raise DatasetError(too_few(name, len(members)))
        # A per-class string seed keeps each class's split stable when other classes change.
        shuffled = random.Random(seed_of(name)).sample(members, len(members))  # noqa: S311
        count = min(len(members) - keep, max(1, round(len(members) * fraction)))
        sizes = Counter(together[image.row] for image in members if image.row in together)
        taken_here = 0
        for image in shuffled:
            group = together.get(image.row)
            if group is None:
                take = taken_here < count
            else:
                take = side.setdefault(group, taken_here + sizes[group] <= count)
            (taken if take else rest).append(image)
            taken_here += take
    return sorted(taken, key=_by_row), sorted(rest, key=_by_row)


def _require_every_class(
    layout: DatasetLayout,
    images: list[ImageFile],
    skipped: list[ImageFile],
    split: Split | None,
    dropped: set[int],
) -> None:
    present = {image.label for image in images}
    for label, name in enumerate(layout.class_names):
        if label in present:
            continue
        unreadable = sum(1 for image in skipped if image.label == label and image.split == split)
        repeated = sum(
            1
            for image in layout.files
            if image.row in dropped and image.label == label and image.split == split
        )
        details = [f"{unreadable} could not be read"] if unreadable else []
        if repeated:
            details.append(
                f"{repeated} dropped as the same pictures as in an earlier split (leakage: "
                "keep trains on them anyway)"
            )
        detail = f" ({'; '.join(details)})" if details else ""
        folder = f"{split}/{name}" if split else name
        raise DatasetError(f"class folder '{folder}' has no readable images{detail}")


def _stratified_split(
    layout: DatasetLayout,
    images: list[ImageFile],
    val_fraction: float,
    seed: int,
    together: dict[int, int],
) -> tuple[list[ImageFile], list[ImageFile]]:
    val, train = _share_per_class(
        layout,
        images,
        val_fraction,
        lambda name: f"{seed}/{name}",
        together,
        keep=1,
        too_few=lambda name, _: (
            f"class folder '{name}' has only 1 readable image; each class needs at least 2 "
            "(one to train on, one to validate with)"
        ),
    )
    return train, val


def _by_row(image: ImageFile) -> int:
    return image.row


def _is_visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.name not in IGNORED_NAMES


def _visible_subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and _is_visible(p))


def _class_folders(folder: Path) -> dict[str, Path]:
    return {sub.name: sub for sub in _visible_subfolders(folder)}


def _image_files(class_folder: Path) -> list[Path]:
    """Image files anywhere under a class folder, hidden entries pruned, in a stable order."""
    found: list[Path] = []
    for current, dirnames, filenames in os.walk(class_folder):
        dirnames[:] = [d for d in dirnames if _is_visible(Path(d))]
        for filename in filenames:
            path = Path(current, filename)
            if _is_visible(path) and path.suffix.lower() in IMAGE_SUFFIXES:
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(class_folder).as_posix())


def _quoted(names: list[str] | tuple[str, ...]) -> str:
    return ", ".join(f"'{name}'" for name in names) or "none"
