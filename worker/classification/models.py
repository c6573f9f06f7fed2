"""torchvision classifiers with ImageNet weights from a local cache and a head for N classes."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models import get_model, get_model_weights

from shared.limits import CLASSIFICATION_ARCHITECTURES
from worker.engine.config import PRETRAINED_POLICIES, PretrainedPolicy
from worker.engine.data import WeightsMissingError


def weights_file_name(architecture: str) -> str:
    """The file the weights cache must hold: the basename of torchvision's download URL."""
    _require_known(architecture)
    return Path(urlparse(get_model_weights(architecture).DEFAULT.url).path).name


def build_model(
    architecture: str,
    num_classes: int,
    pretrained: PretrainedPolicy,
    weights_dir: Path | None,
) -> tuple[nn.Module, bool]:
    """Build architecture with a num_classes head; the bool says ImageNet weights were loaded."""
    _require_known(architecture)
    if pretrained not in PRETRAINED_POLICIES:
        raise ValueError(f"pretrained must be one of {PRETRAINED_POLICIES} (got {pretrained!r})")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2 (got {num_classes})")
    weights_path = weights_dir / weights_file_name(architecture) if weights_dir else None
    if weights_path is None or not weights_path.is_file():
        if pretrained == "fail":
            raise WeightsMissingError(_missing_message(architecture, weights_dir))
        return get_model(architecture, weights=None, num_classes=num_classes), False
    model = get_model(architecture, weights=None)
    model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    _replace_head(model, num_classes)
    return model, True


def _replace_head(model: nn.Module, num_classes: int) -> None:
    """Swap the last Linear layer (the ImageNet classifier) for a fresh one with num_classes."""
    name, head = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    parent_name, _, attribute = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    setattr(parent, attribute, nn.Linear(head.in_features, num_classes))


def _require_known(architecture: str) -> None:
    if architecture not in CLASSIFICATION_ARCHITECTURES:
        allowed = ", ".join(CLASSIFICATION_ARCHITECTURES)
        raise ValueError(f"architecture must be one of {allowed} (got {architecture!r})")


def _missing_message(architecture: str, weights_dir: Path | None) -> str:
    expected = weights_file_name(architecture)
    if weights_dir:
        where = f"'{weights_dir / expected}'"
    else:
        where = f"'{expected}' (no weights folder is set)"
    return (
        f"ImageNet weights for {architecture} not found: expected {where}. "
        "Copy torchvision's weight file there, or set the pretrained policy to 'scratch'"
    )
