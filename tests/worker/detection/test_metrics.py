"""COCO-style detection mAP: hand-computed cases and a brute-force reference."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
import torch
from torch import Tensor

from worker.detection.metrics import IOU_THRESHOLDS, DetectionEvaluator

Box = tuple[int, int, int, int]
A: Box = (0, 0, 10, 10)
B: Box = (20, 20, 30, 30)
C: Box = (40, 0, 50, 10)


def prediction(*detections: tuple[Box, float, int]) -> dict[str, Tensor]:
    """torchvision's eval output for one image from (box, score, label) triples."""
    boxes = [d[0] for d in detections]
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor([d[1] for d in detections], dtype=torch.float32),
        "labels": torch.tensor([d[2] for d in detections], dtype=torch.int64),
    }


def target(*boxes: tuple[Box, int]) -> dict[str, Tensor]:
    return {
        "boxes": torch.tensor([b[0] for b in boxes], dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor([b[1] for b in boxes], dtype=torch.int64),
    }


def evaluate(
    predictions: list[dict[str, Tensor]],
    targets: list[dict[str, Tensor]],
    num_classes: int = 1,
    **kwargs: int,
) -> DetectionEvaluator:
    evaluator = DetectionEvaluator(num_classes, **kwargs)  # type: ignore[arg-type]
    evaluator.add(predictions, targets)
    return evaluator


def test_perfect_predictions_score_one_at_every_threshold() -> None:
    evaluator = DetectionEvaluator(2, ["cat", "dog"])
    evaluator.add(
        [prediction((A, 0.9, 0), (B, 0.8, 1)), prediction((C, 0.7, 1))],
        [target((A, 0), (B, 1)), target((C, 1))],
    )
    report = evaluator.report()
    assert report.map_50 == 1.0
    assert report.map_50_95 == 1.0
    assert report.per_class_ap_50 == {"cat": 1.0, "dog": 1.0}
    assert report.ground_truth == {"cat": 1, "dog": 2}
    assert report.detections == 3


def test_no_predictions_score_zero() -> None:
    report = evaluate([prediction(), prediction()], [target((A, 0)), target((B, 0))]).report()
    assert report.map_50 == 0.0
    assert report.map_50_95 == 0.0
    assert report.per_class_ap_50 == {"0": 0.0}
    assert report.detections == 0


def test_false_positive_ranked_between_two_hits() -> None:
    # Ranks: TP (0.9), FP (0.8), TP (0.7) for 2 ground-truth boxes.
    # precision 1, 1/2, 2/3 → monotone 1, 2/3, 2/3; recall 1/2, 1/2, 1.
    # Recall points 0.00..0.50 (51) take rank 1 → 1; 0.51..1.00 (50) take rank 3 → 2/3.
    # AP = (51·1 + 50·2/3) / 101 = 0.8349834983…
    report = evaluate(
        [prediction((A, 0.9, 0), (C, 0.8, 0), (B, 0.7, 0))], [target((A, 0), (B, 0))]
    ).report()
    expected = (51 + 50 * 2 / 3) / 101
    assert report.map_50 == pytest.approx(expected, abs=1e-6)
    assert report.map_50_95 == pytest.approx(expected, abs=1e-6)


def test_iou_point_six_counts_from_half_up_to_point_six() -> None:
    # IoU of (0,0,6,10) with A is 60/100: a match at 0.50, 0.55, 0.60, not at 0.65..0.95.
    report = evaluate([prediction(((0, 0, 6, 10), 0.9, 0))], [target((A, 0))]).report()
    assert report.map_50 == 1.0
    assert report.map_50_95 == pytest.approx(3 / 10, abs=1e-12)


def test_iou_equal_to_the_threshold_matches() -> None:
    # IoU exactly 0.5 (50/100) matches at 0.50 only.
    report = evaluate([prediction(((0, 0, 5, 10), 0.9, 0))], [target((A, 0))]).report()
    assert report.map_50 == 1.0
    assert report.map_50_95 == pytest.approx(1 / 10, abs=1e-12)


def test_wrong_label_never_matches() -> None:
    report = evaluate([prediction((A, 0.9, 1))], [target((A, 0))], num_classes=2).report()
    assert report.per_class_ap_50 == {"0": 0.0, "1": None}
    assert report.map_50 == 0.0
    assert report.map_50_95 == 0.0


def test_duplicate_detection_of_one_box_is_one_hit_and_one_false_positive() -> None:
    # As the hand-computed case: the duplicate of A takes the false positive's place.
    report = evaluate(
        [prediction((A, 0.9, 0), (A, 0.8, 0), (B, 0.7, 0))], [target((A, 0), (B, 0))]
    ).report()
    assert report.map_50 == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-6)


