"""torchvision detectors for N classes at one square input size, backbone weights from a cache.

Class indices: the detectors predict 1..N for the dataset's classes 0..N-1 and keep 0 for
the background (torchvision's convention), so they are built with num_classes = N + 1.
"""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models import MobileNet_V3_Large_Weights, ResNet50_Weights, WeightsEnum
from torchvision.models.detection import (
    fasterrcnn_mobilenet_v3_large_fpn,
    fcos_resnet50_fpn,
    retinanet_resnet50_fpn_v2,
    ssdlite320_mobilenet_v3_large,
)
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from shared.contract import DETECTION_ARCHITECTURES
from worker.engine.config import PRETRAINED_POLICIES, PretrainedPolicy
from worker.engine.data import WeightsMissingError

# The ImageNet backbone each detector starts from: the ones torchvision's COCO detectors
# were trained from (retinanet_resnet50_fpn_v2 has no default, its COCO weights used V1).
BACKBONE_WEIGHTS: dict[str, WeightsEnum] = {
    "ssdlite320_mobilenet_v3_large": MobileNet_V3_Large_Weights.IMAGENET1K_V1,
    "fasterrcnn_mobilenet_v3_large_fpn": MobileNet_V3_Large_Weights.IMAGENET1K_V1,
    "retinanet_resnet50_fpn_v2": ResNet50_Weights.IMAGENET1K_V1,
    "fcos_resnet50_fpn": ResNet50_Weights.IMAGENET1K_V1,
}
assert tuple(BACKBONE_WEIGHTS) == DETECTION_ARCHITECTURES

_BUILDERS = {
    "ssdlite320_mobilenet_v3_large": ssdlite320_mobilenet_v3_large,
    "fasterrcnn_mobilenet_v3_large_fpn": fasterrcnn_mobilenet_v3_large_fpn,
    "retinanet_resnet50_fpn_v2": retinanet_resnet50_fpn_v2,
    "fcos_resnet50_fpn": fcos_resnet50_fpn,
}


def backbone_weights_file_name(architecture: str) -> str:
    """The file the weights cache must hold: the basename of torchvision's download URL."""
    _require_known(architecture)
    return Path(urlparse(BACKBONE_WEIGHTS[architecture].url).path).name


def build_detector(
    architecture: str,
    num_classes: int,
    image_size: int,
    pretrained: PretrainedPolicy | bool,
    weights_dir: Path | None,
) -> tuple[nn.Module, bool]:
    """A detector for num_classes dataset classes taking image_size² images.

    pretrained "fail" requires the ImageNet backbone in weights_dir, "scratch" uses it when
    there and trains from scratch otherwise; True/False rebuild a checkpoint's structure (with
    a pretrained backbone torchvision freezes layers and batch norm, SSDlite keeps a longer
    tail, so the two differ). The
    bool returned says the backbone weights were loaded.
    """
    _require_known(architecture)
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1 (got {num_classes})")
    if isinstance(pretrained, str) and pretrained not in PRETRAINED_POLICIES:
        raise ValueError(f"pretrained must be one of {PRETRAINED_POLICIES} (got {pretrained!r})")
    file_name = backbone_weights_file_name(architecture)
    available = weights_dir is not None and (weights_dir / file_name).is_file()
    if (pretrained is True or pretrained == "fail") and not available:
        raise WeightsMissingError(_missing_message(architecture, weights_dir))
    use_weights = available and pretrained is not False
    builder = _BUILDERS[architecture]
    # Two-stage and FPN detectors take the size as min/max; SSD has a fixed size instead.
    sizes = (
        {} if architecture.startswith("ssd") else {"min_size": image_size, "max_size": image_size}
    )
    if use_weights:
        assert weights_dir is not None
        try:
            with _weights_cache(weights_dir):
                model = builder(
                    weights=None,
                    weights_backbone=BACKBONE_WEIGHTS[architecture],
                    num_classes=num_classes + 1,
                    **sizes,
                )
        except (RuntimeError, EOFError, pickle.UnpicklingError) as error:
            raise WeightsMissingError(
                f"'{weights_dir / file_name}' is not a readable weights file for "
                f"{architecture} ({error}); replace it with torchvision's file"
            ) from error
    else:
        model = builder(weights=None, weights_backbone=None, num_classes=num_classes + 1, **sizes)
    if architecture.startswith("ssd"):
        transform = model.transform
        model.transform = GeneralizedRCNNTransform(
            image_size,
            image_size,
            transform.image_mean,
            transform.image_std,
            size_divisible=1,
            fixed_size=(image_size, image_size),
        )
    return model, use_weights


@contextmanager
def _weights_cache(weights_dir: Path) -> Iterator[None]:
    """Point torch.hub at weights_dir, so torchvision loads the cached file.

    torchvision's builders fetch backbone weights through torch.hub's checkpoint folder; the
    file is already there, so nothing is downloaded (and, as torch.hub only checks hashes
    while downloading, nothing is hash-checked either). The hub folder is process-global: one job
    runs per worker process, so nothing else reads it meanwhile.
    """
    previous = torch.hub.get_dir()
    with tempfile.TemporaryDirectory(prefix="hub-") as hub:
        (Path(hub) / "checkpoints").symlink_to(weights_dir.resolve(), target_is_directory=True)
        torch.hub.set_dir(hub)
        try:
            yield
        finally:
            torch.hub.set_dir(previous)


def _require_known(architecture: str) -> None:
    if architecture not in DETECTION_ARCHITECTURES:
        allowed = ", ".join(DETECTION_ARCHITECTURES)
        raise ValueError(f"architecture must be one of {allowed} (got {architecture!r})")


def _missing_message(architecture: str, weights_dir: Path | None) -> str:
    expected = backbone_weights_file_name(architecture)
    where = (
        f"'{weights_dir / expected}'" if weights_dir else f"'{expected}' (no weights folder is set)"
    )
    return (
        f"ImageNet backbone weights for {architecture} not found: expected {where}. "
        "Copy torchvision's weight file there, or set the pretrained policy to 'scratch'"
    )
