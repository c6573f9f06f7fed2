"""torch: TorchScript that reloads like PyTorch, and a plain state_dict for torchvision."""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torchvision.models import mobilenet_v3_small

from tests.worker.export.conftest import (
    ATOL,
    LABELS,
    ExportRun,
    normalise,
    pytorch_probabilities,
)


def test_the_reloaded_torchscript_matches_pytorch_and_carries_its_labels(
    exported: ExportRun, classifier: nn.Module, check_images: torch.Tensor
) -> None:
    extra = {"labels.txt": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in 2.14
        module = torch.jit.load(str(exported.out_dir / "model.pt"), _extra_files=extra)
    expected = pytorch_probabilities(classifier, check_images)
    with torch.no_grad():
        got = module(check_images)
    assert (got - expected).abs().max() <= ATOL
    assert torch.equal(got.argmax(1), expected.argmax(1))
    stored = extra["labels.txt"]
    text = stored.decode() if isinstance(stored, bytes) else stored
    assert text.splitlines() == LABELS


def test_the_state_dict_loads_into_torchvision_and_gives_the_same_logits(
    exported: ExportRun, classifier: nn.Module, check_images: torch.Tensor
) -> None:
    state = torch.load(exported.out_dir / "model_state_dict.pt", weights_only=True)
    rebuilt = mobilenet_v3_small(weights=None, num_classes=len(LABELS))
    rebuilt.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(
            rebuilt.eval()(normalise(check_images)), classifier(normalise(check_images))
        )
