"""Webhook signing and delivery against a real loopback receiver."""

from __future__ import annotations

import json
import time

from tests.worker.conftest import WebhookReceiver
from worker.webhooks import SIGNATURE_HEADER, WebhookSender, sign, verify

SECRET = b"shared-secret"


def test_signature_is_stripe_style_and_verifies() -> None:
    body = b'{"a": 1}'
    now = int(time.time())
    header = sign(SECRET, now, body)
    assert header.startswith(f"t={now},v1=")
    assert verify(SECRET, header, body)
    assert not verify(SECRET, header, b'{"a": 2}')
    assert not verify(b"other", header, body)
    stale = sign(SECRET, now - 3600, body)
    assert not verify(SECRET, stale, body)  # replays are refused


def test_deliveries_arrive_in_sequence_order_signed(webhook: WebhookReceiver) -> None:
    sender = WebhookSender(webhook.url, SECRET, allow_private=True, timeout=5, retries=1)
    for sequence in range(1, 21):
        sender.send("epoch_completed", sequence, {"current_epoch": sequence})
    sender.close()
    events = webhook.events()
    assert [e["sequence"] for e in events] == list(range(1, 21))
    for headers, body in webhook.received:
        assert verify(SECRET, headers[SIGNATURE_HEADER], body)
        assert json.loads(body)["event"] == "epoch_completed"


def test_an_unreachable_receiver_never_blocks_the_sender() -> None:
    sender = WebhookSender(
        "http://127.0.0.1:9/hook", SECRET, allow_private=True, timeout=1, retries=1
    )
    began = time.monotonic()
    for sequence in range(50):
        sender.send("epoch_completed", sequence, {})
    assert time.monotonic() - began < 0.5  # send only enqueues
    sender.close(wait_seconds=0.5)  # bounded, whatever is left


def test_private_targets_are_refused_unless_allowed(webhook: WebhookReceiver) -> None:
    sender = WebhookSender(webhook.url, SECRET, allow_private=False, timeout=1, retries=0)
    sender.send("state_changed", 1, {})
    sender.close()
    assert webhook.received == []
