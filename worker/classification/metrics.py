"""Classification metrics from a confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
