"""Why int8 ONNX does not speed MobileNetV3 up on an x86 CPU: the forms we could ship, timed.

One run: ARCHITECTURE at SIZE px with random weights (latency does not depend on training)
exported as a job does (model.onnx, and model_int8.onnx: QDQ, per-channel 7-bit int8
weights, uint8 activations), then other forms onnxruntime's quantizer makes from the same prepared
graph and the same calibration images: QOperator, per-tensor weights, int8 activations,
uint8 weights, depthwise convolutions kept float, convolutions only. All are timed call by
call in turn on one onnxruntime thread (a ratio that machine load shifts equally), and the
float32 and shipped int8 files are profiled by kind of operator: where the time goes.

    python bench/onnx_int8_forms.py [--architecture mobilenet_v3_large] [--size 224]
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from torchvision.models import get_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.export_precision import export, interleaved_latency
from worker.export.context import INPUT_NAME
from worker.export.variants import (
    CALIBRATION_IMAGES,
    VariantData,
    cpu_description,
    quantize_int8,
)

PROFILED_CALLS = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="mobilenet_v3_large")
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = get_model(args.architecture, weights=None, num_classes=10).eval()
    generator = torch.Generator().manual_seed(0)
    pixels = (torch.rand(64, 3, args.size, args.size, generator=generator) * 255).to(torch.uint8)
    data = VariantData(pixels, torch.arange(64) % 10, pixels[:CALIBRATION_IMAGES])
    names = [f"class_{index}" for index in range(10)]
    image = (pixels[:1].float() / 255).numpy()
    with tempfile.TemporaryDirectory(prefix="int8-forms-") as kept:
        folder = Path(kept)
        export(model, names, args.size, pixels[:8].float() / 255, data, 1.0, keep=folder)
        files = {"fp32": folder / "model.onnx", "shipped int8 (QDQ)": folder / "model_int8.onnx"}
        files |= other_forms(folder / "model.onnx", data.calibration, folder)
        medians = interleaved_latency(files, image)
        cpu = cpu_description()
        print(f"{args.architecture} at {args.size} px, {platform.machine()}, {cpu['model']}")
        print(f"int8 instructions: {', '.join(cpu['int8_instructions']) or 'none'}")
        print(f"{'form':<38} {'ms/image':>8} {'/ fp32':>7} {'MB':>7}")
        for name, ms in medians.items():
            size = files[name].stat().st_size / 1e6
            print(f"{name:<38} {ms:8.2f} {ms / medians['fp32']:7.2f} {size:7.2f}")
        for name in ("fp32", "shipped int8 (QDQ)"):
            print(f"\nwhere {name}'s time goes (ms/image, one thread, by operator kind):")
            for kind, ms in profile(files[name], image, folder).most_common():
                print(f"  {kind:<34} {ms:6.3f}")


def other_forms(source: Path, calibration: torch.Tensor, folder: Path) -> dict[str, Path]:
    """The same float32 file quantized other ways (the shipped settings, one changed)."""
    from onnxruntime.quantization import QuantFormat, QuantType
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = folder / "prepared.onnx"
    quant_pre_process(str(source), str(prepared))
    graph = onnx.load(str(prepared)).graph
    weights = {tensor.name: list(tensor.dims) for tensor in graph.initializer}
    kinds = {node.name: _kind(node, weights) for node in graph.node}
    depthwise = [name for name, kind in kinds.items() if kind == "Conv depthwise"]
    # Only where int8 is fast (the profile below): the rest stays float, with conversions.
    not_pointwise = [name for name, kind in kinds.items() if kind != "Conv 1x1"]
    forms = {
        "QOperator": {"quant_format": QuantFormat.QOperator},
        "QDQ, per-tensor weights": {"per_channel": False},
        "QDQ, int8 activations (s8s8)": {"activation_type": QuantType.QInt8},
        "QDQ, uint8 weights (u8u8)": {"weight_type": QuantType.QUInt8},
        f"QDQ, {len(depthwise)} depthwise convs float": {"nodes_to_exclude": depthwise},
        "QDQ, Conv and Gemm only": {"op_types_to_quantize": ["Conv", "Gemm"]},
        "QDQ, 1x1 convs only": {"nodes_to_exclude": not_pointwise},
    }

    made = {}
    for index, (name, options) in enumerate(forms.items()):
        target = folder / f"form_{index}.onnx"
        # quantize_int8 prepares the same graph again: the node names above are its.
        quantize_int8(source, target, calibration, **options)
        made[name] = target
    return made


def profile(path: Path, image: np.ndarray, folder: Path) -> collections.Counter[str]:
    """Milliseconds per call by operator kind (convolutions split into 1×1, depthwise and
    k×k), from onnxruntime's profiler over the optimized graph it runs."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.enable_profiling = True
    options.log_severity_level = 3  # saving the optimized graph warns that it is CPU-specific
    options.profile_file_prefix = str(folder / f"profile_{path.stem}")
    optimized = folder / f"optimized_{path.stem}.onnx"
    options.optimized_model_filepath = str(optimized)
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(PROFILED_CALLS):
        session.run(None, {INPUT_NAME: image})
    events = json.loads(Path(session.end_profiling()).read_text())
    graph = onnx.load(str(optimized)).graph
    weights = {tensor.name: list(tensor.dims) for tensor in graph.initializer}
    kinds = {node.name: _kind(node, weights) for node in graph.node}
    spent: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            name = event["name"].removesuffix("_kernel_time")
            kind = kinds.get(name, event["args"]["op_name"])
            spent[kind] += event["dur"] / 1000 / PROFILED_CALLS
    return spent


def _kind(node: onnx.NodeProto, weights: dict[str, list[int]]) -> str:
    op = node.op_type
    if "Conv" not in op:
        return op
    if _group(node) > 1:
        return f"{op} depthwise"
    kernel = next((list(a.ints) for a in node.attribute if a.name == "kernel_shape"), [])
    if not kernel:  # no attribute: read the weight's own shape
        weight = node.input[3 if op == "QLinearConv" else 1]
        kernel = weights.get(weight, [0, 0, 0, 0])[2:]
    return f"{op} 1x1" if kernel == [1, 1] else f"{op} kxk"


def _group(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "group"), 1)


if __name__ == "__main__":
    main()
