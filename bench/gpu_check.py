"""The GPU acceptance check (issue 21): throughput, JPEG decode and one whole training, into
one JSON file. `bench/gpu_check.sh` runs it on one H100/H200 in about 5 minutes.

    bash bench/gpu_check.sh [results.json]          # the check, on a GPU host
    python bench/gpu_check.py --smoke results.json  # the same steps, tiny, on any machine

1. Training images/s, engine against a bare loop on the same GPU-resident cache
   (bench/train_throughput.py, one process each): resnet50 and mobilenet_v3_large at 224 px,
   batch 256, in bf16 and in fp16 (the T4's precision). Target: ratio ≥ 0.95. Each run
   profiles 10 steps (--profile): the GPU's busy share, the host's waits, the augmentation's
   share and the costliest kernels, which say what holds the rate back.
2. Decode of generated 1024×768 JPEGs to the 224 px cache view: the worker's Pillow decoder
   (shared/images.py, the worker's decode threads) against its GPU decode
   (worker/classification/device_decode.py: decode_jpeg in batches, the view made on the
   GPU, back to the host cache), and how far the two views differ (mean absolute difference
   per pixel, in 1/255). Targets: GPU ≥ 5× Pillow, difference ≤ 2.
3. One training as the worker runs it: 5,000 generated JPEGs at 224 px, 20 epochs of the
   default architecture, then ONNX (torch.onnx.export, dynamo) and TorchScript files of the
   best model; seconds for data (the dataset check, its JPEGs decoded on the GPU, into the
   cache), training and each export. The
   exports are torch's own calls, not worker/export's checked exporters: those write a
   pydantic manifest, and the host has no pydantic. Targets: ≤ 60 s training, ≤ 120 s in all.
4. Step 1 in bf16 with the engine's step compiled by inductor, against the same eager bare
   loop: a ratio above the eager run's is what AITRAINER_COMPILE_BACKEND=inductor gains.
   Last, because inductor's first compile takes a minute or more per model.

Needs torch, torchvision, NumPy and Pillow only (and onnxscript for the ONNX file, which
that host has); tests/worker/engine/test_bare_host.py runs --smoke with the rest hidden.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch.nn import functional as F
from torchvision.io import encode_jpeg, write_file
from torchvision.transforms.v2 import functional as TF

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout, where nothing is installed

from bench.train_throughput import write_dataset
from shared.images import centre_view, decode_image
from worker.classification.batches import ImageCache
from worker.classification.device_decode import decode_plain_jpegs
from worker.classification.task import ClassificationTask, load_best_classifier
from worker.engine.config import TrainConfig
from worker.engine.device import synchronize
from worker.engine.loop import fit


@dataclass(frozen=True)
class Sizes:
    """What each step runs on: the check's, or --smoke's for a CPU in seconds."""

    architectures: tuple[str, ...]
    precisions: tuple[str, ...]
    compiled: tuple[str, ...]  # precisions also run with the engine compiled, by:
    compile_backend: str
    throughput_image_size: int
    throughput_batch: int
    throughput_images: int
    throughput_epochs: int
    photos: int
    photo_size: tuple[int, int]
    view_size: int
    warm_up_photos: int
    training_images: int
    training_image_size: int
    training_epochs: int
    training_batch: int
    training_architecture: str


CHECK = Sizes(
    architectures=("resnet50", "mobilenet_v3_large"),
    precisions=("bf16", "fp16"),
    compiled=("bf16",),
    compile_backend="inductor",
    throughput_image_size=224,
    throughput_batch=256,
    throughput_images=12_800,
    throughput_epochs=4,
    photos=10_000,
    photo_size=(1024, 768),
    view_size=224,
    warm_up_photos=256,
    training_images=5_000,
    training_image_size=224,
    training_epochs=20,
    training_batch=256,
    training_architecture="mobilenet_v3_large",
)
SMOKE = Sizes(
    architectures=("mobilenet_v3_small",),
    precisions=("auto",),
    compiled=("auto",),
    # inductor's C++ build takes minutes on a CPU; "eager" still runs the step through
    # dynamo's capture, in half aot_eager's time (tests/worker/engine/test_loop.py compares
    # aot_eager with eager training).
    compile_backend="eager",
    throughput_image_size=32,
    throughput_batch=8,
    throughput_images=48,
    throughput_epochs=2,
    photos=24,
    photo_size=(256, 192),
    view_size=64,
    warm_up_photos=8,
    training_images=40,
    training_image_size=32,
    training_epochs=2,
    training_batch=8,
    training_architecture="mobilenet_v3_small",
)
CLASSES = 10
SMOKE_CLASSES = 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="?", default=Path("gpu_check.json"))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, any device")
    parser.add_argument(
        "--steps",
        default=",".join(STEPS),
        help=f"comma-separated, of {', '.join(STEPS)} (all by default): a host whose command "
        "time is short runs them in two calls",
    )
    args = parser.parse_args()
    chosen = args.steps.split(",")
    if not set(chosen) <= STEPS.keys():
        parser.error(f"--steps must name steps of {', '.join(STEPS)} (got {args.steps})")
    sizes = SMOKE if args.smoke else CHECK
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results: dict[str, Any] = {"host": host(device), "smoke": args.smoke}
    for name in chosen:
        step = STEPS[name]
        began = time.perf_counter()
        try:
            results[name] = step(sizes, device, args.smoke)
        except Exception as error:  # one step's failure must not cost the others' numbers
            results[name] = {"error": f"{type(error).__name__}: {error}"}
        results[name]["step_seconds"] = round(time.perf_counter() - began, 1)
        print(json.dumps({name: results[name]}, indent=1), flush=True)
        args.results.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results in {args.results}")


def host(device: torch.device) -> dict[str, Any]:
    return {
        "device": device.type,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "capability": list(torch.cuda.get_device_capability(device))
        if device.type == "cuda"
        else None,
        "cpu_threads": os.cpu_count(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }


# -- 1. training throughput ----------------------------------------------------------------


def throughput(sizes: Sizes, device: torch.device, smoke: bool) -> dict[str, Any]:
    """bench/train_throughput.py per architecture × precision, each in its own process, with
    a profile of the step."""
    plan = [(precision, None) for precision in sizes.precisions]
    return {"runs": throughput_runs(sizes, device, smoke, plan), "target_ratio": 0.95}


def compiled(sizes: Sizes, device: torch.device, smoke: bool) -> dict[str, Any]:
    """The same with the engine's step compiled, against the same eager bare loop: last, as
    inductor's first compile takes a minute or more per model."""
    plan = [(precision, sizes.compile_backend) for precision in sizes.compiled]
    return {"runs": throughput_runs(sizes, device, smoke, plan)}


