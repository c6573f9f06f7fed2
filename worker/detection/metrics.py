"""COCO-style box mAP for object detection, in PyTorch on the CPU.

Semantics (pycocotools' ``COCOeval`` for boxes, without crowd boxes or area ranges):

- Labels are 0-based class indices in predictions and targets alike; a detection can
  only match a ground-truth box of its own class.
- Per image and class, detections are sorted by score (descending, stable: equal scores
  keep their input order) and only the top ``max_detections`` are kept. The cap is per
  image *and class*, as in COCO (``maxDets``), not over all classes of an image.
- Matching is greedy per image and IoU threshold: in score order, a detection takes the
  not yet matched ground-truth box of its class with the highest IoU, provided that IoU is
  ≥ the threshold (COCO skips a box only when its IoU is below the threshold, so equality
  matches); among equal IoUs the box given first wins. Unmatched detections are false
  positives, so a second detection of one box is one.
- Per class, the kept detections of all images are ranked by score (stable: earlier
  ``add`` calls, then earlier images, then the per-image order win ties). Precision is
  made monotone (running maximum from the right) and AP is its 101-point interpolated
  area: the mean, over recall r = 0, 0.01, …, 1, of the precision at the first rank whose
  recall reaches r, or 0 where recall never does.
- IoU thresholds are 0.50, 0.55, …, 0.95; ``map_50`` uses 0.50 and ``map_50_95`` averages
  all ten. IoUs are float64; "recall reaches r" is decided exactly in integers
  (100·TP ≥ i·GT). pycocotools builds both grids with ``np.linspace``, which puts a few
  points one ulp off (recall 0.7000000000000001, IoU 0.8999999999999999), so it can
  differ from this module when a recall or an IoU lands exactly on a grid point.
- A class with ground truth but no detections has AP 0. A class without ground truth in
  the set has AP ``None`` and is left out of the means, even if it has detections (COCO
  does the same). If no class has ground truth, both means are 0.0 (COCO reports -1).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import box_iou

DEFAULT_MAX_DETECTIONS = 100
# The nearest doubles to 0.50, 0.55, …, 0.95 (not 0.5 + i·0.05, which drifts by an ulp).
IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
RECALL_POINTS = 101


@dataclass(frozen=True)
class DetectionReport:
    """Box mAP over the evaluated images; per-class AP is None for a class without ground truth."""

    map_50: float
    map_50_95: float
    per_class_ap_50: dict[str, float | None]
    per_class_ap_50_95: dict[str, float | None]
    ground_truth: dict[str, int]
    detections: int


class DetectionEvaluator:
    """Accumulates matched detections image by image; ``report`` computes COCO-style mAP."""

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        max_detections: int = DEFAULT_MAX_DETECTIONS,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1 (got {num_classes})")
        if max_detections < 1:
            raise ValueError(f"max_detections must be at least 1 (got {max_detections})")
        names = [str(i) for i in range(num_classes)] if class_names is None else list(class_names)
        if len(names) != num_classes:
            raise ValueError(
                f"class_names must have num_classes = {num_classes} names (got {len(names)})"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"class_names must be unique (got {names})")
        self.num_classes = num_classes
        self.class_names = tuple(names)
        self.max_detections = max_detections
        self._thresholds = torch.tensor(IOU_THRESHOLDS, dtype=torch.float64)
        self._ground_truth = [0] * num_classes
        # Per class, one entry per image with kept detections: scores (K,) and matches (T, K).
        self._scores: list[list[Tensor]] = [[] for _ in range(num_classes)]
        self._matches: list[list[Tensor]] = [[] for _ in range(num_classes)]

    def add(self, predictions: list[dict[str, Tensor]], targets: list[dict[str, Tensor]]) -> None:
        """Match a batch: per image, predictions hold boxes/scores/labels, targets boxes/labels."""
        if len(predictions) != len(targets):
            raise ValueError(
                f"predictions and targets must have one entry per image "
                f"(got {len(predictions)} and {len(targets)})"
            )
        for prediction, target in zip(predictions, targets, strict=True):
            boxes, labels = self._boxes_and_labels(prediction, "prediction")
            scores = self._scores_of(prediction, len(labels))
            gt_boxes, gt_labels = self._boxes_and_labels(target, "target")
            for label in torch.unique(torch.cat([labels, gt_labels])).tolist():
                gt_of_class = gt_boxes[gt_labels == label]
                self._ground_truth[label] += len(gt_of_class)
                of_class = labels == label
                if of_class.any():
                    self._add_image_class(label, boxes[of_class], scores[of_class], gt_of_class)

    def report(self) -> DetectionReport:
        """AP per class at IoU 0.5 and averaged over 0.50:0.95, and their means over classes."""
        ap_50: dict[str, float | None] = {}
        ap_50_95: dict[str, float | None] = {}
        detections = 0
        for label, name in enumerate(self.class_names):
            detections += sum(len(s) for s in self._scores[label])
            ap = self._class_ap(label)
            ap_50[name] = None if ap is None else float(ap[0])
            ap_50_95[name] = None if ap is None else float(ap.mean())
        return DetectionReport(
            map_50=_mean(ap_50.values()),
            map_50_95=_mean(ap_50_95.values()),
            per_class_ap_50=ap_50,
            per_class_ap_50_95=ap_50_95,
            ground_truth=dict(zip(self.class_names, self._ground_truth, strict=True)),
            detections=detections,
        )

    def _add_image_class(self, label: int, boxes: Tensor, scores: Tensor, gt: Tensor) -> None:
        order = torch.sort(scores, descending=True, stable=True).indices[: self.max_detections]
        boxes, scores = boxes[order], scores[order]
        thresholds = self._thresholds
        matched = torch.zeros(len(thresholds), len(boxes), dtype=torch.bool)
        if len(gt):
            # Degenerate boxes give 0/0; NaN never reaches a threshold, 0 says so plainly.
            ious = box_iou(boxes, gt).nan_to_num(0.0)
            taken = torch.zeros(len(thresholds), len(gt), dtype=torch.bool)
            candidates = (ious >= thresholds[0]).any(dim=1)
            for index in torch.nonzero(candidates).flatten().tolist():
                free = ious[index].expand(len(thresholds), -1).masked_fill(taken, -1.0)
                best, box = free.max(dim=1)  # first box among equal IoUs
                hit = best >= thresholds
                taken[hit, box[hit]] = True
                matched[:, index] = hit
        self._scores[label].append(scores)
        self._matches[label].append(matched)

    def _class_ap(self, label: int) -> Tensor | None:
        """AP at each IoU threshold, or None without ground truth."""
        ground_truth = self._ground_truth[label]
        if ground_truth == 0:
            return None
        if not self._scores[label]:
            return torch.zeros(len(IOU_THRESHOLDS), dtype=torch.float64)
        scores = torch.cat(self._scores[label])
        order = torch.sort(scores, descending=True, stable=True).indices
        matches = torch.cat(self._matches[label], dim=1)[:, order]
        true_positives = matches.cumsum(dim=1)  # int64, (T, N)
        ranks = torch.arange(1, matches.shape[1] + 1, dtype=torch.float64)
        precision = true_positives / ranks
        precision = precision.flip(1).cummax(dim=1).values.flip(1)
        # First rank whose recall TP/GT reaches i/100, i.e. 100·TP ≥ i·GT, in integers.
        needed = torch.arange(RECALL_POINTS, dtype=torch.int64) * ground_truth
        needed = needed.expand(len(IOU_THRESHOLDS), -1).contiguous()
        first = torch.searchsorted((true_positives * 100).contiguous(), needed)
        reached = first < matches.shape[1]
        sampled = precision.gather(1, first.clamp(max=matches.shape[1] - 1))
        return torch.where(reached, sampled, 0.0).mean(dim=1)

    def _boxes_and_labels(self, entry: dict[str, Tensor], kind: str) -> tuple[Tensor, Tensor]:
        boxes = entry["boxes"].detach().to("cpu", torch.float64)
        labels = entry["labels"].detach().to("cpu", torch.int64)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"{kind} boxes must have shape (N, 4) (got {tuple(boxes.shape)})")
        if labels.shape != (len(boxes),):
            raise ValueError(
                f"{kind} labels must have shape ({len(boxes)},) (got {tuple(labels.shape)})"
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            bad = labels[(labels < 0) | (labels >= self.num_classes)][0]
            raise ValueError(
                f"{kind} labels must be between 0 and {self.num_classes - 1} (got {int(bad)})"
            )
        return boxes, labels

    @staticmethod
    def _scores_of(prediction: dict[str, Tensor], count: int) -> Tensor:
        scores = prediction["scores"].detach().to("cpu", torch.float64)
        if scores.shape != (count,):
            raise ValueError(
                f"prediction scores must have shape ({count},) (got {tuple(scores.shape)})"
            )
        if scores.isnan().any():
            raise ValueError("prediction scores must not be NaN")
        return scores


def _mean(values: Iterable[float | None]) -> float:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else 0.0
