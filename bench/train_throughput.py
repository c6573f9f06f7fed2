"""Training throughput of the engine against a bare PyTorch loop, in one process.

Both train the same scratch model on the same decoded images with the same batch size,
image size, augmentation work (random resized crop via roi_align, flip, normalisation) and,
on CUDA, autocast in the same precision (`--precision`, the engine's rule: bf16 on compute
capability 8.0+, fp16 with a gradient scaler on 7.x), channels_last and cudnn.benchmark.
Images per second count the training phase from the second epoch on. The two alternate
epoch by epoch (the bare loop's epoch runs inside the engine's epoch callback, outside the
engine's timed phase), so both see the same machine; the ratio is the median of the
per-epoch ratios, which a busy shared machine disturbs far less than a ratio of two runs
minutes apart. The last line is `ratio <engine/bare>`.

    python bench/train_throughput.py                   # CPU-sized defaults, or GPU-sized on CUDA
    python bench/train_throughput.py --architecture resnet50 --image-size 224 --batch-size 256
    python bench/train_throughput.py --precision fp16    # a T4's precision, on any GPU
    python bench/train_throughput.py --compile inductor  # the engine's step compiled
    python bench/train_throughput.py --profile           # then where a step's time goes

With --compile only the engine's training step is compiled (TrainConfig.compile_backend) and
the bare loop stays eager, so the ratio is what compiling gains over the same eager loop
(the eager engine's ratio is ≥ 0.95 of it); the first epoch, which compiles, is not counted.

Imports only torch, torchvision (with its Pillow and NumPy), the engine and the standard
library, so it runs on a GPU host that has nothing else installed (the engine then writes
no plots); tests/worker/engine/test_bare_host.py runs it so.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch.nn import functional as F
from torchvision.io import encode_jpeg, write_file
from torchvision.ops import roi_align

# Run from a checkout, where the engine is not installed as a package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.classification.data import load_dataset
from worker.classification.preprocessing import IMAGENET_MEAN, IMAGENET_STD, decode_image
from worker.classification.task import ClassificationTask
from worker.engine.config import PRECISION_REQUESTS, TrainConfig
from worker.engine.device import AUTOCAST_DTYPES, choose_precision, synchronize
from worker.engine.loop import fit
from worker.engine.results import EpochReport

# (image size, batch size, images) that finish in about a minute on two CPU cores, and
# that keep an H100 busy long enough to measure.
CPU_DEFAULTS = (64, 32, 512)
CUDA_DEFAULTS = (224, 256, 25_600)
DEFAULT_ARCHITECTURE = "mobilenet_v3_large"
DEFAULT_EPOCHS = 10
DEFAULT_CLASSES = 4
# One validation image per class is all the engine needs: the benchmark is about training.
VAL_FRACTION = 0.01
SEED = 0
JPEG_QUALITY = 90
GENERATION_CHUNK = 256
CROP_SCALE = (0.08, 1.0)
CROP_LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))
AUGMENT_RANGE = "augmentation"  # the profiler's name for the step's crop, flip, normalise
# The host waiting for the GPU (a .item(), a copy to the host, an explicit wait).
HOST_SYNCS = frozenset({"cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize"})
PROFILED_STEPS = 10


def main() -> None:
    args = parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    size, batch, images = defaults_for(device)
    image_size = args.image_size or size
    batch_size = args.batch_size or batch
    image_count = args.images or images
    precision = choose_precision(device, args.precision)
    describe(device, args, image_size, batch_size, image_count, precision)

    with tempfile.TemporaryDirectory(prefix="aitrainer-bench-") as scratch:
        dataset_dir = Path(scratch, "dataset")
        started = time.perf_counter()
        write_dataset(dataset_dir, image_count, args.classes, image_size)
        print(f"dataset written in {time.perf_counter() - started:.1f} s", flush=True)
        bare = BareLoop(dataset_dir, args.architecture, image_size, batch_size, device, precision)
        epochs = run_interleaved(dataset_dir, Path(scratch, "run"), args, bare, device)
        if args.profile:
            profile_steps(bare, min(PROFILED_STEPS, bare.count // batch_size))

    measured = epochs[1:]
    engine = [e.engine for e in measured]
    engine_whole = [e.engine_whole for e in measured]
    bare_rates = [e.bare for e in measured]
    print("images/s from epoch 2 on:            median     mean")
    print(f"engine, training phase           {summary(engine)}")
    print(f"engine, whole epoch (+val, ckpt) {summary(engine_whole)}")
    print(f"bare PyTorch loop                {summary(bare_rates)}")
    print(f"ratio {statistics.median(e.engine / e.bare for e in measured):.2f}")


def summary(rates: list[float]) -> str:
    return f"{statistics.median(rates):9.1f} {statistics.fmean(rates):9.1f}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default=DEFAULT_ARCHITECTURE)
    parser.add_argument("--image-size", type=int, help="default 64 on CPU, 224 on CUDA")
    parser.add_argument("--batch-size", type=int, help="default 32 on CPU, 256 on CUDA")
    parser.add_argument("--images", type=int, help="default 512 on CPU, 25600 on CUDA")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="at least 2")
    parser.add_argument("--classes", type=int, default=DEFAULT_CLASSES)
    parser.add_argument("--device", help="cpu or cuda; default: cuda when available")
    parser.add_argument(
        "--precision", default="auto", choices=PRECISION_REQUESTS, help="as AITRAINER_PRECISION"
    )
    parser.add_argument(
        "--compile", metavar="BACKEND", help="torch.compile the engine's step (inductor)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="then profile the bare loop's step (torch.profiler)"
    )
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch is warm-up")
    return args


def defaults_for(device: torch.device) -> tuple[int, int, int]:
    return CUDA_DEFAULTS if device.type == "cuda" else CPU_DEFAULTS


def describe(
    device: torch.device,
    args: argparse.Namespace,
    image_size: int,
    batch: int,
    images: int,
    precision: str,
) -> None:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device {name} ({torch.get_num_threads()} CPU threads), torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}"
    )
    print(
        f"{args.architecture}, {image_size}px, batch {batch}, {images} images in "
        f"{args.classes} classes, {args.epochs} epochs (measured from epoch 2), {precision}, "
        f"engine compiled: {args.compile or 'no'}",
        flush=True,
    )


def write_dataset(root: Path, count: int, classes: int, image_size: int) -> None:
    """count JPEGs in class folders: a class colour, a random gradient and a little noise."""
    generator = torch.Generator().manual_seed(0)
    colours = torch.rand(classes, 3, 1, 1, generator=generator) * 200 + 28
    for label in range(classes):
        (root / f"class_{label}").mkdir(parents=True)
    ramp = torch.linspace(-1, 1, image_size)
    with ThreadPoolExecutor() as pool:
        for start in range(0, count, GENERATION_CHUNK):
            labels = torch.arange(start, min(count, start + GENERATION_CHUNK)) % classes
            slope = torch.rand(len(labels), 2, 1, 1, 1, generator=generator) * 60 - 30
            gradient = slope[:, 0] * ramp.view(1, 1, 1, -1) + slope[:, 1] * ramp.view(1, 1, -1, 1)
            noise = torch.randn(len(labels), 3, image_size, image_size, generator=generator) * 8
            pixels = (colours[labels] + gradient + noise).clamp(0, 255).to(torch.uint8)
            encoded = encode_jpeg(list(pixels), quality=JPEG_QUALITY)
            paths = [
                str(root / f"class_{int(label)}" / f"{start + i:06d}.jpg")
                for i, label in enumerate(labels)
            ]
            list(pool.map(write_file, paths, encoded))


@dataclass(frozen=True)
class EpochRates:
    """Images/s of one epoch: engine training phase, engine whole epoch, bare loop."""

    engine: float
    engine_whole: float
    bare: float


def run_interleaved(
    dataset_dir: Path,
    out_dir: Path,
    args: argparse.Namespace,
    bare: BareLoop,
    device: torch.device,
) -> list[EpochRates]:
    """Train with the engine; after each of its epochs, run one bare epoch in the callback."""
    rates: list[EpochRates] = []
    epoch_started = time.perf_counter()

    def after_engine_epoch(report: EpochReport) -> None:
        nonlocal epoch_started
        # Everything since the last callback returned: train, validate, checkpoint, metrics.
        whole = report.train_images / (time.perf_counter() - epoch_started)
        bare_rate = bare.epoch()
        rates.append(EpochRates(report.images_per_s, whole, bare_rate))
        print(
            f"  epoch {report.epoch}: engine {report.images_per_s:9.1f} images/s "
            f"(whole epoch {whole:9.1f}), bare {bare_rate:9.1f} images/s",
            flush=True,
        )
        epoch_started = time.perf_counter()

    config = TrainConfig(
        epochs=args.epochs,
        image_size=bare.image_size,
        batch_size=bare.batch_size,
        step_size=args.epochs,
        architecture=args.architecture,
        pretrained="scratch",
        device=str(device),
        precision=bare.precision,
        val_fraction=VAL_FRACTION,
        seed=SEED,
        compile_backend=args.compile,
    )
    fit(ClassificationTask(), dataset_dir, out_dir, config, on_epoch=after_engine_epoch)
    return rates


class BareLoop:
    """The textbook loop on the engine's training images, decoded the same way."""

    def __init__(
        self,
        dataset_dir: Path,
        architecture: str,
        image_size: int,
        batch_size: int,
        device: torch.device,
        precision: str,
    ):
        split = load_dataset(dataset_dir, VAL_FRACTION)
        with ThreadPoolExecutor() as pool:
            decoded = list(pool.map(lambda f: decode_image(f.path, image_size), split.train))
        self.image_size = image_size
        self.batch_size = batch_size
        self.device = device
        self.cuda = device.type == "cuda"
        self.precision = precision
        self.autocast_dtype = AUTOCAST_DTYPES.get(precision)
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.images = torch.stack(decoded).to(device)
        self.labels = torch.tensor([f.label for f in split.train], device=device)
        # Seeded like the engine, so both start from the same initial weights.
        torch.manual_seed(SEED)
        self.model = torchvision.models.get_model(
            architecture, weights=None, num_classes=len(split.class_names)
        ).to(device)
        if self.cuda:
            self.model = self.model.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1) * 255
        self.memory_format = torch.channels_last if self.cuda else torch.contiguous_format
        total = len(self.labels)
        self.count = total - (total % batch_size == 1)  # no batch of one, as the engine

    def epoch(self) -> float:
        """One epoch; returns its images/s."""
        device = self.device
        synchronize(device)
        started = time.perf_counter()
        self.model.train()
        loss_sum = torch.zeros((), device=device)
        order = torch.randperm(len(self.labels), device=device)[: self.count]
        for index in order.split(self.batch_size):
            loss_sum += self.step(index) * len(index)
        loss_sum.item()  # waits for the GPU, like the engine's end-of-epoch loss
        return self.count / (time.perf_counter() - started)

    def step(self, index: torch.Tensor) -> torch.Tensor:
        """One training step on the images at index; returns its loss (not waited for)."""
        size, device, n = self.image_size, self.device, len(index)
        with torch.profiler.record_function(AUGMENT_RANGE):
            # RandomResizedCrop in one draw per image (the engine's takes the first of ten).
            draw = torch.rand(n, 5, device=device)
            area = CROP_SCALE[0] + (CROP_SCALE[1] - CROP_SCALE[0]) * draw[:, 0]
            log_ratio = CROP_LOG_RATIO[0] + (CROP_LOG_RATIO[1] - CROP_LOG_RATIO[0]) * draw[:, 1]
            ratio = torch.exp(log_ratio)
            width = (size * torch.sqrt(area * ratio)).clamp(max=size)
            height = (size * torch.sqrt(area / ratio)).clamp(max=size)
            left = draw[:, 2] * (size - width)
            top = draw[:, 3] * (size - height)
            rows = torch.arange(n, device=device, dtype=left.dtype)
            boxes = torch.stack([rows, left, top, left + width, top + height], dim=1)
            crops = roi_align(self.images[index].float(), boxes, size, 1.0, -1, True)
            crops = torch.where((draw[:, 4] < 0.5).view(-1, 1, 1, 1), crops.flip(3), crops)
            inputs = ((crops - self.mean) / self.std).contiguous(memory_format=self.memory_format)
        dtype, reduced = self.autocast_dtype, self.autocast_dtype is not None
        with torch.autocast(device.type, dtype=dtype, enabled=reduced):
            loss = F.cross_entropy(self.model(inputs), self.labels[index])
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach()


