"""Detector TorchScript: the scripted file reloads and detects exactly as the eager model."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn

from tests.worker.export.conftest import (
    DETECTION_IMAGE_SIZE,
    DETECTION_LABELS,
    DETECTION_SCORE_THRESHOLD,
    DETECTOR,
    DetectionRun,
    reference_detections,
)
from worker.detection.models import build_detector


def load(run: DetectionRun) -> tuple[torch.jit.ScriptModule, dict[str, str]]:
    extra = {"labels.txt": "", "metadata.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in 2.14
        module = torch.jit.load(str(run.out_dir / "model.pt"), _extra_files=extra)
    texts = {k: v.decode() if isinstance(v, bytes) else v for k, v in extra.items()}
    return module, texts


def test_the_reloaded_script_detects_exactly_as_the_eager_model(
    detection_export: DetectionRun,
) -> None:
    module, _ = load(detection_export)
    found = 0
    for image in detection_export.images:
        expected = reference_detections(detection_export.model, image, DETECTION_SCORE_THRESHOLD)
        with torch.no_grad():
            got = module(image[None])
        for want, have in zip(expected, got, strict=True):
            assert have.dtype == want.dtype and have.shape == want.shape
            assert torch.allclose(have, want, atol=1e-5, rtol=0)
        found += len(got[1])
    assert found >= 10


def test_it_carries_its_labels_and_contract(detection_export: DetectionRun) -> None:
    _, extra = load(detection_export)
    assert extra["labels.txt"].splitlines() == DETECTION_LABELS
    metadata = json.loads(extra["metadata.json"])
    assert metadata["task"] == "detection"
    assert "0-based" in metadata["output"]


def test_it_takes_one_image_per_call(detection_export: DetectionRun) -> None:
    module, _ = load(detection_export)
    with pytest.raises(Exception, match="one image per call"):
        module(detection_export.images[:2])


def test_the_state_dict_loads_into_the_detector_training_builds(
    detection_export: DetectionRun, ssdlite: nn.Module
) -> None:
    state = torch.load(detection_export.out_dir / "model_state_dict.pt", weights_only=True)
    rebuilt, _ = build_detector(
        DETECTOR, len(DETECTION_LABELS), DETECTION_IMAGE_SIZE, "scratch", None
    )
    rebuilt.load_state_dict(state)
    image = detection_export.images[1]
    for want, have in zip(
        reference_detections(ssdlite, image, DETECTION_SCORE_THRESHOLD),
        reference_detections(rebuilt, image, DETECTION_SCORE_THRESHOLD),
        strict=True,
    ):
        assert torch.equal(want, have)
    torch_format = detection_export.manifest.formats["torch"]
    assert torch_format.files == ["model.pt", "model_state_dict.pt"]
    assert torch_format.details["frozen_batch_norm"] is False
