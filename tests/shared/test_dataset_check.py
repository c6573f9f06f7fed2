"""The dataset check's core (shared.dataset_check): decode once, hash, group and report."""

from __future__ import annotations

import random
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image

from dev.sample_quality import digit_images, shape_image
from shared.dataset_check import (
    EXTREME_ASPECT_RATIO,
    NEAR_DUPLICATE_DISTANCE,
    NEAR_DUPLICATE_HASH_SIZE,
    BoxedImage,
    CheckedImage,
    DuplicateGroup,
    ImageFacts,
    add_box_findings,
    dataset_report,
    duplicate_groups,
    leaked_rows,
    near_pairs,
    phash_input,
    phashes,
    scan,
)
from shared.images import centre_view

BITS = NEAR_DUPLICATE_HASH_SIZE**2


def photo(seed: int, side: int = 160) -> Image.Image:
    """A generated picture with structure (a shape on noise), as a stand-in for a photo."""
    return shape_image(("disc", "triangle", "cross")[seed % 3], random.Random(seed), side)


@pytest.mark.parametrize("seed", [1, 4])
@pytest.mark.parametrize("viewed", [False, True], ids=["whole image", "centre view"])
def test_exact_and_near_duplicates_are_found_and_distinct_pictures_are_not(
    tmp_path: Path, seed: int, viewed: bool
) -> None:
    """Whole images (detection) and the classifier's centre view, which the hashes read."""
    original = photo(seed)
    original.save(tmp_path / "a.png")
    original.save(tmp_path / "a_copy.bmp")  # same pixels, another format: exact
    original.save(tmp_path / "a_q60.jpg", quality=60)  # re-encoded: near
    side = round(original.width * 0.98)
    original.resize((side, side)).save(tmp_path / "a_98.png")  # resized by 2 %: near
    for other in range(10, 16):
        photo(other).save(tmp_path / f"other_{other}.png")
    paths = sorted(tmp_path.iterdir())
    view = (lambda image: centre_view(image, 64)) if viewed else None
    facts = scan(paths, 64, threads=2, view=view)
    groups = duplicate_groups(facts)
    names = [[paths[row].name for row in group.rows] for group in groups]
    assert names == [["a.png", "a_98.png", "a_copy.bmp", "a_q60.jpg"]]
    assert not groups[0].exact
    exact = duplicate_groups([facts[0], facts[2]])  # a.png and a_copy.bmp alone
    assert exact == [DuplicateGroup((0, 1), exact=True)]


def test_the_batched_phash_is_imagehashs_bit_for_bit() -> None:
    """phashes() computes imagehash.phash's arithmetic for many thumbnails at once."""
    rng = np.random.default_rng(0)
    pictures = [image for _, image in digit_images(32)[:40]]
    pictures += [photo(seed, side=224) for seed in range(40)]
    pictures += [Image.fromarray(rng.integers(0, 256, (96, 80, 3), dtype=np.uint8))]
    thumbnails = [phash_input(picture) for picture in pictures]
    batched = phashes(np.stack([np.asarray(thumbnail) for thumbnail in thumbnails]))
    for thumbnail, phash in zip(thumbnails, batched, strict=True):
        bits = imagehash.phash(thumbnail, hash_size=NEAR_DUPLICATE_HASH_SIZE).hash
        assert phash == int("".join("1" if bit else "0" for bit in bits.flatten()), 2)
    assert len(set(batched)) == len(batched)  # and they are not all one value


def test_flat_pictures_have_no_phash_and_are_only_exact_duplicates(tmp_path: Path) -> None:
    """A solid colour has nothing for pHash to compare (all its frequencies but the mean are
    zero): solid pictures of other colours are not near duplicates; the same one twice is."""
    for name, colour in (("red", (200, 0, 0)), ("blue", (0, 0, 200)), ("grey", (90, 90, 90))):
        Image.new("RGB", (48, 48), colour).save(tmp_path / f"{name}.png")
    Image.new("RGB", (48, 48), (200, 0, 0)).save(tmp_path / "red_again.bmp")
    paths = sorted(tmp_path.iterdir())
    facts = scan(paths, 32, threads=2)
    assert all(isinstance(fact, ImageFacts) and fact.phash is None for fact in facts)
    groups = duplicate_groups(facts)
    assert [[paths[row].name for row in group.rows] for group in groups] == [
        ["red.png", "red_again.bmp"]
    ]
    assert groups[0].exact


def test_scikit_learns_digits_have_under_one_percent_near_duplicates(tmp_path: Path) -> None:
    """The documented threshold: the digits' 1,797 distinct drawings stay distinct."""
    paths = []
    for index, (_, image) in enumerate(digit_images(32)):
        paths.append(tmp_path / f"{index:04d}.png")
        image.save(paths[-1])
    groups = duplicate_groups(scan(paths, 32, threads=2))
    in_groups = sum(len(group.rows) for group in groups)
    assert in_groups / len(paths) < 0.01


