"""The storage facades against a real Azurite."""

from __future__ import annotations

import pytest

from function_app.api import ApiSettings
from shared.contract import DatasetLocation, State, TrainingParams, TrainingRow
from shared.storage.account import StorageAccount
from shared.storage.jobs import JobsTable, StaleRow, TrainingExists
from shared.storage.queue import JobQueue
from shared.storage.workers import WorkersTable


def new_row(name: str = "teeth") -> TrainingRow:
    return TrainingRow(
        profile_id="alice",
        project_name=name,
        params=TrainingParams(
            epochs=2,
            learning_rate=0.01,
            image_size=32,
            batch_size=4,
            step_size=1,
            gamma=0.1,
            export=["onnx"],
            model_type="classification",
            architecture="resnet18",
        ),
        dataset=DatasetLocation(storage_type="azure", container="c", folder="", zipped=False),
    )


@pytest.fixture
def jobs(storage: StorageAccount, settings: ApiSettings) -> JobsTable:
    return JobsTable(storage.table(settings.trainings_table))


@pytest.fixture
def queue(storage: StorageAccount, settings: ApiSettings) -> JobQueue:
    return JobQueue(storage.queue(settings.jobs_queue))


def test_insert_is_unique(jobs: JobsTable) -> None:
    jobs.insert(new_row())
    with pytest.raises(TrainingExists):
        jobs.insert(new_row())


def test_update_with_a_stale_etag_is_refused(jobs: JobsTable) -> None:
    first_etag = jobs.insert(new_row())
    row, etag = jobs.get("alice", "teeth")  # type: ignore[misc]
    row.state = State.DOWNLOADING
    jobs.update(row, etag)
    row.state = State.RUNNING
    with pytest.raises(StaleRow):
        jobs.update(row, first_etag)
    assert jobs.get("alice", "teeth")[0].state == State.DOWNLOADING  # type: ignore[index]


def test_modify_redoes_the_change_after_a_concurrent_write(jobs: JobsTable) -> None:
    jobs.insert(new_row())
    calls = []

    def bump(row: TrainingRow) -> None:
        calls.append(row.current_epoch)
        if len(calls) == 1:  # someone else writes between our read and our write
            other, etag = jobs.get("alice", "teeth")  # type: ignore[misc]
            other.current_epoch = 5
            jobs.update(other, etag)
        row.current_epoch += 1

    row, _ = jobs.modify("alice", "teeth", bump)
    assert calls == [0, 5]
    assert row.current_epoch == 6
    assert jobs.get("alice", "teeth")[0].current_epoch == 6  # type: ignore[index]


def test_a_leased_message_is_hidden_until_released(queue: JobQueue) -> None:
    queue.send("job-1")
    lease = queue.receive(lease_seconds=60)
    assert lease is not None and lease.content == "job-1" and lease.dequeue_count == 1
    assert queue.receive(lease_seconds=60) is None
    renewed = queue.extend(lease, 120)
    assert renewed.pop_receipt != lease.pop_receipt
    queue.release(renewed)
    again = queue.receive(lease_seconds=60)
    assert again is not None and again.dequeue_count == 2
    queue.delete(again)
    assert queue.depth() == 0


def test_workers_are_online_while_their_heartbeat_is_fresh(
    storage: StorageAccount, settings: ApiSettings
) -> None:
    workers = WorkersTable(storage.table(settings.workers_table))
    workers.heartbeat("w1", "cpu", "alice/teeth", device="cpu", precision="fp32")
    online = workers.online(fresh_seconds=60)
    assert [(w.worker_id, w.current_job) for w in online] == [("w1", "alice/teeth")]
    assert workers.online(fresh_seconds=-60) == []  # a heartbeat "from the future" cut-off
    workers.remove("w1")
    assert workers.online(fresh_seconds=60) == []
