"""Webhook signing and delivery against a real loopback receiver."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from tests.worker.conftest import WebhookReceiver
from worker import webhooks
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


class FakeDns:
    """Answers for made-up names, in turn; counts the lookups."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.lookups = 0

    def __call__(self, host: str, port: int, timeout: float) -> list[str]:
        self.lookups += 1
        return self.answers[min(self.lookups, len(self.answers)) - 1]


def test_a_delivery_connects_to_the_address_it_checked_not_to_a_second_lookup(
    webhook: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    dns = FakeDns(["127.0.0.1"])
    monkeypatch.setattr(webhooks, "resolve_host", dns)
    port = webhook.server.server_address[1]
    # "hooks.invalid" resolves nowhere else: only the pinned address can have been used.
    sender = WebhookSender(
        f"http://hooks.invalid:{port}/hook?tenant=1",
        SECRET,
        allow_private=True,
        timeout=5,
        retries=0,
    )
    sender.send("state_changed", 1, {})
    sender.send("state_changed", 2, {})
    sender.close()
    assert [e["sequence"] for e in webhook.events()] == [1, 2]
    assert dns.lookups == 2  # one per delivery, none by the HTTP client
    headers, _ = webhook.received[0]
    assert headers["Host"] == f"hooks.invalid:{port}"


def test_a_name_that_turns_private_between_deliveries_is_not_contacted_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    dns = FakeDns(["93.184.215.14"], ["10.0.0.7"])  # public, then rebound into our network
    monkeypatch.setattr(webhooks, "resolve_host", dns)
    contacted: list[str] = []
    real_pool = webhooks.PinnedTarget.pool

    def pool(target: webhooks.PinnedTarget) -> Any:
        contacted.append(target.address)
        return real_pool(target)

    monkeypatch.setattr(webhooks.PinnedTarget, "pool", pool)
    sender = WebhookSender(
        "https://hooks.example.com/hook", SECRET, allow_private=False, timeout=0.5, retries=0
    )
    with caplog.at_level(logging.WARNING, logger="aitrainer.webhooks"):
        sender.send("state_changed", 1, {})
        sender.send("state_changed", 2, {})
        sender.close()
    assert contacted == ["93.184.215.14"]  # the first (unreachable here); never 10.0.0.7
    assert "#2 not sent: webhook_url host 'hooks.example.com' resolves to a non-public" in (
        caplog.text
    )


@pytest.mark.parametrize("address", ["64:ff9b::a00:7", "::ffff:10.0.0.7", "2002:a00:7::"])
def test_translated_private_addresses_are_refused_at_delivery(
    monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    monkeypatch.setattr(webhooks, "resolve_host", FakeDns([address]))
    target = webhooks.pinned_target("https://hooks.example.com/h", allow_private=False, timeout=1)
    assert target == "webhook_url host 'hooks.example.com' resolves to a non-public address"
