"""Which architecture for a phone: held-out accuracy of each one's float32 and int8 ONNX files.

For each architecture and each bench/quality.py set (200 images held out, stratified, seed
0), the engine trains from scratch with the seed's defaults (learning rate 0.01, batch 36,
StepLR 10 / 0.1) at --image-size for --epochs; the best checkpoint is exported as a job with
`export: ["onnx"], export_precision: ["fp32", "int8"]` does (export_all: the int8 file is
calibrated on the run's training views), and both files are scored in onnxruntime on the
held-out images: accuracy, and the int8 file's top-1 agreement with the float32 one. The
int8 file is kept whatever its validation accuracy, so that it can be scored; the last
column says whether a job's default gate (export_tolerance 0.01) would deliver it. Size
and latency at 224 px are bench/export_precision.py's (--no-training): they do not depend
on training.

    python bench/phone_guide.py                                   # 4 architectures × 3 sets
    python bench/phone_guide.py --architectures resnet18 --sets digits
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.export_precision import export
from bench.quality import CPU_CONFIG, SETS, held_out_tensors, split, write_folder
from dev.sample_quality import quality_set
from worker.classification.task import ClassificationTask
from worker.engine.loop import fit
from worker.export.context import INPUT_NAME
from worker.export.variants import CALIBRATION_IMAGES, gate_reason

ARCHITECTURES = ("mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "resnet18")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architectures", nargs="+", default=list(ARCHITECTURES))
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"torch threads {torch.get_num_threads()}", flush=True)
    rows = []
    for set_name in args.sets:
        for architecture in args.architectures:
            row = measure(set_name, architecture, args.image_size, args.epochs)
            print(row, flush=True)
            rows.append(row)
    print(
        "\nset       architecture        train s  validation  held-out fp32  int8   agreement"
        "  MB fp32  int8   gate (0.01)"
    )
    for row in rows:
        print(
            f"{row['set']:<9} {row['architecture']:<19} {row['seconds']:7.0f}  "
            f"{row['validation']:10.3f}  {row['fp32']:13.3f}  {row['int8']:5.3f}  "
            f"{row['agreement']:9.3f}  {row['fp32_mb']:7.2f}  {row['int8_mb']:5.2f}"
            f"  {row['gate']}"
        )


def measure(set_name: str, architecture: str, size: int, epochs: int) -> dict:
    config = replace(
        CPU_CONFIG,
        architecture=architecture,
        image_size=size,
        epochs=epochs,
        learning_rate=0.01,
        batch_size=36,
        step_size=10,
    )
    kept, held = split(quality_set(set_name, size))
    with tempfile.TemporaryDirectory(prefix="phone-guide-") as scratch:
        train_dir = Path(scratch, "train")
        write_folder(train_dir, kept)
        held_paths = write_folder(Path(scratch, "held"), held)
        classes = sorted(p.name for p in train_dir.iterdir())
        images, labels = held_out_tensors(held_paths, classes, size)
        task = ClassificationTask()
        started = time.perf_counter()
        result = fit(task, train_dir, Path(scratch, "out"), config)
        seconds = time.perf_counter() - started
        model, class_names, _ = task.load_best(result.checkpoint_best, None)
        assert list(class_names) == classes
        check, _ = task.export_images(train_dir, config, 32)
        files = Path(scratch, "export")
        manifest, _ = export(
            model,
            classes,
            size,
            check,
            task.variant_data(CALIBRATION_IMAGES),
            1.0,  # keep it to score it; the gate's verdict is computed below
            ["onnx"],
            keep=files,
            precisions=["fp32", "int8"],
        )
        assert manifest.precisions is not None
        table = manifest.precisions
        int8_row = next(r for r in table.rows if r.key == "onnx_int8")
        assert int8_row.delivered and int8_row.accuracy is not None, int8_row.reason
        pixels = (images.float() / 255).numpy()
        fp32 = predictions(files / "model.onnx", pixels)
        int8 = predictions(files / "model_int8.onnx", pixels)
        truth = labels.numpy()
        gate = gate_reason(table.pytorch_fp32_accuracy or 0.0, int8_row.accuracy, 0.01)
        return {
            "set": set_name,
            "architecture": architecture,
            "seconds": seconds,
            "validation": result.best_val_accuracy,
            "fp32": float((fp32 == truth).mean()),
            "int8": float((int8 == truth).mean()),
            "agreement": float((int8 == fp32).mean()),
            "fp32_mb": (files / "model.onnx").stat().st_size / 1e6,
            "int8_mb": (int8_row.size_bytes or 0) / 1e6,
            "gate": gate or "delivered",
        }


def predictions(path: Path, pixels: np.ndarray) -> np.ndarray:
    """Top-1 of an exported classifier on RGB [0, 1] NCHW pixels, one image per call."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, ["CPUExecutionProvider"])
    return np.array(
        [int(session.run(None, {INPUT_NAME: image[None]})[0].argmax()) for image in pixels]
    )


if __name__ == "__main__":
    main()
