"""The sealing key ring and per-job ids, with real workers on real Azurite: a rotated-out key
keeps opening the jobs queued under it; an old message never runs a re-created training."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from dev.sample_data import dataset_files
from dev.stack import Azurite
from function_app.api import ApiSettings
from shared.sealing import key_id
from shared.settings import DEV_SEALING_KEY
from shared.storage.account import StorageAccount
from tests.worker.conftest import upload_azure, wait_for
from tests.worker.test_delivery import queued_message, send_copy, stored_row
from tests.worker.test_failures import eventually, queue_sizes
from tests.worker.test_pipeline import azure_request

ROTATED_KEY = base64.b64encode(b"the key that replaced the dev 1!").decode()  # 32 bytes


def test_after_rotation_the_old_key_opens_jobs_queued_under_it_until_it_leaves_the_ring(
    client: httpx.Client,
    azurite: Azurite,
    dataset_container: Any,
    start_worker: Any,
) -> None:
    upload_azure(dataset_container, "teeth/", dataset_files())
    container = dataset_container.container_name
    for name in ("before", "after"):  # both sealed by the API under the dev key
        body = azure_request(azurite, container, "teeth", project_name=name)
        assert client.post("/starttraining/", json=body).status_code == 202
    rotated = start_worker("--once", SEALING_KEY=ROTATED_KEY, SEALING_OLD_KEYS=DEV_SEALING_KEY)
    assert rotated.process.wait(180) == 0
    assert wait_for(client, "clinic", "before")["result"] == "SUCCESS"
    # A key the ring lacks may be one a restart brings (a rotation under way): the message
    # comes back; after MAX_DELIVERIES it fails clearly, naming the key id.
    worker = start_worker(SEALING_KEY=ROTATED_KEY, MAX_DELIVERIES=2, RETRY_DELAY_SECONDS=1)
    status = wait_for(client, "clinic", "after")
    assert "which the key ring does not hold; its message comes back later" in worker.text()
    assert status["result"] == "FAILED"
    dev_key_id = key_id(base64.b64decode(DEV_SEALING_KEY))
    assert status["message"] == (
        f"the job's credentials could not be opened: sealed under key {dev_key_id}, "
        "which the key ring does not hold"
    )


def test_a_message_of_a_deleted_training_does_not_run_its_successor_of_the_same_name(
    client: httpx.Client,
    settings: ApiSettings,
    azurite: Azurite,
    dataset_container: Any,
    start_worker: Any,
) -> None:
    upload_azure(dataset_container, "teeth/", dataset_files())
    body = azure_request(azurite, dataset_container.container_name, "teeth")
    assert client.post("/starttraining/", json=body).status_code == 202
    earlier = queued_message(settings)
    StorageAccount(settings).queue(settings.jobs_queue).clear_messages()
    assert client.post("/canceltraining/clinic/teeth").status_code == 200
    assert client.delete("/trainings/clinic/teeth").status_code == 200
    send_copy(settings, earlier)  # e.g. a copy of a duplicated send, delivered late
    assert client.post("/starttraining/", json=body).status_code == 202
    worker = start_worker()
    assert wait_for(client, "clinic", "teeth")["result"] == "SUCCESS"
    assert eventually(lambda: queue_sizes(settings) == (0, 0)), queue_sizes(settings)
    assert "message of an earlier training of this name; dropping it" in worker.text()
    row = stored_row(settings)
    assert row.attempt == 0 and row.job_id not in earlier
