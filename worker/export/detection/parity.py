"""Parity of an export's detections with the PyTorch detector's, image by image.

Detections are paired, not compared index by index: runtimes may order equal scores
differently. A detection may stay unpaired only where a last-bit difference can decide
whether it exists at all (a score at the threshold or at the max_detections cut, an overlap
at the NMS IoU threshold); anything else unpaired, or a pair outside the tolerance, fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from worker.export.detection.context import Detections
from worker.export.manifest import Check, DetectionThresholds, DetectionTolerance

# Observed (onnxruntime vs PyTorch, float32, 64 and 320 px, 6–16 images): SSDlite, RetinaNet
# and FCOS boxes within 0.004 px, scores within 4e-5; Faster R-CNN boxes within 0.16 px, as
# its region proposals may differ near ties and each final box is regressed from one. Half a
# pixel is invisible in an app and still fails any real mismatch (a wrong normalisation or
# resize moves boxes by pixels and scores by far more than 1e-3).
BOX_ATOL_PX = 0.5
SCORE_ATOL = 1e-3
# A pair is the same label and the best overlap, at least this much.
PAIR_MIN_IOU = 0.5
# An overlap this close to the NMS IoU threshold may be suppressed in one runtime only.
NMS_IOU_MARGIN = 0.01
MATCH_RULE = (
    f"pairs: same label, best IoU (≥ {PAIR_MIN_IOU}), highest reference score first; a "
    "detection may stay unpaired only if borderline: score within score_abs of the score "
    "threshold or of the last score kept at max_detections, or an IoU with a better box of "
    f"its label within {NMS_IOU_MARGIN} of the NMS IoU threshold (or above it when that box is "
    "itself unpaired)"
)
# How many failing images a summary names.
SUMMARY_IMAGES = 3


def tolerance(box_atol: float = BOX_ATOL_PX, score_atol: float = SCORE_ATOL) -> DetectionTolerance:
    """The tolerance recorded with every detection parity check."""
    return DetectionTolerance(box_abs_px=box_atol, score_abs=score_atol, match=MATCH_RULE)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes a (M×4) and b (K×4): M×K."""
    a = a.astype(np.float64)[:, None, :]
    b = b.astype(np.float64)[None, :, :]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


@dataclass
class ImageParity:
    """How one image's detections compare."""

    reference: int
    candidate: int
    pairs: int = 0
    box_diff: float = 0.0
    score_diff: float = 0.0
    min_iou: float = 1.0
    out_of_tolerance: int = 0
    unpaired_scores: list[float] = field(default_factory=list)  # not borderline: a failure
    borderline: int = 0

    @property
    def passed(self) -> bool:
        return not self.out_of_tolerance and not self.unpaired_scores


def compare_image(
    reference: Detections,
    candidate: Detections,
    thresholds: DetectionThresholds,
    box_atol: float = BOX_ATOL_PX,
    score_atol: float = SCORE_ATOL,
) -> ImageParity:
    """Pair candidate detections with the reference's and measure the pairs."""
    result = ImageParity(reference=len(reference.scores), candidate=len(candidate.scores))
    overlaps = iou(reference.boxes, candidate.boxes)
    # Boxes clipped flat against the image border have no area and so no IoU: equal
    # coordinates pair them as well as a full overlap would.
    distance = np.abs(reference.boxes[:, None, :] - candidate.boxes[None, :, :]).max(
        axis=-1, initial=0
    )
    overlaps = np.maximum(overlaps, (distance <= box_atol).astype(np.float64))
    taken = np.zeros(len(candidate.scores), dtype=bool)
    paired = np.zeros(len(reference.scores), dtype=bool)
    for i in np.argsort(-reference.scores, kind="stable"):
        usable = ~taken & (candidate.labels == reference.labels[i]) & (overlaps[i] >= PAIR_MIN_IOU)
        if not usable.any():
            continue
        j = int(np.argmax(np.where(usable, overlaps[i], -1.0)))
        taken[j] = paired[i] = True
        box = float(np.abs(reference.boxes[i].astype(np.float64) - candidate.boxes[j]).max())
        score = abs(float(reference.scores[i]) - float(candidate.scores[j]))
        result.pairs += 1
        result.box_diff = max(result.box_diff, box)
        result.score_diff = max(result.score_diff, score)
        result.min_iou = min(result.min_iou, float(overlaps[i, j]))
        if box > box_atol or score > score_atol:
            result.out_of_tolerance += 1
    sides = ((reference, paired, candidate, taken), (candidate, taken, reference, paired))
    for own, own_paired, other, other_paired in sides:
        for k in np.flatnonzero(~own_paired):
            if _borderline(int(k), own, other, ~other_paired, thresholds, score_atol):
                result.borderline += 1
            else:
                result.unpaired_scores.append(round(float(own.scores[k]), 4))
    return result


