"""Exactly-once training under at-least-once delivery, with real workers on real Azurite:
duplicated messages, a worker paused past its lease, kill -9s, jobs that end unclaimed."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from dev.sample_data import dataset_files
from dev.stack import Azurite
from function_app.api import ApiSettings
from shared.contract import TrainingRow
from shared.storage.account import StorageAccount
from shared.storage.jobs import JobsTable
from tests.worker.conftest import WebhookReceiver, upload_azure, wait_for
from tests.worker.test_failures import eventually, queue_sizes
from tests.worker.test_pipeline import azure_request


def stored_row(settings: ApiSettings, project: str = "teeth") -> TrainingRow:
    found = JobsTable(StorageAccount(settings).table(settings.trainings_table)).get(
        "clinic", project
    )
    assert found is not None
    return found[0]


def queued_message(settings: ApiSettings) -> str:
    """The content of the job message waiting in the queue (to send a copy of it later)."""
    queue = StorageAccount(settings).queue(settings.jobs_queue)
    (message,) = queue.peek_messages(max_messages=1)
    return str(message.content)


def send_copy(settings: ApiSettings, content: str) -> None:
    StorageAccount(settings).queue(settings.jobs_queue).send_message(content, time_to_live=-1)


def blob_names(settings: ApiSettings) -> dict[str, Any]:
    """Every blob of the models container and when it was last written."""
    container = StorageAccount(settings).container(settings.models_container)
    return {blob.name: blob.last_modified for blob in container.list_blobs()}


def epochs_webhooked(webhook: WebhookReceiver) -> list[int]:
    return [e["current_epoch"] for e in webhook.events() if e["event"] == "epoch_completed"]


def delivered_by_one_claim(settings: ApiSettings, row: TrainingRow) -> None:
    """The status lists only files of the claim that finished, and no other claim's exist."""
    prefix = f"clinic/{row.project_name}/runs/{row.claim_token}/"
    listed = [*row.exports.values(), *row.files.values()]
    assert listed and all(blob.startswith(prefix) for blob in listed), listed
    runs = {
        name for name in blob_names(settings) if name.startswith(f"clinic/{row.project_name}/runs/")
    }
    assert all(name.startswith(prefix) for name in runs), runs


def holds_progress(settings: ApiSettings, projects: list[str], worker: str) -> bool:
    """Read now, right before a kill: the worker holds a job with a checkpoint since its claim."""
    for project in projects:
        row = stored_row(settings, project)
        if row.worker_id == worker and row.checkpoints > row.claimed_checkpoints:
            return True
    return False


def test_a_copy_of_a_running_jobs_message_is_dropped_and_the_job_trains_once(
    client: httpx.Client,
    settings: ApiSettings,
    azurite: Azurite,
    dataset_container: Any,
    start_worker: Any,
    webhook: WebhookReceiver,
) -> None:
    upload_azure(dataset_container, "teeth/", dataset_files(per_class=24))
    body = azure_request(
        azurite, dataset_container.container_name, "teeth", epochs=6, webhook_url=webhook.url
    )
    assert client.post("/starttraining/", json=body).status_code == 202
    content = queued_message(settings)
    workers = [start_worker(WORKER_ID="first"), start_worker(WORKER_ID="second")]
    wait_for(client, "clinic", "teeth", done=lambda s: s["current_epoch"] >= 2)
    send_copy(settings, content)  # what an SDK send retried after a timeout leaves behind
    status = wait_for(client, "clinic", "teeth")
    assert status["result"] == "SUCCESS", status
    logs = "".join(worker.text() for worker in workers)
    assert "dropping this duplicate message" in logs, logs[-3000:]
    assert eventually(
        lambda: bool(webhook.received) and webhook.events()[-1]["result"] == "SUCCESS"
    )
    assert epochs_webhooked(webhook) == [1, 2, 3, 4, 5, 6]  # each once, in order
    sequences = [e["sequence"] for e in webhook.events()]
    assert sequences == list(range(1, len(sequences) + 1))
    row = stored_row(settings)
    assert row.attempt == 0 and row.checkpoints == 6
    delivered_by_one_claim(settings, row)
    assert eventually(lambda: queue_sizes(settings) == (0, 0)), queue_sizes(settings)


