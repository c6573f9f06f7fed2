"""Classification metrics from a confusion matrix, class weights from class sizes, and the
per-class decision thresholds a classifier ships with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from shared.limits import AUTO_BALANCE_RATIO, ClassWeighting


@dataclass(frozen=True)
class ClassMetrics:
    """Precision, recall and F1 of one class; support is its number of validation images."""

    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ClassificationReport:
    """Per-class metrics, macro averages and the confusion matrix (rows true, columns predicted)."""

    accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    per_class: tuple[ClassMetrics, ...]
    confusion_matrix: tuple[tuple[int, ...], ...]
    # Validation: each class's decision threshold (class_thresholds). Test: the precision
    # the top label reaches on these images where its score clears its threshold, and how
    # many images cleared it (None: no image did, or the class has no threshold).
    class_thresholds: tuple[float | None, ...] | None = None
    precision_at_thresholds: tuple[float | None, ...] | None = None
    cleared_thresholds: tuple[int, ...] | None = None


def confusion_update(
    confusion: torch.Tensor, labels: torch.Tensor, predictions: torch.Tensor
) -> None:
    """Add a batch to a (C, C) confusion matrix in place, on its device (no host sync)."""
    classes = confusion.shape[0]
    counts = torch.bincount(labels * classes + predictions, minlength=classes * classes)
    confusion += counts.view(classes, classes)


def classification_report(
    confusion: torch.Tensor, class_names: tuple[str, ...] | list[str]
) -> ClassificationReport:
    """Precision/recall/F1 per class from a confusion matrix; an empty ratio counts as 0."""
    matrix = confusion.to("cpu", torch.float64)
    true_positive = matrix.diagonal()
    predicted = matrix.sum(dim=0)
    actual = matrix.sum(dim=1)
    precision = _ratio(true_positive, predicted)
    recall = _ratio(true_positive, actual)
    f1 = _ratio(2 * precision * recall, precision + recall)
    per_class = tuple(
        ClassMetrics(name, float(p), float(r), float(f), int(n))
        for name, p, r, f, n in zip(class_names, precision, recall, f1, actual, strict=True)
    )
    total = float(matrix.sum())
    return ClassificationReport(
        accuracy=float(true_positive.sum()) / total if total else 0.0,
        macro_precision=float(precision.mean()),
        macro_recall=float(recall.mean()),
        macro_f1=float(f1.mean()),
        per_class=per_class,
        confusion_matrix=tuple(tuple(int(v) for v in row) for row in confusion.tolist()),
    )


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1e-12), 0.0)


def class_weights(
    counts: Sequence[int], weighting: ClassWeighting
) -> tuple[list[float] | None, str]:
    """The loss weight of each class, and what was applied ("none" or "balanced").

    balanced: total / (classes × count), so every class weighs as much in the loss as if the
    classes were equal in size; auto: balanced when the largest class has at least
    AUTO_BALANCE_RATIO times the images of the smallest.
    """
    if weighting == "auto":
        weighting = "balanced" if max(counts) >= AUTO_BALANCE_RATIO * min(counts) else "none"
    if weighting == "none":
        return None, "none"
    total = sum(counts)
    return [total / (len(counts) * count) for count in counts], "balanced"


# A threshold rests on at least this many validation images scoring at or above it: one
# right answer (precision 1/1) says nothing about the next photo.
MIN_THRESHOLD_IMAGES = 5


def decision_thresholds(
    scores: torch.Tensor,
    labels: torch.Tensor,
    target: float,
    min_images: int = MIN_THRESHOLD_IMAGES,
) -> tuple[float | None, ...]:
    """Per class, the lowest score at which the class's precision reaches target.

    The rule an app applies: the top label, if its score is at least its class's threshold,
    else "not sure". So for class c, among images whose top label is c, precision(t) is the
    share truly c of those scoring at least t; the threshold is the smallest t (one of the
    scores) with precision(t) ≥ target over at least min_images images, the one that keeps
    the most right answers. None when no t qualifies (or too little is predicted as c).
    """
    top_scores, top = scores.float().max(dim=1)
    thresholds: list[float | None] = []
    for label in range(scores.shape[1]):
        chosen = top == label
        candidates = top_scores[chosen]
        correct = (labels[chosen] == label).double()
        order = torch.argsort(candidates, descending=True, stable=True)
        ranked, hits = candidates[order], correct[order].cumsum(0)
        kept = torch.arange(1, len(ranked) + 1, dtype=torch.float64)
        precision = hits / kept
        # Only where the next score is lower: a threshold keeps every image of its score.
        last_of_tie = torch.ones(len(ranked), dtype=torch.bool)
        last_of_tie[:-1] = ranked[1:] < ranked[:-1]
        qualifies = last_of_tie & (precision >= target - 1e-12) & (kept >= min_images)
        reaching = torch.nonzero(qualifies).flatten()
        thresholds.append(float(ranked[reaching[-1]]) if len(reaching) else None)
    return tuple(thresholds)


def precision_at_thresholds(
    scores: torch.Tensor, labels: torch.Tensor, thresholds: Sequence[float | None]
) -> tuple[tuple[float | None, ...], tuple[int, ...]]:
    """Per class, the precision of the rule on these images, and how many cleared it."""
    top_scores, top = scores.float().max(dim=1)
    precisions: list[float | None] = []
    cleared: list[int] = []
    for label, threshold in enumerate(thresholds):
        if threshold is None:
            precisions.append(None)
            cleared.append(0)
            continue
        kept = (top == label) & (top_scores >= threshold)
        count = int(kept.sum())
        precisions.append(float((labels[kept] == label).double().mean()) if count else None)
        cleared.append(count)
    return tuple(precisions), tuple(cleared)
