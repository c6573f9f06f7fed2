"""Checkpoint files and the random-number state a bit-exact resume needs."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FORMAT = 1


def save_checkpoint(payload: dict[str, Any], path: Path) -> None:
    """torch.save atomically: a reader (or an upload) sees the old file or the new, never half."""
    partial = path.with_name(path.name + ".partial")
    torch.save({"format": CHECKPOINT_FORMAT, **payload}, partial)
    os.replace(partial, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint onto the CPU with the safe (weights-only) unpickler."""
    payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"checkpoint '{path}' has format {payload.get('format')!r}; "
            f"this engine reads format {CHECKPOINT_FORMAT}"
        )
    return payload


def capture_rng(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """Every random stream a run draws from: global ones and the run's own generators."""
    return {
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": {
            name: {"device_type": generator.device.type, "state": generator.get_state()}
            for name, generator in generators.items()
        },
    }


def restore_rng(state: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    """Put the random streams back; a stream saved on another kind of device keeps its seed."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    cuda_states = state["cuda"]
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
    for name, generator in generators.items():
        saved = state["generators"].get(name)
        # CPU (Mersenne Twister) and CUDA (Philox) states are not interchangeable; a run
        # moved between device kinds resumes correctly but not bit-identically.
        if saved is not None and saved["device_type"] == generator.device.type:
            generator.set_state(saved["state"])
