"""Detection parity: pairs by label and overlap, fails real differences, forgives borderlines."""

from __future__ import annotations

import numpy as np

from worker.export.detection.context import Detections
from worker.export.detection.parity import BOX_ATOL_PX, SCORE_ATOL, compare
from worker.export.manifest import DetectionThresholds

THRESHOLDS = DetectionThresholds(score_threshold=0.25, nms_iou_threshold=0.5, max_detections=4)
BOXES = [[10, 10, 30, 30], [40, 40, 60, 70], [5, 50, 25, 60]]


def detections(boxes: list[list[float]], scores: list[float], labels: list[int]) -> Detections:
    return Detections.of(np.array(boxes, dtype=np.float32), scores, labels)


def check(reference: Detections, candidate: Detections) -> tuple[bool, str, dict[str, object]]:
    result = compare("test", [reference], [candidate], THRESHOLDS, num_labels=3)
    return result.passed, result.summary, result.details


REFERENCE = detections(BOXES, [0.9, 0.8, 0.6], [0, 1, 2])


def test_the_same_detections_in_another_order_pass() -> None:
    order = [2, 0, 1]
    shuffled = Detections(REFERENCE.boxes[order], REFERENCE.scores[order], REFERENCE.labels[order])
    passed, summary, details = check(REFERENCE, shuffled)
    assert passed, summary
    assert details["paired"] == 3 and details["max_box_abs_diff_px"] == 0.0


def test_differences_within_the_tolerance_pass_and_are_reported() -> None:
    nudged = Detections(REFERENCE.boxes + 0.02, REFERENCE.scores - 1e-4, REFERENCE.labels)
    passed, summary, details = check(REFERENCE, nudged)
    assert passed, summary
    assert abs(details["max_box_abs_diff_px"] - 0.02) < 1e-5  # type: ignore[operator]
    assert abs(details["max_score_abs_diff"] - 1e-4) < 1e-6  # type: ignore[operator]


def test_a_box_moved_beyond_the_tolerance_fails() -> None:
    moved = REFERENCE.boxes.copy()
    moved[1] += 2 * BOX_ATOL_PX
    passed, summary, _ = check(REFERENCE, Detections(moved, REFERENCE.scores, REFERENCE.labels))
    assert not passed
    assert "1 pairs differ" in summary


def test_a_score_beyond_the_tolerance_fails() -> None:
    scores = REFERENCE.scores.copy()
    scores[0] -= 3 * SCORE_ATOL
    passed, summary, _ = check(REFERENCE, Detections(REFERENCE.boxes, scores, REFERENCE.labels))
    assert not passed and "differ" in summary


def test_a_missing_confident_detection_fails() -> None:
    fewer = Detections(REFERENCE.boxes[1:], REFERENCE.scores[1:], REFERENCE.labels[1:])
    passed, summary, _ = check(REFERENCE, fewer)
    assert not passed
    assert "1 detections unpaired (scores 0.9)" in summary


def test_a_different_label_does_not_pair() -> None:
    relabelled = Detections(REFERENCE.boxes, REFERENCE.scores, np.array([1, 1, 2]))
    passed, summary, _ = check(REFERENCE, relabelled)
    assert not passed and "unpaired" in summary


def test_labels_outside_labels_txt_fail() -> None:
    passed, summary, _ = check(REFERENCE, Detections(*REFERENCE[:2], np.array([0, 1, 3])))
    assert not passed and "labels outside 0..2" in summary


def test_a_detection_at_the_score_threshold_may_exist_in_one_runtime_only() -> None:
    reference = detections([*BOXES, [70, 5, 90, 20]], [0.9, 0.8, 0.6, 0.2504], [0, 1, 2, 0])
    passed, summary, details = check(reference, REFERENCE)
    assert passed, summary
    assert details["borderline_unpaired"] == 1


def test_a_box_at_the_nms_iou_threshold_may_be_suppressed_in_one_runtime_only() -> None:
    # [10, 10, 30, 30] and [10, 10, 30, 40] overlap by IoU 400/600 ≈ 0.667: not borderline;
    # [10, 10, 30, 30] and [10, 10, 30, 50] overlap by 400/800 = 0.5, the NMS threshold.
    borderline = detections([*BOXES, [10, 10, 30, 50]], [0.9, 0.8, 0.6, 0.7], [0, 1, 2, 0])
    assert check(borderline, REFERENCE)[0]
    clear = detections([*BOXES, [10, 10, 30, 40]], [0.9, 0.8, 0.6, 0.7], [0, 1, 2, 0])
    assert not check(clear, REFERENCE)[0]


def test_the_last_detection_at_max_detections_may_differ() -> None:
    four = detections([*BOXES, [70, 5, 90, 20]], [0.9, 0.8, 0.6, 0.5], [0, 1, 2, 0])
    other = detections([*BOXES, [70, 40, 90, 60]], [0.9, 0.8, 0.6, 0.5], [0, 1, 2, 1])
    passed, summary, details = check(four, other)
    assert passed, summary
    assert details["borderline_unpaired"] == 2


def test_boxes_flat_against_the_border_pair_by_their_coordinates() -> None:
    flat = detections([[0, 10, 0, 30], [64, 0, 64, 64]], [0.9, 0.8], [0, 1])
    passed, summary, details = check(flat, flat)
    assert passed, summary
    assert details["paired"] == 2


def test_no_detections_on_both_sides_pass() -> None:
    empty = detections([], [], [])
    passed, summary, details = check(empty, empty)
    assert passed, summary
    assert details["images_without_detections"] == 1


def test_nan_coordinates_fail() -> None:
    broken = Detections(REFERENCE.boxes * np.nan, REFERENCE.scores, REFERENCE.labels)
    passed, summary, _ = check(REFERENCE, broken)
    assert not passed and "NaN" in summary
