"""The precision table's rows (a scored file's, a variant's that was not made) and the two
measurements every format's rows share: a model's probabilities on uint8 views, and the
median latency of one call."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worker.export.manifest import PrecisionRow

LATENCY_WARMUP, LATENCY_RUNS = 3, 20


def model_probabilities(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    batch: int,
    dtype: torch.dtype = torch.float32,
) -> np.ndarray:
    """A PyTorch model's probabilities (float64) on uint8 views, fed as [0, 1] in dtype."""
    with torch.no_grad():
        parts = [model((part.float() / 255).to(dtype)).double() for part in images.split(batch)]
    return torch.cat(parts).numpy()


def median_ms(run: Callable[[], Any]) -> float:
    """Median milliseconds of LATENCY_RUNS calls of run, after LATENCY_WARMUP more."""
    for _ in range(LATENCY_WARMUP):
        run()
    times = []
    for _ in range(LATENCY_RUNS):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 3)


def variant_key(format_name: str, precision: str) -> str:
    """The status `exports` key: the plain format name stays float32."""
    return format_name if precision == "fp32" else f"{format_name}_{precision}"


def scored_row(
    format_name: str,
    precision: str,
    path: Path,
    probabilities: np.ndarray,
    reference: np.ndarray,
    labels: np.ndarray,
    *,
    latency_ms: float | None = None,
    simulated: str | None = None,
    started: float | None = None,
) -> PrecisionRow:
    """A delivered file's row: its size and its scores on the validation split, against the
    labels and the float32 PyTorch model's probabilities (reference, float64)."""
    top1 = probabilities.argmax(1)
    return PrecisionRow(
        key=variant_key(format_name, precision),
        format=format_name,
        precision=precision,
        delivered=True,
        file=path.name,
        size_bytes=path.stat().st_size,
        accuracy=float((top1 == labels).mean()),
        agreement=float((top1 == reference.argmax(1)).mean()),
        max_abs_diff=float(np.abs(probabilities.astype(np.float64) - reference).max()),
        latency_ms=latency_ms,
        simulated=simulated,
        seconds=None if started is None else round(time.perf_counter() - started, 3),
    )


def not_made(format_name: str, precision: str, why: str) -> PrecisionRow:
    return PrecisionRow(
        key=variant_key(format_name, precision),
        format=format_name,
        precision=precision,
        delivered=False,
        reason=why,
    )
