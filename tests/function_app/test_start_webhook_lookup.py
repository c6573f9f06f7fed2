"""A start request resolves its webhook host off the event loop, and gives up in bounded time.

The servers are real (uvicorn on a thread of this process, Azurite); only the name lookup of
one host is slowed, by replacing `socket.getaddrinfo` in this process, as a DNS server that
does not answer would.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from dev.stack import ApiServer, Azurite
from function_app.api import create_app
from tests.conftest import TOKEN, fresh_settings
from tests.function_app.helpers import start_body

SLOW_HOST = "hooks.example.com"
PUBLIC_ADDRESS = "93.184.215.14"


class SlowResolver:
    """`socket.getaddrinfo`, except that SLOW_HOST answers only once `answer` is set."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.asked = threading.Event()
        self.answer = threading.Event()

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != SLOW_HOST:
            return self.real(host, port, *args, **kwargs)
        self.asked.set()
        self.answer.wait(15)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (PUBLIC_ADDRESS, port))
        ]


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlowResolver]:
    slow = SlowResolver(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", slow)
    yield slow
    slow.answer.set()  # lookups still waiting end now


@contextmanager
def serving(azurite: Azurite, **overrides: object) -> Iterator[str]:
    """The API outside dev's webhook rules (public https only), on loopback."""
    settings = fresh_settings(azurite, webhook_allow_private=False, **overrides)
    server = ApiServer(create_app(settings)).start()
    try:
        yield server.url
    finally:
        server.stop()


def client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": TOKEN}, timeout=30)


def test_a_slow_webhook_lookup_does_not_delay_a_concurrent_status_request(
    azurite: Azurite, resolver: SlowResolver
) -> None:
    with serving(azurite) as url, client(url) as starter, client(url) as poller:
        known = start_body()
        assert starter.post("/starttraining/", json=known).status_code == 202
        status_path = f"/statustraining/alice/{known['project_name']}"
        assert poller.get(status_path).status_code == 200  # connections and clients warm

        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(
                starter.post,
                "/starttraining/",
                json=start_body(webhook_url=f"https://{SLOW_HOST}/hook"),
            )
            assert resolver.asked.wait(10), "the start request never looked the host up"
            began = time.monotonic()
            status = poller.get(status_path, timeout=5)
            took = time.monotonic() - began
            assert not waiting.done()  # the lookup was still hanging while status answered
            resolver.answer.set()
            started = waiting.result(30)

    assert status.status_code == 200
    assert took < 0.1, f"status took {took * 1000:.0f} ms while a webhook lookup hung"
    assert started.status_code == 202


def test_a_webhook_host_that_never_resolves_is_refused_after_the_configured_time(
    azurite: Azurite, resolver: SlowResolver
) -> None:
    hook = f"https://{SLOW_HOST}/hook"
    with serving(azurite, webhook_resolve_seconds=0.5) as url, client(url) as http:
        began = time.monotonic()
        # More at once than there are lookup slots: those waiting for a slot give up in time too.
        with ThreadPoolExecutor(12) as pool:
            answers = list(
                pool.map(
                    lambda _: http.post("/starttraining/", json=start_body(webhook_url=hook)),
                    range(12),
                )
            )
        took = time.monotonic() - began
        listed = http.get("/trainings/alice")

    for answer in answers:
        assert answer.status_code == 400
        assert answer.json()["status"] == "FAILED"
        assert answer.json()["message"] == (
            f"webhook_url host '{SLOW_HOST}' did not resolve within 0.5 s"
        )
    assert 0.5 <= took < 3, took
    assert listed.status_code == 404  # nothing was recorded