def throughput_runs(
    sizes: Sizes, device: torch.device, smoke: bool, plan: list[tuple[str, str | None]]
) -> list[dict[str, Any]]:
    runs = []
    for architecture in sizes.architectures:
        for precision, backend in plan:
            command = [
                sys.executable,
                str(REPO / "bench" / "train_throughput.py"),
                *("--architecture", architecture, "--precision", precision),
                *("--image-size", str(sizes.throughput_image_size)),
                *("--batch-size", str(sizes.throughput_batch)),
                *("--images", str(sizes.throughput_images)),
                *("--epochs", str(sizes.throughput_epochs), "--device", device.type),
            ]
            if smoke:
                command += ["--classes", str(SMOKE_CLASSES)]
            command += ["--compile", backend] if backend else ["--profile"]
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
            run: dict[str, Any] = {
                "architecture": architecture,
                "precision": precision,
                "compiled": backend,
            }
            if done.returncode != 0:
                run["error"] = done.stderr[-2000:]
            else:
                run.update(parse_throughput(done.stdout))
            runs.append(run)
    return runs


def parse_throughput(output: str) -> dict[str, float]:
    """The medians and the ratio train_throughput.py prints last."""
    number = r"\s+([0-9.]+)\s+[0-9.]+"
    engine = re.search(r"engine, training phase" + number, output)
    whole = re.search(r"engine, whole epoch \(\+val, ckpt\)" + number, output)
    bare = re.search(r"bare PyTorch loop" + number, output)
    ratio = re.search(r"^ratio ([0-9.]+)$", output, re.MULTILINE)
    if not (engine and whole and bare and ratio):
        raise ValueError(f"unexpected train_throughput output: {output[-500:]}")
    parsed: dict[str, Any] = {
        "engine_images_per_s": float(engine.group(1)),
        "engine_whole_epoch_images_per_s": float(whole.group(1)),
        "bare_images_per_s": float(bare.group(1)),
        "ratio": float(ratio.group(1)),
    }
    profile = re.search(
        r"^profile \d+ steps: ([0-9.]+) ms/step, GPU busy (\d+)%, augmentation (\d+)% of GPU "
        r"time, ([0-9.]+) host syncs/step; top kernels: (.*)$",
        output,
        re.MULTILINE,
    )
    if profile:
        parsed["profile"] = {
            "ms_per_step": float(profile.group(1)),
            "gpu_busy_percent": int(profile.group(2)),
            "augmentation_percent_of_gpu_time": int(profile.group(3)),
            "host_syncs_per_step": float(profile.group(4)),
            "top_kernels": profile.group(5),
        }
    return parsed


