"""ONNX: runs in onnxruntime like PyTorch, takes raw [0, 1] pixels, describes itself."""

from __future__ import annotations

import io
import json

import numpy as np
import onnx
import onnxruntime
import torch
from PIL import Image
from torch import nn

from tests.worker.export.conftest import (
    ATOL,
    IMAGE_SIZE,
    LABELS,
    MODEL_VERSION,
    ExportRun,
    normalise,
    pytorch_probabilities,
)


def session(exported: ExportRun) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(
        str(exported.out_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )


def test_onnxruntime_matches_pytorch_on_the_check_images(
    exported: ExportRun, classifier: nn.Module, check_images: torch.Tensor
) -> None:
    expected = pytorch_probabilities(classifier, check_images).numpy()
    (got,) = session(exported).run(None, {"image": check_images.numpy()})
    assert np.abs(got - expected).max() <= ATOL
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_a_raw_image_file_needs_only_onnxruntime_to_get_pytorchs_top1(
    exported: ExportRun, classifier: nn.Module, check_images: torch.Tensor
) -> None:
    # A PNG a phone might hand over, decoded to [0, 1] RGB with nothing but PIL and numpy.
    pixels = (check_images[:6].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    runtime = onnxruntime.InferenceSession(
        str(exported.out_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    for index in range(len(pixels)):
        png = io.BytesIO()
        Image.fromarray(pixels[index], "RGB").save(png, format="PNG")
        decoded = np.asarray(Image.open(io.BytesIO(png.getvalue())).convert("RGB"))
        raw = (decoded.astype(np.float32) / 255).transpose(2, 0, 1)[None]
        (probabilities,) = runtime.run(None, {runtime.get_inputs()[0].name: raw})
        with torch.no_grad():
            logits = classifier(normalise(torch.from_numpy(raw)))
        assert probabilities.argmax() == int(logits.argmax()), index
        assert np.isclose(probabilities.sum(), 1.0, atol=1e-5)


def test_the_batch_axis_is_dynamic(exported: ExportRun, check_images: torch.Tensor) -> None:
    runtime = session(exported)
    assert runtime.get_inputs()[0].shape == ["batch", 3, IMAGE_SIZE, IMAGE_SIZE]
    for batch in (1, 5):
        (got,) = runtime.run(None, {"image": check_images[:batch].numpy()})
        assert got.shape == (batch, len(LABELS))


def test_one_self_contained_file_with_opset_17_or_later(exported: ExportRun) -> None:
    model = onnx.load(str(exported.out_dir / "model.onnx"), load_external_data=False)
    onnx.checker.check_model(model, full_check=True)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert opset >= 17
    assert not any(onnx.external_data_helper.uses_external_data(t) for t in model.graph.initializer)
    assert not [p for p in exported.out_dir.iterdir() if p.suffix in (".data", ".bin")]


def test_labels_size_and_version_are_in_metadata_props(exported: ExportRun) -> None:
    metadata = session(exported).get_modelmeta().custom_metadata_map
    assert json.loads(metadata["labels"]) == LABELS
    assert metadata["image_size"] == str(IMAGE_SIZE)
    assert metadata["model_version"] == MODEL_VERSION
    assert "inside" in metadata["input"]
