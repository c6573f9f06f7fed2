"""A Storage Queue of jobs: send, lease, renew, release, delete."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.queue import QueueClient


class LeaseLost(Exception):
    """The message is gone or was received again by someone else (a new pop receipt)."""


@dataclass(frozen=True)
class Lease:
    """A received message, invisible to other consumers until the lease lapses."""

    message_id: str
    pop_receipt: str
    content: str
    dequeue_count: int


class JobQueue:
    def __init__(self, client: QueueClient) -> None:
        self.client = client

    def send(self, content: str) -> None:
        """Enqueue; messages never expire (a job waits as long as it must for a worker)."""
        self.client.send_message(content, time_to_live=-1)

    def receive(self, lease_seconds: int) -> Lease | None:
        """Take the next message for `lease_seconds`, or None when the queue is empty."""
        for message in self.client.receive_messages(
            messages_per_page=1, visibility_timeout=lease_seconds, max_messages=1
        ):
            return Lease(
                message.id, str(message.pop_receipt), message.content, message.dequeue_count or 0
            )
        return None

    def extend(self, lease: Lease, lease_seconds: int) -> Lease:
        """Renew the lease; the returned lease carries the new pop receipt."""
        # Not retried by the SDK: a retry of an update the service applied but whose answer
        # was lost would carry the old pop receipt and read as a lost lease. The caller
        # (the next heartbeat) tries again instead.
        with _lease_errors():
            updated = self.client.update_message(
                lease.message_id,
                lease.pop_receipt,
                visibility_timeout=lease_seconds,
                retry_total=0,
            )
        return replace(lease, pop_receipt=str(updated.pop_receipt))

    def release(self, lease: Lease) -> None:
        """Make the message visible again now, so another worker can take it."""
        self.extend(lease, 0)

    def delete(self, lease: Lease) -> None:
        with _lease_errors():
            self.client.delete_message(lease.message_id, lease.pop_receipt)

    def depth(self) -> int:
        """Approximate number of messages waiting (leased ones included)."""
        count = self.client.get_queue_properties().approximate_message_count
        return int(count or 0)


@contextmanager
def _lease_errors() -> Iterator[None]:
    """404 (message gone) and 400 PopReceiptMismatch both mean the lease is not ours."""
    try:
        yield
    except ResourceNotFoundError as error:
        raise LeaseLost(str(error.status_code)) from error
    except HttpResponseError as error:
        code = getattr(error, "error_code", None)  # a str enum: its value is the service's
        if getattr(code, "value", code) == "PopReceiptMismatch":
            raise LeaseLost("PopReceiptMismatch") from error
        raise
