"""No silent CPU fallback: a worker told to train on what its machine lacks does not start,
and one that starts says in its heartbeat where and how precisely it trains."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from dev.sample_data import dataset_files
from dev.stack import REPO, Azurite
from function_app.api import ApiSettings
from shared.contract import DEFAULT_LEARNING_RATE
from shared.storage.account import StorageAccount
from shared.storage.jobs import JobsTable
from shared.storage.workers import WorkersTable
from tests.worker.conftest import upload_azure, wait_for, worker_environment
from tests.worker.test_failures import eventually
from tests.worker.test_pipeline import azure_request
from worker.settings import WorkerSettings


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        pytest.param(
            {"DEVICE": "cuda"},
            "AITRAINER_DEVICE is 'cuda' but torch finds no CUDA device",
            id="cuda without one",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA"),
        ),
        pytest.param(
            {"DEVICE": "cpu", "PRECISION": "bf16"},
            "AITRAINER_PRECISION bf16 needs a GPU",
            id="bf16 on the cpu",
        ),
        pytest.param(
            {"DEVICE": "cpu", "COMPILE_BACKEND": "warp"},
            "AITRAINER_COMPILE_BACKEND 'warp' is not a torch.compile backend",
            id="a compiler torch lacks",
        ),
    ],
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


# A worker whose pretend GPU holds at most LIMIT images a batch: a larger batch raises CUDA's
# out-of-memory error in epoch 2, after epoch 1 and its checkpoint.
OUT_OF_MEMORY_WORKER = """
import sys

import torch

import worker.engine.loop as loop
from worker.__main__ import main

LIMIT = {limit}
real_run_epoch = loop.run_epoch


def run_epoch(run, epoch, *args, **kwargs):
    if epoch == 2 and run.config.batch_size > LIMIT:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    return real_run_epoch(run, epoch, *args, **kwargs)


loop.run_epoch = run_epoch
sys.exit(main())
"""


SMALLER = "(batch_size 4: the GPU ran out of memory at 8)"


@pytest.mark.parametrize(
    ("limit", "expected"),
    [(4, "SUCCESS"), (2, "FAILED")],
    ids=["half the batch fits", "half the batch does not fit either"],
)
def test_out_of_gpu_memory_restarts_once_at_half_the_batch_size_then_fails_naming_it(
    client: httpx.Client,
    settings: ApiSettings,
    azurite: Azurite,
    dataset_container: Any,
    start_worker: Any,
    tmp_path: Path,
    limit: int,
    expected: str,
) -> None:
    script = tmp_path / "out_of_memory_worker.py"
    script.write_text(OUT_OF_MEMORY_WORKER.format(limit=limit))
    upload_azure(dataset_container, "good/", dataset_files())
    body = azure_request(azurite, dataset_container.container_name, "good", batch_size=8)
    assert client.post("/starttraining/", json=body).status_code == 202
    worker = start_worker(script=script)
    seen: list[dict[str, Any]] = []
    status = wait_for(client, "clinic", body["project_name"], seen=seen)
    assert status["result"] == expected, (status, worker.text()[-3000:])
    assert "out of GPU memory at batch_size 8; restarting at 4" in worker.text()
    # Epoch 2 ends only after the restart, so each of its messages says why the batch shrank.
    second = [s["message"] for s in seen if s["message"].startswith("epoch 2/2")]
    assert all(message.endswith(SMALLER) for message in second), second
    if expected == "SUCCESS":  # epoch 1's message stands while epoch 2 trains at the half
        after = [s["message"] for s in seen if s["message"].startswith("epoch 1/2")]
        assert any(message.endswith(SMALLER) for message in after), after
    stored = JobsTable(StorageAccount(settings).table(settings.trainings_table))
    found = stored.get("clinic", body["project_name"])
    assert found is not None and found[0].out_of_memory_batch_size == 8
    assert status["parameters"]["batch_size"] == 4
    assert status["parameters"]["learning_rate"] == DEFAULT_LEARNING_RATE  # unchanged
    if expected == "SUCCESS":
        assert status["message"].endswith(SMALLER.strip("()"))
        metrics = httpx.get(status["files"]["metrics"]).json()
        assert metrics["config"]["batch_size"] == 4
        assert [epoch["epoch"] for epoch in metrics["epochs"]] == [1, 2]  # from epoch 1 again
    else:
        assert status["message"] == (
            "the GPU ran out of memory at batch_size 4 and image_size 32 (after a restart at "
            "half of batch_size 8); try a smaller batch_size or image_size"
        )


def test_an_empty_compile_backend_is_eager_and_the_jpeg_decoder_is_a_setting(
    settings: ApiSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = worker_environment(settings, None, tmp_path, COMPILE_BACKEND="", JPEG_DECODER="pillow")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    worker_settings = WorkerSettings()
    assert worker_settings.compile_backend is None
    assert worker_settings.jpeg_decoder == "pillow"
    monkeypatch.setenv("AITRAINER_JPEG_DECODER", "nvjpeg")
    with pytest.raises(ValueError, match="jpeg_decoder"):
        WorkerSettings()
