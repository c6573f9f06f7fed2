"""The int8 variant of the ExecuTorch export: PT2E static quantization for XNNPACK.

The wrapper is captured with torch.export, prepared with XNNPACK's quantizer (int8,
symmetric, per output channel weights; int8 activations whose ranges come from up to 256
training images), converted, exported again and lowered to XNNPACK like the float32
program, with the same metadata methods plus `precision`. Unlike Core ML it runs here: it is
scored in the ExecuTorch runtime itself, one image at a time as an app runs it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from worker.export import executorch
from worker.export.context import ExportContext
from worker.export.manifest import PrecisionRow
from worker.export.precision_rows import median_ms, scored_row

VARIANT_FILES = {"int8": "model_int8.pte"}
MAX_SIZE_RATIO = 0.5


def make(ctx: ExportContext, precision: str, target: Path, calibration: torch.Tensor) -> None:
    """Write the int8 program to target."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from executorch.exir import to_edge_transform_and_lower
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if precision != "int8":
        raise ValueError(f"ExecuTorch variants are int8 only, not {precision}")
    sample = (ctx.sample(1),)
    captured = torch.export.export(ctx.wrapper, sample).module()
    quantizer = XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True)
    )
    prepared = prepare_pt2e(captured, quantizer)
    with torch.no_grad():
        for image in calibration:  # the program's static batch of 1
            prepared((image.float() / 255).unsqueeze(0))
    converted = convert_pt2e(prepared)
    # A quantizer that annotated nothing (an API change) would give a float32 program
    # labelled int8, as accurate as the original: the gate could not tell.
    quantized_nodes = [n for n in converted.graph.nodes if "quantize_per" in str(n.target)]
    if not quantized_nodes:
        raise RuntimeError("XNNPACK's quantizer quantized nothing")
    quantized = torch.export.export(converted, sample)
    edge = to_edge_transform_and_lower(
        quantized,
        partitioner=[XnnpackPartitioner()],
        constant_methods={**ctx.string_metadata(), "precision": precision},
    )
    target.write_bytes(edge.to_executorch().buffer)


def problems(ctx: ExportContext, path: Path, precision: str) -> list[str]:
    """The float32 program's promises (the XNNPACK delegate, every metadata method and
    `precision` returning its string), and a size that int8 weights explain."""
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(path)
    found = executorch.metadata_problems(program, {**ctx.string_metadata(), "precision": precision})
    if executorch.DELEGATE.encode() not in path.read_bytes():
        found.append(f"the program has no {executorch.DELEGATE} delegate")
    # int8 weights are a quarter of float32's: a file not under half is not int8.
    fp32 = ctx.out_dir / executorch.FILE_NAME
    if fp32.exists() and path.stat().st_size > MAX_SIZE_RATIO * fp32.stat().st_size:
        found.append(
            f"the program is not under {MAX_SIZE_RATIO:.0%} of {executorch.FILE_NAME}'s size"
        )
    return found


def measured(
    precision: str,
    path: Path,
    validation: torch.Tensor,
    reference: np.ndarray,
    labels: np.ndarray,
    started: float | None,
) -> PrecisionRow:
    """Score the program in the ExecuTorch runtime on the validation split, one image at a
    time, and time it at batch 1."""
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(path).load_method("forward")

    def run(image: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor = method.execute([(image.float() / 255).unsqueeze(0).contiguous()])[0]
        return output

    probabilities = torch.cat([run(image) for image in validation]).double().numpy()
    return scored_row(
        "executorch",
        precision,
        path,
        probabilities,
        reference,
        labels,
        latency_ms=median_ms(lambda: run(validation[0])),
        started=started,
    )
