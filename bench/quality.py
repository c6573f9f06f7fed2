"""Held-out accuracy of our training recipes against a bare PyTorch loop, on the same data.

For each set (dev/sample_quality.py: digits, shapes, textures) 200 images are held out by a
stratified split (seed 0); the rest is a class-folder dataset. Our engine trains with each
augmentation preset and with auto; a bare PyTorch loop (twenty lines: SGD + StepLR,
torchvision's per-image RandomResizedCrop and flip) trains with the matching augmentation.
Each is scored once on the held-out images, averaged over seeds; the last table's ratio is
ours / the best bare loop. Detection (SSDlite, 300 generated images) compares the recipe
before issue 14 ("before": standard augmentation, no weight average, no precise batch norm)
with `standard` and `auto` under today's recipe. CPU-sized by default; `--gpu` sizes it for
a GPU.

    python bench/quality.py                       # 3 sets × (4 ours + 3 bare) × 3 seeds
    python bench/quality.py --sets digits --seeds 1 --presets auto
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from PIL import Image
from torch.nn import functional as F
from torchvision.models import get_model
from torchvision.transforms import v2

# Run from a checkout, where the engine is not installed as a package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from torchvision.ops import box_iou

from dev.sample_detection import render_sample, write_detection_dataset
from dev.sample_quality import quality_set
from worker.classification.augment import CROP_SCALES
from worker.classification.preprocessing import IMAGENET_MEAN, IMAGENET_STD, decode_image
from worker.classification.task import ClassificationTask, load_best_classifier
from worker.detection.metrics import DetectionEvaluator
from worker.detection.task import DetectionTask
from worker.engine.config import TrainConfig
from worker.engine.loop import fit

HELD_OUT = 200
SETS = ("digits", "shapes", "textures")
PRESETS = ("none", "light", "standard", "auto")
# The request of issue 14: what a user of the seed's API sends for digits.
CPU_CONFIG = TrainConfig(
    architecture="resnet18",
    epochs=10,
    image_size=32,
    batch_size=32,
    learning_rate=0.05,
    step_size=7,
    gamma=0.1,
    pretrained="scratch",
)
GPU_CONFIG = replace(CPU_CONFIG, image_size=64, batch_size=36)
# Detection: SSDlite on 300 generated images (two classes), the same epochs for each preset.
DETECTION_CONFIG = TrainConfig(
    task="detection",
    architecture="ssdlite320_mobilenet_v3_large",
    epochs=20,
    image_size=64,
    batch_size=16,
    learning_rate=0.01,
    step_size=15,
    gamma=0.1,
    pretrained="scratch",
)
DETECTION_IMAGES = 300
DETECTION_HELD_OUT = 100
SCORE_THRESHOLD = 0.25  # the exported detectors' (manifest thresholds.score_threshold)


@dataclass(frozen=True)
class Score:
    accuracy: float
    seconds: float


def split(
    items: list[tuple[str, Image.Image]], seed: int = 0, held_out: int = HELD_OUT
) -> tuple[list, list]:
    """A stratified split: held_out images set aside in proportion to each class."""
    by_class: dict[str, list[Image.Image]] = defaultdict(list)
    for name, image in items:
        by_class[name].append(image)
    rng = random.Random(seed)
    held, kept = [], []
    for name in sorted(by_class):
        images = by_class[name][:]
        rng.shuffle(images)
        count = round(held_out * len(images) / len(items))
        held += [(name, image) for image in images[:count]]
        kept += [(name, image) for image in images[count:]]
    return kept, held


def write_folder(root: Path, items: list[tuple[str, Image.Image]]) -> list[Path]:
    paths = []
    for index, (name, image) in enumerate(items):
        path = root / name / f"{index:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
        paths.append(path)
    return paths


def held_out_tensors(paths: list[Path], classes: list[str], size: int) -> tuple:
    images = torch.stack([decode_image(path, size) for path in paths])
    labels = torch.tensor([classes.index(path.parent.name) for path in paths])
    return images, labels


def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Eval-mode accuracy on uint8 eval views, normalised as every export does."""
    normalise = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    with torch.inference_mode():
        logits = model.eval()(normalise(images.float() / 255))
    return float((logits.argmax(1) == labels).float().mean())


