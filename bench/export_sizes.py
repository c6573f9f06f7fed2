"""Export time and file size per format for one architecture at a real image size.

Builds the classifier with random weights (file sizes and export times do not depend on
training), exports every format through worker.export.export_all with its checks, and
prints one row per format. Usage:
    python bench/export_sizes.py [--architecture mobilenet_v3_large] [--image-size 224]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch
from torchvision.models import get_model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from shared.contract import CLASSIFICATION_ARCHITECTURES
from worker.export import FORMATS, ExportFailed, Manifest, export_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default=CLASSIFICATION_ARCHITECTURES[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--images", type=int, default=8, help="check images")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--out", type=Path, help="keep the exports here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    torch.manual_seed(0)
    model = get_model(args.architecture, weights=None, num_classes=args.classes).eval()
    images = torch.rand(args.images, 3, args.image_size, args.image_size)
    labels = [f"class_{index}" for index in range(args.classes)]
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.out or Path(tmp)
        started = time.perf_counter()
        try:
            manifest = export_all(
                model=model,
                class_names=labels,
                image_size=args.image_size,
                architecture=args.architecture,
                formats=args.formats.split(","),
                check_images=images,
                out_dir=out_dir,
                metrics={},
                model_version="bench/export@now",
            )
        except ExportFailed as failure:
            manifest = failure.manifest
        total = time.perf_counter() - started
        report(manifest, args, total)


def report(manifest: Manifest, args: argparse.Namespace, total: float) -> None:
    sizes = {entry.name: entry.size_bytes for entry in manifest.files}
    print(
        f"{args.architecture} at {args.image_size}px, {args.classes} classes, "
        f"{args.images} check images, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"{'format':<14}{'export s':>9}{'check s':>9}  {'files (MB)':<44}check")
    for name, result in manifest.formats.items():
        files = ", ".join(f"{file} {sizes.get(file, 0) / 1e6:.2f}" for file in result.files)
        summary = result.check.summary if result.check else (result.error or "")
        print(
            f"{name:<14}{result.export_seconds or 0:>9.1f}{result.check_seconds or 0:>9.1f}  "
            f"{files or '-':<44}{'ok' if result.status == 'passed' else 'FAILED'}: {summary}"
        )
    print(f"total {total:.1f}s (imports included)")


if __name__ == "__main__":
    main()
