"""Model building and the local ImageNet weights cache (worker.classification.models)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import get_model

from shared.contract import CLASSIFICATION_ARCHITECTURES
from worker.classification.models import build_model, weights_file_name
from worker.engine.data import WeightsMissingError


@pytest.mark.parametrize("architecture", CLASSIFICATION_ARCHITECTURES)
def test_every_architecture_builds_from_scratch_with_a_head_for_n_classes(
    architecture: str, tmp_path: Path
) -> None:
    model, pretrained = build_model(architecture, 5, "scratch", tmp_path)
    assert pretrained is False
    with torch.no_grad():
        logits = model.eval()(torch.zeros(1, 3, 64, 64))
    assert logits.shape == (1, 5)


def test_fail_policy_names_the_missing_weights_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsMissingError) as raised:
        build_model("mobilenet_v3_large", 3, "fail", tmp_path)
    message = str(raised.value)
    assert str(tmp_path / "mobilenet_v3_large-5c1a4163.pth") in message
    assert "ImageNet weights for mobilenet_v3_large not found" in message


def test_fail_policy_without_a_weights_folder_says_so() -> None:
    with pytest.raises(WeightsMissingError, match=r"no weights folder is set"):
        build_model("resnet18", 3, "fail", None)


def test_cached_weights_are_loaded_and_only_the_head_is_replaced(tmp_path: Path) -> None:
    imagenet_like = get_model("resnet18", weights=None)
    torch.save(imagenet_like.state_dict(), tmp_path / weights_file_name("resnet18"))
    model, pretrained = build_model("resnet18", 3, "fail", tmp_path)
    assert pretrained is True
    assert torch.equal(
        model.state_dict()["conv1.weight"], imagenet_like.state_dict()["conv1.weight"]
    )
    head = model.get_submodule("fc")
    assert isinstance(head, nn.Linear)
    assert head.out_features == 3


def test_weights_file_names_follow_torchvision_downloads() -> None:
    assert weights_file_name("resnet50") == "resnet50-11ad3fa6.pth"
    assert weights_file_name("efficientnet_b0") == "efficientnet_b0_rwightman-7f5810bc.pth"


def test_unknown_architecture_lists_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"architecture must be one of mobilenet_v3_large, "):
        build_model("vgg11", 3, "scratch", None)
