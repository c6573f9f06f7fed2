"""Where a run computes: device choice, mixed precision, and timing that waits for the GPU."""

from __future__ import annotations

import contextlib
from typing import Any

import torch


def choose_device(requested: str | None) -> torch.device:
    """The requested device, else CUDA when available, else the CPU."""
    device = torch.device(requested or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        # Input shapes are fixed within a run, so cuDNN's per-shape autotuning pays off.
        torch.backends.cudnn.benchmark = True
    return device


def autocast_for(
    device: torch.device, enabled: bool = True
) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA (unless not enabled: float32, as exports compute); nothing
    elsewhere (CPU autocast is slower than float32)."""
    if device.type == "cuda" and enabled:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a wall-clock reading covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
