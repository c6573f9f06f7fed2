"""Building detectors: every architecture at a small size, and backbone weights from the cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models import mobilenet_v3_large

from shared.contract import DETECTION_ARCHITECTURES
from worker.detection.models import backbone_weights_file_name, build_detector
from worker.engine.data import WeightsMissingError


@pytest.mark.parametrize("architecture", DETECTION_ARCHITECTURES)
def test_every_detector_takes_image_size_squared_without_resizing(architecture: str) -> None:
    model, pretrained = build_detector(architecture, 3, 64, "scratch", None)
    assert not pretrained
    images, _sizes = model.transform([torch.rand(3, 64, 64)])
    assert images.image_sizes == [(64, 64)]  # no rescale: boxes stay in input pixels
    with torch.inference_mode():
        detections = model.eval()([torch.rand(3, 64, 64)])[0]
    assert set(detections) == {"boxes", "scores", "labels"}
    if len(detections["labels"]):
        assert int(detections["labels"].min()) >= 1 and int(detections["labels"].max()) <= 3


def test_a_missing_backbone_fails_or_trains_from_scratch_by_policy(tmp_path: Path) -> None:
    with pytest.raises(WeightsMissingError, match=r"mobilenet_v3_large-8738ca79\.pth"):
        build_detector("ssdlite320_mobilenet_v3_large", 2, 64, "fail", tmp_path)
    with pytest.raises(WeightsMissingError, match="no weights folder is set"):
        build_detector("fcos_resnet50_fpn", 2, 64, "fail", None)
    with pytest.raises(WeightsMissingError):
        build_detector("ssdlite320_mobilenet_v3_large", 2, 64, True, tmp_path)
    _, pretrained = build_detector("ssdlite320_mobilenet_v3_large", 2, 64, "scratch", tmp_path)
    assert not pretrained


def test_the_cached_backbone_is_loaded_into_the_detector(tmp_path: Path) -> None:
    imagenet = mobilenet_v3_large().state_dict()
    name = backbone_weights_file_name("fasterrcnn_mobilenet_v3_large_fpn")
    torch.save(imagenet, tmp_path / name)
    before = torch.hub.get_dir()
    model, pretrained = build_detector("fasterrcnn_mobilenet_v3_large_fpn", 2, 64, "fail", tmp_path)
    assert pretrained
    assert torch.hub.get_dir() == before  # the hub folder is put back
    first_conv = model.backbone.body["0"][0].weight
    assert torch.equal(first_conv, imagenet["features.0.0.weight"])


def test_an_unreadable_cached_file_is_named(tmp_path: Path) -> None:
    (tmp_path / backbone_weights_file_name("ssdlite320_mobilenet_v3_large")).write_bytes(b"junk")
    with pytest.raises(WeightsMissingError, match="is not a readable weights file"):
        build_detector("ssdlite320_mobilenet_v3_large", 2, 64, "fail", tmp_path)
