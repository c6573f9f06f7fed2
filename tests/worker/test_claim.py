"""The holder rule on its own: who may take a job, and what a takeover costs the job."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.contract import TrainingRow, utcnow
from shared.storage.workers import WorkerInfo
from tests.shared.test_storage import new_row
from worker.claim import Verdict, claim, verdict

LEASE = 300


def row(**fields: object) -> TrainingRow:
    return new_row().model_copy(update={"profile_id": "clinic", **fields})


def beat(seconds_ago: float, job: str | None = "clinic/teeth") -> WorkerInfo:
    return WorkerInfo(
        worker_id="a",
        heartbeat=utcnow() - timedelta(seconds=seconds_ago),
        gpu="cpu",
        device="cpu",
        precision="fp32",
        current_job=job,
    )


# (seconds since the holder's beat, the job it names); built when the test runs, not at
# collection: a heartbeat made then would be stale by the time a long suite gets here.
@pytest.mark.parametrize(
    ("holder", "heartbeat", "expected"),
    [
        (None, None, Verdict.CLAIM),  # nobody holds it
        ("b", (1, "clinic/teeth"), Verdict.CLAIM),  # a row naming me: an earlier life of mine
        ("a", None, Verdict.CLAIM),  # the holder stopped cleanly (no heartbeat row)
        ("a", (LEASE + 1, "clinic/teeth"), Verdict.CLAIM),  # the holder's heartbeat is stale
        ("a", (1, None), Verdict.CLAIM),  # alive, but it left this job
        ("a", (1, "clinic/other"), Verdict.CLAIM),
        ("a", (1, "clinic/teeth"), Verdict.DUPLICATE),  # alive on it, under another message
    ],
)
def test_a_job_is_taken_only_from_a_holder_that_is_gone(
    holder: str | None, heartbeat: tuple[float, str | None] | None, expected: Verdict
) -> None:
    held = row(worker_id=holder, message_id="m1")
    info = beat(*heartbeat) if heartbeat else None
    assert verdict(held, info, "b", "m2", LEASE) == expected


def test_the_holders_own_message_is_put_back_not_dropped() -> None:
    # The holder lost this message's lease; it leaves at its next step, then the job moves.
    assert verdict(row(worker_id="a", message_id="m1"), beat(1), "b", "m1", LEASE) == Verdict.WAIT
    # A row from before claims named no message: its live holder may be running this copy.
    assert verdict(row(worker_id="a"), beat(1), "b", "m1", LEASE) == Verdict.WAIT


def test_a_takeover_after_progress_costs_no_attempt() -> None:
    progressed = row(worker_id="a", checkpoints=5, claimed_checkpoints=3, claim_token="old")
    claim(progressed, "b", "m2")
    assert (progressed.attempt, progressed.worker_id, progressed.message_id) == (0, "b", "m2")
    assert progressed.claim_token not in (None, "old")
    assert progressed.claimed_checkpoints == 5


def test_a_holder_gone_without_a_checkpoint_since_its_claim_costs_one() -> None:
    stuck = row(
        worker_id="a", current_epoch=3, claimed_epoch=3, checkpoints=4, claimed_checkpoints=4
    )
    claim(stuck, "b", "m2")
    assert stuck.attempt == 1 and stuck.last_error == "worker a stopped without progress"
    fresh = row()
    claim(fresh, "b", "m1")
    assert fresh.attempt == 0  # nobody held it before