def profile_steps(bare: BareLoop, steps: int) -> None:
    """Where a training step's time goes, from torch.profiler over `steps` bare-loop steps
    (the engine's step does the same work): the share of the wall time the GPU computes
    (low: the host is the limit, launching kernels or waiting), the host's waits for the
    GPU per step, the augmentation's share of the GPU time, and the costliest kernels."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if bare.cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    order = torch.randperm(len(bare.labels), device=bare.device)[: steps * bare.batch_size]
    bare.model.train()
    bare.step(order[: bare.batch_size])  # warm: the profiler's first step costs extra
    synchronize(bare.device)
    with torch.profiler.profile(activities=activities) as profiler:
        started = time.perf_counter()
        for index in order.split(bare.batch_size):
            bare.step(index)
        synchronize(bare.device)
        wall = time.perf_counter() - started
    events = profiler.key_averages()
    busy = sum(event.self_device_time_total for event in events) / 1e6
    augment = sum(e.device_time_total for e in events if e.key == AUGMENT_RANGE) / 1e6
    syncs = sum(e.count for e in events if e.key in HOST_SYNCS)
    on_gpu = [event for event in events if event.self_device_time_total > 0]
    top = sorted(on_gpu, key=lambda event: event.self_device_time_total, reverse=True)[:5]
    kernels = "; ".join(f"{e.key[:60]} {e.self_device_time_total / 1e6 / wall:.0%}" for e in top)
    print(
        f"profile {steps} steps: {wall / steps * 1000:.1f} ms/step, GPU busy {busy / wall:.0%}, "
        f"augmentation {augment / max(busy, 1e-9):.0%} of GPU time, "
        f"{syncs / steps:.1f} host syncs/step; top kernels: {kernels or 'none (CPU)'}"
    )


if __name__ == "__main__":
    main()
