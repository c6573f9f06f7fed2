"""Start and stop the real local servers that `make dev`, `make demo` and the tests use."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from shared.settings import azurite_connection_string

REPO = Path(__file__).resolve().parent.parent
AZURITE = REPO / "node_modules" / ".bin" / "azurite"
STARTUP_SECONDS = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server for port {port} exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {STARTUP_SECONDS} s")


@dataclass
class Azurite:
    """A running Azurite (in memory) and the connection string that reaches it."""

    process: subprocess.Popen[bytes]
    blob_port: int
    queue_port: int
    table_port: int

    @property
    def connection_string(self) -> str:
        return azurite_connection_string(self.blob_port, self.queue_port, self.table_port)

    def stop(self) -> None:
        stop_process(self.process)


def start_azurite(blob_port: int = 0, queue_port: int = 0, table_port: int = 0) -> Azurite:
    """Start Azurite from node_modules on the given (or free) loopback ports."""
    if not AZURITE.exists():
        raise RuntimeError(f"{AZURITE} is missing: run `npm ci` (make does it for you)")
    ports = [port or free_port() for port in (blob_port, queue_port, table_port)]
    command = [str(AZURITE), "--inMemoryPersistence", "--silent", "--skipApiVersionCheck"]
    command += ["--disableTelemetry", "--loose"]
    for service, port in zip(("blob", "queue", "table"), ports, strict=True):
        command += [f"--{service}Host", "127.0.0.1", f"--{service}Port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for port in ports:
        wait_for_port(port, process)
    return Azurite(process, *ports)


@dataclass
class S3Server:
    """A moto server speaking the S3 protocol on loopback."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.process)


def start_s3(port: int = 0) -> S3Server:
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, process)
    return S3Server(process, port)


def stop_process(process: subprocess.Popen[Any], grace: float = 10) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class ApiServer:
    """The ASGI app served by uvicorn in a background thread (a real HTTP server)."""

    def __init__(self, app: Any, port: int = 0) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ApiServer:
        self.thread.start()
        deadline = time.monotonic() + STARTUP_SECONDS
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(STARTUP_SECONDS)
