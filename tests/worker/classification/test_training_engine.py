"""Classification through the engine end to end on generated colour datasets."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from tests.worker.classification.conftest import FAST_CONFIG
from worker.classification.preprocessing import eval_transform
from worker.classification.task import ClassificationTask, load_best_classifier
from worker.engine.checkpoint import load_resumable, save_checkpoint
from worker.engine.config import TrainConfig
from worker.engine.control import TrainingCancelled, TrainingInterrupted
from worker.engine.data import WeightsMissingError
from worker.engine.loop import StepCheckpoint, fit
from worker.engine.results import EpochReport

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Three balanced classes: chance is 1/3, a loop that does not learn stays near it.
MIN_ACCURACY = 0.9
# Fields measured with a clock: everything else must repeat exactly.
TIMING_FIELDS = {"duration_s", "train_duration_s", "images_per_s"}


def _without_timing(report: EpochReport) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(report).items() if k not in TIMING_FIELDS}


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = torch.load(checkpoint, weights_only=True)["model"]
    return state


def _assert_same_weights(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> None:
    assert left.keys() == right.keys()
    different = [name for name in left if not torch.equal(left[name], right[name])]
    assert not different


def test_training_learns_the_colours_well_above_chance(trained_run: Any) -> None:
    result = trained_run.result
    assert result.best_val_accuracy >= MIN_ACCURACY
    assert result.report.accuracy == result.best_val_accuracy
    assert result.class_names == ("blue", "green", "red")
    assert result.pretrained is False
    assert result.cache_placement == "host"
    # Per-epoch loss is spiky on 7 batches an epoch (one confidently wrong crop shows), so
    # ask for a clear drop at some point rather than a monotone curve.
    first, *later = [r.train_loss for r in result.history]
    assert min(later) < first / 2


def test_callback_gets_one_report_per_epoch_in_order(trained_run: Any) -> None:
    reports: list[EpochReport] = trained_run.reports
    epochs = trained_run.result.history[-1].epochs
    assert [r.epoch for r in reports] == list(range(1, epochs + 1))
    assert all(r.epochs == epochs for r in reports)
    assert all(0 <= r.val_accuracy <= 1 and r.images_per_s > 0 for r in reports)
    # 3 x 19 train images in batches of 8: the lone 57th is left out of each epoch.
    assert all(r.train_images == 56 for r in reports)


def test_learning_rate_follows_step_lr(trained_run: Any, fast_config: TrainConfig) -> None:
    rates = [r.learning_rate for r in trained_run.reports]
    lr, gamma, step = fast_config.learning_rate, fast_config.gamma, fast_config.step_size
    expected = [lr * gamma ** ((e - 1) // step) for e in range(1, fast_config.epochs + 1)]
    assert rates == pytest.approx(expected)


def test_best_epoch_is_the_first_with_the_highest_accuracy(trained_run: Any) -> None:
    accuracies = [r.val_accuracy for r in trained_run.reports]
    assert trained_run.result.best_epoch == accuracies.index(max(accuracies)) + 1
    assert [r.improved for r in trained_run.reports].count(True) >= 1


def test_final_report_and_artifacts_are_written(trained_run: Any) -> None:
    result = trained_run.result
    matrix = result.report.confusion_matrix
    assert sum(map(sum, matrix)) == result.val_images == 15
    assert [c.support for c in result.report.per_class] == [5, 5, 5]
    for plot in (result.plots["curves"], result.plots["confusion_matrix"]):
        assert plot.read_bytes().startswith(PNG_SIGNATURE)
    metrics = json.loads(result.metrics_path.read_text())
    assert len(metrics["epochs"]) == len(result.history)
    assert metrics["best_epoch"] == result.best_epoch
    assert metrics["final"]["confusion_matrix"] == [list(row) for row in matrix]
    assert metrics["pretrained"] is False
    assert metrics["dataset"]["val_per_class"] == {"blue": 5, "green": 5, "red": 5}
    assert metrics["preprocessing"]["center_crop"] == [32, 32]
    assert result.checkpoint_best.is_file() and result.checkpoint_last.is_file()


def test_load_best_gives_an_eval_model_that_classifies_val_images(trained_run: Any) -> None:
    model, class_names, config = load_best_classifier(trained_run.result.checkpoint_best)
    assert not model.training
    assert class_names == trained_run.result.class_names
    assert config.architecture == "resnet18"
    transform = eval_transform(config.image_size)
    correct = total = 0
    for label, name in enumerate(class_names):
        for path in sorted((trained_run.dataset / name).glob("*.png")):
            with torch.no_grad():
                prediction = model(transform(Image.open(path).convert("RGB"))[None]).argmax()
            correct += int(prediction == label)
            total += 1
    assert correct / total >= MIN_ACCURACY


def test_resume_after_an_interruption_matches_an_uninterrupted_run(
    tmp_path: Path, colour_dataset: Path, fast_config: TrainConfig
) -> None:
    config = dataclasses.replace(
        fast_config, epochs=3, step_size=1, architecture="mobilenet_v3_small"
    )  # dropout and a learning-rate step both cross the interruption
    whole = fit(ClassificationTask(), colour_dataset, tmp_path / "whole", config)

    seen: list[EpochReport] = []
    with pytest.raises(TrainingInterrupted) as stopped:
        fit(
            ClassificationTask(),
            colour_dataset,
            tmp_path / "first",
            config,
            on_epoch=seen.append,
            stop_after_epoch=lambda: True,
        )
    assert stopped.value.epoch == 1
    assert [r.epoch for r in seen] == [1]  # the callback came before the stop

    resumed_reports: list[EpochReport] = []
    resumed = fit(
        ClassificationTask(),
        colour_dataset,
        tmp_path / "second",
        config,
        on_epoch=resumed_reports.append,
        resume_from=tmp_path / "first" / "checkpoint_last.pt",
    )
    assert [r.epoch for r in resumed_reports] == [2, 3]
    _assert_same_weights(_weights(whole.checkpoint_last), _weights(resumed.checkpoint_last))
    _assert_same_weights(_weights(whole.checkpoint_best), _weights(resumed.checkpoint_best))
    assert [_without_timing(r) for r in resumed.history] == [
        _without_timing(r) for r in whole.history
    ]
    assert resumed.report == whole.report


def test_a_kill_inside_an_epoch_resumes_at_its_next_batch_to_the_same_weights(
    tmp_path: Path, colour_dataset: Path, fast_config: TrainConfig, one_thread: None
) -> None:
    # Random crops and flips, dropout and the weight average all cross the interruption.
    config = dataclasses.replace(
        fast_config,
        epochs=2,
        architecture="mobilenet_v3_small",
        augmentation="standard",
        checkpoint_seconds=0.0,
    )
    whole = fit(ClassificationTask(), colour_dataset, tmp_path / "whole", config)
    saved: list[StepCheckpoint] = []
    with pytest.raises(TrainingCancelled):  # what a kill -9 after that checkpoint leaves
        fit(
            ClassificationTask(),
            colour_dataset,
            tmp_path / "first",
            config,
            on_checkpoint=saved.append,
            cancelled=lambda: bool(saved) and (saved[-1].epoch, saved[-1].step) == (2, 1),
        )
    resumed = fit(
        ClassificationTask(),
        colour_dataset,
        tmp_path / "second",
        config,
        resume_from=tmp_path / "first" / "checkpoint_last.pt",
    )
    _assert_same_weights(_weights(whole.checkpoint_last), _weights(resumed.checkpoint_last))
    assert [_without_timing(r) for r in resumed.history] == [
        _without_timing(r) for r in whole.history
    ]


def test_resuming_a_finished_run_only_reports(
    trained_run: Any, tmp_path: Path, fast_config: TrainConfig
) -> None:
    reports: list[EpochReport] = []
    again = fit(
        ClassificationTask(),
        trained_run.dataset,
        tmp_path,
        fast_config,
        on_epoch=reports.append,
        resume_from=trained_run.result.checkpoint_last,
    )
    assert reports == []
    assert again.report == trained_run.result.report
    assert again.best_epoch == trained_run.result.best_epoch
    assert again.checkpoint_best.is_file() and again.plots["confusion_matrix"].is_file()


def test_resume_refuses_a_checkpoint_of_a_different_run(
    trained_run: Any, tmp_path: Path, fast_config: TrainConfig
) -> None:
    changed = dataclasses.replace(fast_config, learning_rate=0.02)
    with pytest.raises(ValueError, match=r"different run; changed: learning_rate 0.01 → 0.02"):
        fit(
            ClassificationTask(),
            trained_run.dataset,
            tmp_path,
            changed,
            resume_from=trained_run.result.checkpoint_last,
        )


def test_streaming_from_files_trains_exactly_like_the_cache(
    tmp_path: Path, dataset_factory: Callable[..., Path], fast_config: TrainConfig
) -> None:
    dataset = dataset_factory(tmp_path / "data", per_class=8)
    config = dataclasses.replace(fast_config, epochs=2)
    cached = fit(ClassificationTask(), dataset, tmp_path / "cached", config)
    streamed = fit(
        ClassificationTask(),
        dataset,
        tmp_path / "streamed",
        dataclasses.replace(config, cache_bytes=0),
    )
    assert (cached.cache_placement, streamed.cache_placement) == ("host", "streamed")
    _assert_same_weights(_weights(cached.checkpoint_last), _weights(streamed.checkpoint_last))


def test_cancel_between_batches_raises_training_cancelled(
    tmp_path: Path, dataset_factory: Callable[..., Path], fast_config: TrainConfig
) -> None:
    dataset = dataset_factory(tmp_path / "data", per_class=8)
    polls = 0

    def cancel_on_third_poll() -> bool:
        nonlocal polls
        polls += 1
        return polls >= 3

    with pytest.raises(TrainingCancelled) as cancelled:
        fit(
            ClassificationTask(),
            dataset,
            tmp_path / "out",
            fast_config,
            cancelled=cancel_on_third_poll,
        )
    assert cancelled.value.epoch == 1
    assert polls == 3
    assert not (tmp_path / "out" / "checkpoint_last.pt").exists()


def test_a_last_batch_of_one_image_is_left_out(
    tmp_path: Path, dataset_factory: Callable[..., Path], fast_config: TrainConfig
) -> None:
    dataset = dataset_factory(tmp_path / "data", per_class=4, layout="train_val", classes=3)
    config = dataclasses.replace(fast_config, epochs=1, batch_size=4)  # 9 train images
    result = fit(ClassificationTask(), dataset, tmp_path / "out", config)
    assert result.history[0].train_images == 8


def test_missing_weights_fail_before_training(
    tmp_path: Path, dataset_factory: Callable[..., Path], fast_config: TrainConfig
) -> None:
    dataset = dataset_factory(tmp_path / "data", per_class=4)
    weights = tmp_path / "weights"
    weights.mkdir()
    config = dataclasses.replace(fast_config, pretrained="fail", weights_dir=weights)
    with pytest.raises(WeightsMissingError, match=r"resnet18-f37072fd\.pth"):
        fit(ClassificationTask(), dataset, tmp_path / "out", config)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("epochs", 0, "epochs must be at least 1 (got 0)"),
        ("gamma", 1.5, "gamma must be in (0, 1] (got 1.5)"),
        ("image_size", 16, "image_size must be at least 32 (got 16)"),
        ("architecture", "vgg11", "architecture must be one of mobilenet_v3_large"),
    ],
)
def test_invalid_options_fail_fast_naming_the_option(option: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        TrainConfig(**{option: value})
    assert message in str(raised.value)


def test_a_checkpoint_from_before_the_task_field_resumes_as_classification(
    tmp_path: Path,
) -> None:
    saved = FAST_CONFIG.to_dict()
    del saved["task"]  # checkpoints written before detection existed
    save_checkpoint({"config": saved}, tmp_path / "old.pt")
    assert load_resumable(tmp_path / "old.pt", FAST_CONFIG)["config"] == saved
    with pytest.raises(ValueError, match=r"changed: task 'classification' → 'detection'"):
        load_resumable(
            tmp_path / "old.pt",
            dataclasses.replace(
                FAST_CONFIG, task="detection", architecture="ssdlite320_mobilenet_v3_large"
            ),
        )
