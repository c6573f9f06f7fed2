"""What the dataset check costs on top of the decode training needs anyway.

    python -m bench.dataset_check [--images 1000] [--repeats 3] [--threads 2]

Generates JPEG photos of 1024×768 (noise and shapes, quality 90), then times, alternating
and repeated (the median is printed), on the same files:
- decode: what training does without a check, each file decoded (JPEG DCT scaling to
  ≥ 224 px) and its 224 px eval view stored in a cache;
- check: the same decode and cache fill inside the dataset check with its duplicate hashes
  (SHA-256 of the pixels, a 256-bit pHash) and the duplicate grouping.
The target (issue 17) is check / decode ≤ 1.15 in wall time; the CPU seconds of both
threads are printed beside it because they move less with a noisy neighbour.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchvision.transforms.v2 import functional as F

from shared.dataset_check import duplicate_groups, scan
from shared.images import DecodedImage, centre_view

SIZE = (1024, 768)
IMAGE_SIZE = 224


def centre(image: Image.Image) -> Image.Image:
    """The classifier's 224 px eval view, which training caches and the check hashes."""
    return centre_view(image, IMAGE_SIZE)


def write_photos(folder: Path, count: int) -> list[Path]:
    """count distinct photo-sized JPEGs: smooth noise and a few filled shapes."""
    rng = random.Random(0)
    noise = np.random.default_rng(0)
    paths = []
    for index in range(count):
        small = noise.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize(SIZE, Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(image)
        for _ in range(4):
            x, y = rng.randint(0, SIZE[0] - 200), rng.randint(0, SIZE[1] - 200)
            side = rng.randint(60, 200)
            colour = tuple(rng.randint(0, 255) for _ in range(3))
            draw.ellipse([x, y, x + side, y + side], fill=colour)
        path = folder / f"photo_{index:05d}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


def timed(paths: list[Path], threads: int, hashes: bool) -> tuple[float, float]:
    """Wall seconds and CPU seconds (all threads) of one pass."""
    cache = torch.empty((len(paths), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)

    def store(row: int, _: DecodedImage, view: Image.Image | None) -> None:
        assert view is not None
        cache[row] = F.pil_to_tensor(view)

    began, began_cpu = time.perf_counter(), time.process_time()
    facts = scan(paths, IMAGE_SIZE, threads, store, hashes=hashes, view=centre)
    if hashes:
        duplicate_groups(facts)
    return time.perf_counter() - began, time.process_time() - began_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2, help="decode threads (2 cores here)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        began = time.perf_counter()
        paths = write_photos(Path(folder), args.images)
        seconds = time.perf_counter() - began
        print(f"generated {len(paths)} JPEGs of {SIZE[0]}×{SIZE[1]} in {seconds:.0f} s")
        timed(paths[:50], args.threads, True)  # warm the file cache and the libraries
        decode, check = [], []
        for _ in range(args.repeats):
            decode.append(timed(paths, args.threads, hashes=False))
            check.append(timed(paths, args.threads, hashes=True))
    per_thousand = 1000 / args.images
    d, c = (statistics.median(wall for wall, _ in runs) for runs in (decode, check))
    d_cpu, c_cpu = (statistics.median(cpu for _, cpu in runs) for runs in (decode, check))
    print(f"threads {args.threads}, {args.repeats} alternating repeats, medians, per 1,000 images:")
    print("                                  wall s    CPU s")
    print(f"  decode + 224 px cache fill     {d * per_thousand:7.2f}  {d_cpu * per_thousand:7.2f}")
    print(f"  the check (hashes, grouping)   {c * per_thousand:7.2f}  {c_cpu * per_thousand:7.2f}")
    print(f"  check / decode                 {c / d:7.3f}  {c_cpu / d_cpu:7.3f}  (target ≤ 1.15)")


if __name__ == "__main__":
    main()
