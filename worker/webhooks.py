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
from typing import Any

import requests

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
        session = requests.Session()
        while (payload := self.pending.get()) is not _STOP:
            self._deliver(session, payload)

    def _deliver(self, session: requests.Session, payload: dict[str, Any]) -> None:
        assert self.url is not None
        # Resolve again at each delivery: a name that turned private since the request is refused.
        # The worker waits as long for the name as for the delivery (the API's 5 s bound is
        # for a request a client waits on).
        problem = webhook_url_problem(
            self.url, allow_private=self.allow_private, resolve_seconds=self.timeout
        )
        if problem:
            log.warning(
                "webhook %s #%d not sent: %s", payload["event"], payload["sequence"], problem
            )
            return
        body = json.dumps(payload).encode()
        for attempt in range(1, self.retries + 2):
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(self.secret, int(time.time()), body),
                "User-Agent": "AITrainer-Webhooks/1",
            }
            try:
                response = session.post(
                    self.url,
                    data=body,
                    headers=headers,
                    timeout=self.timeout,
                    allow_redirects=False,
                )
                if response.status_code < 300:
                    return
                reason = f"HTTP {response.status_code}"
            except requests.RequestException as error:
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
