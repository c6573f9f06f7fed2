"""Precise batch norm: running statistics re-estimated on plain training images.

Running averages lag behind weights that move fast. MobileNetV3's batch norm uses momentum
0.01 and SSDlite's 0.03, so after a few hundred steps from scratch their eval-mode
statistics describe an older network: a model that is right in training mode is near chance
in eval mode. Averaging the statistics over a few hundred images with the weights as they
are costs one forward pass over them. Frozen batch norm (pretrained detector backbones) is
not a _BatchNorm and is left alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

# Training images the statistics are estimated on; a few hundred give stable estimates.
CALIBRATION_IMAGES = 256


def spread(rows: torch.Tensor, count: int) -> torch.Tensor:
    """count rows evenly spaced over all of them: datasets are ordered by class, and
    statistics of the first few hundred rows would describe one or two classes only."""
    if len(rows) <= count:
        return rows
    return rows[torch.linspace(0, len(rows) - 1, count).round().long()]


@torch.no_grad()
def reestimate_batch_norm(
    model: nn.Module,
    batches: Iterable[Any],
    forward: Callable[[nn.Module, Any], object],
    poll: Callable[[], None],
) -> None:
    """Replace every batch norm's running statistics by their mean over forward(model, batch)."""
    norms = [module for module in model.modules() if isinstance(module, _BatchNorm)]
    pending = iter(batches)
    first = next(pending, None)
    # No batch (one lone training image cannot estimate statistics): keep the running ones.
    if not norms or first is None:
        return
    momenta = [norm.momentum for norm in norms]
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches below
        norm.train()
    try:
        for batch in itertools.chain([first], pending):
            poll()
            forward(model, batch)
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        model.eval()
