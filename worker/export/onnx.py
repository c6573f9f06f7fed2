"""ONNX: one self-contained file, dynamic batch, self-describing metadata_props."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import torch

from worker.export.checks import parity, raw_file_check, with_problems, with_raw_files
from worker.export.context import INPUT_NAME, OUTPUT_NAME, PRODUCER, ExportContext, Exported
from worker.export.manifest import Check

if TYPE_CHECKING:
    from pathlib import Path

    import onnxruntime
    from onnx import ModelProto

FILE_NAME = "model.onnx"
# 18 is the dynamo exporter's native opset (older ones go through a lossy version
# converter) and onnxruntime ≥ 1.14, including its mobile and web builds, runs it.
OPSET = 18
MIN_OPSET = 17
BATCH_AXIS = "batch"


def export(ctx: ExportContext) -> Exported:
    """Export the wrapper through torch.export (dynamo) to out_dir/model.onnx."""
    # Imported here: the worker should start, and the other formats export, without it.
    import onnx

    path = ctx.out_dir / FILE_NAME
    batch = torch.export.Dim(BATCH_AXIS, min=1)
    # A batch of 2 to trace with: an example batch of 1 lets export specialise the axis to 1.
    program = torch.onnx.export(
        ctx.wrapper,
        (ctx.sample(2),),
        dynamo=True,
        opset_version=OPSET,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: batch},),
        external_data=False,
        verbose=False,
    )
    if program is None:  # only the legacy exporter with a file argument returns None
        raise RuntimeError("torch.onnx.export returned no program")
    model = program.model_proto
    model.producer_name = PRODUCER
    model.doc_string = f"{ctx.architecture} classifier, {ctx.model_version}"
    onnx.helper.set_model_props(model, ctx.string_metadata())
    # The weights are a few MB, far below protobuf's 2 GB limit: keep them inside the file.
    onnx.save_model(model, str(path), save_as_external_data=False)
    return Exported(
        files=[(path, "model")],
        details={
            "opset": OPSET,
            "exporter": "torch.onnx.export(dynamo=True)",
            "input_shape": [BATCH_AXIS, 3, ctx.image_size, ctx.image_size],
        },
    )


def check(ctx: ExportContext, exported: Exported) -> Check:
    """Structure (opset, single file, metadata, shapes), then onnxruntime vs PyTorch."""
    import onnxruntime

    model, session, problems = open_checked(exported.model_path, ctx.labels)
    problems += _structure_problems(ctx, model)
    custom = session.get_modelmeta().custom_metadata_map
    (probabilities,) = session.run(
        [OUTPUT_NAME], {INPUT_NAME: ctx.check_images.numpy().astype(np.float32)}
    )
    method = f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)"
    result = parity(
        method,
        ctx.reference,
        probabilities,
        details={"opset": opset_of(model), "metadata_keys": sorted(custom)},
    )
    raw = raw_file_check(
        ctx, lambda batch: session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0], method
    )
    return with_raw_files(with_problems(result, problems), raw)


def open_checked(
    path: Path, labels: list[str]
) -> tuple[ModelProto, onnxruntime.InferenceSession, list[str]]:
    """Run onnx's full checker, load the graph and an onnxruntime session on the CPU; the
    problems list starts with whether onnxruntime reads the labels from metadata_props."""
    import onnx
    import onnxruntime

    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path), load_external_data=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    custom = session.get_modelmeta().custom_metadata_map
    problems = []
    if json.loads(custom.get("labels", "null")) != labels:
        problems.append("onnxruntime does not read the labels from metadata_props")
    return model, session, problems


def opset_of(model: ModelProto) -> int:
    """The default-domain opset the model was exported with (0 when none is declared)."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def file_problems(model: ModelProto, metadata: dict[str, str], min_opset: int) -> list[str]:
    """What every delivered ONNX file must be: a recent opset, one file, its metadata inside."""
    import onnx

    problems = []
    if opset_of(model) < min_opset:
        problems.append(f"opset {opset_of(model)} < {min_opset}")
    uses_external = onnx.external_data_helper.uses_external_data
    external = [t.name for t in model.graph.initializer if uses_external(t)]
    if external:
        problems.append(f"{len(external)} initializers use external data (not one file)")
    props = {p.key: p.value for p in model.metadata_props}
    missing = [key for key, value in metadata.items() if props.get(key) != value]
    if missing:
        problems.append(f"metadata_props missing or different: {', '.join(missing)}")
    return problems


def _structure_problems(ctx: ExportContext, model: ModelProto) -> list[str]:
    problems = file_problems(model, ctx.string_metadata(), MIN_OPSET)
    inputs = list(model.graph.input)
    if [i.name for i in inputs] != [INPUT_NAME]:
        problems.append(f"inputs are {[i.name for i in inputs]}, expected ['{INPUT_NAME}']")
    else:
        dims = inputs[0].type.tensor_type.shape.dim
        if not dims or not dims[0].dim_param or dims[0].dim_value:
            problems.append("batch axis is not dynamic")
        if [d.dim_value for d in dims[1:]] != [3, ctx.image_size, ctx.image_size]:
            problems.append(f"input is not N×3×{ctx.image_size}×{ctx.image_size}")
    if [o.name for o in model.graph.output] != [OUTPUT_NAME]:
        problems.append(f"outputs are {[o.name for o in model.graph.output]}")
    return problems