def test_detection_takes_the_free_box_with_the_highest_iou() -> None:
    # `first` overlaps G1 at 70/120 and G2 at 80/110; the exact copy of G1 overlaps G2 at
    # 60/140 only. Taking G2 (the higher IoU, though listed second) leaves G1 to the copy;
    # taking G1 would leave the copy with nothing above 0.5.
    g1: Box = (0, 0, 10, 10)
    g2: Box = (4, 0, 14, 10)
    first: Box = (3, 0, 12, 10)
    report = evaluate(
        [prediction((first, 0.9, 0), (g1, 0.8, 0))], [target((g1, 0), (g2, 0))]
    ).report()
    assert report.map_50 == 1.0
    # 0.50..0.70: both match (AP 1). 0.75..0.95: `first` misses, ranks FP, TP →
    # precision 1/2 for recall ≤ 1/2 → AP 51/202.
    expected = (5 * 1 + 5 * Fraction(51, 202)) / 10
    assert report.map_50_95 == pytest.approx(float(expected), abs=1e-12)


def test_class_without_ground_truth_is_left_out_of_the_mean() -> None:
    report = evaluate(
        [prediction((A, 0.9, 0), (B, 0.8, 1))], [target((A, 0))], num_classes=3
    ).report()
    assert report.per_class_ap_50 == {"0": 1.0, "1": None, "2": None}
    assert report.per_class_ap_50_95 == {"0": 1.0, "1": None, "2": None}
    assert report.map_50 == 1.0
    assert report.ground_truth == {"0": 1, "1": 0, "2": 0}


def test_class_with_ground_truth_but_no_detections_counts_as_zero() -> None:
    report = evaluate([prediction((A, 0.9, 0))], [target((A, 0), (B, 1))], num_classes=2).report()
    assert report.per_class_ap_50 == {"0": 1.0, "1": 0.0}
    assert report.map_50 == 0.5


def test_max_detections_keeps_the_best_scores_of_each_image_and_class() -> None:
    detections = [(B, 0.9, 0), (C, 0.8, 0), (A, 0.7, 0)]
    cut = evaluate([prediction(*detections)], [target((A, 0))], max_detections=2).report()
    assert cut.map_50 == 0.0
    assert cut.detections == 2
    # Kept, the hit is at rank 3: precision 1/3 at every recall point.
    kept = evaluate([prediction(*detections)], [target((A, 0))], max_detections=3).report()
    assert kept.map_50 == pytest.approx(1 / 3, abs=1e-12)
    # The cap counts per class, as COCO's maxDets: another class's detections don't use it.
    other = evaluate(
        [prediction((A, 0.9, 0), (B, 0.95, 1), (C, 0.99, 1))],
        [target((A, 0))],
        num_classes=2,
        max_detections=1,
    ).report()
    assert other.per_class_ap_50["0"] == 1.0
    assert other.detections == 2


def test_equal_scores_keep_their_input_order() -> None:
    miss_first = evaluate([prediction((B, 0.5, 0), (A, 0.5, 0))], [target((A, 0))]).report()
    hit_first = evaluate([prediction((A, 0.5, 0), (B, 0.5, 0))], [target((A, 0))]).report()
    assert miss_first.map_50 == pytest.approx(0.5, abs=1e-12)
    assert hit_first.map_50 == 1.0
    # Across images, the earlier image wins a tie.
    across = evaluate(
        [prediction((B, 0.5, 0)), prediction((A, 0.5, 0))], [target(), target((A, 0))]
    ).report()
    assert across.map_50 == pytest.approx(0.5, abs=1e-12)


def test_recall_on_a_grid_point_reaches_it_exactly() -> None:
    # 7 of 10 boxes found, first: recall 0.7 exactly reaches the point 0.70, so 71 of the
    # 101 points have precision 1 (np.linspace's 0.7000000000000001 would give 70).
    boxes = [(10 * i, 0, 10 * i + 5, 5) for i in range(10)]
    report = evaluate(
        [prediction(*[(box, 0.9, 0) for box in boxes[:7]])],
        [target(*[(box, 0) for box in boxes])],
    ).report()
    assert report.map_50 == pytest.approx(71 / 101, abs=1e-12)


def test_empty_images_change_nothing() -> None:
    evaluator = DetectionEvaluator(1)
    evaluator.add([prediction(), prediction((A, 0.9, 0))], [target(), target((A, 0))])
    evaluator.add([prediction()], [target()])
    report = evaluator.report()
    assert report.map_50 == 1.0
    assert report.map_50_95 == 1.0


def test_no_ground_truth_anywhere_gives_zero_and_no_class_ap() -> None:
    report = evaluate([prediction(), prediction((A, 0.9, 1))], [target(), target()], 2).report()
    assert report.map_50 == 0.0
    assert report.map_50_95 == 0.0
    assert report.per_class_ap_50 == {"0": None, "1": None}
    assert report.detections == 1
    assert DetectionEvaluator(1).report().map_50 == 0.0


