"""ONNX for detectors: the full model (decoding and NMS inside), one image per call.

torch.export cannot capture torchvision's data-dependent post-processing (the number of
boxes depends on the scores), so this is the legacy TorchScript-based exporter.
"""

from __future__ import annotations

import contextlib
import types
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.models.detection._utils import BoxCoder

from worker.export.checks import with_problems
from worker.export.context import INPUT_NAME, PRODUCER, Exported
from worker.export.detection.context import OUTPUT_NAMES, DetectionContext, Detections
from worker.export.detection.parity import compare
from worker.export.manifest import Check
from worker.export.onnx import file_problems, open_checked, opset_of

if TYPE_CHECKING:
    from onnx import ModelProto

FILE_NAME = "model.onnx"
# The classifiers' opset: one onnxruntime floor (≥ 1.14, mobile and web builds too) for every
# file we ship. The legacy exporter goes up to 20 and exports these models there too; nothing
# in them needs 19 or 20.
OPSET = 18
MIN_OPSET = 11
DETECTIONS_AXIS = "detections"


@contextlib.contextmanager
def quiet_legacy_export() -> Iterator[None]:
    """Silence the tracer's warnings about torchvision's shape arithmetic, and the deprecation.

    torchvision's detectors are written to trace (they branch on torchvision._is_tracing());
    the parity check, not the warnings, decides whether the graph is right.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*deprecated.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r".*deprecated.*", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"You are using the legacy TorchScript-based")
        warnings.filterwarnings("ignore", message=r"The feature will be removed")
        warnings.filterwarnings("ignore", message=r"To copy construct from a tensor")
        # The boolean mask that drops torchvision's background class becomes non-negative
        # indices; the exporter warns about negative ones.
        warnings.filterwarnings("ignore", message=r"Exporting aten::index operator")
        yield


@contextlib.contextmanager
def zero_safe_box_decoding(detector: nn.Module) -> Iterator[None]:
    """While tracing, decode boxes with reshapes ONNX can run on zero boxes.

    torchvision's BoxCoder.decode reshapes to (boxes, -1) and (boxes, -1, 4) when the trace
    sees boxes; ONNX's Reshape cannot infer -1 beside a 0, so an image whose region
    proposals are all filtered out (Faster R-CNN) crashed the graph. The codes are already
    (boxes, 4k), so the first reshape is a no-op and the second can name k instead.
    """
    coders = {
        id(coder): coder
        for module in detector.modules()
        if isinstance(coder := getattr(module, "box_coder", None), BoxCoder)
    }
    for coder in coders.values():
        coder.decode = types.MethodType(_decode_zero_safe, coder)
    try:
        yield
    finally:
        for coder in coders.values():
            del coder.decode  # back to the class's method


def _decode_zero_safe(coder: BoxCoder, rel_codes: Tensor, boxes: list[Tensor]) -> Tensor:
    decoded = coder.decode_single(rel_codes, torch.cat(boxes, dim=0))
    return decoded.reshape(-1, rel_codes.shape[-1] // 4, 4)


def export(ctx: DetectionContext) -> Exported:
    """Trace the wrapper into out_dir/model.onnx with outputs boxes, scores, labels."""
    import onnx

    path = ctx.out_dir / FILE_NAME
    detector = ctx.wrapper.detector
    with torch.no_grad(), quiet_legacy_export(), zero_safe_box_decoding(detector):
        torch.onnx.export(
            ctx.wrapper,
            (ctx.sample(),),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={name: {0: DETECTIONS_AXIS} for name in OUTPUT_NAMES},
            do_constant_folding=True,
        )
    model = onnx.load(str(path))
    model.producer_name = PRODUCER
    model.doc_string = f"{ctx.architecture} detector, {ctx.model_version}"
    onnx.helper.set_model_props(model, ctx.string_metadata())
    onnx.save_model(model, str(path), save_as_external_data=False)
    return Exported(
        files=[(path, "model")],
        details={
            "opset": OPSET,
            "exporter": "torch.onnx.export(dynamo=False), the TorchScript-based exporter",
            "input_shape": [1, 3, ctx.image_size, ctx.image_size],
            "outputs": {
                "boxes": [DETECTIONS_AXIS, 4],
                "scores": [DETECTIONS_AXIS],
                "labels": [DETECTIONS_AXIS],
            },
        },
    )


def check(ctx: DetectionContext, exported: Exported) -> Check:
    """Structure (opset, one file, metadata, names, types), then onnxruntime vs PyTorch."""
    import onnxruntime

    model, session, problems = open_checked(exported.model_path, ctx.labels)
    problems += _structure_problems(ctx, model)
    custom = session.get_modelmeta().custom_metadata_map
    candidates = [
        Detections.of(*session.run(list(OUTPUT_NAMES), {INPUT_NAME: image[None]}))
        for image in ctx.check_images.numpy().astype(np.float32)
    ]
    result = compare(
        f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)",
        ctx.reference,
        candidates,
        ctx.thresholds,
        len(ctx.labels),
        details={"opset": opset_of(model), "metadata_keys": sorted(custom)},
    )
    return with_problems(result, problems)


def _structure_problems(ctx: DetectionContext, model: ModelProto) -> list[str]:
    import onnx

    problems = file_problems(model, ctx.string_metadata(), MIN_OPSET)
    inputs = list(model.graph.input)
    expected = [1, 3, ctx.image_size, ctx.image_size]
    if [i.name for i in inputs] != [INPUT_NAME]:
        problems.append(f"inputs are {[i.name for i in inputs]}, expected ['{INPUT_NAME}']")
    elif [d.dim_value for d in inputs[0].type.tensor_type.shape.dim] != expected:
        problems.append(f"input is not {'×'.join(map(str, expected))}")
    outputs = {o.name: o.type.tensor_type for o in model.graph.output}
    if list(outputs) != list(OUTPUT_NAMES):
        problems.append(f"outputs are {list(outputs)}, expected {list(OUTPUT_NAMES)}")
    else:
        types = {name: onnx.TensorProto.DataType.Name(t.elem_type) for name, t in outputs.items()}
        if types != {"boxes": "FLOAT", "scores": "FLOAT", "labels": "INT64"}:
            problems.append(f"output types are {types}")
    return problems