def _borderline(
    k: int,
    own: Detections,
    other: Detections,
    other_unpaired: np.ndarray,
    thresholds: DetectionThresholds,
    score_atol: float,
) -> bool:
    """Whether own's unpaired detection k could exist in one runtime and not the other."""
    score = float(own.scores[k])
    if abs(score - thresholds.score_threshold) <= score_atol:
        return True
    at_cap = len(own.scores) >= thresholds.max_detections
    if at_cap and score <= float(own.scores.min()) + score_atol:
        return True
    nms = thresholds.nms_iou_threshold
    for dets, unpaired, is_own in ((own, None, True), (other, other_unpaired, False)):
        better = (dets.labels == own.labels[k]) & (dets.scores >= score - score_atol)
        if is_own:
            better[k] = False
        overlaps = iou(own.boxes[k : k + 1], dets.boxes)[0]
        if np.any(better & (np.abs(overlaps - nms) <= NMS_IOU_MARGIN)):
            return True
        if unpaired is not None and np.any(better & unpaired & (overlaps >= nms - NMS_IOU_MARGIN)):
            return True
    return False


def compare(
    method: str,
    reference: Sequence[Detections],
    candidates: Sequence[Detections],
    thresholds: DetectionThresholds,
    num_labels: int,
    box_atol: float = BOX_ATOL_PX,
    score_atol: float = SCORE_ATOL,
    details: dict[str, Any] | None = None,
) -> Check:
    """Compare an export's detections on every check image with the reference's."""
    images = len(reference)
    problems: list[str] = []
    if len(candidates) != images:
        problems.append(f"{len(candidates)} results for {images} images")
    results = [
        compare_image(ref, got, thresholds, box_atol, score_atol)
        for ref, got in zip(reference, candidates, strict=False)
    ]
    not_finite = [
        index
        for index, got in enumerate(candidates)
        if not (np.isfinite(got.boxes).all() and np.isfinite(got.scores).all())
    ]
    if not_finite:
        problems.append(f"NaN or infinite values on images {_indices(not_finite)}")
    bad_labels = [
        index
        for index, got in enumerate(candidates)
        if len(got.labels) and (got.labels.min() < 0 or got.labels.max() >= num_labels)
    ]
    if bad_labels:
        problems.append(f"labels outside 0..{num_labels - 1} on images {_indices(bad_labels)}")
    failing = [index for index, result in enumerate(results) if not result.passed]
    for index in failing[:SUMMARY_IMAGES]:
        problems.append(_describe_failure(index, results[index], box_atol, score_atol))
    if len(failing) > SUMMARY_IMAGES:
        problems.append(f"{len(failing) - SUMMARY_IMAGES} more images differ")
    pairs = sum(r.pairs for r in results)
    box_diff = max((r.box_diff for r in results), default=0.0)
    score_diff = max((r.score_diff for r in results), default=0.0)
    borderline = sum(r.borderline for r in results)
    empty = sum(r.reference == 0 for r in results)
    if problems:
        summary = "; ".join(problems)
    else:
        summary = (
            f"{pairs} detections on {images} images paired: boxes within {box_diff:.2g} px "
            f"(≤ {box_atol:g}), scores within {score_diff:.2g} (≤ {score_atol:g}); "
            f"{empty} images without detections"
        )
        if borderline:
            summary += f"; {borderline} borderline detections unpaired"
    return Check(
        method=method,
        passed=not problems,
        summary=summary,
        images=images,
        tolerance=tolerance(box_atol, score_atol),
        details={
            "detections": sum(r.reference for r in results),
            "paired": pairs,
            "max_box_abs_diff_px": box_diff,
            "max_score_abs_diff": score_diff,
            "min_paired_iou": min((r.min_iou for r in results if r.pairs), default=None),
            "borderline_unpaired": borderline,
            "images_without_detections": empty,
            "detections_per_image": [[r.reference, r.candidate] for r in results],
            **(details or {}),
        },
    )


def _indices(indices: list[int]) -> str:
    shown = ", ".join(map(str, indices[:SUMMARY_IMAGES]))
    return shown + (
        f" and {len(indices) - SUMMARY_IMAGES} more" if len(indices) > SUMMARY_IMAGES else ""
    )


def _describe_failure(index: int, result: ImageParity, box_atol: float, score_atol: float) -> str:
    parts = []
    if result.unpaired_scores:
        scores = ", ".join(f"{s:g}" for s in result.unpaired_scores[:4])
        parts.append(f"{len(result.unpaired_scores)} detections unpaired (scores {scores})")
    if result.out_of_tolerance:
        parts.append(
            f"{result.out_of_tolerance} pairs differ by up to {result.box_diff:.3g} px / "
            f"score {result.score_diff:.3g} (tolerance {box_atol:g} px / {score_atol:g})"
        )
    return (
        f"image {index} ({result.reference} reference, {result.candidate} exported detections): "
        + ", ".join(parts)
    )