def test_invalid_input_names_the_field() -> None:
    evaluator = DetectionEvaluator(2)
    with pytest.raises(ValueError, match=r"prediction labels must be between 0 and 1 \(got 2\)"):
        evaluator.add([prediction((A, 0.9, 2))], [target()])
    with pytest.raises(ValueError, match=r"target labels must be between 0 and 1 \(got -1\)"):
        evaluator.add([prediction()], [target((A, -1))])
    with pytest.raises(ValueError, match="one entry per image"):
        evaluator.add([prediction()], [])
    with pytest.raises(ValueError, match="class_names"):
        DetectionEvaluator(2, ["only-one"])
    with pytest.raises(ValueError, match="max_detections"):
        DetectionEvaluator(2, max_detections=0)


# A brute-force reference: exact IoUs and precisions as fractions, greedy matching by plain
# loops, and interpolated precision as "best precision at any rank reaching the recall".

Image = tuple[list[tuple[Box, float, int]], list[tuple[Box, int]]]


def _iou(a: Box, b: Box) -> Fraction:
    width = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return Fraction(inter, union)


def _reference_ap(images: list[Image], label: int, threshold: Fraction, cap: int) -> Fraction:
    ranked: list[tuple[float, bool]] = []
    total = 0
    for detections, truths in images:
        gt = [box for box, lab in truths if lab == label]
        total += len(gt)
        mine = sorted((d for d in detections if d[2] == label), key=lambda d: -d[1])[:cap]
        taken: set[int] = set()
        for box, score, _ in mine:
            best, best_iou = None, Fraction(-1)
            for g, truth in enumerate(gt):
                iou = _iou(box, truth)
                if g not in taken and iou >= threshold and iou > best_iou:
                    best, best_iou = g, iou
            if best is not None:
                taken.add(best)
            ranked.append((score, best is not None))
    ranked.sort(key=lambda r: -r[0])
    points: list[tuple[Fraction, Fraction]] = []  # (recall, precision) at each rank
    hits = 0
    for rank, (_, hit) in enumerate(ranked, start=1):
        hits += hit
        points.append((Fraction(hits, total), Fraction(hits, rank)))
    area = Fraction(0)
    for i in range(101):
        reaching = [p for r, p in points if r >= Fraction(i, 100)]
        area += max(reaching, default=Fraction(0))
    return area / 101


def _random_images(rng: random.Random, classes: int) -> list[Image]:
    def box() -> Box:
        x, y = rng.randint(0, 8), rng.randint(0, 8)
        return (x, y, x + rng.randint(1, 5), y + rng.randint(1, 5))

    images: list[Image] = []
    for _ in range(rng.randint(1, 5)):
        truths = [(box(), rng.randrange(classes)) for _ in range(rng.randint(0, 4))]
        detections: list[tuple[Box, float, int]] = []
        for truth, lab in truths:
            for _ in range(rng.randint(0, 2)):
                x1, y1, x2, y2 = (v + rng.randint(-1, 1) for v in truth)
                jittered = (x1, y1, max(x2, x1 + 1), max(y2, y1 + 1))
                detections.append((jittered, rng.randint(1, 8) / 8, lab))
        for _ in range(rng.randint(0, 3)):
            detections.append((box(), rng.randint(1, 8) / 8, rng.randrange(classes)))
        rng.shuffle(detections)
        images.append((detections, truths))
    return images


@pytest.mark.parametrize("seed", range(25))
def test_matches_a_brute_force_reference(seed: int) -> None:
    rng = random.Random(seed)
    classes, cap = 3, 3
    images = _random_images(rng, classes)
    evaluator = DetectionEvaluator(classes, max_detections=cap)
    split = rng.randint(0, len(images))  # two add() calls accumulate as one
    for part in (images[:split], images[split:]):
        evaluator.add([prediction(*d) for d, _ in part], [target(*t) for _, t in part])
    report = evaluator.report()

    thresholds = [Fraction(50 + 5 * i, 100) for i in range(10)]
    assert [Fraction(t).limit_denominator(100) for t in IOU_THRESHOLDS] == thresholds
    means_50, means = [], []
    for label in range(classes):
        name = str(label)
        if not any(lab == label for _, truths in images for _, lab in truths):
            assert report.per_class_ap_50[name] is None
            continue
        aps = [_reference_ap(images, label, t, cap) for t in thresholds]
        means_50.append(aps[0])
        means.append(sum(aps) / 10)
        assert report.per_class_ap_50[name] == pytest.approx(float(aps[0]), abs=1e-9)
        assert report.per_class_ap_50_95[name] == pytest.approx(float(means[-1]), abs=1e-9)
    expected_50 = float(sum(means_50) / len(means_50)) if means_50 else 0.0
    expected = float(sum(means) / len(means)) if means else 0.0
    assert report.map_50 == pytest.approx(expected_50, abs=1e-9)
    assert report.map_50_95 == pytest.approx(expected, abs=1e-9)