def ours(train_dir: Path, out: Path, config: TrainConfig, held: tuple) -> Score:
    started = time.perf_counter()
    result = fit(ClassificationTask(), train_dir, out, config)
    seconds = time.perf_counter() - started
    model, _, _ = load_best_classifier(result.checkpoint_best)
    return Score(accuracy(model, *held), seconds)


def bare(train_dir: Path, config: TrainConfig, preset: str, held: tuple) -> Score:
    """Twenty lines of PyTorch: the reference every recipe is compared with."""
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    classes = sorted(p.name for p in train_dir.iterdir())
    paths = sorted(train_dir.glob("*/*.png"))
    images = torch.stack([decode_image(path, config.image_size) for path in paths])
    labels = torch.tensor([classes.index(path.parent.name) for path in paths])
    scale = CROP_SCALES[preset]
    steps = [v2.RandomResizedCrop(config.image_size, scale, antialias=True)] if scale else []
    steps += [v2.RandomHorizontalFlip()] if preset != "none" else []
    augment = v2.Compose(steps) if steps else v2.Identity()
    normalise = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    model = get_model(config.architecture, weights=None, num_classes=len(classes))
    optimizer = torch.optim.SGD(model.parameters(), lr=config.learning_rate, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, config.step_size, config.gamma)
    for _ in range(config.epochs):
        model.train()
        for batch in torch.randperm(len(images)).split(config.batch_size):
            if len(batch) < 2:
                continue
            inputs = torch.stack([augment(image) for image in images[batch]])
            loss = F.cross_entropy(model(normalise(inputs.float() / 255)), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
    return Score(accuracy(model, *held), time.perf_counter() - started)


# Before issue 14: the standard augmentation, no weight average, no precise batch norm.
BEFORE = {"augmentation": "standard", "ema": False, "precise_batch_norm": False, "warmup": False}


def detection(config: TrainConfig, preset: str, seed: int, scratch: Path) -> dict[str, float]:
    """Held-out mAP@0.5 and the share of objects found at the export's score threshold.

    preset "before" is the engine's recipe before issue 14 (BEFORE), the others are presets
    with today's recipe around them."""
    names = ("square", "bar")
    data = scratch / "detection"
    if not data.exists():
        write_detection_dataset(data, "coco", DETECTION_IMAGES, config.image_size, names)
    started = time.perf_counter()
    recipe = BEFORE if preset == "before" else {"augmentation": preset}
    run = replace(config, seed=seed, **recipe)  # type: ignore[arg-type]
    result = fit(DetectionTask(), data, scratch / f"det-{preset}-{seed}", run)
    seconds = time.perf_counter() - started
    model, _, _ = DetectionTask().load_best(result.checkpoint_best, None)
    evaluator = DetectionEvaluator(len(names), names)
    found = total = 0
    for index in range(DETECTION_HELD_OUT):  # another seed: images training never saw
        image, truth = render_sample(index, config.image_size, names, seed=1)
        pixels = v2.functional.pil_to_tensor(image).float() / 255
        with torch.inference_mode():
            (prediction,) = model([pixels])
        prediction = {**prediction, "labels": prediction["labels"] - 1}
        target = {
            "boxes": torch.tensor(truth.boxes).reshape(-1, 4),
            "labels": torch.tensor(truth.labels, dtype=torch.int64),
        }
        evaluator.add([prediction], [target])
        confident = prediction["scores"] >= SCORE_THRESHOLD
        total += len(truth.labels)
        if len(truth.labels) and confident.any():
            iou = box_iou(target["boxes"], prediction["boxes"][confident])
            same = target["labels"][:, None] == prediction["labels"][confident][None, :]
            found += int(((iou >= 0.5) & same).any(dim=1).sum())
    return {
        "map_50": evaluator.report().map_50,
        "found": found / max(1, total),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--no-bare", action="store_true", help="only our engine")
    parser.add_argument("--no-detection", action="store_true", help="skip the detection runs")
    parser.add_argument("--only-detection", action="store_true", help="only the detection runs")
    parser.add_argument("--gpu", action="store_true", help="64 px, on CUDA")
    parser.add_argument("--epochs", type=int, help="default 10")
    parser.add_argument("--architecture", help="default resnet18")
    parser.add_argument(
        "--recipe",
        nargs="*",
        default=[],
        help="engine overrides, e.g. ema=false warmup=false label_smoothing=0.1",
    )
    args = parser.parse_args()
    config = GPU_CONFIG if args.gpu else CPU_CONFIG
    overrides: dict[str, object] = {}
    for item in args.recipe:
        key, _, value = item.partition("=")
        overrides[key] = parse_value(value)
    if args.epochs:
        overrides["epochs"] = args.epochs
    if args.architecture:
        overrides["architecture"] = args.architecture
    config = replace(config, device="cuda" if args.gpu else "cpu", **overrides)
    print(f"config: {config}", flush=True)
    table: dict[tuple[str, str], list[Score]] = defaultdict(list)
    for set_name in [] if args.only_detection else args.sets:
        kept, held = split(quality_set(set_name, config.image_size))
        with tempfile.TemporaryDirectory(prefix=f"quality-{set_name}-") as scratch:
            train_dir = Path(scratch, "train")
            write_folder(train_dir, kept)
            held_paths = write_folder(Path(scratch, "held"), held)
            classes = sorted(p.name for p in train_dir.iterdir())
            held_data = held_out_tensors(held_paths, classes, config.image_size)
            for seed in range(args.seeds):
                for preset in args.presets:
                    run = replace(config, augmentation=preset, seed=seed)
                    out = Path(scratch, f"out-{preset}-{seed}")
                    score = ours(train_dir, out, run, held_data)
                    table[(set_name, f"ours {preset}")].append(score)
                    print(f"{set_name} seed {seed} ours {preset}: {score}", flush=True)
                    if args.no_bare or preset == "auto":
                        continue
                    score = bare(train_dir, replace(config, seed=seed), preset, held_data)
                    table[(set_name, f"bare {preset}")].append(score)
                    print(f"{set_name} seed {seed} bare {preset}: {score}", flush=True)
    report(table, [] if args.only_detection else args.sets)
    if not args.no_detection:
        detection_report(args, replace(DETECTION_CONFIG, device=config.device))


def detection_report(args: argparse.Namespace, config: TrainConfig) -> None:
    print(f"\ndetection: {config}")
    results: dict[str, list[dict[str, float]]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="quality-detection-") as scratch:
        for seed in range(args.seeds):
            for preset in ("before", "standard", "auto"):
                measured = detection(config, preset, seed, Path(scratch))
                results[preset].append(measured)
                print(f"detection seed {seed} {preset}: {measured}", flush=True)
    print("recipe     held-out mAP@0.5   objects found at 0.25   seconds")
    for preset, runs in results.items():
        mean = {key: statistics.fmean(run[key] for run in runs) for key in runs[0]}
        print(
            f"{preset:<10} {mean['map_50']:.3f}              {mean['found']:.3f}"
            f"                  {mean['seconds']:.1f}"
        )
    means = {name: statistics.fmean(r["map_50"] for r in runs) for name, runs in results.items()}
    for reference in ("before", "standard"):
        ratio = means["auto"] / max(means[reference], 1e-9)
        print(f"ratio auto/{reference} mAP@0.5: {ratio:.2f}")


def parse_value(text: str) -> object:
    """A --recipe value: true/false, an int, a float, else the text."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def report(table: dict[tuple[str, str], list[Score]], sets: list[str]) -> None:
    print("\nset       trainer          held-out accuracy (mean ± sd)   seconds")
    for set_name in sets:
        rows = {name: scores for (s, name), scores in table.items() if s == set_name}
        for name, scores in rows.items():
            values = [score.accuracy for score in scores]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            seconds = statistics.fmean(score.seconds for score in scores)
            print(
                f"{set_name:<9} {name:<16} {statistics.fmean(values):.3f} ± {spread:.3f}"
                f"                {seconds:6.1f}"
            )
        bares = [statistics.fmean(s.accuracy for s in v) for k, v in rows.items() if "bare" in k]
        mine = {k: statistics.fmean(s.accuracy for s in v) for k, v in rows.items() if "ours" in k}
        if bares:
            best = max(bares)
            for name, value in mine.items():
                print(f"{set_name:<9} ratio {name}/best bare: {value / best:.3f}")


if __name__ == "__main__":
    main()