# -- 2. JPEG decode ------------------------------------------------------------------------


def decode(sizes: Sizes, device: torch.device, smoke: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="aitrainer-gpu-check-") as scratch:
        paths = write_photos(Path(scratch), sizes.photos, sizes.photo_size, device)
        threads = TrainConfig().threads  # the worker's decode threads on this host
        # Warm both first (nvjpeg's handles and CUDA kernels, Pillow's plugins, page cache).
        warm = paths[: sizes.warm_up_photos]
        pillow_decode(warm, sizes, threads)
        torch_decode(warm, sizes, device)
        pillow_seconds, pillow_views = timed(lambda: pillow_decode(paths, sizes, threads))
        synchronize(device)
        gpu_seconds, gpu_views = timed(lambda: torch_decode(paths, sizes, device))
        compared = min(len(paths), 256)
        difference = (
            (pillow_views[:compared].float() - gpu_views[:compared].cpu().float()).abs().mean()
        )
    count = len(paths)
    return {
        "photos": count,
        "photo_size": list(sizes.photo_size),
        "view_size": sizes.view_size,
        "pillow_threads": threads,
        "pillow_images_per_s": round(count / pillow_seconds, 1),
        f"{device.type}_decode_jpeg_images_per_s": round(count / gpu_seconds, 1),
        "ratio": round(pillow_seconds / gpu_seconds, 2),
        "mean_abs_difference_of_views": round(float(difference), 3),
        "targets": {"ratio": 5.0, "mean_abs_difference_of_views": 2.0},
    }


