"""CLI fixtures: the `aitrainer` command as a real subprocess against the real local stack.

The API (uvicorn on loopback), Azurite, the S3 server and worker processes come from the
top-level and worker fixtures; every test gets its own dataset container and a working
directory where `./PROJECT` downloads land.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import SecretStr

from dev.sample_data import dataset_files, write_dataset
from dev.stack import REPO, Azurite
from function_app.api import ApiSettings
from tests.conftest import TOKEN
from tests.worker.conftest import s3_bucket, s3_server, start_worker

__all__ = ["s3_bucket", "s3_server", "start_worker"]  # fixtures shared with the worker tests

# Tiny trainings: two epochs of MobileNetV3-Small at 32 px, ONNX only (seconds on a CPU).
TINY_FLAGS = (
    "--epochs=2",
    "--image-size=32",
    "--batch-size=8",
    "--architecture=mobilenet_v3_small",
    "--export=onnx",
    "--poll-interval=0.3",
)


@dataclass
class Cli:
    """Runs `python -m cli` in `cwd` with the CLI's environment pointing at the test stack."""

    env: dict[str, str]
    cwd: Path
    started: list[subprocess.Popen[str]] = field(default_factory=list)

    def command(self, args: tuple[str, ...]) -> list[str]:
        return [sys.executable, "-m", "cli", *args]

    def environment(self, overrides: dict[str, str | None]) -> dict[str, str]:
        env = dict(self.env)
        for name, value in overrides.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def run(
        self, *args: str, timeout: float = 240, **env: str | None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(args),
            cwd=self.cwd,
            env=self.environment(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, *args: str, **env: str | None) -> Running:
        process = subprocess.Popen(
            self.command(args),
            cwd=self.cwd,
            env=self.environment(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # A Ctrl-C must reach it as KeyboardInterrupt even where our own parent ignores
            # SIGINT (background jobs inherit SIG_IGN, and Python then keeps it).
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.started.append(process)
        return Running(process)


class Running:
    """A CLI process whose stdout is read line by line as it is written."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_for_output(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} in the output: {''.join(self.lines)}")
            time.sleep(0.05)

    def finish(self, timeout: float = 30) -> tuple[int, str, str]:
        assert self.process.stderr is not None
        code = self.process.wait(timeout)
        self.reader.join(timeout)
        return code, "".join(self.lines), self.process.stderr.read()


@pytest.fixture
def dataset_container(azurite: Azurite) -> str:
    """A container name for this test's uploads (the CLI creates it)."""
    return f"datasets-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def cli(api_url: str, azurite: Azurite, dataset_container: str, tmp_path: Path) -> Iterator[Cli]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AITRAINER")}
    env |= {
        "AITRAINER_CLI_API_URL": api_url,
        "AITRAINER_CLI_TOKEN": TOKEN,
        "AITRAINER_CLI_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "AITRAINER_CLI_CONTAINER": dataset_container,
        "PYTHONPATH": str(REPO),  # run from the checkout, as `python -m cli`
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
    }
    work = tmp_path / "cwd"
    work.mkdir()
    runner = Cli(env, work)
    yield runner
    for process in runner.started:
        if process.poll() is None:
            process.kill()
        process.wait()


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A local dataset folder: 2 classes of 16 small PNGs each."""
    return write_dataset(tmp_path / "photos", dataset_files())


def secrets_of(settings: ApiSettings, azurite: Azurite) -> list[str]:
    """What must never appear in the CLI's output."""
    connection = settings.storage_connection_string
    assert isinstance(connection, SecretStr)
    key = azurite.connection_string.split("AccountKey=")[1].split(";")[0]
    return [TOKEN, azurite.connection_string, connection.get_secret_value(), key]
