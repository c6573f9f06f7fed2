"""The fit loop alone, on a toy task: a linear model on random tensors (no torchvision)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from worker.engine.checkpoint import CHECKPOINT_FORMAT, load_checkpoint
from worker.engine.config import TaskName, TrainConfig
from worker.engine.control import TrainingCancelled, TrainingDiverged, TrainingInterrupted
from worker.engine.data import LoadedData
from worker.engine.device import Compute, DeviceUnavailable
from worker.engine.loop import StepCheckpoint, fit
from worker.engine.recipe import Strength, augmentation_strength
from worker.engine.results import CHECKPOINT_LAST, EpochReport
from worker.engine.task import Evaluation, Poll

CONFIG = TrainConfig(
    epochs=4, learning_rate=0.1, batch_size=8, step_size=2, gamma=0.5, device="cpu"
)
# The loop alone, without the recipe around it (tested below on its own).
PLAIN = dataclasses.replace(CONFIG, ema=False, warmup=False, precise_batch_norm=False)
# Config fields format-1 checkpoints do not have.
NEW_IN_2 = (
    "augmentation",
    "horizontal_flip",
    "ema",
    "warmup",
    "precise_batch_norm",
    "batch_norm_choice",
    "label_smoothing",
)
TIMING_FIELDS = {"duration_s", "train_duration_s", "images_per_s"}
Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class ToyReport:
    score: float


class ToyTask:
    """Two Gaussian blobs in 4-d; scores can be scripted and the loss poisoned from an epoch."""

    name: TaskName = "classification"
    score_name = "accuracy"
    score_description = "toy accuracy"
    loss_label = "cross-entropy"
    skipped_noun = "toy"
    autocasts = True
    compiles = True
    SPLIT = "toy split"

    def __init__(
        self,
        scores: list[float] | None = None,
        nan_from_epoch: int | None = None,
        split: str = SPLIT,
    ):
        self.scores = scores
        self.nan_from_epoch = nan_from_epoch
        self.split = split
        self.evaluations = 0
        self.epochs_trained = 0
        self.stepped_with: set[str] = set()  # the module types training_loss was given

    def learned_floor(self, num_classes: int) -> float:
        return 0.75

    def describe_dataset(self, dataset_dir: Path) -> str:
        return "toy"

    def load_data(self, dataset_dir: Path, config: TrainConfig, compute: Compute) -> LoadedData:
        data = torch.Generator().manual_seed(7)
        labels = torch.arange(48) % 2
        points = torch.randn(48, 4, generator=data) + labels[:, None] * 2.0
        self.train_x, self.train_y = points[:32], labels[:32]
        self.val_x, self.val_y = points[32:], labels[32:]
        return LoadedData(("a", "b"), 32, 16, 0, (), "host", {"toy": True}, split=self.split)

    def build_model(
        self, config: TrainConfig, resumed_pretrained: bool | None
    ) -> tuple[nn.Module, bool]:
        return nn.Linear(4, 2), False

    def auto_augmentation(self, train_images: int, epochs: int, pretrained: bool) -> Strength:
        return augmentation_strength("auto", train_images, epochs, pretrained)

    def prepare_training(
        self, generator: torch.Generator, augmentation: Strength, horizontal_flip: bool
    ) -> None:
        self.generator = generator
        self.augmentation = augmentation

    def train_batches(self, order: torch.Tensor, sizes: list[int]) -> Iterator[Batch]:
        self.epochs_trained += 1
        for rows in order[: sum(sizes)].split(sizes):
            noise = torch.randn(len(rows), 4, generator=self.generator) * 0.1
            yield self.train_x[rows] + noise, self.train_y[rows]

    def training_loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
        inputs, labels = batch
        self.stepped_with.add(type(model).__name__)
        loss = F.cross_entropy(model(inputs), labels)
        poisoned = self.nan_from_epoch is not None and self.epochs_trained >= self.nan_from_epoch
        return (loss * math.nan if poisoned else loss), len(labels)

    def before_evaluation(self, model: nn.Module, poll: Poll) -> None:
        poll()

    @torch.no_grad()
    def evaluate(self, model: nn.Module, poll: Poll) -> Evaluation:
        poll()
        logits = model(self.val_x)
        accuracy = float((logits.argmax(1) == self.val_y).float().mean())
        if self.scores is not None:
            accuracy = self.scores[self.evaluations]
        self.evaluations += 1
        loss = float(F.cross_entropy(logits, self.val_y))
        return Evaluation(loss, accuracy, {"score": accuracy})

    def final_report(self, best_payload: dict[str, Any]) -> ToyReport | None:
        return ToyReport(best_payload["score"]) if best_payload else None

    def finalize(self, model: nn.Module, report: ToyReport | None, poll: Any) -> tuple[Any, None]:
        return report, None

    def final_plots(self, report: ToyReport, out_dir: Path) -> dict[str, Path]:
        return {}

    def preprocessing(self, image_size: int) -> dict[str, Any]:
        return {"toy": image_size}

    def load_best(self, checkpoint: Path, weights_dir: Path | None) -> Any:
        raise NotImplementedError

    def export_images(self, dataset_dir: Path, config: TrainConfig, count: int) -> Any:
        raise NotImplementedError

    def export(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


def without_timing(report: EpochReport) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(report).items() if k not in TIMING_FIELDS}


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_a_run_trains_every_epoch_and_reports_each(tmp_path: Path) -> None:
    reports: list[EpochReport] = []
    result = fit(ToyTask(), tmp_path, tmp_path / "out", CONFIG, on_epoch=reports.append)
    assert [r.epoch for r in reports] == [1, 2, 3, 4]
    assert [r.learning_rate for r in reports] == pytest.approx([0.1, 0.1, 0.05, 0.05])
    assert reports[-1].val_accuracy > 0.8  # the blobs are separable
    assert result.history == tuple(reports)
    assert set(result.plots) == {"curves"} and result.plots["curves"].stat().st_size > 1000
    assert result.report == ToyReport(result.best_val_accuracy)


def test_an_interrupted_run_resumes_to_the_same_weights_and_history(tmp_path: Path) -> None:
    whole = fit(ToyTask(), tmp_path, tmp_path / "whole", CONFIG)
    stops = iter([False, True])
    with pytest.raises(TrainingInterrupted) as stopped:
        fit(ToyTask(), tmp_path, tmp_path / "first", CONFIG, stop_after_epoch=lambda: next(stops))
    assert stopped.value.epoch == 2
    reports: list[EpochReport] = []
    resumed = fit(
        ToyTask(),
        tmp_path,
        tmp_path / "second",
        CONFIG,
        on_epoch=reports.append,
        resume_from=tmp_path / "first" / CHECKPOINT_LAST,
    )
    assert [r.epoch for r in reports] == [3, 4]
    assert [without_timing(r) for r in resumed.history] == [
        without_timing(r) for r in whole.history
    ]
    expected, actual = weights(whole.checkpoint_last), weights(resumed.checkpoint_last)
    assert all(torch.equal(expected[name], actual[name]) for name in expected)
    assert torch.equal(
        weights(whole.checkpoint_best)["weight"], weights(resumed.checkpoint_best)["weight"]
    )


@pytest.mark.parametrize("killed_in", [1, 2], ids=["inside the warm-up", "after it"])
def test_a_run_killed_inside_an_epoch_resumes_at_the_next_batch_to_the_same_result(
    tmp_path: Path, killed_in: int
) -> None:
    # Warm-up (the first epoch's 4 batches) and the weight average on: both carry state
    # across the batches of an epoch. Killed in epoch 1 there is no best epoch yet.
    config = dataclasses.replace(CONFIG, warmup=True, checkpoint_seconds=0.0)
    whole = fit(ToyTask(), tmp_path, tmp_path / "whole", config)
    saved: list[StepCheckpoint] = []
    with pytest.raises(TrainingCancelled):  # what a kill after that checkpoint leaves behind
        fit(
            ToyTask(),
            tmp_path,
            tmp_path / "first",
            config,
            on_checkpoint=saved.append,
            cancelled=lambda: saved[-1:] == [StepCheckpoint(epoch=killed_in, step=2, steps=4)],
        )
    # Every batch but an epoch's last (the epoch's end checkpoints anyway).
    expected = [StepCheckpoint(epoch, step, 4) for epoch in (1, 2) for step in (1, 2, 3)]
    assert saved == expected[: expected.index(StepCheckpoint(killed_in, 2, 4)) + 1]
    checkpoint = load_checkpoint(tmp_path / "first" / CHECKPOINT_LAST)
    assert checkpoint["format"] == CHECKPOINT_FORMAT and checkpoint["epoch"] == killed_in - 1
    assert (checkpoint["progress"]["epoch"], checkpoint["progress"]["step"]) == (killed_in, 2)
    task = ToyTask()
    reports: list[EpochReport] = []
    resumed = fit(
        task,
        tmp_path,
        tmp_path / "second",
        config,
        on_epoch=reports.append,
        resume_from=tmp_path / "first" / CHECKPOINT_LAST,
    )
    assert [r.epoch for r in reports] == list(range(killed_in, 5))
    assert [without_timing(r) for r in resumed.history] == [
        without_timing(r) for r in whole.history
    ]
    expected, actual = weights(whole.checkpoint_last), weights(resumed.checkpoint_last)
    assert all(torch.equal(expected[name], actual[name]) for name in expected)
    assert "progress" not in load_checkpoint(resumed.checkpoint_last)


def test_without_checkpoint_seconds_a_run_checkpoints_only_at_epoch_ends(tmp_path: Path) -> None:
    saved: list[StepCheckpoint] = []
    fit(ToyTask(), tmp_path, tmp_path / "out", CONFIG, on_checkpoint=saved.append)
    assert saved == []


def test_a_stop_asked_in_the_last_epoch_finishes_the_run_instead(tmp_path: Path) -> None:
    config = dataclasses.replace(CONFIG, epochs=2)
    stop_asked = False

    def ask_to_stop_in_the_last_epoch(report: EpochReport) -> None:
        nonlocal stop_asked
        stop_asked = report.epoch == config.epochs

    result = fit(
        ToyTask(),
        tmp_path,
        tmp_path / "out",
        config,
        on_epoch=ask_to_stop_in_the_last_epoch,
        stop_after_epoch=lambda: stop_asked,
    )
    assert stop_asked
    assert [r.epoch for r in result.history] == [1, 2]


def test_a_cancel_stops_within_the_epoch(tmp_path: Path) -> None:
    polls = 0

    def cancel_on_sixth_poll() -> bool:
        nonlocal polls
        polls += 1
        return polls == 6  # epoch 1 polls 4 batches + 1 evaluation; then epoch 2's first batch

    task = ToyTask()
    with pytest.raises(TrainingCancelled) as cancelled:
        fit(task, tmp_path, tmp_path / "out", PLAIN, cancelled=cancel_on_sixth_poll)
    assert cancelled.value.epoch == 2
    assert task.evaluations == 1


def test_a_tie_keeps_the_earlier_epoch_as_best(tmp_path: Path) -> None:
    task = ToyTask(scores=[0.5, 0.7, 0.7, 0.6])
    result = fit(task, tmp_path, tmp_path / "out", PLAIN)
    assert (result.best_epoch, result.best_val_accuracy) == (2, 0.7)
    assert [r.improved for r in result.history] == [True, True, False, False]
    assert load_checkpoint(result.checkpoint_best)["epoch"] == 2


def test_a_nan_loss_ends_the_run_as_diverged(tmp_path: Path) -> None:
    with pytest.raises(TrainingDiverged, match=r"epoch 2 .*nan.* smaller learning_rate than 0\.1"):
        fit(ToyTask(nan_from_epoch=2), tmp_path, tmp_path / "out", CONFIG)
    assert load_checkpoint(tmp_path / "out" / CHECKPOINT_LAST)["epoch"] == 1


def test_a_resume_with_other_parameters_or_classes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TrainingInterrupted):
        fit(ToyTask(), tmp_path, tmp_path / "first", CONFIG, stop_after_epoch=lambda: True)
    checkpoint = tmp_path / "first" / CHECKPOINT_LAST
    with pytest.raises(ValueError, match=r"changed: gamma 0\.5 → 0\.25"):
        fit(
            ToyTask(),
            tmp_path,
            tmp_path / "x",
            dataclasses.replace(CONFIG, gamma=0.25),
            None,
            checkpoint,
        )

    class OtherClasses(ToyTask):
        def load_data(self, *args: Any) -> LoadedData:
            return dataclasses.replace(super().load_data(*args), class_names=("a", "c"))

    # Other classes split the files otherwise too: the classes are what is refused.
    with pytest.raises(ValueError, match=r"trained on classes \['a', 'b'\]"):
        fit(
            OtherClasses(split="another split"),
            tmp_path,
            tmp_path / "y",
            CONFIG,
            resume_from=checkpoint,
            on_fresh_start=lambda why: pytest.fail(f"started afresh: {why}"),
        )


def test_the_task_and_the_config_must_agree(tmp_path: Path) -> None:
    config = TrainConfig(task="detection", architecture="ssdlite320_mobilenet_v3_large")
    with pytest.raises(ValueError, match=r"config\.task is 'detection' but the task trains"):
        fit(ToyTask(), tmp_path, tmp_path / "out", config)


def test_warm_up_leaves_the_seeds_step_schedule_and_changes_the_first_epoch(
    tmp_path: Path,
) -> None:
    warm = fit(ToyTask(), tmp_path, tmp_path / "warm", dataclasses.replace(PLAIN, warmup=True))
    cold = fit(ToyTask(), tmp_path, tmp_path / "cold", PLAIN)
    # StepLR semantics: epoch k (0-based) trains at learning_rate · gamma^⌊k/step_size⌋.
    expected = [0.1 * 0.5 ** (k // 2) for k in range(4)]
    assert [r.learning_rate for r in warm.history] == pytest.approx(expected, rel=1e-12)
    assert [r.learning_rate for r in cold.history] == pytest.approx(expected, rel=1e-12)
    assert warm.history[0].train_loss != cold.history[0].train_loss


def test_the_weight_average_is_evaluated_and_kept_when_it_validates_better(
    tmp_path: Path,
) -> None:
    # Scripted scores: evaluations alternate trained, average; the average wins epoch 2.
    task = ToyTask(scores=[0.5, 0.4, 0.6, 0.9, 0.8, 0.7, 0.7, 0.8])
    result = fit(task, tmp_path, tmp_path / "out", CONFIG)
    assert task.evaluations == 8  # both candidates, every epoch
    assert [r.weights for r in result.history] == ["trained", "average", "trained", "average"]
    assert (result.best_epoch, result.best_val_accuracy) == (2, 0.9)
    last = load_checkpoint(result.checkpoint_last)
    assert (
        last["format"] == CHECKPOINT_FORMAT and last["ema"]["updates"] == 16
    )  # 4 batches × 4 epochs
    best = load_checkpoint(result.checkpoint_best)["model"]
    trained = last["model"]
    assert not torch.equal(best["weight"], trained["weight"])


class BatchNormToyTask(ToyTask):
    """The toy with a batch norm in front; its 'precise' statistics are a sentinel mean."""

    PRECISE_MEAN = 7.0

    def __init__(self, scores: list[float] | None = None, momentum: float = 0.1):
        super().__init__(scores)
        self.momentum = momentum

    def build_model(
        self, config: TrainConfig, resumed_pretrained: bool | None
    ) -> tuple[nn.Module, bool]:
        return nn.Sequential(nn.BatchNorm1d(4, momentum=self.momentum), nn.Linear(4, 2)), False

    def before_evaluation(self, model: nn.Module, poll: Poll) -> None:
        model[0].running_mean.fill_(self.PRECISE_MEAN)

    def evaluate(self, model: nn.Module, poll: Poll) -> Evaluation:
        model.eval()  # as the real tasks do: the statistics stay as they were set
        return super().evaluate(model, poll)


def test_running_batch_norm_statistics_are_kept_where_they_validate_strictly_better(
    tmp_path: Path,
) -> None:
    # Per epoch: trained (running, precise), then average (running, precise).
    epochs = [
        [0.6, 0.5, 0.4, 0.3],  # the trained weights' running statistics win
        [0.5, 0.7, 0.6, 0.8],  # the average's precise ones
        [0.7, 0.7, 0.1, 0.1],  # a tie: precise
        [0.9, 0.2, 0.1, 0.1],  # running again, the best epoch
    ]
    task = BatchNormToyTask(scores=[score for epoch in epochs for score in epoch])
    result = fit(task, tmp_path, tmp_path / "out", CONFIG)
    assert task.evaluations == 16
    assert [(r.weights, r.batch_norm) for r in result.history] == [
        ("trained", "running"),
        ("average", "precise"),
        ("trained", "precise"),
        ("trained", "running"),
    ]
    assert (result.best_epoch, result.best_val_accuracy) == (4, 0.9)
    # The winning running statistics were put back after the re-estimation overwrote them.
    best_mean = weights(result.checkpoint_best)["0.running_mean"]
    assert not torch.allclose(best_mean, torch.full((4,), BatchNormToyTask.PRECISE_MEAN))
    metrics = json.loads(result.metrics_path.read_text())
    assert [e["batch_norm"] for e in metrics["epochs"]] == [
        "running",
        "precise",
        "precise",
        "running",
    ]


@pytest.mark.parametrize(
    ("choice", "momentum"),
    [(False, 0.1), (True, 0.01)],
    ids=["without the choice", "statistics that lag (MobileNetV3's momentum)"],
)
def test_batch_norm_is_always_precise(tmp_path: Path, choice: bool, momentum: float) -> None:
    task = BatchNormToyTask(momentum=momentum)
    config = dataclasses.replace(CONFIG, batch_norm_choice=choice)
    result = fit(task, tmp_path, tmp_path / "out", config)
    assert task.evaluations == 8  # one per candidate
    assert {r.batch_norm for r in result.history} == {"precise"}
    best_mean = weights(result.checkpoint_best)["0.running_mean"]
    assert torch.allclose(best_mean, torch.full((4,), BatchNormToyTask.PRECISE_MEAN))


def test_a_format_1_checkpoint_resumes_with_a_fresh_average(tmp_path: Path) -> None:
    with pytest.raises(TrainingInterrupted):
        fit(ToyTask(), tmp_path, tmp_path / "first", CONFIG, stop_after_epoch=lambda: True)
    checkpoint = load_checkpoint(tmp_path / "first" / CHECKPOINT_LAST)
    # What the engine wrote before the recipe: no average, no recipe fields in the config.
    old = {key: value for key, value in checkpoint.items() if key != "ema"}
    old["config"] = {key: value for key, value in old["config"].items() if key not in NEW_IN_2}
    for report in old["history"]:
        report.pop("weights")
        report.pop("batch_norm")
    torch.save({**old, "format": 1}, tmp_path / "format1.pt")
    resumed = fit(
        ToyTask(), tmp_path, tmp_path / "second", CONFIG, resume_from=tmp_path / "format1.pt"
    )
    assert [r.epoch for r in resumed.history] == [1, 2, 3, 4]
    assert load_checkpoint(resumed.checkpoint_last)["ema"]["updates"] == 12  # from epoch 2 on


def test_the_task_is_told_the_augmentation_the_run_can_afford(tmp_path: Path) -> None:
    task = ToyTask()
    fit(task, tmp_path, tmp_path / "auto", CONFIG)
    assert task.augmentation == "none"  # 32 images × 4 epochs is far below any threshold
    task = ToyTask()
    fit(task, tmp_path, tmp_path / "std", dataclasses.replace(CONFIG, augmentation="standard"))
    assert task.augmentation == "standard"


def test_a_resume_continues_with_the_engines_recipe_of_the_day(tmp_path: Path) -> None:
    # A deploy that changes the engine's own recipe must not fail the jobs in flight.
    with pytest.raises(TrainingInterrupted):
        fit(ToyTask(), tmp_path, tmp_path / "first", CONFIG, stop_after_epoch=lambda: True)
    changed = dataclasses.replace(CONFIG, ema=False, warmup=True, label_smoothing=0.2)
    resumed = fit(
        ToyTask(),
        tmp_path,
        tmp_path / "second",
        changed,
        resume_from=tmp_path / "first" / CHECKPOINT_LAST,
    )
    assert [r.epoch for r in resumed.history] == [1, 2, 3, 4]
    assert "ema" not in load_checkpoint(resumed.checkpoint_last)


def test_a_checkpoint_whose_run_split_the_data_otherwise_is_not_resumed(tmp_path: Path) -> None:
    """The files changed, or the duplicate check grouped them otherwise: its epochs were
    drawn over other images, so the run trains again from epoch 1."""
    stops = iter([False, True])
    with pytest.raises(TrainingInterrupted):
        fit(ToyTask(), tmp_path, tmp_path / "first", CONFIG, stop_after_epoch=lambda: next(stops))
    checkpoint = load_checkpoint(tmp_path / "first" / CHECKPOINT_LAST)
    assert checkpoint["format"] == CHECKPOINT_FORMAT == 4
    assert checkpoint["split"] == ToyTask.SPLIT
    reports: list[EpochReport] = []
    told: list[str] = []
    fit(
        ToyTask(split="another split"),
        tmp_path,
        tmp_path / "second",
        CONFIG,
        on_epoch=reports.append,
        resume_from=tmp_path / "first" / CHECKPOINT_LAST,
        on_fresh_start=lambda why: told.append(f"{why} (before epoch {len(reports) + 1})"),
    )
    assert [r.epoch for r in reports] == [1, 2, 3, 4]
    assert len(told) == 1 and "split otherwise" in told[0], told
    assert told[0].endswith("(before epoch 1)")
    # The same split resumes without a word.
    fit(
        ToyTask(),
        tmp_path,
        tmp_path / "third",
        CONFIG,
        resume_from=tmp_path / "first" / CHECKPOINT_LAST,
        on_fresh_start=lambda why: pytest.fail(f"started afresh: {why}"),
    )


def test_an_fp16_runs_loss_scale_is_checkpointed_and_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scaler's state goes into the checkpoint and comes back: its count of finite steps
    runs on across the resume as in one run (CPU autocast stands in for a T4's fp16)."""
    import worker.engine.loop as loop

    fp16 = Compute(torch.device("cpu"), "fp16")
    monkeypatch.setattr(loop, "prepare_compute", lambda *args: fp16)
    whole = fit(ToyTask(), tmp_path, tmp_path / "whole", PLAIN)
    stops = iter([False, True])
    with pytest.raises(TrainingInterrupted):
        fit(ToyTask(), tmp_path, tmp_path / "first", PLAIN, stop_after_epoch=lambda: next(stops))
    halfway = load_checkpoint(tmp_path / "first" / CHECKPOINT_LAST)["scaler"]
    first = tmp_path / "first" / CHECKPOINT_LAST
    resumed = fit(ToyTask(), tmp_path, tmp_path / "second", PLAIN, resume_from=first)
    steps = load_checkpoint(whole.checkpoint_last)["scaler"]["_growth_tracker"]
    assert halfway["scale"] == 2.0**16 and 0 < halfway["_growth_tracker"] < steps
    assert (
        load_checkpoint(resumed.checkpoint_last)["scaler"]
        == load_checkpoint(whole.checkpoint_last)["scaler"]
    )


