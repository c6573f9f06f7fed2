"""Golden runs: tiny seeded CPU trainings of both tasks, pinned epoch by epoch.

A refactor of the training code must not change what a run computes. These runs (one
thread, so the float reductions happen in one order) store their per-epoch losses and
scores (compared with rtol 1e-6) and the sha256 of the best and the last state_dict, per
CPU: the CPU's vendor and torch's capability (AVX512, …), because the same SIMD capability
on another vendor takes other kernels. Measured: an AMD EPYC and an Intel Xeon, both
AVX512, differ by 0.3 % in the first epoch's loss and pick another best epoch by the third.
On a CPU with no record the run is done twice and must repeat itself exactly (seeded runs
are deterministic), which is what can be checked there.

A change that alters training on purpose regenerates golden.json in the same commit and
says why: `AITRAINER_UPDATE_GOLDEN=1 pytest tests/worker/engine/test_golden.py` records
this CPU's values (and drops the other CPUs' ones, which that change made stale).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

import pytest
import torch

from dev.sample_detection import write_detection_dataset
from tests.worker.classification.conftest import make_dataset
from worker.engine.checkpoint import load_checkpoint
from worker.engine.config import TrainConfig
from worker.engine.loop import fit
from worker.tasks import task_for

GOLDEN_FILE = Path(__file__).with_name("golden.json")
# What checkpoint_last.pt holds. Format 1 (both tasks before the recipe; pre-refactor
# checkpoints were resumed to bit-identical weights when the engine was unified) had these
# keys less "ema"; format 2 adds the weight average; format 3 adds "progress", only in a
# checkpoint saved inside an epoch (an epoch's end has format 2's keys). Jobs in flight
# across a deploy resume from such files, so keys change only with a new format
# (tests/worker/engine/test_loop.py resumes a format-1 file and a mid-epoch one).
CHECKPOINT_FORMAT = 4  # 4: "split" (and "scaler" in fp16 runs, not these)
CHECKPOINT_KEYS = {
    "ema",
    "best",
    "class_names",
    "config",
    "epoch",
    "format",
    "history",
    "model",
    "optimizer",
    "pretrained",
    "rng",
    "scheduler",
    "split",
}
BEST_KEYS = {
    "classification": {"accuracy", "confusion", "epoch", "model"},
    "detection": {"accuracy", "epoch", "model", "report"},
}
UPDATE = os.environ.get("AITRAINER_UPDATE_GOLDEN") == "1"
RTOL = 1e-6

CONFIGS = {
    "classification": TrainConfig(
        epochs=3,
        learning_rate=0.002,
        image_size=32,
        batch_size=8,
        step_size=2,
        gamma=0.5,
        architecture="resnet18",
        pretrained="scratch",
        num_workers=1,
        device="cpu",
    ),
    "detection": TrainConfig(
        task="detection",
        epochs=2,
        learning_rate=0.01,
        image_size=64,
        batch_size=4,
        step_size=1,
        gamma=0.5,
        architecture="ssdlite320_mobilenet_v3_large",
        pretrained="scratch",
        num_workers=1,
        device="cpu",
    ),
}


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].contiguous().cpu()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def run(task: str, tmp_path: Path) -> dict[str, Any]:
    config = CONFIGS[task]
    data = tmp_path / "data"
    if task == "classification":
        make_dataset(data, per_class=12)
    else:
        write_detection_dataset(data, "coco", images=16, size=64, class_names=("square",))
    result = fit(task_for(task), data, tmp_path / "out", config)
    best = load_checkpoint(result.checkpoint_best)
    last = load_checkpoint(result.checkpoint_last)
    assert last["format"] == CHECKPOINT_FORMAT
    assert set(last) == CHECKPOINT_KEYS
    assert set(last["best"]) == BEST_KEYS[task]
    return {
        "epochs": [
            {"train_loss": r.train_loss, "val_loss": r.val_loss, "val_accuracy": r.val_accuracy}
            for r in result.history
        ],
        "best_epoch": result.best_epoch,
        "best_state_sha256": state_sha256(best["model"]),
        "last_state_sha256": state_sha256(last["model"]),
    }


def cpu_signature() -> str:
    """The CPU's vendor and torch's SIMD capability: what decides the kernels' rounding."""
    vendor = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("vendor_id", "CPU implementer")):
                vendor = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{vendor} {torch.backends.cpu.get_cpu_capability()}"


@pytest.mark.parametrize("task", sorted(CONFIGS))
def test_a_seeded_run_computes_what_it_computed_before(
    task: str, tmp_path: Path, one_thread: None
) -> None:
    measured = run(task, tmp_path)
    golden = json.loads(GOLDEN_FILE.read_text()) if GOLDEN_FILE.exists() else {}
    signature = cpu_signature()
    if UPDATE:
        golden[task] = {signature: measured}
        GOLDEN_FILE.write_text(json.dumps(golden, indent=2, sort_keys=True) + "\n")
    expected = golden[task].get(signature)
    if expected is None:  # no record for this CPU: the run must at least repeat itself
        (tmp_path / "again").mkdir()
        expected = run(task, tmp_path / "again")
    assert len(measured["epochs"]) == len(expected["epochs"])
    pairs = zip(measured["epochs"], expected["epochs"], strict=True)
    for epoch, (got, want) in enumerate(pairs, start=1):
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=RTOL), f"epoch {epoch} {key}"
    assert measured["best_epoch"] == expected["best_epoch"]
    assert measured["best_state_sha256"] == expected["best_state_sha256"]
    assert measured["last_state_sha256"] == expected["last_state_sha256"]
