"""Signed webhook deliveries, in order, off the training's thread.

Signature header (Stripe's scheme): `X-AITrainer-Signature: t=<unix time>,v1=<hex HMAC-SHA256
of "<t>.<body>">`. Receivers recompute it with the shared secret and reject old timestamps.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import certifi
import urllib3

from shared.addresses import checked_addresses, resolve_host
from shared.contract import webhook_url_problem

log = logging.getLogger("aitrainer.webhooks")

SIGNATURE_HEADER = "X-AITrainer-Signature"
_STOP = object()


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: bytes, header: str, body: bytes, tolerance_seconds: int = 300) -> bool:
    """What a receiver does: check the HMAC and refuse stale timestamps (replays)."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_seconds:
        return False
    expected = sign(secret, timestamp, body)
    return hmac.compare_digest(expected, header)


class WebhookSender:
    """One job's deliveries: queued, sent in sequence order by one thread, retried.

    A slow or broken receiver never blocks or fails the training: `send` only enqueues,
    and `close` waits a bounded time for what is left.
    """

    def __init__(
        self,
        url: str | None,
        secret: bytes,
        *,
        allow_private: bool,
        timeout: float,
        retries: int,
    ) -> None:
        self.url = url
        self.secret = secret
        self.allow_private = allow_private
        self.timeout = timeout
        self.retries = retries
        self.pending: queue.Queue[Any] = queue.Queue()
        self.thread = threading.Thread(target=self._deliver_all, name="webhooks", daemon=True)
        if url:
            self.thread.start()

    def send(self, event: str, sequence: int, status: dict[str, Any]) -> None:
        if not self.url:
            return
        payload = {
            "event": event,
            "sequence": sequence,
            "delivery_id": str(uuid.uuid4()),
            "timestamp": int(time.time()),
            **status,
        }
        self.pending.put(payload)

    def close(self, wait_seconds: float = 30.0) -> None:
        """Let queued deliveries finish for at most `wait_seconds`, then give up on them."""
        if self.thread.is_alive():
            self.pending.put(_STOP)
            self.thread.join(wait_seconds)

    def _deliver_all(self) -> None:
        while (payload := self.pending.get()) is not _STOP:
            self._deliver(payload)

    def _deliver(self, payload: dict[str, Any]) -> None:
        assert self.url is not None
        # Resolve again at each delivery (a name that turned private since the request is
        # refused) and connect to the very address checked: no second lookup that a
        # rebinding DNS could answer differently. The worker waits as long for the name as
        # for the delivery (the API's 5 s bound is for a request a client waits on).
        target = pinned_target(self.url, self.allow_private, self.timeout)
        if isinstance(target, str):
            log.warning(
                "webhook %s #%d not sent: %s", payload["event"], payload["sequence"], target
            )
            return
        body = json.dumps(payload).encode()
        with target.pool() as pool:
            for attempt in range(1, self.retries + 2):
                headers = {
                    "Host": target.host_header,
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: sign(self.secret, int(time.time()), body),
                    "User-Agent": "AITrainer-Webhooks/1",
                }
                try:
                    response = pool.urlopen(
                        "POST",
                        target.path,
                        body=body,
                        headers=headers,
                        timeout=urllib3.Timeout(self.timeout),
                        redirect=False,
                        retries=False,
                    )
                    if response.status < 300:
                        return
                    reason = f"HTTP {response.status}"
                except urllib3.exceptions.HTTPError as error:
                    reason = type(error).__name__
                if attempt <= self.retries:
                    time.sleep(min(2 ** (attempt - 1), 30))
            log.warning(
                "webhook %s #%d to the job's URL failed after %d tries: %s",
                payload["event"],
                payload["sequence"],
                self.retries + 1,
                reason,
            )


@dataclass(frozen=True)
class PinnedTarget:
    """A webhook URL bound to the one address that was checked for it."""

    scheme: str
    host: str
    port: int
    address: str
    path: str

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"

    def pool(self) -> urllib3.HTTPConnectionPool:
        """Connections to `address`; TLS still verifies the certificate for `host` (SNI)."""
        if self.scheme == "https":
            return urllib3.HTTPSConnectionPool(
                self.address,
                self.port,
                server_hostname=self.host,
                assert_hostname=self.host,
                cert_reqs="CERT_REQUIRED",
                ca_certs=certifi.where(),
                maxsize=1,
            )
        return urllib3.HTTPConnectionPool(self.address, self.port, maxsize=1)


def pinned_target(url: str, allow_private: bool, timeout: float) -> PinnedTarget | str:
    """Where to send a delivery for `url`, or why not (the URL's rules, its name's addresses)."""
    problem = webhook_url_problem(url, allow_private=True)  # the URL's own shape only
    if problem:
        return problem
    parts = urlsplit(url)
    assert parts.hostname is not None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if not allow_private and parts.scheme != "https":
        return "webhook_url must use https"
    # resolve_host looked up here, at call time: tests answer for made-up names through it.
    addresses = checked_addresses(
        "webhook_url", parts.hostname, port, timeout, resolve_host, allow_private=allow_private
    )
    if isinstance(addresses, str):
        return addresses
    if not addresses:
        return f"webhook_url host '{parts.hostname}' does not resolve"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return PinnedTarget(parts.scheme, parts.hostname, port, addresses[0], path)