def test_the_best_weights_are_scored_once_more_in_full_precision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """finalize (the report that ships: thresholds, test split) runs inside
    Compute.full_precision, and nothing else does."""
    import worker.engine.loop as loop

    inside: list[bool] = []

    @dataclass(frozen=True)
    class Recording(Compute):
        @contextlib.contextmanager
        def full_precision(self) -> Iterator[None]:
            inside.append(True)
            yield
            inside.append(False)

    class Finalizing(ToyTask):
        def evaluate(self, model: nn.Module, poll: Poll) -> Evaluation:
            assert inside[-1:] != [True], "an epoch's evaluation ran in full precision"
            return super().evaluate(model, poll)

        def finalize(self, model: nn.Module, report: Any, poll: Any) -> tuple[Any, None]:
            assert inside == [True]
            return super().finalize(model, report, poll)

    monkeypatch.setattr(loop, "prepare_compute", lambda *args: Recording(torch.device("cpu")))
    fit(Finalizing(), tmp_path, tmp_path / "out", CONFIG)
    assert inside == [True, False]


class NeverCompiled(ToyTask):
    compiles = False


def test_a_compiled_training_step_trains_the_same_model_and_saves_plain_weights(
    tmp_path: Path,
) -> None:
    # aot_eager: torch.compile's graph capture and autograd split without inductor's code
    # generation (two minutes of C++ on two cores); the GPU bench measures inductor.
    compiled_task, eager_task = ToyTask(), ToyTask()
    compiled = fit(
        compiled_task,
        tmp_path,
        tmp_path / "compiled",
        dataclasses.replace(CONFIG, compile_backend="aot_eager"),
    )
    eager = fit(eager_task, tmp_path, tmp_path / "eager", CONFIG)
    assert compiled_task.stepped_with == {"OptimizedModule"}
    assert eager_task.stepped_with == {"Linear"}
    for ours, theirs in zip(compiled.history, eager.history, strict=True):
        assert ours.train_loss == pytest.approx(theirs.train_loss, rel=1e-5)
        assert ours.val_accuracy == theirs.val_accuracy
    ours_best, theirs_best = weights(compiled.checkpoint_best), weights(eager.checkpoint_best)
    assert ours_best.keys() == theirs_best.keys()  # no compiled wrapper's "_orig_mod." names
    for name, tensor in ours_best.items():
        assert torch.allclose(tensor, theirs_best[name], atol=1e-5), name
    compute = json.loads((tmp_path / "compiled" / "metrics.json").read_text())["compute"]
    assert compute["compile_backend"] == "aot_eager"


def test_a_task_never_compiled_trains_eagerly_and_an_unknown_backend_is_refused(
    tmp_path: Path,
) -> None:
    task = NeverCompiled()
    fit(task, tmp_path, tmp_path / "out", dataclasses.replace(CONFIG, compile_backend="aot_eager"))
    assert task.stepped_with == {"Linear"}
    compute = json.loads((tmp_path / "out" / "metrics.json").read_text())["compute"]
    assert compute["compile_backend"] is None
    with pytest.raises(DeviceUnavailable, match=r"'warp' is not a torch\.compile backend"):
        fit(
            ToyTask(),
            tmp_path,
            tmp_path / "refused",
            dataclasses.replace(CONFIG, compile_backend="warp"),
        )
