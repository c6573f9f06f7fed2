"""Worker fixtures: an S3-protocol server, datasets in both stores, worker processes, webhooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import torch
from pydantic import SecretStr

from dev.stack import REPO, Azurite, S3Server, start_s3, stop_process
from function_app.api import ApiSettings
from shared.storage.account import StorageAccount
from tests.conftest import fresh_settings

S3_KEY_ID = "AKIAWORKERTESTKEY001"
S3_SECRET = "worker/test+secret/KEY/never-logged-0123456789"
TERMINAL = {"SUCCESS", "FAILED", "CANCELLED"}


@pytest.fixture
def settings(azurite: Azurite) -> ApiSettings:
    """As the top-level fixture, with loopback webhooks allowed (the receiver is local)."""
    return fresh_settings(azurite, webhook_allow_private=True)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = start_s3()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> tuple[Any, str]:
    """A fresh bucket on the S3 server and a client to fill it."""
    client = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint_url,
        aws_access_key_id=S3_KEY_ID,
        aws_secret_access_key=S3_SECRET,
        region_name="us-east-1",
    )
    bucket = f"datasets-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    return client, bucket


@pytest.fixture
def dataset_container(azurite: Azurite) -> Any:
    """A fresh blob container for a user's datasets (the user's own storage, here Azurite)."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    return service.create_container(f"datasets-{uuid.uuid4().hex[:10]}")


def upload_azure(container: Any, prefix: str, files: dict[str, bytes]) -> None:
    for relative, data in files.items():
        container.upload_blob(f"{prefix}{relative}", data, overwrite=True)


def upload_s3(client: Any, bucket: str, prefix: str, files: dict[str, bytes]) -> None:
    for relative, data in files.items():
        client.put_object(Bucket=bucket, Key=f"{prefix}{relative}", Body=data)


def worker_environment(
    settings: ApiSettings, s3: S3Server | None, work_dir: Path, **overrides: object
) -> dict[str, str]:
    """Environment for `python -m worker` on the same storage as `settings`, tuned for tests."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AITRAINER_")}
    values: dict[str, object] = {
        "ENV": "dev",
        "TRAININGS_TABLE": settings.trainings_table,
        "WORKERS_TABLE": settings.workers_table,
        "JOBS_QUEUE": settings.jobs_queue,
        "POISON_QUEUE": settings.poison_queue,
        "MODELS_CONTAINER": settings.models_container,
        "PRETRAINED": "scratch",
        "DEVICE": "cpu",
        "LEASE_SECONDS": 10,
        "HEARTBEAT_SECONDS": 0.5,
        "POLL_MIN_SECONDS": 0.2,
        "POLL_MAX_SECONDS": 1,
        "RETRY_DELAY_SECONDS": 1,
        "WEBHOOK_ALLOW_PRIVATE": "true",
        "WORK_DIR": work_dir,
    }
    values.update(overrides)
    for name, value in values.items():
        env[f"AITRAINER_{name}"] = str(value)
    connection = settings.storage_connection_string
    assert isinstance(connection, SecretStr)
    env["AITRAINER_STORAGE_CONNECTION_STRING"] = connection.get_secret_value()
    if s3 is not None:
        env["AWS_ENDPOINT_URL"] = s3.endpoint_url
    env["PYTHONUNBUFFERED"] = "1"
    env["OMP_NUM_THREADS"] = "2"
    return env


class WorkerProcess:
    """A real `python -m worker` process whose log goes to a file; script: a file that runs
    worker.__main__.main() instead (with a fault it injects first)."""

    def __init__(
        self, env: dict[str, str], log_path: Path, *args: str, script: Path | None = None
    ) -> None:
        self.log_path = log_path
        self.log = log_path.open("ab")
        command = [str(script)] if script is not None else ["-m", "worker"]
        self.process = subprocess.Popen(
            [sys.executable, *command, *args],
            cwd=REPO,
            env=env,
            stdout=self.log,
            stderr=self.log,
        )

    def stop(self) -> None:
        stop_process(self.process, grace=30)
        self.log.close()

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def start_worker(
    settings: ApiSettings, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker processes for this test's storage; all are stopped at the end."""
    started: list[WorkerProcess] = []
    s3 = request.getfixturevalue("s3_server") if "s3_server" in request.fixturenames else None

    def start(*args: str, script: Path | None = None, **overrides: object) -> WorkerProcess:
        work = tmp_path / "work"
        work.mkdir(exist_ok=True)
        env = worker_environment(settings, s3, work, **overrides)
        if script is not None:
            env["PYTHONPATH"] = str(REPO)  # a script's own folder comes first on sys.path
        log_path = tmp_path / f"worker-{len(started)}.log"
        worker = WorkerProcess(env, log_path, *args, script=script)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def wait_for(
    client: httpx.Client,
    profile: str,
    project: str,
    done: Callable[[dict[str, Any]], bool] = lambda s: s["result"] in TERMINAL,
    timeout: float = 240,
    seen: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Poll the status route until `done`; every answer is appended to `seen`."""
    deadline = time.monotonic() + timeout
    while True:
        status = client.get(f"/statustraining/{profile}/{project}").json()
        if seen is not None:
            seen.append(status)
        if done(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {profile}/{project}: {status}")
        time.sleep(0.2)


class WebhookReceiver:
    """A loopback HTTP server that records what it is sent."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def all_storage_text(settings: ApiSettings) -> str:
    """Every row, queue message and blob of this test's storage, as one searchable text."""
    account = StorageAccount(settings)
    parts = []
    for table in (settings.trainings_table, settings.workers_table):
        parts += [repr(entity) for entity in account.table(table).list_entities()]
    for queue in (settings.jobs_queue, settings.poison_queue):
        parts += [m.content for m in account.queue(queue).peek_messages(max_messages=32)]
    container = account.container(settings.models_container)
    for blob in container.list_blobs():
        parts.append(container.download_blob(blob.name).readall().decode("latin-1"))
    return "\n".join(parts)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread: float reductions then run in one order, so a seeded run repeats."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
