"""The precision table's rows: a scored file's and a variant's that was not made."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from worker.export.manifest import PrecisionRow


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
