"""What fp16 and int8 cost and keep, on a trained model and at a phone's image size.

Two measurements in one run:
1. accuracy: train ARCHITECTURE on digits (dev/sample_quality.py) with the engine, then
   export ONNX, Core ML and ExecuTorch with every precision through export_all, as a job
   with `export_precision: ["fp32", "fp16", "int8"]` does: size, validation accuracy,
   agreement with the float32 PyTorch model (Core ML: simulated in PyTorch), latency at
   batch 1 on one thread (ONNX; ExecuTorch: its runtime's default threads);
2. cost at 224 px: the same architecture with random weights (size, latency and export time
   do not depend on training) exported once as float32 ONNX only and once with the variants,
   side by side: the seconds the variants add, and int8/fp32 latency.

With --int8-settings, the trained model's float32 ONNX file is also quantized with the
settings onnxruntime offers beside ours (full-range weights, other calibrations, int8
activations) and each file's validation accuracy and agreement printed, with the CPU's
int8 instructions: what the shipped int8_settings() were chosen against.

    python bench/export_precision.py [--architecture mobilenet_v3_large] [--epochs 10]
    python bench/export_precision.py --int8-settings --cost-size 0
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torchvision.models import get_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.quality import CPU_CONFIG, split, write_folder
from dev.sample_quality import quality_set
from worker.classification.task import ClassificationTask
from worker.engine.loop import fit
from worker.export import Manifest, export_all
from worker.export.context import INPUT_NAME
from worker.export.variants import (
    CALIBRATION_IMAGES,
    VariantData,
    cpu_description,
    onnx_probabilities,
    quantize_int8,
)

PRECISIONS = ["fp32", "fp16", "int8"]
TRAINED_FORMATS = ["onnx", "coreml", "executorch"]  # every format that makes variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="mobilenet_v3_large")
    parser.add_argument("--image-size", type=int, default=64, help="for the trained model")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--cost-size", type=int, default=224, help="0: skip the cost part")
    parser.add_argument("--no-training", action="store_true", help="only the cost part")
    parser.add_argument(
        "--int8-settings",
        action="store_true",
        help="the trained model quantized other ways too (validation accuracy, agreement)",
    )
    parser.add_argument(
        "--cost-executorch",
        action="store_true",
        help="the cost part for ExecuTorch too (fp32 and int8 at the cost size, its runtime)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"torch threads {torch.get_num_threads()}", flush=True)
    if not args.no_training:
        trained(args)
    if args.cost_size:
        cost(args.architecture, args.cost_size, args.cost_executorch)


def trained(args: argparse.Namespace) -> None:
    """Train on digits with the seed's defaults (from scratch), then export every precision."""
    config = replace(
        CPU_CONFIG,
        architecture=args.architecture,
        image_size=args.image_size,
        epochs=args.epochs,
        learning_rate=0.01,
        batch_size=36,
        step_size=10,
    )
    kept, _ = split(quality_set("digits", args.image_size))
    with tempfile.TemporaryDirectory(prefix="export-precision-") as scratch:
        train_dir = Path(scratch, "train")
        write_folder(train_dir, kept)
        task = ClassificationTask()
        started = time.perf_counter()
        result = fit(task, train_dir, Path(scratch, "out"), config)
        print(
            f"trained {args.architecture} {args.image_size} px, {args.epochs} epochs in "
            f"{time.perf_counter() - started:.0f} s: validation {result.best_val_accuracy:.3f}",
            flush=True,
        )
        model, class_names, _ = task.load_best(result.checkpoint_best, None)
        images, _ = task.export_images(train_dir, config, 32)
        data = task.variant_data(CALIBRATION_IMAGES)
        kept = Path(scratch, "export")
        manifest, seconds = export(
            model,
            list(class_names),
            config.image_size,
            images,
            data,
            0.01,
            TRAINED_FORMATS,
            keep=kept,
        )
        print(f"\nexport with variants: {seconds:.1f} s")
        table(manifest)
        if args.int8_settings:
            int8_settings_compared(kept / "model.onnx", data, kept)


def int8_settings_compared(source: Path, data: VariantData, folder: Path) -> None:
    """One trained float32 file quantized each way onnxruntime offers near ours, scored on
    the validation split beside the float32 file."""
    from onnxruntime.quantization import CalibrationMethod, QuantType

    percentile = {"calibrate_method": CalibrationMethod.Percentile}
    settings: dict[str, dict] = {
        "shipped (7-bit weights)": {},
        "full-range weights": {"reduce_range": False},
        "full-range, per-tensor weights": {"reduce_range": False, "per_channel": False},
        "full-range, int8 activations": {"reduce_range": False, "activation_type": QuantType.QInt8},
        "full-range, entropy ranges": {
            "reduce_range": False,
            "calibrate_method": CalibrationMethod.Entropy,
        },
        "7-bit, percentile 99.999 ranges": percentile
        | {"extra_options": {"CalibPercentile": 99.999}},
        "7-bit, percentile 99.99 ranges": percentile
        | {"extra_options": {"CalibPercentile": 99.99}},
    }

    def top1(path: Path) -> np.ndarray:
        return onnx_probabilities(path, data.validation).argmax(1)

    labels = data.labels.numpy()
    reference = top1(source)
    cpu = cpu_description()
    print(
        f"\nint8 settings, {len(labels)} validation images, {cpu['model']}, int8 instructions: "
        f"{', '.join(cpu['int8_instructions']) or 'none'}"
    )
    print(f"{'settings':<34} accuracy  agreement  seconds")
    print(f"{'float32':<34} {(reference == labels).mean():8.3f}  {1:9.3f}        —")
    for index, (name, overrides) in enumerate(settings.items()):
        target = folder / f"int8_{index}.onnx"
        started = time.perf_counter()
        quantize_int8(source, target, data.calibration, **overrides)
        seconds = time.perf_counter() - started
        top = top1(target)
        accuracy, agreement = (top == labels).mean(), (top == reference).mean()
        print(f"{name:<34} {accuracy:8.3f}  {agreement:9.3f}  {seconds:7.1f}")


