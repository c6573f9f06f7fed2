"""Storage that stops answering: the worker lives through it and the job completes.

This module runs its own Azurite (the fixture below replaces the session's), so pausing it
with SIGSTOP touches no other test. Azurite keeps its in-memory state across the pause.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from dev.sample_data import dataset_files
from dev.stack import Azurite, start_azurite
from function_app.api import ApiSettings
from tests.worker.conftest import upload_azure, wait_for
from tests.worker.test_failures import eventually
from tests.worker.test_pipeline import azure_request

STORAGE_TIMEOUT = 2  # AITRAINER_STORAGE_TIMEOUT_SECONDS of the worker under test


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    server = start_azurite()
    yield server
    server.stop()


def pause(azurite: Azurite, seconds: float) -> None:
    azurite.process.send_signal(signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        azurite.process.send_signal(signal.SIGCONT)


def test_the_worker_outlives_storage_that_stops_answering_and_the_job_completes(
    client: httpx.Client,
    settings: ApiSettings,
    azurite: Azurite,
    dataset_container: Any,
    start_worker: Any,
) -> None:
    upload_azure(dataset_container, "teeth/", dataset_files(per_class=24))
    # Retries off: every failed request reaches our code, which must not exit over it.
    worker = start_worker(STORAGE_TIMEOUT_SECONDS=STORAGE_TIMEOUT, STORAGE_RETRIES=0)
    assert eventually(lambda: "up on" in worker.text(), 60)
    pause(azurite, 2 * STORAGE_TIMEOUT)  # idle: receiving fails
    assert eventually(lambda: "a storage request failed (" in worker.text(), 30)
    body = azure_request(azurite, dataset_container.container_name, "teeth", epochs=20)
    assert client.post("/starttraining/", json=body).status_code == 202
    running = wait_for(client, "clinic", "teeth", done=lambda s: s["current_epoch"] >= 1)
    logged = len(worker.text())
    pause(azurite, 2 * STORAGE_TIMEOUT)  # training: heartbeats, renewals, row writes fail
    during = worker.text()[logged:]
    assert "a storage request failed (" in during, during  # the pause hit the training
    status = wait_for(client, "clinic", "teeth")
    assert status["result"] == "SUCCESS", (status, worker.text()[-3000:])
    assert running["current_epoch"] < 20 and status["current_epoch"] == 20
    assert worker.process.poll() is None
