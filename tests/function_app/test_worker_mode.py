"""`AITRAINER_WORKER_MODE`: what /checkserver/ expects of workers, against real Azurite."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from pydantic import ValidationError

from dev.stack import ApiServer, Azurite, free_port
from function_app.api import ApiSettings, create_app
from shared.storage.account import StorageAccount
from shared.storage.workers import WorkersTable
from tests.conftest import TOKEN, fresh_settings
from tests.function_app.helpers import start_body


@pytest.fixture
def on_demand(azurite: Azurite) -> Iterator[tuple[httpx.Client, ApiSettings]]:
    settings = fresh_settings(azurite, worker_mode="on_demand")
    server = ApiServer(create_app(settings)).start()
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": TOKEN}) as client:
            yield client, settings
    finally:
        server.stop()


def test_on_demand_is_ok_with_zero_workers_and_says_how_many_jobs_wait(
    on_demand: tuple[httpx.Client, ApiSettings],
) -> None:
    client, settings = on_demand
    assert client.get("/checkserver/").json() == {
        "result": "Ok",
        "message": "0 workers online, 0 jobs waiting; workers start on demand",
    }
    for _ in range(2):
        assert client.post("/starttraining/", json=start_body()).status_code == 202
    response = client.get("/checkserver/")
    assert response.status_code == 200
    assert response.json() == {
        "result": "Ok",
        "message": "0 workers online, 2 jobs waiting; workers start on demand",
    }
    # A running execution of the job counts like any worker.
    WorkersTable(StorageAccount(settings).table(settings.workers_table)).heartbeat(
        "job-execution-1", "NVIDIA T4", None, device="cuda", precision="fp16"
    )
    assert client.get("/checkserver/").json()["message"] == (
        "1 worker online, 2 jobs waiting; workers start on demand"
    )


def test_on_demand_still_fails_when_storage_does_not_answer(azurite: Azurite) -> None:
    dead = f"http://127.0.0.1:{free_port()}/devstoreaccount1"
    settings = ApiSettings(
        env="dev",
        worker_mode="on_demand",
        storage_connection_string=azurite.connection_string.split("BlobEndpoint")[0]
        + f"BlobEndpoint={dead};QueueEndpoint={dead};TableEndpoint={dead};",
        api_tokens=TOKEN,
    )
    server = ApiServer(create_app(settings)).start()
    try:
        check = httpx.get(f"{server.url}/checkserver/", headers={"Authorization": TOKEN})
    finally:
        server.stop()
    assert check.status_code == 503
    assert check.json() == {
        "result": "Failed",
        "message": "storage is unavailable; try again shortly",
    }


def test_worker_mode_is_read_from_the_environment_and_defaults_to_always_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AITRAINER_ENV", "dev")
    assert ApiSettings().worker_mode == "always_on"
    monkeypatch.setenv("AITRAINER_WORKER_MODE", "on_demand")
    assert ApiSettings().worker_mode == "on_demand"
    monkeypatch.setenv("AITRAINER_WORKER_MODE", "sometimes")
    with pytest.raises(ValidationError, match="worker_mode"):
        ApiSettings()


def test_with_require_gpu_workers_that_all_train_on_the_cpu_are_a_failure(
    azurite: Azurite,
) -> None:
    """A worker whose driver broke and that was allowed the CPU must not pass for a GPU."""
    settings = fresh_settings(azurite, require_gpu=True)
    workers = WorkersTable(StorageAccount(settings).table(settings.workers_table))
    workers.heartbeat("vm-1", "cpu", None, device="cpu", precision="fp32")
    server = ApiServer(create_app(settings)).start()
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": TOKEN}) as client:
            failed = client.get("/checkserver/")
            workers.heartbeat("vm-2", "NVIDIA T4", None, device="cuda", precision="fp16")
            ok = client.get("/checkserver/")
    finally:
        server.stop()
    assert failed.status_code == 503
    assert failed.json() == {
        "result": "Failed",
        "message": "every online worker trains on the CPU (AITRAINER_REQUIRE_GPU); "
        "1 worker online, 0 jobs waiting",
    }
    assert ok.status_code == 200
    assert ok.json() == {"result": "Ok", "message": "2 workers online, 0 jobs waiting"}


def test_require_gpu_defaults_to_true_outside_dev(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AITRAINER_ENV", "dev")
    dev = ApiSettings()
    assert not dev.gpu_required
    assert dev.model_copy(update={"env": "prod"}).gpu_required
    monkeypatch.setenv("AITRAINER_REQUIRE_GPU", "true")
    assert ApiSettings().gpu_required
    monkeypatch.setenv("AITRAINER_REQUIRE_GPU", "false")
    assert not ApiSettings().model_copy(update={"env": "prod"}).gpu_required
