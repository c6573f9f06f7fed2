"""Class weighting on an imbalanced set, and what the shipped decision thresholds deliver.

1. Imbalance: scikit-learn's digits with the training images of classes 0–4 cut to 10 %
   (the held-out images stay balanced). Our engine trains with class_weighting none,
   balanced and auto; each run is scored once on the held-out images: macro recall (the
   mean of the per-class recalls, what imbalance hurts) and the recall of the cut classes.
2. Thresholds: digits as they are, trained once per seed; each class's shipped threshold
   (precision target 0.9 on validation) is applied to held-out images the run never saw:
   the precision each class reaches there (goal: at least the target − 0.05 where at least
   20 held-out images cleared the threshold), and the share answered (not "not sure").

    python bench/honest_training.py                 # both, 3 seeds
    python bench/honest_training.py --seeds 1 --only imbalance
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from torchvision.transforms import v2

# Run from a checkout, where the engine is not installed as a package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.quality import CPU_CONFIG, held_out_tensors, split, write_folder
from dev.sample_quality import quality_set
from worker.classification.metrics import precision_at_thresholds
from worker.classification.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from worker.classification.task import ClassificationTask, load_best_classifier
from worker.engine.config import TrainConfig
from worker.engine.loop import fit

CUT_CLASSES = ("zero", "one", "two", "three", "four")
KEPT_SHARE = 0.1
WEIGHTINGS = ("none", "balanced", "auto")
TARGET = 0.9
TOLERANCE = 0.05
MIN_SUPPORT = 20


def probabilities(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Eval-mode softmax on uint8 eval views, normalised as every export does."""
    normalise = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    with torch.inference_mode():
        return model.eval()(normalise(images.float() / 255)).softmax(dim=1)


def recalls(scores: torch.Tensor, labels: torch.Tensor, classes: int) -> list[float]:
    predicted = scores.argmax(dim=1)
    return [float((predicted[labels == c] == c).float().mean()) for c in range(classes)]


def written(
    scratch: Path, train: list, held: list, config: TrainConfig
) -> tuple[Path, list[str], torch.Tensor, torch.Tensor]:
    """The training folder, its classes, and the held-out images and labels as tensors."""
    train_dir = scratch / "train"
    write_folder(train_dir, train)
    classes = sorted(p.name for p in train_dir.iterdir())
    images, labels = held_out_tensors(
        write_folder(scratch / "held", held), classes, config.image_size
    )
    return train_dir, classes, images, labels


def trained(
    train_dir: Path, out: Path, config: TrainConfig
) -> tuple[torch.nn.Module, object, float]:
    started = time.perf_counter()
    result = fit(ClassificationTask(), train_dir, out, config)
    model, _, _ = load_best_classifier(result.checkpoint_best)
    return model, result.report, time.perf_counter() - started


def imbalance(config: TrainConfig, seeds: int) -> None:
    kept, held = split(quality_set("digits", config.image_size))
    by_class: dict[str, list] = {}
    for name, image in kept:
        by_class.setdefault(name, []).append((name, image))
    reduced = []
    for name, members in by_class.items():
        reduced += members[: round(KEPT_SHARE * len(members))] if name in CUT_CLASSES else members
    counts = {name: sum(1 for n, _ in reduced if n == name) for name in sorted(by_class)}
    print(f"imbalanced digits: training images per class: {counts}")
    results: dict[str, list[tuple[float, float, float]]] = {w: [] for w in WEIGHTINGS}
    with tempfile.TemporaryDirectory(prefix="imbalance-") as scratch:
        train_dir, classes, images, labels = written(Path(scratch), reduced, held, config)
        cut_labels = [classes.index(name) for name in CUT_CLASSES]
        for seed in range(seeds):
            for weighting in WEIGHTINGS:
                run = replace(config, seed=seed, class_weighting=weighting)  # type: ignore[arg-type]
                model, _, seconds = trained(train_dir, Path(scratch, f"{weighting}-{seed}"), run)
                per_class = recalls(probabilities(model, images), labels, len(classes))
                macro = statistics.fmean(per_class)
                cut_recall = statistics.fmean(per_class[c] for c in cut_labels)
                results[weighting].append((macro, cut_recall, seconds))
                print(
                    f"seed {seed} {weighting}: macro recall {macro:.3f}, "
                    f"classes 0–4 {cut_recall:.3f}, {seconds:.0f} s",
                    flush=True,
                )
    print("\nclass_weighting   held-out macro recall   recall of classes 0–4   seconds")
    for weighting, runs in results.items():
        macros = [r[0] for r in runs]
        spread = statistics.stdev(macros) if len(macros) > 1 else 0.0
        print(
            f"{weighting:<17} {statistics.fmean(macros):.3f} ± {spread:.3f}           "
            f"{statistics.fmean(r[1] for r in runs):.3f}                   "
            f"{statistics.fmean(r[2] for r in runs):.0f}"
        )
    none = statistics.fmean(r[0] for r in results["none"])
    for weighting in ("balanced", "auto"):
        ratio = statistics.fmean(r[0] for r in results[weighting]) / max(none, 1e-9)
        print(f"ratio {weighting}/none macro recall: {ratio:.3f}")


def thresholds(config: TrainConfig, seeds: int) -> None:
    # 400 held out: 40 per class, enough to measure a precision near 0.9 per class.
    items = quality_set("digits", config.image_size)
    kept, held = split(items, held_out=400)
    with tempfile.TemporaryDirectory(prefix="thresholds-") as scratch:
        train_dir, classes, images, labels = written(Path(scratch), kept, held, config)
        print(f"\nthresholds: target precision {TARGET} on validation, {len(held)} held-out images")
        misses = 0
        for seed in range(seeds):
            run = replace(config, seed=seed, threshold_precision=TARGET)
            model, report, _ = trained(train_dir, Path(scratch, f"run-{seed}"), run)
            shipped = report.class_thresholds  # type: ignore[attr-defined]
            scores = probabilities(model, images)
            precision, cleared = precision_at_thresholds(scores, labels, shipped)
            answered = sum(cleared) / len(labels)
            everything = float((scores.argmax(1) == labels).float().mean())
            print(
                f"seed {seed}: {answered:.1%} of held-out images answered; top-1 accuracy "
                f"of all {everything:.3f}",
                flush=True,
            )
            print("  class  threshold  held-out precision  answered  support")
            for index, name in enumerate(classes):
                support = int((labels == index).sum())
                value = "—" if shipped[index] is None else f"{shipped[index]:.3f}"
                measured = precision[index]
                reached = "—" if measured is None else f"{measured:.3f}"
                # Judged where enough held-out images cleared the threshold to measure it.
                ok = (
                    measured is None
                    or measured >= TARGET - TOLERANCE
                    or cleared[index] < MIN_SUPPORT
                )
                misses += not ok
                note = "" if ok else "  below goal"
                print(f"  {name:<6} {value:<10} {reached:<19} {cleared[index]:<9} {support}{note}")
        print(f"classes below target − {TOLERANCE} (≥ {MIN_SUPPORT} answered): {misses}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", choices=("imbalance", "thresholds"))
    args = parser.parse_args()
    config = replace(CPU_CONFIG, device="cpu")
    print(f"config: {config}", flush=True)
    if args.only != "thresholds":
        imbalance(config, args.seeds)
    if args.only != "imbalance":
        thresholds(config, args.seeds)


if __name__ == "__main__":
    main()
