"""Precision variants of the Core ML export: fp16 arithmetic, and int8 weights.

fp16 converts the classifier with float16 compute precision (weights and arithmetic in
float16, the image input as before). int8 quantizes the float32 program's weights with
`coremltools.optimize.coreml.linear_quantize_weights` (symmetric, per output channel; the
arithmetic stays as the float32 file's, the weights are dequantized on load).

Core ML does not run on Linux, so each file gets the spec check the float32 one gets (the
image input's 1/255 scale, outputs, labels, softmax) plus its precision read back from the
program (every convolution's and matmul's weight float16, or an int8 constant dequantized
on load), and its accuracy is that of the same change simulated in PyTorch: the model in
float16 on the CPU, or `coremltools.optimize.torch`'s PostTrainingQuantizer with the same
int8 scheme. The table marks these rows `simulated`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worker.export import coreml
from worker.export.context import ExportContext
from worker.export.precision_rows import model_probabilities

VARIANT_FILES = {"fp16": "model_fp16.mlpackage.zip", "int8": "model_int8.mlpackage.zip"}
SIMULATED_BY = {
    "fp32": "the float32 PyTorch model (what the file computes on the CPU; the Neural "
    "Engine computes in float16 whatever the file says)",
    "fp16": "the PyTorch model in float16 on the CPU",
    "int8": "coremltools.optimize.torch PostTrainingQuantizer (int8, symmetric, per channel)",
}
# The layers whose weights the precision must change: what holds nearly all the bytes.
WEIGHTED_OPS = ("conv", "linear", "matmul")
SCORE_BATCH = 64


def make(ctx: ExportContext, precision: str, target: Path) -> None:
    """Write the variant's zipped .mlpackage to target."""
    if precision == "fp16":
        program = coreml.classifier_program(ctx, "float16", precision)
    else:
        import coremltools.optimize.coreml as optimize

        config = optimize.OptimizationConfig(
            # Every convolution's and matmul's weight, however small (the default skips
            # those under 2,048 values; coremltools still keeps biases and constants under
            # 10 values float): what the PyTorch simulation quantizes too, and what the
            # check reads back.
            global_config=optimize.OpLinearQuantizerConfig(
                mode="linear_symmetric", dtype="int8", granularity="per_channel", weight_threshold=1
            )
        )
        float32 = coreml.classifier_program(ctx, coreml.COMPUTE_PRECISION, precision)
        program = optimize.linear_quantize_weights(float32, config=config)
    coreml.save_zipped(program, target)


def spec_problems(
    ctx: ExportContext, path: Path, precision: str
) -> tuple[list[str], dict[str, Any]]:
    """The float32 file's spec check, the `precision` metadata, and the precision itself."""
    spec = coreml.load_zipped_spec(path)
    problems, details = coreml.inspect(ctx, spec)
    if dict(spec.description.metadata.userDefined).get("precision") != precision:
        problems.append(f"user-defined metadata lacks precision {precision}")
    ops = coreml.program_ops(spec, details)
    problems += weight_problems(ops, precision, details)
    return problems, details


def weight_problems(ops: list[Any], precision: str, details: dict[str, Any]) -> list[str]:
    """Every weighted op's weight must be float16 (fp16) or an int8 constant dequantized on
    load (int8); details count them."""
    from coremltools.proto import MIL_pb2

    producers = {out.name: op for op in ops for out in op.outputs}
    weights = []
    for op in ops:
        if op.type in WEIGHTED_OPS:
            argument = op.inputs.get("weight") or op.inputs.get("y")
            if argument is not None and argument.arguments and argument.arguments[0].name:
                weights.append(producers.get(argument.arguments[0].name))
    if not weights:
        return ["the program has no weighted operations"]
    float16 = MIL_pb2.DataType.Value("FLOAT16")
    int8 = MIL_pb2.DataType.Value("INT8")
    if precision == "fp16":
        wrong = [
            w for w in weights if w is None or w.outputs[0].type.tensorType.dataType != float16
        ]
        kind = "float16"
    else:
        wrong = [w for w in weights if w is None or not _int8_constant(w, int8)]
        kind = "an int8 constant dequantized on load"
    details["weights"] = {"checked": len(weights), "not_" + precision: len(wrong)}
    if wrong:
        return [f"{len(wrong)} of {len(weights)} weights are not {kind}"]
    return []


def _int8_constant(op: Any, int8: int) -> bool:
    """A constexpr dequantization whose stored data is int8."""
    if not op.type.startswith("constexpr_"):
        return False
    data = op.attributes.get("quantized_data") or op.inputs.get("data")
    if data is None:
        return False
    held = data if hasattr(data, "type") else None
    if held is None and data.arguments:
        held = data.arguments[0].value
    return held is not None and held.type.tensorType.dataType == int8


def simulated_probabilities(
    ctx: ExportContext, precision: str, images: torch.Tensor, batch: int = SCORE_BATCH
) -> np.ndarray:
    """What the variant's arithmetic gives on uint8 views, simulated in PyTorch (float64)."""
    dtype = torch.float16 if precision == "fp16" else torch.float32
    return model_probabilities(simulated_model(ctx, precision), images, batch, dtype)


def simulated_model(ctx: ExportContext, precision: str) -> torch.nn.Module:
    model = copy.deepcopy(ctx.wrapper).eval()
    if precision == "fp16":
        return model.half()
    if precision == "int8":
        from coremltools.optimize.torch.quantization import (
            PostTrainingQuantizer,
            PostTrainingQuantizerConfig,
        )

        config = PostTrainingQuantizerConfig.from_dict(
            {
                "global_config": {
                    "weight_dtype": "int8",
                    "granularity": "per_channel",
                    "quantization_scheme": "symmetric",
                }
            }
        )
        quantized: torch.nn.Module = PostTrainingQuantizer(model, config).compress()
        return quantized.eval()
    return model
