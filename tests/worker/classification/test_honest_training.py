"""Training that tells the truth: decision thresholds, class weights, a test split scored
once, early stopping. Pure logic on hand-made tables, then real training on colour sets."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.worker.classification.conftest import (
    CLASS_COLOURS,
    FAST_CONFIG,
    make_dataset,
    write_images,
)
from worker.classification.data import load_dataset
from worker.classification.metrics import (
    class_weights,
    decision_thresholds,
    precision_at_thresholds,
)
from worker.classification.task import ClassificationTask
from worker.engine.data import DatasetError
from worker.engine.device import Compute
from worker.engine.loop import fit
from worker.engine.results import EpochReport

# --- decision thresholds ------------------------------------------------------------------------

# Six images, two classes; column 0 is class "a"'s probability. Top label a for rows 0-3.
SCORES = torch.tensor(
    [[0.95, 0.05], [0.90, 0.10], [0.80, 0.20], [0.60, 0.40], [0.30, 0.70], [0.45, 0.55]]
)
LABELS = torch.tensor([0, 0, 1, 0, 1, 0])


def test_each_threshold_is_the_lowest_score_reaching_the_target_precision() -> None:
    # Class a, ranked: 0.95 ✓, 0.90 ✓, 0.80 ✗, 0.60 ✓ → precision 1, 1, 2/3, 3/4.
    # Class b, ranked: 0.70 ✓, 0.55 ✗ → precision 1, 1/2.
    assert decision_thresholds(SCORES, LABELS, 0.75, 1) == pytest.approx((0.60, 0.70))
    assert decision_thresholds(SCORES, LABELS, 0.9, 1) == pytest.approx((0.90, 0.70))
    assert decision_thresholds(SCORES, LABELS, 0.5, 1) == pytest.approx((0.60, 0.55))


def test_a_threshold_rests_on_enough_images() -> None:
    # Class a reaches 0.75 only over all 4 of its images; b's 0.70 over 1, 0.55 over 2.
    assert decision_thresholds(SCORES, LABELS, 0.75, 4) == pytest.approx((0.60, None))
    assert decision_thresholds(SCORES, LABELS, 0.5, 2) == pytest.approx((0.60, 0.55))
    assert decision_thresholds(SCORES, LABELS, 0.75) == (None, None)  # default: 5 images


def test_a_target_never_reached_gives_none_and_so_does_a_class_never_predicted() -> None:
    wrong_first = torch.tensor([[0.9, 0.1], [0.8, 0.2]])
    assert decision_thresholds(wrong_first, torch.tensor([1, 1]), 0.9, 1) == (None, None)


def test_tied_scores_are_kept_or_dropped_together() -> None:
    # Two images at 0.8, one right and one wrong: a threshold of 0.8 keeps both (precision
    # 2/3 with the 0.9 above), so 0.9 is the lowest that reaches 0.9.
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.8, 0.2]])
    assert decision_thresholds(scores, torch.tensor([0, 0, 1]), 0.9, 1)[0] == pytest.approx(0.9)


def test_precision_at_the_thresholds_counts_what_clears_them() -> None:
    precision, cleared = precision_at_thresholds(SCORES, LABELS, (0.85, None))
    assert precision == (1.0, None) and cleared == (2, 0)
    precision, cleared = precision_at_thresholds(SCORES, LABELS, (0.5, 0.5))
    assert precision == pytest.approx((0.75, 0.5)) and cleared == (4, 2)


# --- class weights ------------------------------------------------------------------------------


def test_balanced_weights_make_every_class_weigh_the_same_in_the_loss() -> None:
    weights, applied = class_weights([10, 40, 50], "balanced")
    assert applied == "balanced" and weights == pytest.approx([100 / 30, 100 / 120, 100 / 150])
    assert [w * n for w, n in zip(weights, [10, 40, 50], strict=True)] == pytest.approx(
        [100 / 3] * 3
    )
    assert class_weights([10, 40, 50], "none") == (None, "none")


@pytest.mark.parametrize(("counts", "applied"), [([10, 29], "none"), ([10, 30], "balanced")])
def test_auto_balances_from_a_threefold_imbalance(counts: list[int], applied: str) -> None:
    assert class_weights(counts, "auto")[1] == applied


# --- the test split -------------------------------------------------------------------------------


def with_test_folder(root: Path, per_class: int = 4) -> Path:
    make_dataset(root, per_class=12, layout="train_val")
    make_dataset(root / "test", per_class=per_class)
    return root


def test_a_test_folder_beside_train_and_val_is_the_test_split(tmp_path: Path) -> None:
    split = load_dataset(with_test_folder(tmp_path))
    assert split.class_counts("test") == {"blue": 4, "green": 4, "red": 4}
    assert all(image.path.parts[-3] == "test" for image in split.test)
    assert split.class_counts("train") == {"blue": 9, "green": 9, "red": 9}


def test_a_test_folder_of_other_folders_is_left_alone_and_said_so(tmp_path: Path) -> None:
    make_dataset(tmp_path, per_class=8, layout="train_val")
    make_dataset(tmp_path / "test", per_class=2, classes=2)  # not train's classes: no split
    split = load_dataset(tmp_path)
    assert split.test == ()
    task = ClassificationTask()
    assert "'test' ignored: its class folders ('blue', 'green')" in task.describe_dataset(tmp_path)


def test_test_fraction_on_a_train_val_dataset_holds_out_from_train(tmp_path: Path) -> None:
    make_dataset(tmp_path, per_class=20, layout="train_val")  # 15 train, 5 val per class
    split = load_dataset(tmp_path, test_fraction=0.2)
    assert split.class_counts("test") == {"blue": 3, "green": 3, "red": 3}
    assert split.class_counts("train") == {"blue": 12, "green": 12, "red": 12}
    assert split.class_counts("val") == {"blue": 5, "green": 5, "red": 5}
    assert all(image.path.parts[-3] == "train" for image in split.test)


def test_test_fraction_holds_out_a_seeded_stratified_share_before_validation(
    tmp_path: Path,
) -> None:
    make_dataset(tmp_path, per_class=20)
    split = load_dataset(tmp_path, test_fraction=0.2)
    assert split.class_counts("test") == {"blue": 4, "green": 4, "red": 4}
    assert split.class_counts("val") == {"blue": 3, "green": 3, "red": 3}  # 0.2 of 16
    held = {image.row for image in split.test}
    assert not held & {image.row for image in split.train + split.val}
    assert {image.row for image in load_dataset(tmp_path, test_fraction=0.2).test} == held
    assert {image.row for image in load_dataset(tmp_path, 0.2, 1, 0.2).test} != held


def test_test_fraction_needs_three_images_in_every_class(tmp_path: Path) -> None:
    make_dataset(tmp_path, per_class=2)
    with pytest.raises(DatasetError, match="'blue' has 2 readable images; test_fraction needs"):
        load_dataset(tmp_path, test_fraction=0.3)


class CountingTask(ClassificationTask):
    """Counts the scorings of test images: exactly one, after training."""

    def __init__(self) -> None:
        super().__init__()
        self.test_scorings = 0

    def _scored(self, model: Any, rows: torch.Tensor, poll: Any, final: bool) -> Any:
        test_rows = {int(row) for row in self.test_rows}
        if test_rows & {int(row) for row in rows}:
            assert {int(row) for row in rows} == test_rows  # never mixed with other images
            self.test_scorings += 1
        return super()._scored(model, rows, poll, final)


SHORT = dataclasses.replace(FAST_CONFIG, epochs=3)


def test_a_test_folder_is_scored_once_and_changes_nothing_else(tmp_path: Path) -> None:
    with_test = with_test_folder(tmp_path / "with")
    without = tmp_path / "without"
    shutil.copytree(with_test, without)
    shutil.rmtree(without / "test")
    task = CountingTask()
    tested = fit(task, with_test, tmp_path / "out-with", SHORT)
    plain = fit(ClassificationTask(), without, tmp_path / "out-without", SHORT)
    assert task.test_scorings == 1 and tested.test_images == 12
    assert tested.test_report is not None and plain.test_report is None
    assert tested.best_epoch == plain.best_epoch
    assert [r.val_accuracy for r in tested.history] == [r.val_accuracy for r in plain.history]
    best = [torch.load(r.checkpoint_best, weights_only=True)["model"] for r in (tested, plain)]
    assert all(torch.equal(best[0][name], best[1][name]) for name in best[0])
    metrics = json.loads(tested.metrics_path.read_text())
    assert metrics["test"]["accuracy"] == tested.test_report.accuracy
    assert sum(row and sum(row) for row in metrics["test"]["confusion_matrix"]) == 12
    assert metrics["dataset"]["test_source"] == "test folder"
    # What the shipped thresholds reach on the held-out images, and how many cleared them.
    reached, cleared = (
        metrics["test"]["precision_at_thresholds"],
        metrics["test"]["cleared_thresholds"],
    )
    assert len(reached) == len(cleared) == 3 and sum(cleared) <= 12
    assert all(p is None or 0 <= p <= 1 for p in reached)


# --- early stopping ---------------------------------------------------------------------------


def test_patience_stops_a_run_that_no_longer_improves_and_keeps_the_best_epoch(
    tmp_path: Path, colour_dataset: Path
) -> None:
    config = dataclasses.replace(FAST_CONFIG, patience=2)
    reports: list[EpochReport] = []
    result = fit(ClassificationTask(), colour_dataset, tmp_path, config, on_epoch=reports.append)
    trained = len(result.history)
    assert result.stopped_early and trained < config.epochs
    assert trained == result.best_epoch + 2  # two epochs without a strictly better score
    assert [r.epoch for r in reports] == list(range(1, trained + 1))
    best = torch.load(result.checkpoint_best, weights_only=True)
    assert best["epoch"] == result.best_epoch  # the delivered model is the best epoch's
    metrics = json.loads(result.metrics_path.read_text())
    assert metrics["stopped_early"] is True and metrics["recipe"]["patience"] == 2
    # Resumed after the epoch that ran out of patience: it finishes, training nothing more.
    again: list[EpochReport] = []
    resumed = fit(
        ClassificationTask(),
        colour_dataset,
        tmp_path / "resumed",
        config,
        on_epoch=again.append,
        resume_from=result.checkpoint_last,
    )
    assert again == [] and resumed.stopped_early and resumed.best_epoch == result.best_epoch
    # A warm stop asked for at the epoch that ran out of patience finishes instead of pausing.
    paused: list[EpochReport] = []
    finished = fit(
        ClassificationTask(),
        colour_dataset,
        tmp_path / "warm-stop",
        config,
        on_epoch=paused.append,
        stop_after_epoch=lambda: paused[-1].epoch - paused[-1].best_epoch >= 2,
    )
    assert finished.stopped_early and len(paused) == trained


def test_the_shared_run_ships_thresholds_and_records_its_class_weighting(trained_run: Any) -> None:
    report = trained_run.result.report
    assert report.class_thresholds is not None and len(report.class_thresholds) == 3
    assert all(t is None or 0 < t <= 1 for t in report.class_thresholds)
    # 5 validation images a class, learned well: the lowest-scoring right answer qualifies.
    assert any(t is not None for t in report.class_thresholds)
    metrics = json.loads(trained_run.result.metrics_path.read_text())
    # Balanced colours: auto applies no weights.
    assert metrics["recipe"]["class_weighting"] == "auto"
    assert metrics["recipe"]["class_weighting_applied"] == "none"
    assert metrics["stopped_early"] is False and metrics["test"] is None


def test_auto_weights_the_loss_of_an_imbalanced_set_by_its_training_counts(
    tmp_path: Path,
) -> None:
    root = make_dataset(tmp_path / "set", per_class=24, classes=1)  # blue only
    write_images(root / "few", CLASS_COLOURS["red"], 8)
    task = ClassificationTask()
    data = task.load_data(root, FAST_CONFIG, Compute(torch.device("cpu")))
    counts = data.summary["train_per_class"]
    assert counts == {"blue": 19, "few": 6}  # 24 and 8, 20 % to validation
    assert data.recipe["class_weighting_applied"] == "balanced"
    expected = [25 / (2 * 19), 25 / (2 * 6)]
    assert task.class_weights is not None
    assert task.class_weights.tolist() == pytest.approx(expected)
    assert data.recipe["class_weights"] == pytest.approx(dict(zip(counts, expected, strict=True)))


def test_a_checkpoint_from_before_class_weights_resumes_as_the_old_engine_trained() -> None:
    asked = dataclasses.replace(FAST_CONFIG, class_weighting="balanced", test_fraction=0.2)
    saved = FAST_CONFIG.to_dict()
    del saved["class_weighting"], saved["test_fraction"]
    resumed = asked.as_resumed(saved)
    assert (resumed.class_weighting, resumed.test_fraction) == ("none", None)
    assert asked.as_resumed(asked.to_dict()) == asked  # a checkpoint with them: as asked
