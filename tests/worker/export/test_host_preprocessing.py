"""The raw-file check: stored files through host_preprocessing (what an app does, from the
manifest's words) into an export, against training's decode into the PyTorch model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image
from torch import nn

from shared.images import EXIF_ORIENTATION_TAG
from tests.worker.export.conftest import (
    COLOURS,
    IMAGE_SIZE,
    LABELS,
    ExportRun,
    toy_context,
)
from worker.classification.preprocessing import decode_image
from worker.export import host_preprocessing
from worker.export.checks import RAW_FILE_ATOL, raw_file_check, with_raw_files
from worker.export.context import INPUT_NAME, OUTPUT_NAME
from worker.export.host_preprocessing import HostSteps
from worker.export.manifest import Check, input_contract
from worker.export.wrapper import wrap


def stored_files(folder: Path) -> list[Path]:
    """Photos larger than the model's input and not square (the resize and the crop both
    matter), one per class in PNG and in JPEG, and one JPEG stored sideways with EXIF
    orientation 6 (turned upright by the decoder)."""
    generator = torch.Generator().manual_seed(5)
    files = []
    for index in range(7):
        colour = COLOURS[index % len(LABELS)]
        pixels = colour.view(3, 1, 1) + 0.12 * torch.randn(3, 90, 120, generator=generator)
        pixels[:, 10:40, 70:110] = torch.rand(3, 1, 1, generator=generator)  # off-centre
        array = (pixels.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        picture = Image.fromarray(array)
        if index == 6:
            exif = Image.Exif()
            exif[EXIF_ORIENTATION_TAG] = 6  # stored rotated: the decoder turns it back
            path = folder / "sideways.jpg"
            picture.transpose(Image.Transpose.ROTATE_90).save(path, quality=95, exif=exif)
        else:
            path = folder / f"photo_{index}.{'png' if index % 2 else 'jpg'}"
            picture.save(path, **({} if index % 2 else {"quality": 95}))
        files.append(path)
    return files


@pytest.fixture(scope="module")
def onnx_run(
    classifier: nn.Module, exported: ExportRun
) -> tuple[nn.Module, Path, onnxruntime.InferenceSession]:
    """The shared export's model.onnx, its wrapper and its folder."""
    session = onnxruntime.InferenceSession(
        str(exported.out_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    return wrap(classifier), exported.out_dir, session


def onnx_check(
    run_of: tuple[nn.Module, Path, onnxruntime.InferenceSession], files: list[Path]
) -> dict:
    """The raw-file check of files, as export_all sets it up: the check images are
    training's decode of the files, the reference the PyTorch model's answer to them."""
    wrapper, out_dir, session = run_of
    images = torch.stack([decode_image(path, IMAGE_SIZE) for path in files]).float() / 255
    ctx = toy_context(wrapper, images, out_dir, check_files=files)

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]

    checked = raw_file_check(ctx, run, "onnxruntime")
    assert checked is not None
    return checked.model_dump()


def test_the_manifest_says_every_step_training_took(tmp_path: Path) -> None:
    steps = HostSteps.described(input_contract(IMAGE_SIZE).host_preprocessing)
    assert steps == HostSteps(
        resize_short_side=IMAGE_SIZE,
        center_crop=(IMAGE_SIZE, IMAGE_SIZE),
        interpolation="bilinear",
        antialias=True,
        exif_orientation=True,
        jpeg_reduced_decode=True,
    )
    files = stored_files(tmp_path)
    view = host_preprocessing.host_input(files[6], steps)
    assert view.shape == (1, 3, IMAGE_SIZE, IMAGE_SIZE) and view.dtype == np.float32
    assert view.min() >= 0 and view.max() <= 1


def test_stored_files_through_the_described_steps_match_training(
    onnx_run: tuple[nn.Module, Path, onnxruntime.InferenceSession], tmp_path: Path
) -> None:
    checked = onnx_check(onnx_run, stored_files(tmp_path))
    assert checked["passed"], checked["summary"]
    assert checked["images"] == 7 and checked["top1_agreement"] == 1.0
    assert checked["max_abs_diff"] <= RAW_FILE_ATOL
    assert checked["details"]["host_steps"]["interpolation"] == "bilinear"


@pytest.mark.parametrize(
    "changed",
    [{"interpolation": "nearest", "antialias": False}, {"exif_orientation": False}],
    ids=["nearest instead of bilinear", "EXIF orientation ignored"],
)
def test_one_host_step_done_otherwise_fails_the_check(
    onnx_run: tuple[nn.Module, Path, onnxruntime.InferenceSession],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    changed: dict,
) -> None:
    """The candidate side only: training's decode and the export stay as they are."""
    described = HostSteps.described

    def otherwise(host: dict) -> HostSteps:
        return dataclasses.replace(described(host), **changed)

    monkeypatch.setattr(HostSteps, "described", staticmethod(otherwise))
    files = stored_files(tmp_path)
    if "exif_orientation" in changed:
        files = files[6:]  # the one file it changes
    checked = onnx_check(onnx_run, files)
    assert not checked["passed"]
    assert checked["max_abs_diff"] > RAW_FILE_ATOL or checked["top1_agreement"] < 1


def test_a_failed_raw_file_check_fails_the_format_and_says_where() -> None:
    passed = Check(method="onnxruntime", passed=True, summary="max abs diff 1e-06 ≤ 0.0001")
    raw = Check(method="onnxruntime, stored files", passed=False, summary="top-1 differs on 1")
    failed = with_raw_files(passed, raw)
    assert not failed.passed
    assert failed.summary == (
        "stored files through host_preprocessing: top-1 differs on 1; max abs diff 1e-06 ≤ 0.0001"
    )
    assert failed.details["raw_files"]["summary"] == "top-1 differs on 1"
    assert with_raw_files(passed, None) == passed  # no stored files: the check as it was
    kept = with_raw_files(passed, raw.model_copy(update={"passed": True}))
    assert kept.passed and kept.summary == passed.summary and "raw_files" in kept.details
