"""The training recipe around the seed's SGD + StepLR: augmentation strength, learning-rate
warm-up, and the exponential moving average of the weights.

The numbers behind each choice are in docs/training.md ("Recipe"), measured by
bench/quality.py.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from worker.engine.config import Augmentation

Strength = Literal["none", "light", "standard"]

# auto: image-epochs (training images × epochs) a run must afford before augmentation pays
# for the variety it adds; below LIGHT_FROM no augmentation, below STANDARD_FROM light.
# Measured (bench/quality.py, resnet18 from scratch, 32 px): no augmentation was best or
# within a point of it on all three sets at 13–16k image-epochs, and best on shapes at 52k
# (0.874 vs 0.793).
# Above 100k is extrapolated: the GPU-sized bench is the one to move these numbers.
LIGHT_FROM_IMAGE_EPOCHS = 100_000
STANDARD_FROM_IMAGE_EPOCHS = 1_000_000

# Warm-up: the first WARMUP_EPOCHS of steps ramp the rate linearly from WARMUP_START of it.
WARMUP_EPOCHS = 1
WARMUP_START = 0.1

# EMA decay ramps up as 1 - exp(-updates / EMA_RAMP_STEPS), so a short run's average is not
# dominated by its random start (Ultralytics' ModelEMA does the same with tau 2000).
EMA_DECAY = 0.999
EMA_RAMP_STEPS = 200


def augmentation_strength(
    requested: Augmentation, train_images: int, epochs: int, pretrained: bool
) -> Strength:
    """The preset a run trains with: the requested one, or for auto the one it can afford.

    A pretrained backbone already knows natural-image variety, so auto goes one step lighter
    for it.
    """
    if requested != "auto":
        return requested
    image_epochs = train_images * epochs
    if image_epochs < LIGHT_FROM_IMAGE_EPOCHS:
        strength: Strength = "none"
    elif image_epochs < STANDARD_FROM_IMAGE_EPOCHS:
        strength = "light"
    else:
        strength = "standard"
    if pretrained and strength != "none":
        return "light" if strength == "standard" else "none"
    return strength


def warmup_factor(step: int, warmup_steps: int) -> float:
    """The share of the scheduled rate that 0-based optimiser step `step` trains with."""
    if step >= warmup_steps:
        return 1.0
    return WARMUP_START + (1 - WARMUP_START) * step / warmup_steps


@dataclass
class WeightAverage:
    """An exponential moving average of a model's parameters; buffers are copied from the
    model before each evaluation (precise batch norm may then re-estimate them)."""

    model: nn.Module
    updates: int = 0

    @classmethod
    def of(cls, model: nn.Module) -> WeightAverage:
        average = copy.deepcopy(model).eval()
        for parameter in average.parameters():
            parameter.requires_grad_(False)
        return cls(average)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards model after an optimiser step."""
        self.updates += 1
        decay = EMA_DECAY * (1 - math.exp(-self.updates / EMA_RAMP_STEPS))
        averaged: list[torch.Tensor] = [p for p in self.model.parameters() if p.is_floating_point()]
        current = [p.detach() for p in model.parameters() if p.is_floating_point()]
        torch._foreach_lerp_(averaged, current, 1 - decay)

    @torch.no_grad()
    def copy_buffers(self, model: nn.Module) -> None:
        """Take model's buffers (batch-norm statistics) before the average is evaluated."""
        for mine, theirs in zip(self.model.buffers(), model.buffers(), strict=True):
            mine.copy_(theirs)

    def state_dict(self) -> dict[str, object]:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.model.load_state_dict(state["model"])  # type: ignore[arg-type]
        self.updates = int(state["updates"])  # type: ignore[call-overload]
