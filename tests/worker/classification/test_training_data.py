"""Dataset discovery, checking and splitting (worker.classification.data)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from worker.classification.data import load_dataset
from worker.engine.data import DatasetError

WriteImages = Callable[..., list[Path]]
MakeDataset = Callable[..., Path]
RED, GREEN, BLUE = (210, 40, 40), (40, 180, 60), (40, 60, 200)


def test_class_folders_are_split_stratified_with_sorted_classes(
    tmp_path: Path, dataset_factory: MakeDataset
) -> None:
    dataset_factory(tmp_path, per_class=10)
    split = load_dataset(tmp_path, val_fraction=0.2, seed=3)
    assert split.layout == "class_folders"
    assert split.class_names == ("blue", "green", "red")
    assert split.class_counts("val") == {"blue": 2, "green": 2, "red": 2}
    assert split.class_counts("train") == {"blue": 8, "green": 8, "red": 8}
    assert not {i.path for i in split.train} & {i.path for i in split.val}
    assert split.skipped == 0


def test_split_is_deterministic_per_seed(tmp_path: Path, dataset_factory: MakeDataset) -> None:
    dataset_factory(tmp_path, per_class=10)
    first, again = load_dataset(tmp_path, seed=1), load_dataset(tmp_path, seed=1)
    other = load_dataset(tmp_path, seed=2)
    assert [i.path for i in first.val] == [i.path for i in again.val]
    assert [i.path for i in first.val] != [i.path for i in other.val]


def test_every_class_gets_a_validation_image_even_when_tiny(
    tmp_path: Path, images: WriteImages
) -> None:
    images(tmp_path / "a", RED, 2)
    images(tmp_path / "b", GREEN, 30)
    split = load_dataset(tmp_path, val_fraction=0.1)
    assert split.class_counts("val") == {"a": 1, "b": 3}
    assert split.class_counts("train") == {"a": 1, "b": 27}


def test_train_val_layout_keeps_the_given_split(
    tmp_path: Path, dataset_factory: MakeDataset
) -> None:
    dataset_factory(tmp_path, per_class=8, layout="train_val")
    split = load_dataset(tmp_path)
    assert split.layout == "train_val"
    assert split.class_names == ("blue", "green", "red")
    assert all(i.path.parts[-3] == "train" for i in split.train)
    assert all(i.path.parts[-3] == "val" for i in split.val)
    assert split.class_counts("val") == {"blue": 2, "green": 2, "red": 2}


def test_hidden_files_archive_debris_and_non_images_are_ignored(
    tmp_path: Path, images: WriteImages
) -> None:
    images(tmp_path / "cats", RED, 3)
    images(tmp_path / "dogs", GREEN, 3)
    images(tmp_path / "dogs" / "nested", GREEN, 2)  # subfolders belong to their class
    images(tmp_path / "__MACOSX" / "cats", RED, 2)
    images(tmp_path / ".hidden_class", BLUE, 2)
    images(tmp_path / "cats" / ".thumbnails", RED, 2)
    (tmp_path / "cats" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tmp_path / "cats" / "._img_000.png").write_bytes(b"\0\5\26\7 AppleDouble")
    (tmp_path / "cats" / "notes.txt").write_text("not an image")
    (tmp_path / "dogs" / "labels.json").write_text("{}")
    split = load_dataset(tmp_path)
    assert split.class_names == ("cats", "dogs")
    assert len(split.train) + len(split.val) == 3 + 5
    assert split.skipped == 0


def test_zero_byte_and_truncated_jpegs_are_skipped_and_counted(
    tmp_path: Path, images: WriteImages
) -> None:
    images(tmp_path / "cats", RED, 4, suffix=".jpg")
    images(tmp_path / "dogs", GREEN, 4, suffix=".jpg")
    (tmp_path / "cats" / "empty.jpg").write_bytes(b"")
    whole = (tmp_path / "dogs" / "img_000.jpg").read_bytes()
    (tmp_path / "dogs" / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    split = load_dataset(tmp_path)
    assert split.skipped == 2
    assert set(split.skipped_files) == {"cats/empty.jpg", "dogs/cut.jpg"}
    used = {i.path.relative_to(tmp_path).as_posix() for i in split.train + split.val}
    assert len(used) == 8
    assert not used & {"cats/empty.jpg", "dogs/cut.jpg"}


def test_decompression_bomb_guard_stays_on(
    tmp_path: Path, images: WriteImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    images(tmp_path / "cats", RED, 3)
    images(tmp_path / "dogs", GREEN, 3)
    Image.new("RGB", (200, 200)).save(tmp_path / "cats" / "huge.png")
    # Lowered so a small file counts as a bomb: > 2x the limit raises DecompressionBombError.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    split = load_dataset(tmp_path, image_size=64)  # a 224² view would be over the limit too
    assert split.skipped_files == ("cats/huge.png",)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        pytest.param(
            lambda root, images: images(root / "only", RED, 3),
            "the dataset needs at least 2 class folders, found 1: 'only'",
            id="one-class",
        ),
        pytest.param(
            lambda root, images: (
                images(root / "cats", RED, 3),
                (root / "Bad").mkdir(),
                (root / "Bad" / "broken.png").write_bytes(b"not a png"),
            ),
            "class folder 'Bad' has no readable images (1 could not be read)",
            id="class-without-readable-images",
        ),
        pytest.param(
            lambda root, images: (
                images(root / "train" / "cats", RED, 3),
                images(root / "train" / "dogs", GREEN, 3),
                images(root / "val" / "cats", RED, 1),
                images(root / "val" / "birds", BLUE, 1),
            ),
            "'train' and 'val' must hold the same class folders; "
            "only in train: 'dogs'; only in val: 'birds'",
            id="train-val-classes-differ",
        ),
        pytest.param(
            lambda root, images: (
                (root / "cats").mkdir(),
                (root / "dogs").mkdir(),
                (root / "dogs" / "readme.txt").write_text("hi"),
            ),
            "no images found in class folders under",
            id="no-images",
        ),
        pytest.param(
            lambda root, images: images(root, RED, 4),
            "put each class's images in a folder named after the class",
            id="loose-images-only",
        ),
        pytest.param(
            lambda root, images: (
                images(root / "train" / "cats", RED, 3),
                images(root / "train" / "dogs", GREEN, 3),
            ),
            "has a 'train' folder but no 'val' folder",
            id="train-without-val",
        ),
        pytest.param(
            lambda root, images: (
                images(root / "cats", RED, 1),
                images(root / "dogs", GREEN, 3),
            ),
            "class folder 'cats' has only 1 readable image; each class needs at least 2",
            id="class-too-small-to-split",
        ),
        pytest.param(
            lambda root, images: (
                images(root / "train" / "cats", RED, 3),
                images(root / "train" / "dogs", GREEN, 3),
                images(root / "val" / "cats", RED, 1),
                (root / "val" / "dogs").mkdir(parents=True),
            ),
            "class folder 'val/dogs' has no readable images",
            id="empty-val-class",
        ),
    ],
)
def test_dataset_errors_say_what_to_fix(
    tmp_path: Path, images: WriteImages, build: object, message: str
) -> None:
    build(tmp_path, images)  # type: ignore[operator]
    with pytest.raises(DatasetError) as raised:
        load_dataset(tmp_path)
    assert message in str(raised.value)


def test_missing_folder_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nowhere")


def test_val_fraction_out_of_range_is_refused(tmp_path: Path, dataset_factory: MakeDataset) -> None:
    dataset_factory(tmp_path, per_class=4)
    with pytest.raises(ValueError, match=r"val_fraction must be between 0 and 1"):
        load_dataset(tmp_path, val_fraction=1.0)