def cost(architecture: str, size: int, executorch: bool = False) -> None:
    """Random weights at size: float32 ONNX alone, then with the variants; then the
    latencies again, interleaved (fp32, fp16, int8, fp32, …), for a ratio that machine
    load shifts equally. With executorch, the same model as model.pte and model_int8.pte,
    timed in the ExecuTorch runtime by the job's own table."""
    torch.manual_seed(0)
    model = get_model(architecture, weights=None, num_classes=10).eval()
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(8, 3, size, size, generator=generator)
    labels = torch.arange(64) % 10
    pixels = (torch.rand(64, 3, size, size, generator=generator) * 255).to(torch.uint8)
    data = VariantData(pixels, labels, pixels[:CALIBRATION_IMAGES])
    names = [f"class_{index}" for index in range(10)]
    with tempfile.TemporaryDirectory(prefix="export-cost-") as kept:
        # Random weights on random labels: any tolerance but 1 could withhold a file.
        _, alone = export(model, names, size, images, None, 1.0)
        manifest, both = export(model, names, size, images, data, 1.0, keep=Path(kept))
        print(f"\n{architecture} at {size} px (random weights): float32 ONNX alone {alone:.1f} s,")
        print(f"with fp16 + int8 {both:.1f} s: the variants add {both - alone:.1f} s")
        table(manifest)
        assert manifest.precisions is not None
        rows = manifest.precisions.rows
        files = {row.precision: Path(kept, row.file) for row in rows if row.file}
        medians = interleaved_latency(files, (pixels[:1].float() / 255).numpy())
    print(
        "interleaved, one thread, ms/image: "
        + ", ".join(f"{name} {ms:.2f}" for name, ms in medians.items())
        + f"; int8 / fp32 {medians['int8'] / medians['fp32']:.2f}"
        + f", fp16 / fp32 {medians['fp16'] / medians['fp32']:.2f}"
    )
    if executorch:
        manifest, seconds = export(
            model, names, size, images, data, 1.0, ["executorch"], precisions=["fp32", "int8"]
        )
        print(f"\nExecuTorch at {size} px (random weights), export with int8 {seconds:.1f} s")
        table(manifest)
        assert manifest.precisions is not None
        latency = {row.precision: row.latency_ms for row in manifest.precisions.rows}
        if latency.get("fp32") and latency.get("int8"):
            print(f"ExecuTorch int8 / fp32 latency {latency['int8'] / latency['fp32']:.2f}")


def interleaved_latency(files: dict[str, Path], image: np.ndarray, rounds: int = 200) -> dict:
    """Median ms of one image per file, the files taking turns every call."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    sessions = {
        name: onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for name, path in files.items()
    }
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for round_ in range(rounds + 5):
        for name, session in sessions.items():
            started = time.perf_counter()
            session.run(None, {INPUT_NAME: image})
            if round_ >= 5:  # warm-up
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) * 1000 for name, values in times.items()}


def export(
    model: torch.nn.Module,
    names: list[str],
    size: int,
    images: torch.Tensor,
    data: VariantData | None,
    tolerance: float,
    formats: list[str] | None = None,
    keep: Path | None = None,
    precisions: list[str] = PRECISIONS,
) -> tuple[Manifest, float]:
    with tempfile.TemporaryDirectory(prefix="export-") as scratch:
        out = keep or scratch
        started = time.perf_counter()
        manifest = export_all(
            model=model,
            class_names=names,
            image_size=size,
            architecture="bench",
            formats=formats or ["onnx"],
            check_images=images,
            out_dir=Path(out),
            metrics={},
            model_version="bench/export-precision@now",
            precisions=precisions if data is not None else None,
            tolerance=tolerance,
            variant_data=None if data is None else lambda: data,
        )
        return manifest, time.perf_counter() - started


def table(manifest: Manifest) -> None:
    precisions = manifest.precisions
    if precisions is None:
        return
    print(
        f"{precisions.images} validation images; PyTorch fp32 accuracy "
        f"{precisions.pytorch_fp32_accuracy:.3f}; {precisions.runtime}; CPU "
        f"{precisions.cpu.get('model')} {precisions.cpu.get('int8_instructions')}"
    )
    print("key          MB      accuracy  agreement  max |dp|  ms/image  seconds  delivered")
    for row in precisions.rows:
        size = (row.size_bytes or 0) / 1e6
        print(
            f"{row.key:<12} {size:6.2f}  {row.accuracy or 0:8.3f}  {row.agreement or 0:9.3f}"
            f"  {row.max_abs_diff or 0:8.3g}  {row.latency_ms or 0:8.2f}  {row.seconds or 0:7.1f}"
            f"  {'yes' if row.delivered else 'no: ' + (row.reason or '')}"
        )


if __name__ == "__main__":
    main()
