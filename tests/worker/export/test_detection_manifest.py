"""Detector manifest: classification's structure plus the task, thresholds and output contract."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.worker.export.conftest import (
    DETECTION_IMAGE_SIZE,
    DETECTION_LABELS,
    DETECTION_METRICS,
    DETECTION_SCORE_THRESHOLD,
    DETECTOR,
    MODEL_VERSION,
    DetectionRun,
)
from worker.export import Manifest
from worker.export.detection import DETECTION_FORMATS, export_detector


def test_every_detection_format_passes_and_the_folder_holds_what_may_be_uploaded(
    detection_export: DetectionRun,
) -> None:
    manifest = detection_export.manifest
    assert manifest.succeeded
    assert list(manifest.formats) == list(DETECTION_FORMATS) == ["onnx", "coreml", "torch"]
    for name in DETECTION_FORMATS:
        assert manifest.model_file(name) == manifest.formats[name].files[0]
    names = sorted(p.name for p in detection_export.out_dir.iterdir())
    assert names == sorted(manifest.upload_names())
    assert {"model.onnx", "model.mlpackage.zip", "model.pt", "model_state_dict.pt"} <= set(names)


def test_every_file_has_its_real_size_and_sha256(detection_export: DetectionRun) -> None:
    for entry in Manifest.read(detection_export.out_dir / "manifest.json").files:
        data = (detection_export.out_dir / entry.name).read_bytes()
        assert entry.size_bytes == len(data)
        assert entry.sha256 == hashlib.sha256(data).hexdigest()


def test_the_manifest_names_the_task_thresholds_and_contract(
    detection_export: DetectionRun,
) -> None:
    raw = json.loads((detection_export.out_dir / "manifest.json").read_text())
    assert raw["task"] == "detection"
    assert raw["architecture"] == DETECTOR
    assert raw["labels"] == DETECTION_LABELS and raw["num_classes"] == 2
    assert raw["metrics"] == DETECTION_METRICS
    assert raw["thresholds"] == {
        "score_threshold": DETECTION_SCORE_THRESHOLD,
        "nms_iou_threshold": 0.55,
        "max_detections": 100,
    }
    contract = raw["input"]
    assert contract["shape"] == [1, 3, DETECTION_IMAGE_SIZE, DETECTION_IMAGE_SIZE]
    assert contract["mean"] == [0.5, 0.5, 0.5] and contract["std"] == [0.5, 0.5, 0.5]
    assert contract["normalisation_inside"] is True
    steps = contract["host_preprocessing"]
    assert steps["resize"] == [DETECTION_IMAGE_SIZE, DETECTION_IMAGE_SIZE]
    assert steps["keep_aspect_ratio"] is False
    assert steps["apple_vision_crop_and_scale"] == "scaleFill"
    output = raw["output"]
    assert output["kind"] == "detections"
    assert output["names"] == ["boxes", "scores", "labels"]
    assert "0-based" in output["labels"]
    assert "VNRecognizedObjectObservation" in output["core_ml"]
    assert (detection_export.out_dir / "labels.txt").read_text().splitlines() == DETECTION_LABELS


def test_the_manifest_reads_back_as_written(detection_export: DetectionRun) -> None:
    again = Manifest.read(detection_export.out_dir / "manifest.json")
    assert again == detection_export.manifest
    assert again.output.kind == "detections"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"class_names": ["a", "b", "c"]},
            "scores 2 classes .plus background. but class_names has 3",
        ),
        ({"architecture": "fcos_resnet50_fpn"}, "is a torchvision FCOS, but the model is a SSD"),
        ({"architecture": "yolo"}, "architecture must be one of ssdlite320"),
        ({"score_threshold": 1.5}, "score_threshold must be between 0 and 1"),
        ({"check_images": torch.rand(2, 3, 32, 32)}, "check_images must be N×3×64×64"),
        ({"formats": []}, "formats must name at least one of onnx, coreml, torch"),
    ],
)
def test_arguments_that_make_every_export_meaningless_are_refused_up_front(
    ssdlite: nn.Module, tmp_path: Path, change: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {
        "model": ssdlite,
        "class_names": DETECTION_LABELS,
        "image_size": DETECTION_IMAGE_SIZE,
        "architecture": DETECTOR,
        "formats": ["torch"],
        "check_images": torch.rand(2, 3, DETECTION_IMAGE_SIZE, DETECTION_IMAGE_SIZE),
        "out_dir": tmp_path / "out",
        "metrics": DETECTION_METRICS,
        "model_version": MODEL_VERSION,
    }
    with pytest.raises(ValueError, match=message):
        export_detector(**(arguments | change))  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_a_format_that_cannot_carry_a_detector_fails_by_name(
    ssdlite: nn.Module, detection_images: torch.Tensor, tmp_path: Path
) -> None:
    from worker.export import ExportFailed

    with pytest.raises(ExportFailed, match="'pytorchmobile' cannot carry a detector") as failure:
        export_detector(
            ssdlite,
            DETECTION_LABELS,
            DETECTION_IMAGE_SIZE,
            DETECTOR,
            ["pytorchmobile", "torch"],
            detection_images[:2],
            tmp_path,
            DETECTION_METRICS,
            MODEL_VERSION,
        )
    assert "allowed for detection: onnx, coreml, torch" in failure.value.failures["pytorchmobile"]
    assert failure.value.manifest.formats["torch"].status == "passed"
    assert ssdlite.score_thresh == 0.001  # the caller's model keeps its own settings
