"""The recipe's pure logic: the auto augmentation rule, warm-up, the weight average."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from worker.engine.batchnorm import spread
from worker.engine.recipe import (
    LIGHT_FROM_IMAGE_EPOCHS,
    STANDARD_FROM_IMAGE_EPOCHS,
    WARMUP_START,
    WeightAverage,
    augmentation_strength,
    warmup_factor,
)


@pytest.mark.parametrize(
    ("images", "epochs", "pretrained", "expected"),
    [
        (1_597, 10, False, "none"),  # digits at the seed's 10 epochs
        (LIGHT_FROM_IMAGE_EPOCHS // 10 - 1, 10, False, "none"),
        (LIGHT_FROM_IMAGE_EPOCHS // 10, 10, False, "light"),
        (STANDARD_FROM_IMAGE_EPOCHS // 10 - 1, 10, False, "light"),
        (STANDARD_FROM_IMAGE_EPOCHS // 10, 10, False, "standard"),
        (STANDARD_FROM_IMAGE_EPOCHS // 10, 10, True, "light"),  # pretrained: one step lighter
        (LIGHT_FROM_IMAGE_EPOCHS // 10, 10, True, "none"),
    ],
)
def test_auto_picks_the_strength_the_run_can_afford(
    images: int, epochs: int, pretrained: bool, expected: str
) -> None:
    assert augmentation_strength("auto", images, epochs, pretrained) == expected


@pytest.mark.parametrize("preset", ["none", "light", "standard"])
def test_a_named_preset_is_used_as_it_is(preset: str) -> None:
    assert augmentation_strength(preset, 10**7, 99, True) == preset  # type: ignore[arg-type]


def test_warm_up_ramps_linearly_then_leaves_the_rate_alone() -> None:
    assert warmup_factor(0, 10) == WARMUP_START
    assert warmup_factor(5, 10) == pytest.approx(WARMUP_START + (1 - WARMUP_START) / 2)
    assert warmup_factor(10, 10) == 1.0 and warmup_factor(11, 10) == 1.0
    assert warmup_factor(0, 0) == 1.0  # no warm-up


def test_the_weight_average_follows_closely_at_first_then_slowly() -> None:
    model = nn.Linear(2, 1)
    average = WeightAverage.of(model)
    start = average.model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    average.update(model)
    # The decay ramps up from ~0: a short run's random start is forgotten at once...
    assert float((average.model.weight - start).mean()) > 0.99
    for _ in range(999):
        average.update(model)
    settled = average.model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    average.update(model)
    # ...and after 1,000 steps one step moves it by about 1 - 0.999 · (1 - e^-5).
    assert float((average.model.weight - settled).mean()) == pytest.approx(0.0077, abs=0.001)
    assert not average.model.weight.requires_grad
    restored = WeightAverage.of(nn.Linear(2, 1))
    restored.load_state_dict(average.state_dict())
    assert restored.updates == 1001 and torch.equal(restored.model.weight, average.model.weight)


def test_calibration_rows_come_from_every_part_of_the_dataset() -> None:
    rows = torch.arange(1000)
    chosen = spread(rows, 10)
    assert chosen.tolist() == [0, 111, 222, 333, 444, 555, 666, 777, 888, 999]
    assert spread(rows[:5], 10).tolist() == [0, 1, 2, 3, 4]
