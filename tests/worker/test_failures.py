"""Broken and hostile inputs end FAILED with a clear message; the worker stays up."""

from __future__ import annotations

import io
import os
import re
import signal
import stat
import time
import zipfile
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from dev.sample_data import dataset_files, image_bytes
from dev.stack import Azurite, free_port
from function_app.api import ApiSettings
from shared.contract import State
from shared.storage.account import StorageAccount
from shared.storage.jobs import JobsTable
from tests.worker.conftest import (
    S3_KEY_ID,
    S3_SECRET,
    WebhookReceiver,
    upload_azure,
    wait_for,
)
from tests.worker.test_pipeline import EVERY_FORMAT, azure_request, s3_request


def queue_sizes(settings: ApiSettings) -> tuple[int, int]:
    """Messages in the jobs queue and in the poison queue."""
    account = StorageAccount(settings)
    return tuple(  # type: ignore[return-value]
        len(list(account.queue(name).peek_messages(max_messages=32)))
        for name in (settings.jobs_queue, settings.poison_queue)
    )


def eventually(condition: Callable[[], bool], seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def zip_with(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for info, data in entries:
            bundle.writestr(info, data)
    return buffer.getvalue()


def symlink_entry() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("good/link.png")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def test_hostile_and_broken_datasets_fail_clearly_and_the_worker_goes_on(
    client: httpx.Client,
    azurite: Azurite,
    dataset_container: Any,
    s3_bucket: tuple[Any, str],
    start_worker: Any,
) -> None:
    files = dataset_files()
    container = dataset_container.container_name
    blobs = {
        "slip.zip": zip_with([("../../evil.png", b"x"), *files.items()]),
        "absolute.zip": zip_with([("/etc/evil.png", b"x")]),
        "link.zip": zip_with([(symlink_entry(), b"/etc/passwd"), *files.items()]),
        "bomb.zip": zip_with([("bad/bomb.png", b"\0" * (8 << 20))]),
        "fake.zip": b"this is not a zip archive",
        "one-class/only/a.png": files["bad/bad_000.png"],
        # 16 bad and 4 good images: good keeps 3 to train on after the split, fewer than 5.
        **{
            f"tiny-class/{name}": data
            for name, data in files.items()
            if name.startswith("bad/") or name < "good/good_004"
        },
        "big/bad/huge.png": os.urandom(3 << 20),
        "good/": b"",
    }
    upload_azure(dataset_container, "", {k: v for k, v in blobs.items() if not k.endswith("/")})
    upload_azure(dataset_container, "good/", files)
    refused_key = azurite.connection_string.replace("AccountKey=Eby8", "AccountKey=AAAA")
    unreachable = (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=eA==;"
        f"BlobEndpoint=http://127.0.0.1:{free_port()}/devstoreaccount1;"
    )
    cases: list[tuple[dict[str, Any], str]] = [
        (azure_request(azurite, container, "slip", zipped=True), "points outside the archive"),
        (azure_request(azurite, container, "absolute", zipped=True), "points outside the archive"),
        (azure_request(azurite, container, "link", zipped=True), "is a symbolic link"),
        (azure_request(azurite, container, "bomb", zipped=True), "possible zip bomb"),
        (azure_request(azurite, container, "fake", zipped=True), "not a valid zip file"),
        (azure_request(azurite, container, "nothing-here"), "folder 'nothing-here' of container"),
        (azure_request(azurite, container, "one-class"), "at least 2 class folders"),
        (
            azure_request(azurite, container, "tiny-class"),
            "class 'good' has 3 training images; each class needs at least 5",
        ),
        (azure_request(azurite, container, "big"), "the limit is 2097152"),
        (
            azure_request(azurite, "no-such-container", "good", project_name="nocontainer"),
            "container 'no-such-container' does not exist",
        ),
        (
            azure_request(
                azurite,
                container,
                "good",
                project_name="badkey",
                azure_connection_string=refused_key,
            ),
            "storage account refused azure_connection_string",
        ),
        (
            azure_request(
                azurite,
                container,
                "good",
                project_name="unreachable",
                azure_connection_string=unreachable,
            ),
            "could not reach the storage account",
        ),
        (s3_request("no-such-bucket", "good"), "bucket 'no-such-bucket' does not exist"),
        (azure_request(azurite, container, "good"), ""),  # after all that, a good job still runs
    ]
    for body, _ in cases:
        assert client.post("/starttraining/", json=body).status_code == 202, body
    worker = start_worker(MAX_DATASET_BYTES=2 << 20)
    for body, expected in cases:
        status = wait_for(client, "clinic", body["project_name"])
        if expected:
            assert status["result"] == "FAILED", (body["project_name"], status)
            assert expected in status["message"], (body["project_name"], status["message"])
        else:
            assert status["result"] == "SUCCESS", (status, worker.text()[-3000:])
    assert worker.process.poll() is None  # still up
    log = worker.text()
    for secret in (refused_key.split("AccountKey=")[1].split(";")[0], S3_SECRET, S3_KEY_ID):
        assert secret not in log
    # Every job's download is deleted: the row turns SUCCESS just before the job's own
    # clean-up runs, so give that a moment.
    (work,) = (worker.log_path.parent / "work").iterdir()  # the worker's own folder
    assert eventually(lambda: not any(work.iterdir())), list(work.iterdir())


def test_a_classifier_whose_loss_diverges_ends_failed_saying_so(
    client: httpx.Client, azurite: Azurite, dataset_container: Any, start_worker: Any
) -> None:
    # The seed's largest learning rate on two-image batches: the loss is NaN by epoch 2.
    upload_azure(dataset_container, "good/", dataset_files())
    body = azure_request(
        azurite, dataset_container.container_name, "good", learning_rate=1.0, batch_size=2
    )
    assert client.post("/starttraining/", json=body).status_code == 202
    worker = start_worker()
    status = wait_for(client, "clinic", body["project_name"])
    assert status["result"] == "FAILED", (status, worker.text()[-3000:])
    assert "training diverged in epoch" in status["message"]
    assert "try a smaller learning_rate than 1.0" in status["message"]
    assert not status.get("exports")  # nothing from a diverged run is delivered


def test_a_model_that_learned_nothing_succeeds_but_says_so(
    client: httpx.Client,
    azurite: Azurite,
    dataset_container: Any,
    start_worker: Any,
    webhook: WebhookReceiver,
) -> None:
    # Labels that have nothing to do with the pixels: every image is the same picture.
    same = image_bytes((90, 120, 200), 32, "one picture")
    upload_azure(
        dataset_container,
        "noise/",
        {f"{label}/{index:02d}.png": same for label in ("bad", "good") for index in range(12)},
    )
    # leakage "keep": the check would otherwise keep the one picture on one side of the split.
    body = azure_request(
        azurite, dataset_container.container_name, "noise", webhook_url=webhook.url, leakage="keep"
    )
    assert client.post("/starttraining/", json=body).status_code == 202
    worker = start_worker()
    status = wait_for(client, "clinic", body["project_name"])
    assert status["result"] == "SUCCESS", (status, worker.text()[-3000:])
    assert status["accuracy"] == 0.5
    assert status["message"].startswith(
        "the model did not learn: its best validation accuracy 50.0% is below 75.0%"
    )
    assert "more epochs than 2" in status["message"] and "ImageNet weights" in status["message"]
    assert eventually(lambda: any(e["result"] == "SUCCESS" for e in webhook.events()))
    final = next(e for e in webhook.events() if e["result"] == "SUCCESS")
    assert final["message"] == status["message"]


def test_kill_9_during_training_resumes_from_the_checkpoint(
    client: httpx.Client,
    settings: ApiSettings,
    azurite: Azurite,
    dataset_container: Any,
    start_worker: Any,
) -> None:
    upload_azure(dataset_container, "teeth/", dataset_files(per_class=24))
    body = azure_request(azurite, dataset_container.container_name, "teeth", epochs=6)
    client.post("/starttraining/", json=body)
    first = start_worker(LEASE_SECONDS=10)
    seen: list[dict[str, Any]] = []
    wait_for(client, "clinic", "teeth", done=lambda s: s["current_epoch"] >= 2, seen=seen)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    killed_at = max(s["current_epoch"] for s in seen)
    assert killed_at < 6
    second = start_worker(LEASE_SECONDS=10)
    status = wait_for(client, "clinic", "teeth", seen=seen)
    assert status["result"] == "SUCCESS", (status, second.text()[-3000:])
    order = [s.value for s in State]
    assert [order.index(s["result"]) for s in seen] == sorted(
        order.index(s["result"]) for s in seen
    )
    assert [s["current_epoch"] for s in seen] == sorted(s["current_epoch"] for s in seen)
    assert f"resuming from epoch {killed_at}" in second.text() or any(
        f"resuming from epoch {killed_at}" in s["message"] for s in seen
    )
    # The second worker trained only the epochs the first had not finished.
    assert second.text().count("epoch ") and "epoch 1/6" not in second.text()
    row, _ = JobsTable(StorageAccount(settings).table(settings.trainings_table)).get(
        "clinic", "teeth"
    )  # type: ignore[misc]
    assert row.attempt == 0  # a lapsed lease of a progressing job is not a failure


@pytest.mark.parametrize("change", ["one image more", "a class more"])
def test_first_sigterm_pauses_after_the_epoch_and_another_worker_finishes(
    client: httpx.Client,
    settings: ApiSettings,
    azurite: Azurite,
    dataset_container: Any,
    start_worker: Any,
    change: str,
) -> None:
    """The dataset also changes while the job is paused (the kill -9 test above resumes one
    whose dataset stayed). One image more: the checkpoint's epochs were drawn over other
    images, so the next worker says so and trains from epoch 1. A class more is another
    model: FAILED at once, saying what to do."""
    upload_azure(dataset_container, "teeth/", dataset_files(per_class=24))
    body = azure_request(azurite, dataset_container.container_name, "teeth", epochs=5)
    client.post("/starttraining/", json=body)
    first = start_worker()
    wait_for(client, "clinic", "teeth", done=lambda s: s["current_epoch"] >= 1)
    first.process.send_signal(signal.SIGTERM)
    assert first.process.wait(60) == 0
    paused = client.get("/statustraining/clinic/teeth").json()
    assert paused["result"] == "RUNNING"
    assert "paused after epoch" in paused["message"]
    assert paused["current_epoch"] < 5
    jobs = JobsTable(StorageAccount(settings).table(settings.trainings_table))
    before = jobs.get("clinic", "teeth")
    assert before is not None and before[0].checkpoint_blob is not None
    if change == "a class more":
        upload_azure(dataset_container, "teeth/", dataset_files(("okay",), per_class=24))
        second = start_worker()
        status = wait_for(client, "clinic", "teeth")
        assert status["result"] == "FAILED", (status, second.text()[-3000:])
        assert status["message"] == (
            f"cannot resume after epoch {paused['current_epoch']}: the checkpoint was trained "
            "on classes ['bad', 'good'], the dataset has ['bad', 'good', 'okay']; delete the "
            "training and start it again to train on the dataset as it is now"
        )
        row = jobs.get("clinic", "teeth")
        assert row is not None and row[0].attempt == 0  # not retried: no retry could help
        return
    grown = dataset_files(per_class=25)
    upload_azure(dataset_container, "teeth/", {k: v for k, v in grown.items() if "_024" in k})
    second = start_worker()
    seen: list[dict[str, Any]] = []
    status = wait_for(client, "clinic", "teeth", seen=seen)
    assert status["result"] == "SUCCESS" and status["current_epoch"] == 5
    assert "epoch 1/5" in second.text()  # trained again, not resumed
    refused = [s for s in seen if "cannot continue" in s["message"]]
    assert refused, [s["message"] for s in seen]
    assert refused[0]["current_epoch"] == 0
    assert refused[0]["message"].startswith("the dataset is split otherwise")
    assert f"the checkpoint of epoch {paused['current_epoch']} cannot" in refused[0]["message"]
    blobs = StorageAccount(settings).container(settings.models_container)
    assert not blobs.get_blob_client(before[0].checkpoint_blob).exists()  # deleted, not left


def test_cancel_stops_a_running_training_and_keeps_its_checkpoint(
    client: httpx.Client,
    settings: ApiSettings,
    azurite: Azurite,
    dataset_container: Any,
    start_worker: Any,
) -> None:
    upload_azure(dataset_container, "teeth/", dataset_files(per_class=24))
    client.post(
        "/starttraining/",
        json=azure_request(azurite, dataset_container.container_name, "teeth", epochs=50),
    )
    start_worker()
    wait_for(client, "clinic", "teeth", done=lambda s: s["current_epoch"] >= 1)
    assert client.post("/canceltraining/clinic/teeth").status_code == 200
    status = wait_for(client, "clinic", "teeth", timeout=60)
    assert status["result"] == "CANCELLED"
    assert status["current_epoch"] < 50
    account = StorageAccount(settings)
    names = [b.name for b in account.container(settings.models_container).list_blobs()]
    row, _ = JobsTable(account.table(settings.trainings_table)).get("clinic", "teeth")  # type: ignore[misc]
    assert row.checkpoint_blob.startswith(".resume/clinic/teeth/")
    assert row.checkpoint_blob in names


def test_cancel_while_exporting_stops_before_the_next_format_and_delivers_nothing(
    client: httpx.Client,
    settings: ApiSettings,
    azurite: Azurite,
    dataset_container: Any,
    start_worker: Any,
) -> None:
    """Every format and variant asked for: the export is long enough that a cancel seen
    at EXPORTING (the heartbeat reads it every 0.5 s) lands before its last stage."""
    upload_azure(dataset_container, "teeth/", dataset_files(per_class=12))
    body = azure_request(
        azurite,
        dataset_container.container_name,
        "teeth",
        export=EVERY_FORMAT,
        export_precision=["fp32", "fp16", "int8"],
    )
    assert client.post("/starttraining/", json=body).status_code == 202
    worker = start_worker()
    wait_for(client, "clinic", "teeth", done=lambda s: s["result"] == "EXPORTING")
    assert client.post("/canceltraining/clinic/teeth").status_code == 200
    status = wait_for(client, "clinic", "teeth", timeout=120)
    assert status["result"] == "CANCELLED", (status, worker.text()[-3000:])
    assert re.fullmatch(
        r"cancelled while exporting( \([a-z0-9_, ]+ done, none delivered\))?", status["message"]
    ), status["message"]
    assert "executorch" not in status["message"]  # the last format never started
    assert not status.get("exports")
    blobs = StorageAccount(settings).container(settings.models_container)
    names = [b.name for b in blobs.list_blobs()]
    assert not [n for n in names if n.rsplit("/", 1)[-1].startswith("model")], names
    assert "manifest.json" not in {n.rsplit("/", 1)[-1] for n in names}


def test_a_job_that_keeps_failing_ends_failed_in_the_poison_queue(
    client: httpx.Client,
    settings: ApiSettings,
    azurite: Azurite,
    dataset_container: Any,
    start_worker: Any,
) -> None:
    upload_azure(dataset_container, "teeth/", dataset_files())
    client.post(
        "/starttraining/", json=azure_request(azurite, dataset_container.container_name, "teeth")
    )
    # An infrastructure fault: the models container is missing, so every upload fails.
    StorageAccount(settings).container(settings.models_container).delete_container()
    worker = start_worker(MAX_ATTEMPTS=2)
    status = wait_for(client, "clinic", "teeth")
    assert status["result"] == "FAILED"
    # In our words: the SDK's text (URLs, the service's XML) never reaches a status.
    assert status["message"].startswith(
        "gave up after 2 failed attempts: "
        "a storage request failed (ResourceNotFoundError, HTTP 404)"
    ), status["message"]
    assert "<?xml" not in status["message"] and "RequestId" not in status["message"]
    # The row ends FAILED first; the message moves to the poison queue right after.
    assert eventually(lambda: queue_sizes(settings) == (0, 1)), queue_sizes(settings)
    assert worker.process.poll() is None


def test_attempts_of_workers_that_died_without_progress_are_counted(
    client: httpx.Client,
    settings: ApiSettings,
    azurite: Azurite,
    dataset_container: Any,
    start_worker: Any,
) -> None:
    client.post(
        "/starttraining/", json=azure_request(azurite, dataset_container.container_name, "teeth")
    )
    jobs = JobsTable(StorageAccount(settings).table(settings.trainings_table))

    def died_twice(row: Any) -> None:  # as two crashed workers would have left it
        row.state, row.worker_id, row.attempt = State.DOWNLOADING, "gone-worker", 2

    jobs.modify("clinic", "teeth", died_twice)
    start_worker(MAX_ATTEMPTS=3)
    status = wait_for(client, "clinic", "teeth")
    assert status["result"] == "FAILED"
    assert "gave up after 3 failed attempts" in status["message"]
    assert "gone-worker stopped without progress" in status["message"]
    assert eventually(lambda: queue_sizes(settings) == (0, 1)), queue_sizes(settings)


@pytest.mark.parametrize("args", [("--once",)])
def test_once_takes_one_job_and_exits(
    client: httpx.Client,
    azurite: Azurite,
    dataset_container: Any,
    start_worker: Any,
    args: tuple[str, ...],
) -> None:
    upload_azure(dataset_container, "teeth/", dataset_files())
    for name in ("first", "second"):
        client.post(
            "/starttraining/",
            json=azure_request(
                azurite, dataset_container.container_name, "teeth", project_name=name
            ),
        )
    worker = start_worker(*args)
    assert worker.process.wait(180) == 0
    results = [
        client.get(f"/statustraining/clinic/{n}").json()["result"] for n in ("first", "second")
    ]
    assert results == ["SUCCESS", "PENDING"]


def test_the_worker_refuses_a_dataset_endpoint_into_our_network_that_reached_it(
    client: httpx.Client, azurite: Azurite, dataset_container: Any, start_worker: Any
) -> None:
    # The API here is dev's (Azurite on loopback allowed); the worker has production's rule,
    # as if a message had been queued without the API's check.
    upload_azure(dataset_container, "teeth/", dataset_files())
    body = azure_request(azurite, dataset_container.container_name, "teeth")
    assert client.post("/starttraining/", json=body).status_code == 202
    start_worker(DATASET_ALLOW_PRIVATE="false")
    status = wait_for(client, "clinic", "teeth", timeout=60)
    assert status["result"] == "FAILED"
    assert status["message"] == "azure_connection_string: the blob endpoint must use https"
