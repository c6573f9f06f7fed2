"""The holder rule: how at-least-once delivery still trains each job once.

A row names its holder (worker id + a claim token, new for every claim) and the message it
runs under. Another worker takes the job over only when the holder is gone: its heartbeat
is older than a lease, or it no longer says it works on this job. A copy of the message
arriving while the holder lives is dropped when it is a duplicate (another message id),
and put back for later when it is the holder's own message (the holder lost its lease and
will leave at its next step, see Worker._beat).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime, timedelta

from shared.contract import TrainingRow, utcnow
from shared.storage.workers import WorkerInfo


class Verdict(enum.Enum):
    CLAIM = "claim"  # nobody holds the job, or its holder is gone: take it
    DUPLICATE = "duplicate"  # a live holder runs it under another message: drop this copy
    WAIT = "wait"  # a live holder runs it under this very message: put it back for later


class HeldElsewhere(Exception):
    """A live worker holds the job; verdict says what to do with this copy of its message."""

    def __init__(self, verdict: Verdict, holder: str):
        super().__init__(f"held by {holder} ({verdict.value})")
        self.verdict = verdict


def job_key(row: TrainingRow) -> str:
    """How a worker's heartbeat names the job it works on."""
    return f"{row.profile_id}/{row.project_name}"


def holder_alive(
    row: TrainingRow, holder: WorkerInfo | None, lease_seconds: float, now: datetime
) -> bool:
    """The row's holder beat within a lease and still says it works on this job."""
    if holder is None or holder.current_job != job_key(row):
        return False
    return now - holder.heartbeat < timedelta(seconds=lease_seconds)


def verdict(
    row: TrainingRow,
    holder: WorkerInfo | None,
    me: str,
    message_id: str,
    lease_seconds: float,
    now: datetime | None = None,
) -> Verdict:
    """What worker `me`, holding message `message_id`, may do with the row's job."""
    # A worker runs one job at a time: a row naming us is an earlier life of ours.
    if row.worker_id is None or row.worker_id == me:
        return Verdict.CLAIM
    if not holder_alive(row, holder, lease_seconds, now or utcnow()):
        return Verdict.CLAIM
    # A row from before claims named no message: its live holder may run this very copy.
    return Verdict.WAIT if row.message_id in (None, message_id) else Verdict.DUPLICATE


def claim(row: TrainingRow, me: str, message_id: str) -> None:
    """Make `me` the holder, with a new claim token.

    A holder that left without a checkpoint since its claim counts as a failed attempt
    (it may be what crashes workers); one that saved progress was stopped from outside (an
    eviction, a kill) and costs the job nothing.
    """
    progressed = row.checkpoints > row.claimed_checkpoints or row.current_epoch > row.claimed_epoch
    if row.worker_id is not None and not progressed:
        row.attempt += 1
        row.last_error = f"worker {row.worker_id} stopped without progress"
    row.worker_id = me
    row.claim_token = uuid.uuid4().hex
    row.message_id = message_id
    row.claimed_epoch = row.current_epoch
    row.claimed_checkpoints = row.checkpoints
    row.lastupdate = utcnow()