def write_photos(
    folder: Path, count: int, size: tuple[int, int], device: torch.device
) -> list[Path]:
    """count photo-like JPEGs (smooth colour fields with noise), encoded on the device."""
    width, height = size
    generator = torch.Generator(device).manual_seed(0)
    paths = []
    for start in range(0, count, 64):
        n = min(64, count - start)
        coarse = torch.rand(n, 3, height // 32, width // 32, generator=generator, device=device)
        smooth = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
        noise = torch.randn(n, 3, height, width, generator=generator, device=device) * 0.03
        pixels = ((smooth + noise).clamp(0, 1) * 255).to(torch.uint8)
        encoded = encode_jpeg(list(pixels), quality=90)
        for offset, data in enumerate(encoded):
            path = folder / f"photo_{start + offset:05d}.jpg"
            write_file(str(path), data.cpu())
            paths.append(path)
    return paths


def pillow_decode(paths: list[Path], sizes: Sizes, threads: int) -> torch.Tensor:
    """The worker's path: Pillow (JPEG draft ≥ the view size), then the centre view."""

    def one(path: Path) -> torch.Tensor:
        image = decode_image(path, sizes.view_size).image
        return TF.pil_to_tensor(centre_view(image, sizes.view_size))

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return torch.stack(list(pool.map(one, paths)))


def torch_decode(paths: list[Path], sizes: Sizes, device: torch.device) -> torch.Tensor:
    """The worker's own device decode (worker/classification/device_decode.py): headers
    read, decode_jpeg on the device in batches, the centre view made there, back into the
    host cache the dataset check hashes."""
    cache = ImageCache(len(paths), sizes.view_size)
    decoded = decode_plain_jpegs(paths, cache, device, TrainConfig().threads)
    if len(decoded.headers) != len(paths):
        raise RuntimeError(f"{len(paths) - len(decoded.headers)} photos were left to Pillow")
    return cache.pixels


# -- 3. one whole training -----------------------------------------------------------------


def training(sizes: Sizes, device: torch.device, smoke: bool) -> dict[str, Any]:
    classes = SMOKE_CLASSES if smoke else CLASSES
    with tempfile.TemporaryDirectory(prefix="aitrainer-gpu-check-") as scratch:
        root, out = Path(scratch, "dataset"), Path(scratch, "run")
        seconds: dict[str, float] = {}
        began = time.perf_counter()
        write_dataset(root, sizes.training_images, classes, sizes.training_image_size)
        seconds["generate"] = time.perf_counter() - began
        config = TrainConfig(
            epochs=sizes.training_epochs,
            image_size=sizes.training_image_size,
            batch_size=sizes.training_batch,
            step_size=sizes.training_epochs,
            architecture=sizes.training_architecture,
            pretrained="scratch",
            device=device.type,
            # auto decodes the JPEGs on a GPU; --smoke takes that path on any device.
            jpeg_decoder="torchvision" if smoke else "auto",
        )
        task = ClassificationTask()
        seconds["data"], report = timed(lambda: task.check_dataset(root, config))
        seconds["training"], result = timed(lambda: fit(task, root, out, config))
        model, _, _ = load_best_classifier(result.checkpoint_best)
        example = torch.rand(1, 3, config.image_size, config.image_size)
        exports: dict[str, Any] = {}
        for name, export in (("onnx", onnx_file), ("torchscript", torchscript_file)):
            try:
                took, path = timed(lambda export=export: export(model, example, out))
                exports[name] = {"seconds": round(took, 1), "bytes": path.stat().st_size}
            except Exception as error:
                exports[name] = {"error": f"{type(error).__name__}: {error}"}
        history = result.history
        measured = json.loads((out / "metrics.json").read_text())
    return {
        "images": sizes.training_images,
        "image_size": sizes.training_image_size,
        "epochs": len(history),
        "architecture": sizes.training_architecture,
        "precision": measured["compute"]["precision"],
        "decoded_by_torchvision": measured["dataset"]["decoded_by_torchvision"],
        "cache": measured["dataset"]["cache"],
        "seconds": {name: round(value, 1) for name, value in seconds.items()},
        "train_images_per_s_median": round(statistics.median(r.images_per_s for r in history), 1),
        "best_val_accuracy": result.best_val_accuracy,
        "dataset_warnings": len(report.warnings),
        "exports": exports,
        "targets": {"training_seconds": 60, "all_seconds": 120},
    }


def onnx_file(model: torch.nn.Module, example: torch.Tensor, out: Path) -> Path:
    path = out / "model.onnx"
    torch.onnx.export(model, (example,), str(path), dynamo=True)
    return path


def torchscript_file(model: torch.nn.Module, example: torch.Tensor, out: Path) -> Path:
    path = out / "model.pt"
    with warnings.catch_warnings():  # torch.jit's deprecation notice, once per call
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.trace(model, example).save(str(path))
    return path


# -- timing --------------------------------------------------------------------------------


def timed(work: Any) -> tuple[float, Any]:
    began = time.perf_counter()
    value = work()
    return time.perf_counter() - began, value


STEPS = {
    "throughput": throughput,
    "decode": decode,
    "training": training,
    "compiled": compiled,
}

if __name__ == "__main__":
    main()