def test_near_pairs_finds_exactly_the_pairs_within_the_distance() -> None:
    rng = random.Random(0)
    base = [rng.getrandbits(BITS) for _ in range(40)]
    hashes = dict(enumerate(base))
    # Neighbours at distances straddling the threshold, with flipped bits anywhere.
    for offset, distance in enumerate((0, 1, NEAR_DUPLICATE_DISTANCE, NEAR_DUPLICATE_DISTANCE + 1)):
        flipped = base[offset]
        for bit in rng.sample(range(BITS), distance):
            flipped ^= 1 << bit
        hashes[100 + offset] = flipped
    brute = {
        (a, b)
        for a in hashes
        for b in hashes
        if a < b and (hashes[a] ^ hashes[b]).bit_count() <= NEAR_DUPLICATE_DISTANCE
    }
    assert (
        set(near_pairs(hashes, NEAR_DUPLICATE_DISTANCE)) == brute == {(0, 100), (1, 101), (2, 102)}
    )


def test_each_file_is_decoded_once_and_handed_on(tmp_path: Path) -> None:
    for index in range(5):
        photo(index, 64).save(tmp_path / f"{index}.png")
    (tmp_path / "9_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    paths = sorted(tmp_path.iterdir())
    handed: list[int] = []
    facts = scan(paths, 32, threads=2, on_decoded=lambda row, *_: handed.append(row))
    assert sorted(handed) == [0, 1, 2, 3, 4]
    assert all(isinstance(fact, ImageFacts) for fact in facts[:5])
    assert isinstance(facts[5], str) and "not an image format" in facts[5]


def facts_of(size: tuple[int, int], digest: bytes, phash: int = 0) -> ImageFacts:
    return ImageFacts(digest, phash, size, 1, 8)


def test_the_report_counts_balance_small_and_cropped_images_and_the_hard_rule() -> None:
    counts = {"many": 60, "some": 12, "four": 4}
    images, facts = [], []
    for name, count in counts.items():
        for index in range(count):
            images.append(CheckedImage(f"{name}/{index}.png", name, None))
            size = (40, 40) if index == 0 else (200, 64) if index == 1 else (96, 96)
            facts.append(facts_of(size, f"{name}{index}".encode(), len(facts) << 20))
    images.append(CheckedImage("many/broken.png", "many", None))
    facts.append("truncated or corrupt (image file is truncated)")
    splits = [None if isinstance(f, str) else "train" for f in facts]
    report = dataset_report(images, facts, [], 64, splits, "drop")
    body = report.as_json()
    assert body["classes"]["four"] == {"train": 4, "val": 0, "test": 0}
    assert body["balance"]["ratio"] == 15.0 and body["balance"]["smallest"]["class"] == "four"
    assert report.errors == [
        "class 'four' has 4 training images; each class needs at least 5 (add images to it, "
        "or remove the class folder)"
    ]
    assert body["unreadable"]["files"] == [
        {"file": "many/broken.png", "reason": "truncated or corrupt (image file is truncated)"}
    ]
    assert body["smaller_than_image_size"]["count"] == 3  # each class's 40×40
    assert body["extreme_aspect_ratio"]["count"] == 3  # 200×64 is over 2:1
    assert body["extreme_aspect_ratio"]["over"] == EXTREME_ASPECT_RATIO
    summary = report.summary()
    assert summary.startswith("checked 77 images (76 readable); class 'four' has 4 training")
    for finding in ("imbalanced: 'many' has 15.0×", "'some' 12", "1 unreadable", "3 smaller"):
        assert finding in summary


def test_leaked_copies_are_dropped_from_the_later_split() -> None:
    groups = [
        DuplicateGroup((0, 3), exact=True),  # train and val
        DuplicateGroup((1, 4, 5), exact=False),  # val and test (and val)
        DuplicateGroup((2, 6), exact=True),  # both in train: no leak
    ]
    splits = ["train", "val", "train", "val", "test", "val", "train"]
    leaking, drop = leaked_rows(groups, splits)
    assert leaking == groups[:2]
    assert drop == {3, 4}


def test_detection_boxes_are_counted_tiny_and_cut_ones_named() -> None:
    images = [
        BoxedImage("a.jpg", 100, 100, ((10, 10, 60, 60), (0, 40, 5, 45)), (0, 1)),
        BoxedImage("b.jpg", 100, 100, (), ()),
    ]
    report = dataset_report(
        [CheckedImage("a.jpg", None, None), CheckedImage("b.jpg", None, None)],
        [facts_of((100, 100), b"a", 1), facts_of((100, 100), b"b", 1 << 200)],
        [],
        64,
        ["train", "val"],
        "drop",
        crops=False,
    )
    add_box_findings(report, images, ("cat", "dog", "bird"))
    boxes = report.body["boxes"]
    assert boxes["per_class"] == {"cat": 1, "dog": 1, "bird": 0}
    assert boxes["tiny"]["count"] == 1 and boxes["tiny"]["files"] == ["a.jpg"]
    assert boxes["cut_by_edge"]["count"] == 1
    assert boxes["images_without_boxes"] == {"count": 1, "files": ["b.jpg"]}
    assert "extreme_aspect_ratio" not in report.body  # a detector stretches, it does not crop
    assert "classes without any box: 'bird'" in report.summary()


@pytest.mark.parametrize("threads", [1, 4])
def test_the_scan_is_in_row_order_whatever_the_threads(tmp_path: Path, threads: int) -> None:
    paths = []
    for index in range(6):
        paths.append(tmp_path / f"{index}.png")
        Image.new("RGB", (20 + index, 20), (index * 40, 0, 0)).save(paths[-1])
    facts = scan(paths, 16, threads)
    assert [fact.size for fact in facts if isinstance(fact, ImageFacts)] == [
        (20 + index, 20) for index in range(6)
    ]
