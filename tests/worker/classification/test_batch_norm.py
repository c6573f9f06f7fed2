"""Precise batch norm rescues a MobileNetV3 trained from scratch for a few hundred steps."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from dev.sample_quality import quality_set
from tests.worker.classification.conftest import FAST_CONFIG
from worker.classification.models import build_model
from worker.classification.task import ClassificationTask
from worker.engine.checkpoint import load_checkpoint
from worker.engine.loop import fit

CONFIG = dataclasses.replace(
    FAST_CONFIG,
    architecture="mobilenet_v3_small",
    epochs=4,
    batch_size=16,
    learning_rate=0.05,
    step_size=10,
    augmentation="none",
    ema=False,
    warmup=True,
    precise_batch_norm=False,
)


def never() -> None:
    return None


def test_reestimated_statistics_turn_a_chance_level_model_into_a_good_one(
    tmp_path: Path, one_thread: None
) -> None:
    for index, (name, image) in enumerate(quality_set("digits")[:600]):  # 10 digits, mixed
        (tmp_path / "data" / name).mkdir(parents=True, exist_ok=True)
        image.save(tmp_path / "data" / name / f"{index}.png")
    task = ClassificationTask()
    result = fit(task, tmp_path / "data", tmp_path / "out", CONFIG)
    model, _ = build_model("mobilenet_v3_small", 10, "scratch", None)
    model.load_state_dict(load_checkpoint(result.checkpoint_last)["model"])

    lagging = task.evaluate(model, never).score
    task.before_evaluation(model, never)
    precise = task.evaluate(model, never).score
    # MobileNetV3's batch norm (momentum 0.01) still holds statistics of its first steps:
    # in eval mode the trained network guesses (chance is 0.1).
    assert lagging < 0.4, (lagging, precise)
    assert precise > max(0.6, lagging + 0.3), (lagging, precise)
