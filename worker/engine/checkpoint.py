"""Checkpoint files: atomic saves, safe loads, the random state a bit-exact resume needs, and
the check that a checkpoint belongs to the run that resumes from it."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from worker.engine.config import RECIPE_FIELDS, RESULT_DEFINING_FIELDS, TrainConfig

# Version 2 adds the weight average ("ema") and the recipe's config fields. Version 1 (both
# tasks before the recipe) still resumes: its EMA starts afresh from the resumed weights.
# Version 3 adds "progress" to a checkpoint saved inside an epoch (the loop's EpochProgress:
# step, shuffle order, loss so far); without it a checkpoint is an epoch's end, as before.
# Jobs in flight across a deploy resume from these files: keys change only with a new
# version, a migration and a test. (Config fields may be added: a checkpoint without one
# resumes with the value the engine behaved as before it, config.LEGACY_VALUES.)
# Version 4 adds "split" (LoadedData.split: which file trains, validates, tests; a run that
# splits otherwise starts again rather than resume) and, in fp16 runs, "scaler" (the loss
# scale; without it the scale starts afresh). Earlier versions resume unchecked.
CHECKPOINT_FORMAT = 4
READABLE_FORMATS = (1, 2, 3, 4)


def save_checkpoint(payload: dict[str, Any], path: Path) -> None:
    """torch.save atomically: a reader (or an upload) sees the old file or the new, never half."""
    partial = path.with_name(path.name + ".partial")
    torch.save({"format": CHECKPOINT_FORMAT, **payload}, partial)
    os.replace(partial, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint onto the CPU with the safe (weights-only) unpickler."""
    payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") not in READABLE_FORMATS:
        readable = ", ".join(map(str, READABLE_FORMATS))
        raise ValueError(
            f"checkpoint '{path}' has format {payload.get('format')!r}; "
            f"this engine reads formats {readable}"
        )
    return payload


class ClassesChanged(ValueError):
    """The checkpoint was trained on other classes than the dataset has: another model."""


def load_resumable(path: Path, config: TrainConfig) -> dict[str, Any]:
    """The checkpoint at path, refused when it was written by a run with other parameters."""
    payload = load_checkpoint(path)
    # A checkpoint from before a field existed ran with that field's default (task: they
    # were all classifiers).
    saved = TrainConfig.from_dict(payload["config"]).to_dict()
    changed = [
        f"{name} {saved.get(name)!r} → {getattr(config, name)!r}"
        for name in RESULT_DEFINING_FIELDS
        if saved.get(name) != getattr(config, name)
        and (name in payload["config"] or name not in RECIPE_FIELDS)
    ]
    if changed:
        raise ValueError(f"resume_from '{path}' is a different run; changed: {', '.join(changed)}")
    return payload


def load_best_model(
    path: Path, build: Callable[[TrainConfig, tuple[str, ...], bool], nn.Module]
) -> tuple[nn.Module, tuple[str, ...], TrainConfig]:
    """A best checkpoint's model (eval mode, CPU), class names and config, for export.

    build(config, class_names, pretrained) makes the untrained model the weights fit.
    """
    payload = load_checkpoint(path)
    config = TrainConfig.from_dict(payload["config"])
    class_names = tuple(payload["class_names"])
    model = build(config, class_names, bool(payload["pretrained"]))
    model.load_state_dict(payload["model"])
    return model.eval(), class_names, config


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's state on the CPU, unaffected by later training steps."""
    state = model.state_dict()
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in state.items()}


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
