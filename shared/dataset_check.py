"""The dataset check before any GPU time: one decode of every image, and what it finds.

It runs in the DOWNLOADED step of a training (the worker passes a callback that fills the
training cache from the same decode, so nothing is decoded twice) and in the CLI's
`aitrainer check-dataset`; Pillow and NumPy only, no torch.

What it finds, per image: unreadable files (with the decoder's reason), exact duplicates
(the same decoded pixels, or the same training view where the task has one) and near
duplicates (a 256-bit perceptual hash within NEAR_DUPLICATE_DISTANCE bits), images smaller
than the training size, aspect ratios the centre crop cuts hard, EXIF rotations and high
bit depths. The task's data code decides the splits (keeping duplicate groups on one side,
dropping leaked copies) and builds the report with dataset_report().
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from shared.images import DecodedImage, ImageHeader, UnreadableImage, decode_image
from shared.limits import Leakage

# A 256-bit pHash (16×16 DCT coefficients): 64 bits called 0.3–4.8 % of scikit-learn's digits
# and 2.7–11 % of our test fixtures near duplicates at distances 2–4; at 256 bits and 12 no
# image of either (nor of bench/quality.py's shapes) has a neighbour that close, while a
# photo re-encoded at JPEG quality 60 or resized by 2 % stays within 8 bits (6 through the
# classifier's centre view).
NEAR_DUPLICATE_HASH_SIZE = 16
NEAR_DUPLICATE_DISTANCE = 12
# pHash reads a 64×64 grayscale (hash size × imagehash's high-frequency factor of 4).
PHASH_SIDE = 4 * NEAR_DUPLICATE_HASH_SIZE
PHASH_BATCH = 1024  # thumbnails hashed at once (4 MB)
# A DCT coefficient below this share of the mean's (the DC term) is rounding noise: zero.
ZERO_COEFFICIENT = 1e-9
MIN_TRAIN_IMAGES = 5  # fewer training images in a class: the job fails before training
FEW_TRAIN_IMAGES = 20  # fewer: a warning
IMBALANCE_WARNING_RATIO = 10.0  # largest class / smallest class above this: a warning
# Long side / short side above this: the centre crop keeps less than half of the picture.
EXTREME_ASPECT_RATIO = 2.0
MAX_LISTED = 20  # files named per finding in the report; the counts are complete

SPLIT_ORDER = ("train", "val", "test")
View = Callable[[Image.Image], Image.Image]
OnDecoded = Callable[[int, DecodedImage, Image.Image | None], None]
# A row's header and training view when something else decoded it (the training GPU), or
# None: decode_image decodes it here.
Predecoded = Callable[[int], tuple[ImageHeader, Image.Image] | None]


@dataclass(frozen=True)
class ImageFacts:
    """What the check keeps of one decoded image."""

    digest: bytes  # SHA-256 of the pixels hashed (the training view, or all) and their size
    # NEAR_DUPLICATE_HASH_SIZE² bits; None: a flat picture (no structure to compare: only
    # its exact duplicates are found), or not hashed.
    phash: int | None
    size: tuple[int, int]  # upright width, height before any resize
    orientation: int  # EXIF orientation (1: stored upright)
    bit_depth: int


Scanned = ImageFacts | str  # the facts, or why the file cannot be used


def scan(
    paths: Sequence[Path],
    min_size: int,
    threads: int,
    on_decoded: OnDecoded | None = None,
    hashes: bool = True,
    view: View | None = None,
    predecoded: Predecoded | None = None,
) -> list[Scanned]:
    """Decode every file once, in threads (JPEGs at a reduced scale ≥ min_size), and hand
    each to on_decoded(row, decoded, view(decoded image)). view: what training sees (the
    classifier's centre crop), which the duplicate hashes then read instead of the whole
    image; hashes=False skips them. Rows that predecoded gives a header and view for are
    not decoded again, nor handed to on_decoded: whoever decoded them kept them."""

    def one(row: int) -> tuple[Scanned, bytes | None]:
        given = predecoded(row) if predecoded is not None else None
        seen: Image.Image | None
        if given is not None:
            header, seen = given
            image, bit_depth = seen, 8  # plain_jpeg_header's files: 8-bit samples
        else:
            try:
                decoded = decode_image(paths[row], min_size)
            except UnreadableImage as error:
                return str(error), None
            image, header, bit_depth = decoded.image, decoded.header, decoded.bit_depth
            seen = view(image) if view is not None else None
            if on_decoded is not None:
                on_decoded(row, decoded, seen)
        digest, thumbnail = b"", None
        if hashes:
            # What training sees when the task says (the classifier's 224 px centre view is
            # 1/4 of a drafted photo's pixels: the hashes cost 0.1× the decode, not 0.6×).
            source = seen if seen is not None else image
            sha = hashlib.sha256(f"{source.size}".encode())
            sha.update(source.tobytes())  # not size + pixels: that copies the pixels again
            digest = sha.digest()
            thumbnail = phash_input(source).tobytes()  # not np.asarray: 30 µs less
        facts = ImageFacts(digest, None, header.upright_size, header.orientation, bit_depth)
        return facts, thumbnail

    scanned: list[Scanned] = []
    waiting: list[tuple[int, bytes]] = []  # rows whose pHash waits for a batch

    def hash_waiting() -> None:
        if waiting:
            pixels = np.frombuffer(b"".join(thumbnail for _, thumbnail in waiting), np.uint8)
            bits = phashes(pixels.reshape(len(waiting), PHASH_SIDE, PHASH_SIDE))
            for (row, _), phash in zip(waiting, bits, strict=True):
                facts = scanned[row]
                assert isinstance(facts, ImageFacts)  # only decoded images have thumbnails
                scanned[row] = dataclasses.replace(facts, phash=phash)
            waiting.clear()

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for row, (facts, thumbnail) in enumerate(pool.map(one, range(len(paths)))):
            scanned.append(facts)
            if thumbnail is not None:
                waiting.append((row, thumbnail))
            if len(waiting) == PHASH_BATCH:
                hash_waiting()
    hash_waiting()
    return scanned


def phash_input(image: Image.Image) -> Image.Image:
    """The 64 px grayscale that pHash reads. imagehash makes it with a Lanczos resize;
    bilinear (antialiased when it shrinks) keeps re-encoded and 2 % resized copies as close
    (within 8 bits; NEAR_DUPLICATE_DISTANCE is 12) at a third of the cost, and Pillow's
    reducing_gap of 2 (a box reduce to at least twice the size first) keeps a big whole
    image cheap. A box reduce
    closer to 64 px moves such copies by up to 28 bits: it aliases JPEG noise into the low
    frequencies."""
    gray = image.convert("L")
    return gray.resize((PHASH_SIDE, PHASH_SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0)


def _dct_rows() -> np.ndarray:
    """The first NEAR_DUPLICATE_HASH_SIZE rows of the unnormalised DCT-II matrix on
    PHASH_SIDE points: scipy.fftpack.dct's, which imagehash uses."""
    k = np.arange(NEAR_DUPLICATE_HASH_SIZE)[:, None]
    n = np.arange(PHASH_SIDE)[None, :]
    return 2 * np.cos(np.pi * k * (2 * n + 1) / (2 * PHASH_SIDE))


DCT_ROWS = _dct_rows()


def phashes(thumbnails: np.ndarray) -> list[int | None]:
    """imagehash.phash(thumbnail, hash_size=16) of each N×64×64 uint8 thumbnail, as an int
    for the bit counts (a test holds the two equal bit for bit), or None for a flat one.

    Computed for a batch with one matrix product: only the 16×16 low frequencies that the
    hash keeps, not the whole 2-D DCT. Called per image, imagehash costs 0.15 ms (more
    between decodes, with cold caches); this costs 0.02 ms, and the check's cost target is
    15 % of the decode.
    """
    low = (DCT_ROWS @ thumbnails.astype(np.float64) @ DCT_ROWS.T).reshape(len(thumbnails), -1)
    # Coefficients that are zero in exact arithmetic (all of a flat picture's but the mean,
    # a mirror-symmetric one's odd frequencies) come out as rounding noise, which differs
    # between this product, scipy's FFT and BLAS builds: zero, so every machine hashes alike.
    # imagehash's bits there are that noise; a flat picture gets none (its hash would match
    # every other flat picture's).
    low[np.abs(low) < ZERO_COEFFICIENT * np.maximum(np.abs(low[:, :1]), 1.0)] = 0.0
    flat = ~low[:, 1:].any(axis=1)
    above = low > np.median(low, axis=1, keepdims=True)
    bits = np.packbits(above, axis=1)
    return [None if flat[i] else int.from_bytes(bits[i].tobytes(), "big") for i in range(len(bits))]


@dataclass(frozen=True)
class DuplicateGroup:
    """Images that are one picture: the same decoded pixels, or perceptually within the
    threshold of another member."""

    rows: tuple[int, ...]  # sorted
    exact: bool  # every member has the same decoded pixels


def duplicate_groups(
    facts: Sequence[Scanned], max_distance: int = NEAR_DUPLICATE_DISTANCE
) -> list[DuplicateGroup]:
    """Groups of two or more readable images that are duplicates, by their smallest row."""
    rows = [row for row, fact in enumerate(facts) if isinstance(fact, ImageFacts)]
    parent = {row: row for row in rows}

    def root(row: int) -> int:
        while parent[row] != row:
            parent[row] = parent[parent[row]]
            row = parent[row]
        return row

    def join(a: int, b: int) -> None:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    by_digest: dict[bytes, int] = {}
    for row in rows:
        fact = facts[row]
        assert isinstance(fact, ImageFacts)
        if fact.digest in by_digest:
            join(by_digest[fact.digest], row)
        else:
            by_digest[fact.digest] = row
    hashes = {
        row: fact.phash
        for row in rows
        if isinstance(fact := facts[row], ImageFacts) and fact.phash is not None
    }
    for a, b in near_pairs(hashes, max_distance):
        join(a, b)
    members: dict[int, list[int]] = defaultdict(list)
    for row in rows:
        members[root(row)].append(row)
    groups = []
    for group in members.values():
        if len(group) > 1:
            digests = {fact.digest for row in group if isinstance(fact := facts[row], ImageFacts)}
            groups.append(DuplicateGroup(tuple(sorted(group)), exact=len(digests) == 1))
    return sorted(groups, key=lambda group: group.rows[0])


def near_pairs(hashes: dict[int, int], max_distance: int) -> Iterable[tuple[int, int]]:
    """Pairs of rows whose hashes differ in at most max_distance bits.

    Pigeonhole: cut the bits into max_distance + 1 blocks, and two hashes that close agree
    exactly on at least one block; only rows sharing a block are compared, not all n² pairs.
    """
    bits = NEAR_DUPLICATE_HASH_SIZE**2
    blocks = max_distance + 1
    edges = [round(i * bits / blocks) for i in range(blocks + 1)]
    seen: set[tuple[int, int]] = set()
    for low, high in itertools.pairwise(edges):
        mask = (1 << (high - low)) - 1
        buckets: dict[int, list[int]] = defaultdict(list)
        for row, value in hashes.items():
            buckets[(value >> low) & mask].append(row)
        for bucket in buckets.values():
            for i, a in enumerate(bucket):
                for b in bucket[i + 1 :]:
                    pair = (a, b) if a < b else (b, a)
                    if pair not in seen and (hashes[a] ^ hashes[b]).bit_count() <= max_distance:
                        seen.add(pair)
                        yield pair


@dataclass(frozen=True)
class CheckedImage:
    """One listed file as the report sees it."""

    relative: str  # under the dataset root, forward slashes
    label: str | None  # class name (classification); None for detection
    split: str | None  # where it was listed: "train", "val", "test", or None (split by us)


@dataclass
class DatasetReport:
    """The check's findings: JSON for dataset_report.json, a summary for the status."""

    body: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # hard rules broken: the job fails

    def as_json(self) -> dict[str, Any]:
        return {**self.body, "warnings": self.warnings, "errors": self.errors}

    def summary(self) -> str:
        """A line for the DOWNLOADED message: counts, then the warnings."""
        checked = self.body["images"]
        readable = checked - self.body["unreadable"]["count"]
        text = f"checked {checked} images ({readable} readable)"
        findings = self.errors + self.warnings
        return text + ("; " + "; ".join(findings) if findings else ": no problems found")


def leaked_rows(
    groups: Sequence[DuplicateGroup], splits: Sequence[str | None]
) -> tuple[list[DuplicateGroup], set[int]]:
    """Groups spread over several given splits, and the rows to drop so each keeps only its
    copies in the earliest split (train before val before test)."""
    leaking: list[DuplicateGroup] = []
    drop: set[int] = set()
    for group in groups:
        present = {splits[row] for row in group.rows if splits[row] is not None}
        if len(present) < 2:
            continue
        leaking.append(group)
        keep = min(present, key=SPLIT_ORDER.index)
        drop.update(row for row in group.rows if splits[row] != keep)
    return leaking, drop


def dataset_report(
    images: Sequence[CheckedImage],
    facts: Sequence[Scanned],
    groups: Sequence[DuplicateGroup],
    image_size: int,
    final_splits: Sequence[str | None],
    leakage: Leakage,
    leaking: Sequence[DuplicateGroup] = (),
    crops: bool = True,
) -> DatasetReport:
    """The report of a check. final_splits: where each image ended up (None: not used);
    crops: the task centre-crops (classification), so extreme aspect ratios matter."""
    report = DatasetReport(body={"images": len(images), "image_size": image_size})
    unreadable = [row for row, fact in enumerate(facts) if isinstance(fact, str)]
    report.body["unreadable"] = {
        "count": len(unreadable),
        "files": [
            {"file": images[row].relative, "reason": facts[row]} for row in unreadable[:MAX_LISTED]
        ],
    }
    if unreadable:
        report.warnings.append(f"{len(unreadable)} unreadable (skipped)")
    readable = [(row, fact) for row, fact in enumerate(facts) if isinstance(fact, ImageFacts)]
    _duplicates(report, images, groups)
    _leakage(report, images, leaking, leakage)
    small = [row for row, fact in readable if min(fact.size) < image_size]
    report.body["smaller_than_image_size"] = _listed(images, small)
    if small:
        report.warnings.append(f"{len(small)} smaller than image_size {image_size} (upscaled)")
    if crops:
        extreme = [
            row for row, fact in readable if max(fact.size) > EXTREME_ASPECT_RATIO * min(fact.size)
        ]
        report.body["extreme_aspect_ratio"] = {
            "over": EXTREME_ASPECT_RATIO,
            **_listed(images, extreme),
        }
        if extreme:
            report.warnings.append(
                f"{len(extreme)} with sides more than {EXTREME_ASPECT_RATIO:g}:1 (the centre "
                "crop keeps less than half of them)"
            )
    rotated = sum(1 for _, fact in readable if fact.orientation != 1)
    deep = sum(1 for _, fact in readable if fact.bit_depth > 8)
    report.body["exif_rotated"] = rotated
    report.body["high_bit_depth"] = deep
    if any(image.label is not None for image in images):
        _classes(report, images, final_splits)
    return report


def _listed(images: Sequence[CheckedImage], rows: Sequence[int]) -> dict[str, Any]:
    return {"count": len(rows), "files": [images[row].relative for row in rows[:MAX_LISTED]]}


def _duplicates(
    report: DatasetReport, images: Sequence[CheckedImage], groups: Sequence[DuplicateGroup]
) -> None:
    across = [g for g in groups if len({images[row].label for row in g.rows}) > 1]
    report.body["duplicates"] = {
        "threshold_bits": NEAR_DUPLICATE_DISTANCE,
        "hash_bits": NEAR_DUPLICATE_HASH_SIZE**2,
        "exact_groups": sum(1 for g in groups if g.exact),
        "near_groups": sum(1 for g in groups if not g.exact),
        "images_in_groups": sum(len(g.rows) for g in groups),
        "groups": [_group(images, g) for g in groups[:MAX_LISTED]],
        "across_classes": [_group(images, g) for g in across[:MAX_LISTED]],
        "across_classes_count": len(across),
    }
    if groups:
        extra = sum(len(g.rows) - 1 for g in groups)
        report.warnings.append(f"{extra} duplicate images in {len(groups)} groups")
    if across:
        report.warnings.append(
            f"{len(across)} pictures in more than one class (a labelling error?), e.g. "
            + " = ".join(f"'{images[row].relative}'" for row in across[0].rows[:3])
        )


def _group(images: Sequence[CheckedImage], group: DuplicateGroup) -> dict[str, Any]:
    return {
        "exact": group.exact,
        "files": [images[row].relative for row in group.rows[:MAX_LISTED]],
        "classes": sorted({images[row].label for row in group.rows if images[row].label}),
    }


def _leakage(
    report: DatasetReport,
    images: Sequence[CheckedImage],
    leaking: Sequence[DuplicateGroup],
    leakage: Leakage,
) -> None:
    report.body["leakage"] = {
        "policy": leakage,
        "groups": len(leaking),
        "examples": [_group(images, g) for g in leaking[:MAX_LISTED]],
    }
    if leaking:
        what = "kept (leakage: keep)" if leakage == "keep" else "the val/test copies dropped"
        report.warnings.append(
            f"{len(leaking)} pictures in more than one of train/val/test ({what}), e.g. "
            + " = ".join(f"'{images[row].relative}'" for row in leaking[0].rows[:3])
        )


def _classes(
    report: DatasetReport, images: Sequence[CheckedImage], final_splits: Sequence[str | None]
) -> None:
    names = sorted({image.label for image in images if image.label is not None})
    counts = {name: dict.fromkeys(SPLIT_ORDER, 0) for name in names}
    for image, split in zip(images, final_splits, strict=True):
        if split is not None and image.label is not None:
            counts[image.label][split] += 1
    train = {name: counts[name]["train"] for name in names}
    largest, smallest = max(train, key=lambda n: train[n]), min(train, key=lambda n: train[n])
    ratio = train[largest] / train[smallest] if train[smallest] else None
    report.body["classes"] = counts
    report.body["balance"] = {
        "largest": {"class": largest, "train_images": train[largest]},
        "smallest": {"class": smallest, "train_images": train[smallest]},
        "ratio": round(ratio, 2) if ratio is not None else None,
    }
    too_few = [name for name in names if train[name] < MIN_TRAIN_IMAGES]
    few = [name for name in names if MIN_TRAIN_IMAGES <= train[name] < FEW_TRAIN_IMAGES]
    for name in too_few:
        report.errors.append(
            f"class '{name}' has {train[name]} training images; each class needs at least "
            f"{MIN_TRAIN_IMAGES} (add images to it, or remove the class folder)"
        )
    if few:
        report.warnings.append(
            f"{len(few)} classes with fewer than {FEW_TRAIN_IMAGES} training images ("
            + ", ".join(f"'{n}' {train[n]}" for n in few[:5])
            + ")"
        )
    if ratio is not None and ratio > IMBALANCE_WARNING_RATIO:
        report.warnings.append(
            f"imbalanced: '{largest}' has {ratio:.1f}× the training images of '{smallest}' "
            "(class_weighting balances the loss)"
        )


TINY_BOX_AREA = 0.01  # a box under this share of its image's area: hard to learn at any size
EDGE_TOLERANCE_PX = 1.0  # a box this close to a border is cut by it


@dataclass(frozen=True)
class BoxedImage:
    """A detection image's upright size and boxes (x1, y1, x2, y2 pixels), for the report."""

    relative: str
    width: int
    height: int
    boxes: tuple[tuple[float, float, float, float], ...]
    labels: tuple[int, ...]


def add_box_findings(
    report: DatasetReport, images: Sequence[BoxedImage], class_names: Sequence[str]
) -> None:
    """Boxes per class, tiny boxes, boxes cut by the image edge, images without boxes."""
    per_class = dict.fromkeys(class_names, 0)
    tiny: list[str] = []
    cut: list[str] = []
    tiny_count = cut_count = 0
    for image in images:
        area = image.width * image.height
        for (x1, y1, x2, y2), label in zip(image.boxes, image.labels, strict=True):
            per_class[class_names[label]] += 1
            if (x2 - x1) * (y2 - y1) < TINY_BOX_AREA * area:
                tiny_count += 1
                tiny.append(image.relative)
            edges = (x1, y1, image.width - x2, image.height - y2)
            if min(edges) <= EDGE_TOLERANCE_PX:
                cut_count += 1
                cut.append(image.relative)
    empty = [image.relative for image in images if not image.boxes]
    report.body["boxes"] = {
        "per_class": per_class,
        "tiny": {"under_area_share": TINY_BOX_AREA, "count": tiny_count, "files": _first(tiny)},
        "cut_by_edge": {"count": cut_count, "files": _first(cut)},
        "images_without_boxes": {"count": len(empty), "files": empty[:MAX_LISTED]},
    }
    missing = [name for name, count in per_class.items() if count == 0]
    if missing:
        report.warnings.append(
            f"classes without any box: {', '.join(repr(name) for name in missing[:10])}"
        )
    if tiny_count:
        report.warnings.append(f"{tiny_count} boxes under {TINY_BOX_AREA:.0%} of the image area")
    if cut_count:
        report.warnings.append(f"{cut_count} boxes cut by the image edge")


def _first(files: list[str]) -> list[str]:
    return list(dict.fromkeys(files))[:MAX_LISTED]