def test_a_worker_paused_past_its_lease_leaves_the_job_to_its_successor_untouched(
    client: httpx.Client,
    settings: ApiSettings,
    azurite: Azurite,
    dataset_container: Any,
    start_worker: Any,
    webhook: WebhookReceiver,
) -> None:
    upload_azure(dataset_container, "teeth/", dataset_files(per_class=24))
    body = azure_request(
        azurite, dataset_container.container_name, "teeth", epochs=5, webhook_url=webhook.url
    )
    client.post("/starttraining/", json=body)
    paused = start_worker(WORKER_ID="paused", CHECKPOINT_SECONDS=0.5)
    wait_for(client, "clinic", "teeth", done=lambda s: s["current_epoch"] >= 1)
    first_claim = stored_row(settings)
    assert first_claim.worker_id == "paused"
    paused.process.send_signal(signal.SIGSTOP)
    # 0: after every batch but an epoch's last, however fast the machine (a 0.5 s epoch on a
    # quiet one never reached 0.5 s of training, and the check below saw none).
    successor = start_worker(WORKER_ID="successor", CHECKPOINT_SECONDS=0)
    try:
        # The paused worker's heartbeat goes stale and its lease lapses: a takeover.
        assert eventually(lambda: stored_row(settings).worker_id == "successor", 60)
    finally:
        resumed_at = time.time()
        paused.process.send_signal(signal.SIGCONT)
    assert eventually(lambda: "leaving it" in paused.text(), 30), paused.text()[-3000:]
    # Whichever notices first after SIGCONT: the heartbeat's lease renewal, its claim check,
    # or the training thread's own claim-conditioned row write.
    noticed = ("its message's lease was lost", "claim moved", "taken over or ended elsewhere")
    assert any(reason in paused.text() for reason in noticed), paused.text()[-3000:]
    status = wait_for(client, "clinic", "teeth")
    assert status["result"] == "SUCCESS", (status, successor.text()[-3000:])
    row = stored_row(settings)
    assert row.attempt == 0  # the paused worker had saved progress: no failed attempt
    # Inside epochs too: AITRAINER_CHECKPOINT_SECONDS reaches the engine (4 more per epoch).
    assert row.checkpoints > 5
    assert "epoch 1/5" not in successor.text()  # it resumed from the paused one's checkpoint
    delivered_by_one_claim(settings, row)
    # After SIGCONT the paused worker uploaded nothing (its own checkpoint blob included).
    old = f".resume/clinic/teeth/{first_claim.claim_token}/"
    late = [
        name
        for name, written in blob_names(settings).items()
        if name.startswith(old) and written.timestamp() > resumed_at - 1
    ]
    assert late == []
    epochs = epochs_webhooked(webhook)
    assert epochs == sorted(epochs) and set(epochs) == set(range(1, 6))
    assert paused.process.poll() is None  # it lives on, ready for the next job


# Six kills of holders with progress, over three jobs of six epochs (each kill costs a worker
# start and a resume: ten of eight epochs took 184 s of the suite's 20 minutes).
KILLS = 6


