"""No silent CPU fallback: a worker told to train on what its machine lacks does not start,
and one that starts says in its heartbeat where and how precisely it trains."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dev.stack import REPO
from function_app.api import ApiSettings
from shared.storage.account import StorageAccount
from shared.storage.workers import WorkersTable
from tests.worker.conftest import worker_environment
from tests.worker.test_failures import eventually


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA to find")
@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"DEVICE": "cuda"}, "AITRAINER_DEVICE is 'cuda' but torch finds no CUDA device"),
        ({"DEVICE": "cpu", "PRECISION": "bf16"}, "AITRAINER_PRECISION bf16 needs a GPU"),
    ],
    ids=["cuda without one", "bf16 on the cpu"],
)
def test_a_worker_told_to_train_on_what_is_not_there_refuses_to_start(
    settings: ApiSettings, tmp_path: Path, overrides: dict[str, str], reason: str
) -> None:
    env = worker_environment(settings, None, tmp_path, **overrides)
    done = subprocess.run(
        [sys.executable, "-m", "worker"], cwd=REPO, env=env, capture_output=True, timeout=120
    )
    assert done.returncode == 2
    assert f"the worker does not start: {reason}" in done.stderr.decode()
    workers = WorkersTable(StorageAccount(settings).table(settings.workers_table))
    assert workers.online(fresh_seconds=600) == []  # it never registered


def test_the_heartbeat_says_where_and_in_what_precision_the_worker_trains(
    settings: ApiSettings, start_worker: object
) -> None:
    worker = start_worker()  # type: ignore[operator]
    workers = WorkersTable(StorageAccount(settings).table(settings.workers_table))
    assert eventually(lambda: bool(workers.online(fresh_seconds=60)), seconds=60)
    online = workers.online(fresh_seconds=60)
    assert [(w.device, w.gpu, w.precision) for w in online] == [("cpu", "cpu", "fp32")]
    assert worker.process.poll() is None
