"""The dataset check in classification: leaks dropped, duplicates kept together, one decode."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

import shared.dataset_check
import shared.images
from tests.worker.classification.conftest import CLASS_COLOURS, FAST_CONFIG, make_dataset
from worker.classification.data import load_dataset
from worker.classification.task import ClassificationTask
from worker.engine.device import Compute


def leaky(root: Path) -> tuple[str, str]:
    """A train/val set whose val/ holds an exact copy and a re-encoded copy of train images."""
    make_dataset(root, per_class=12, layout="train_val")
    exact, near = "val/red/copy.png", "val/blue/reencoded.jpg"
    shutil.copy(root / "train" / "red" / "img_000.png", root / exact)
    with Image.open(root / "train" / "blue" / "img_001.png") as image:
        # Three times as big, as a JPEG: the same picture, other pixels (a near duplicate).
        image.resize((image.width * 3, image.height * 3)).save(root / near, quality=70)
    return exact, near


def paths_of(images: tuple[object, ...], root: Path) -> set[str]:
    return {image.path.relative_to(root).as_posix() for image in images}  # type: ignore[attr-defined]


def test_a_leak_into_val_is_dropped_and_reported(tmp_path: Path) -> None:
    exact, near = leaky(tmp_path)
    split = load_dataset(tmp_path)
    assert {exact, near}.isdisjoint(paths_of(split.val, tmp_path))
    assert "train/red/img_000.png" in paths_of(split.train, tmp_path)  # the copy in train stays
    assert split.report is not None
    leakage = split.report.body["leakage"]
    assert leakage["groups"] == 2 and leakage["policy"] == "drop"
    assert {tuple(example["files"]) for example in leakage["examples"]} == {
        ("train/red/img_000.png", exact),
        ("train/blue/img_001.png", near),
    }
    assert "2 pictures in more than one of train/val/test (the val/test copies dropped)" in (
        split.report.summary()
    )


def test_leakage_keep_only_reports(tmp_path: Path) -> None:
    exact, near = leaky(tmp_path)
    split = load_dataset(tmp_path, leakage="keep")
    assert {exact, near} <= paths_of(split.val, tmp_path)
    assert split.report is not None and split.report.body["leakage"]["groups"] == 2


def test_a_seeded_split_keeps_duplicates_on_one_side(tmp_path: Path) -> None:
    make_dataset(tmp_path, per_class=20)
    original = tmp_path / "green" / "img_003.png"
    copies = [tmp_path / "green" / f"copy_{index}.png" for index in range(6)]
    for copy in copies:
        shutil.copy(original, copy)
    for seed in range(4):
        split = load_dataset(tmp_path, seed=seed)
        group = {original, *copies}
        in_train = group & {image.path for image in split.train}
        in_val = group & {image.path for image in split.val}
        assert not (in_train and in_val), seed
        # 7 copies in a class of 26: more than its 5 validation images, so all train.
        assert in_train == group, seed
        assert split.report is not None
        assert split.report.body["leakage"]["groups"] == 0
        assert split.report.body["duplicates"]["exact_groups"] == 1
    # Without duplicates the split is the plain seeded one: the same as "keep" draws.
    for copy in copies:
        copy.unlink()
    drop, keep = load_dataset(tmp_path, seed=1), load_dataset(tmp_path, seed=1, leakage="keep")
    assert [i.row for i in drop.val] == [i.row for i in keep.val]


def test_checking_and_training_data_decode_each_of_300_files_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_dataset(tmp_path, per_class=100)
    decodes: list[Path] = []
    decode = shared.images.decode_image

    def counting(path: Path, min_size: int | None = None) -> shared.images.DecodedImage:
        decodes.append(path)
        return decode(path, min_size)

    monkeypatch.setattr(shared.images, "decode_image", counting)
    monkeypatch.setattr(shared.dataset_check, "decode_image", counting)
    config = dataclasses.replace(FAST_CONFIG, image_size=64)
    task = ClassificationTask()
    report = task.check_dataset(tmp_path, config)
    data = task.load_data(tmp_path, config, Compute(torch.device("cpu")))
    rows = torch.arange(data.train_images)
    for _ in task.source.batches(rows, [config.batch_size] * (len(rows) // config.batch_size)):
        pass
    assert data.placement == "host"
    assert len(decodes) == len(set(decodes)) == 300
    assert report.body["images"] == 300 and report.errors == []
    assert data.check == report.as_json()
    assert set(CLASS_COLOURS) == set(report.body["classes"])