@pytest.mark.timeout(600)
def test_kill_9s_at_random_lose_no_job_and_burn_no_attempt_of_one_that_progressed(
    client: httpx.Client,
    settings: ApiSettings,
    azurite: Azurite,
    dataset_container: Any,
    start_worker: Any,
) -> None:
    upload_azure(dataset_container, "teeth/", dataset_files(per_class=24))
    projects = ["one", "two", "three"]
    for project in projects:
        body = azure_request(
            azurite, dataset_container.container_name, "teeth", project_name=project, epochs=6
        )
        assert client.post("/starttraining/", json=body).status_code == 202
    rng = random.Random(0)
    names = iter(f"chaos-{n}" for n in range(100))
    alive = {
        name: start_worker(WORKER_ID=name, CHECKPOINT_SECONDS=0.3)
        for name in (next(names), next(names))
    }
    epochs_seen: dict[str, list[int]] = {project: [] for project in projects}
    kills = 0
    deadline = time.monotonic() + 480  # ~70 s on 2 quiet cores; much more when shared
    while time.monotonic() < deadline:
        rows = {project: stored_row(settings, project) for project in projects}
        for project, row in rows.items():
            epochs_seen[project].append(row.current_epoch)
        if all(row.state.finished for row in rows.values()):
            break
        # Kill only a holder with a checkpoint since its claim: every kill comes after
        # progress, so none may cost the job an attempt.
        holders = [row.worker_id for row in rows.values() if row.worker_id in alive]
        victim = rng.choice(holders) if kills < KILLS and holders else None
        if victim is not None and holds_progress(settings, projects, victim):
            alive.pop(victim).process.send_signal(signal.SIGKILL)
            kills += 1
            name = next(names)
            alive[name] = start_worker(WORKER_ID=name, CHECKPOINT_SECONDS=0.3)
            time.sleep(rng.uniform(2, 5))
        else:
            time.sleep(0.5)
    assert kills >= KILLS
    for project in projects:
        row = stored_row(settings, project)
        assert row.state.value == "SUCCESS", (project, row.message)
        assert row.attempt == 0, (project, row.last_error)
        assert epochs_seen[project] == sorted(epochs_seen[project])  # never backwards
        delivered_by_one_claim(settings, row)


def test_a_job_cancelled_while_queued_gets_its_webhook_when_its_message_is_dropped(
    client: httpx.Client,
    azurite: Azurite,
    dataset_container: Any,
    start_worker: Any,
    webhook: WebhookReceiver,
) -> None:
    body = azure_request(
        azurite, dataset_container.container_name, "teeth", webhook_url=webhook.url
    )
    client.post("/starttraining/", json=body)
    assert client.post("/canceltraining/clinic/teeth").json()["result"] == "CANCELLED"
    start_worker()
    assert eventually(lambda: len(webhook.events()) == 1, 60)
    (event,) = webhook.events()
    assert (event["event"], event["result"], event["sequence"]) == ("state_changed", "CANCELLED", 1)
    assert event["message"] == "cancelled before it started"


def test_a_message_delivered_too_often_unclaimed_fails_its_job_with_a_webhook(
    client: httpx.Client,
    settings: ApiSettings,
    azurite: Azurite,
    dataset_container: Any,
    start_worker: Any,
    webhook: WebhookReceiver,
) -> None:
    body = azure_request(
        azurite, dataset_container.container_name, "teeth", webhook_url=webhook.url
    )
    client.post("/starttraining/", json=body)
    queue = StorageAccount(settings).queue(settings.jobs_queue)
    for _ in range(2):  # as two workers that died before claiming it would have left it
        (message,) = queue.receive_messages(max_messages=1, visibility_timeout=1)
        queue.update_message(message, visibility_timeout=0)
    start_worker(MAX_DELIVERIES=2)
    status = wait_for(client, "clinic", "teeth", timeout=60)
    assert status["result"] == "FAILED"
    assert "delivered 3 times without a worker being able to start it" in status["message"]
    assert eventually(lambda: queue_sizes(settings) == (0, 1)), queue_sizes(settings)
    assert eventually(lambda: len(webhook.events()) == 1)
    assert webhook.events()[0]["result"] == "FAILED"


def test_a_worker_clears_only_its_own_folder_at_start(
    settings: ApiSettings, tmp_path: Path, start_worker: Any
) -> None:
    work = tmp_path / "work"
    (work / "me").mkdir(parents=True)
    (work / "me" / "photo-left-by-a-kill.png").write_bytes(b"x")
    (work / "neighbour").mkdir()
    (work / "neighbour" / "in-use.png").write_bytes(b"x")
    worker = start_worker(WORKER_ID="me")
    assert eventually(lambda: "worker me up" in worker.text(), 60), worker.text()
    assert not (work / "me" / "photo-left-by-a-kill.png").exists()
    assert (work / "neighbour" / "in-use.png").exists()
