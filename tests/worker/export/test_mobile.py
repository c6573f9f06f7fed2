"""PyTorch Mobile: the .ptl runs in the lite interpreter like PyTorch."""

from __future__ import annotations

import warnings
import zipfile

import torch
from torch import nn
from torch.jit.mobile import _load_for_lite_interpreter

from tests.worker.export.conftest import ATOL, LABELS, ExportRun, pytorch_probabilities


def test_the_lite_interpreter_matches_pytorch(
    exported: ExportRun, classifier: nn.Module, check_images: torch.Tensor
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the lite interpreter is deprecated
        module = _load_for_lite_interpreter(str(exported.out_dir / "model.ptl"))
    expected = pytorch_probabilities(classifier, check_images)
    with torch.no_grad():
        got = module(check_images)
    assert (got - expected).abs().max() <= ATOL
    assert torch.equal(got.argmax(1), expected.argmax(1))


def test_optimisation_is_recorded_as_this_torch_allows(exported: ExportRun) -> None:
    details = exported.manifest.formats["pytorchmobile"].details
    assert details["optimized_for_mobile"] is torch._C._is_xnnpack_enabled()
    assert details["optimized_for_mobile_reason"]


def test_the_archive_carries_its_labels(exported: ExportRun) -> None:
    with zipfile.ZipFile(exported.out_dir / "model.ptl") as archive:
        (name,) = [n for n in archive.namelist() if n.endswith("/extra/labels.txt")]
        assert archive.read(name).decode().splitlines() == LABELS
