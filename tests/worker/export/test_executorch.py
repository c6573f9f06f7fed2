"""ExecuTorch: the .pte runs in the ExecuTorch runtime like PyTorch, through XNNPACK."""

from __future__ import annotations

import json

import torch
from executorch.runtime import Runtime
from torch import nn

from tests.worker.export.conftest import (
    ATOL,
    IMAGE_SIZE,
    LABELS,
    THRESHOLDS,
    ExportRun,
    pytorch_probabilities,
)


def test_the_executorch_runtime_matches_pytorch(
    exported: ExportRun, classifier: nn.Module, check_images: torch.Tensor
) -> None:
    program = Runtime.get().load_program(exported.out_dir / "model.pte")
    method = program.load_method("forward")
    got = torch.cat([method.execute([image[None].contiguous()])[0] for image in check_images])
    expected = pytorch_probabilities(classifier, check_images)
    assert (got - expected).abs().max() <= ATOL
    assert torch.equal(got.argmax(1), expected.argmax(1))


def test_the_program_takes_one_image_and_uses_the_xnnpack_delegate(exported: ExportRun) -> None:
    path = exported.out_dir / "model.pte"
    assert b"XnnpackBackend" in path.read_bytes()
    meta = Runtime.get().load_program(path).metadata("forward")
    assert list(meta.input_tensor_meta(0).sizes()) == [1, 3, IMAGE_SIZE, IMAGE_SIZE]


def test_the_program_carries_its_labels_preprocessing_and_thresholds(exported: ExportRun) -> None:
    """Read back as an app would: constant methods of the .pte, no manifest needed."""
    program = Runtime.get().load_program(exported.out_dir / "model.pte")
    (labels,) = program.load_method("labels").execute([])
    assert json.loads(labels) == LABELS
    assert program.load_method("image_size").execute([]) == [str(IMAGE_SIZE)]
    assert "ImageNet mean/std" in program.load_method("input").execute([])[0]
    (thresholds,) = program.load_method("class_thresholds").execute([])
    assert json.loads(thresholds) == THRESHOLDS.model_dump()
    check = exported.manifest.formats["executorch"]
    assert "labels" in check.details["metadata_methods"]
