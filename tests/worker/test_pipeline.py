"""End to end: API → queue → a real worker process → Azurite / S3 → SUCCESS, with webhooks."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import httpx
import onnxruntime
import requests

from dev.sample_data import dataset_files, zip_bytes
from dev.stack import Azurite
from function_app.api import ApiSettings
from shared.contract import State
from shared.storage.account import StorageAccount
from shared.storage.jobs import JobsTable
from tests.worker.conftest import (
    S3_KEY_ID,
    S3_SECRET,
    WebhookReceiver,
    all_storage_text,
    upload_azure,
    upload_s3,
    wait_for,
)
from worker.webhooks import SIGNATURE_HEADER, verify

TINY = {
    "epochs": 2,
    "image_size": 32,
    "batch_size": 8,
    "architecture": "mobilenet_v3_small",
    "export": ["onnx"],
}
EVERY_FORMAT = ["onnx", "coreml", "pytorchmobile", "torch", "executorch"]
ORDER = [s.value for s in State]


def manifest_dataset(status: dict[str, Any]) -> dict[str, Any]:
    """The dataset check's report as the manifest carries it."""
    manifest = requests.get(status["manifest"], timeout=30).json()
    check: dict[str, Any] = manifest["metrics"]["dataset"]
    return check


def azure_request(azurite: Azurite, container: str, folder: str, **extra: Any) -> dict[str, Any]:
    return {
        "profile_id": "clinic",
        "project_name": folder.replace("/", "-").replace(".", "-") or "root",
        "model_type": "classification",
        "storage_type": "azure",
        "container": container,
        "folder": folder,
        "zipped": False,
        "azure_connection_string": azurite.connection_string,
        **TINY,
        **extra,
    }


def s3_request(bucket: str, folder: str, **extra: Any) -> dict[str, Any]:
    return {
        "profile_id": "clinic",
        "project_name": f"s3-{folder.replace('/', '-').replace('.', '-')}",
        "model_type": "classification",
        "storage_type": "aws",
        "container": bucket,
        "folder": folder,
        "zipped": False,
        "aws_access_key_id": S3_KEY_ID,
        "aws_secret_access_key": S3_SECRET,
        **TINY,
        **extra,
    }


def test_azure_folder_trains_to_success_with_signed_ordered_webhooks(
    client: httpx.Client,
    settings: ApiSettings,
    azurite: Azurite,
    dataset_container: Any,
    start_worker: Any,
    webhook: WebhookReceiver,
) -> None:
    files = dataset_files()
    files["good/broken.jpg"] = b"\xff\xd8\xff\xe0 not really a jpeg"  # skipped and counted
    files["good/also_bad.png"] = files["bad/bad_000.png"]  # one picture in two classes
    upload_azure(dataset_container, "teeth/", files)
    upload_azure(dataset_container, "teeth2/", {"x/not-this.png": b"decoy"})  # `teeth` ≠ `teeth2`
    body = azure_request(
        azurite,
        dataset_container.container_name,
        "teeth",
        webhook_url=webhook.url,
        export=EVERY_FORMAT,
        # fp16 here, int8 in the next test: ExecuTorch's int8 lowering alone takes a minute
        # on two cores, and every variant's making is tested in tests/worker/export. The gate
        # itself is tested on a model worth gating there too; two epochs on 7 validation
        # images decide nothing, so every variant is let through.
        export_precision=["fp32", "fp16"],
        export_tolerance=1,
    )

    began = time.monotonic()
    assert client.post("/starttraining/", json=body).status_code == 202
    worker = start_worker()
    seen: list[dict[str, Any]] = []
    status = wait_for(client, "clinic", "teeth", seen=seen)
    elapsed = time.monotonic() - began
    assert status["result"] == "SUCCESS", (status, worker.text()[-3000:])
    assert status["current_epoch"] == 2 and status["epochs"] == 2
    assert status["loss"] > 0 and 0.5 <= status["accuracy"] <= 1
    assert status["last_epoch_duration_seconds"] > 0
    assert "1 unreadable image skipped" in status["message"]
    assert "trained from scratch" in status["message"]
    print(f"start → SUCCESS {elapsed:.1f} s (worker start included)")

    # metrics.json is linked from the first epoch on (the web page's curves), and holds it.
    trained = [s for s in seen if s["result"] == "RUNNING" and s["current_epoch"] >= 1]
    assert trained and all("metrics" in s["files"] for s in trained)
    early = requests.get(trained[0]["files"]["metrics"], timeout=30).json()
    assert len(early["epochs"]) >= trained[0]["current_epoch"]

    # The status never moved backwards.
    states = [ORDER.index(s["result"]) for s in seen]
    assert states == sorted(states)
    epochs = [s["current_epoch"] for s in seen]
    assert epochs == sorted(epochs)

    # Webhooks: every state change and epoch, numbered, in order, correctly signed.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (
        not webhook.received or webhook.events()[-1]["result"] != "SUCCESS"
    ):
        time.sleep(0.1)
    events = webhook.events()
    # The dataset check's findings: in the DOWNLOADED event and in dataset_report.json.
    downloaded = next(e for e in events if e["result"] == "DOWNLOADED")
    assert "checked 34 images (33 readable)" in downloaded["message"]
    assert "1 unreadable (skipped)" in downloaded["message"]
    assert "1 pictures in more than one class" in downloaded["message"]
    report = requests.get(status["dataset_report"], timeout=30).json()
    assert report["unreadable"]["files"][0]["file"] == "good/broken.jpg"
    assert report["duplicates"]["across_classes"] == [
        {
            "exact": True,
            "files": ["bad/bad_000.png", "good/also_bad.png"],
            "classes": ["bad", "good"],
        }
    ]
    assert report["classes"]["good"]["train"] + report["classes"]["good"]["val"] == 17
    assert manifest_dataset(status)["duplicates"] == report["duplicates"]
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    assert [(e["event"], e["result"]) for e in events] == [
        ("state_changed", "DOWNLOADING"),
        ("state_changed", "DOWNLOADED"),
        ("state_changed", "RUNNING"),
        ("epoch_completed", "RUNNING"),
        ("epoch_completed", "RUNNING"),
        ("state_changed", "EXPORTING"),
        ("state_changed", "SUCCESS"),
    ]
    assert [e["current_epoch"] for e in events if e["event"] == "epoch_completed"] == [1, 2]
    assert len({e["delivery_id"] for e in events}) == len(events)
    # Signed with the profile's own secret: another profile's (or the master) cannot verify.
    mine = client.get("/profiles/clinic/webhook-secret").json()["webhook_secret"].encode()
    theirs = client.get("/profiles/alice/webhook-secret").json()["webhook_secret"].encode()
    for headers, raw in webhook.received:
        assert verify(mine, headers[SIGNATURE_HEADER], raw)
        assert not verify(theirs, headers[SIGNATURE_HEADER], raw)
        assert not verify(b"dev-webhook-secret", headers[SIGNATURE_HEADER], raw)

    # What was delivered, and nothing secret anywhere.
    account = StorageAccount(settings)
    models = account.container(settings.models_container)
    names = {blob.name for blob in models.list_blobs()}
    row, _ = JobsTable(account.table(settings.trainings_table)).get("clinic", "teeth")  # type: ignore[misc]
    # Everything delivered sits under the prefix of the claim that trained it.
    prefix = f"clinic/teeth/runs/{row.claim_token}/"
    for blob in ("metrics.json", "checkpoints/checkpoint_best.pt", "manifest.json"):
        assert prefix + blob in names
    assert all(blob.startswith(prefix) for blob in [*row.exports.values(), *row.files.values()])
    # The resume checkpoint sits apart, where the lifecycle rule expires it.
    # Each checkpoint a new blob of the claim's (the row names the last; earlier ones deleted).
    assert row.checkpoint_blob == f".resume/clinic/teeth/{row.claim_token}/{row.checkpoints}.pt"
    assert [name for name in names if name.startswith(".resume/")] == [row.checkpoint_blob]

    # Every format (and each ONNX and Core ML fp16 variant; ExecuTorch makes none) is
    # delivered behind a download URL, byte-identical to what the manifest lists.
    variants = ["onnx_fp16", "coreml_fp16"]
    assert set(status["exports"]) == {*EVERY_FORMAT, *variants}
    assert f"{', '.join(variants)} within 100 points of the float32" in status["message"]
    manifest = requests.get(status["manifest"], timeout=30).json()
    table = manifest["precisions"]
    assert [(r["key"], r["delivered"]) for r in table["rows"]] == [
        ("onnx", True),
        ("onnx_fp16", True),
        ("coreml", True),
        ("coreml_fp16", True),
    ]  # ExecuTorch makes no fp16, so it has no row to compare with
    assert table["images"] == report["classes"]["good"]["val"] + report["classes"]["bad"]["val"]
    assert requests.get(status["files"]["metrics"], timeout=30).json()["export_precisions"] == table
    assert manifest["labels"] == ["bad", "good"]
    assert manifest["image_size"] == 32
    listed = {entry["name"]: entry["sha256"] for entry in manifest["files"]}
    for url in status["exports"].values():
        name = url.split("?")[0].rsplit("/", 1)[1]
        content = requests.get(url, timeout=30).content
        assert hashlib.sha256(content).hexdigest() == listed[name], name
    assert all(result["status"] == "passed" for result in manifest["formats"].values())
    # Each runnable format also ran the stored files through host_preprocessing.
    for name in ("onnx", "pytorchmobile", "torch", "executorch"):
        check = manifest["formats"][name]["check"]
        raw = check["details"]["raw_files"]
        assert raw["passed"] and raw["images"] == check["images"], (name, raw["summary"])
    assert requests.get(status["files"]["labels"], timeout=30).text == "bad\ngood\n"
    # Per-class decision thresholds: in the manifest and inside the ONNX file, read back by
    # onnxruntime as an app would (the same JSON in both).
    shipped = manifest["class_thresholds"]
    assert shipped["target_precision"] == 0.9 and shipped["measured_on"] == "validation"
    assert list(shipped["thresholds"]) == ["bad", "good"]
    assert all(t is None or 0 < t <= 1 for t in shipped["thresholds"].values())
    onnx_file = requests.get(status["exports"]["onnx"], timeout=30).content
    session = onnxruntime.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    inside = session.get_modelmeta().custom_metadata_map["class_thresholds"]
    assert json.loads(inside) == shipped
    state_dict = requests.get(status["files"]["model_state_dict"], timeout=30).content
    assert hashlib.sha256(state_dict).hexdigest() == listed["model_state_dict.pt"]
    stored = all_storage_text(settings)
    secret_key = azurite.connection_string.split("AccountKey=")[1].split(";")[0]
    assert azurite.connection_string not in stored
    assert secret_key not in stored
    assert secret_key not in worker.text()


def test_zipped_azure_and_both_s3_forms_succeed_in_one_worker(
    client: httpx.Client,
    settings: ApiSettings,
    azurite: Azurite,
    dataset_container: Any,
    s3_bucket: tuple[Any, str],
    start_worker: Any,
) -> None:
    s3, bucket = s3_bucket
    files = dataset_files()
    upload_azure(dataset_container, "", {"zips/teeth.zip": zip_bytes(files, top="teeth/")})
    upload_s3(s3, bucket, "photos/", files)
    upload_s3(
        s3,
        bucket,
        "",
        {
            "archive.zip": zip_bytes(
                {f"train/{k}": v for k, v in files.items()}
                # Other pictures than train's: a copy in val would be dropped as leakage.
                | {f"val/{k}": v for k, v in dataset_files(per_class=20).items() if k not in files}
            )
        },
    )
    bodies = [
        azure_request(azurite, dataset_container.container_name, "zips", zipped=True),
        # ONNX int8 end to end: calibrated on the training split, scored on validation.
        s3_request(
            bucket,
            "photos",
            aws_region="eu-west-1",
            export_precision=["fp32", "int8"],
            export_tolerance=1,
        ),
        s3_request(bucket, "archive", zipped=True),
    ]
    for body in bodies:
        assert client.post("/starttraining/", json=body).status_code == 202, body
    worker = start_worker()
    finished: dict[str, dict[str, Any]] = {}
    for body in bodies:
        status = wait_for(client, "clinic", body["project_name"])
        assert status["result"] == "SUCCESS", (body["project_name"], status, worker.text()[-3000:])
        finished[body["project_name"]] = status
    assert set(finished["zips"]["exports"]) == {"onnx"}  # float32 only unless asked
    quantized = finished["s3-photos"]
    assert set(quantized["exports"]) == {"onnx", "onnx_int8"}
    assert "onnx_int8 within 100 points of the float32" in quantized["message"]
    manifest = requests.get(quantized["manifest"], timeout=30).json()
    table = manifest["precisions"]
    assert [(r["key"], r["delivered"]) for r in table["rows"]] == [
        ("onnx", True),
        ("onnx_int8", True),
    ]
    report = requests.get(quantized["dataset_report"], timeout=30).json()
    assert table["images"] == sum(counts["val"] for counts in report["classes"].values())
    metrics = requests.get(quantized["files"]["metrics"], timeout=30).json()
    assert metrics["export_precisions"] == table
    int8_file = requests.get(quantized["exports"]["onnx_int8"], timeout=30).content
    listed = {entry["name"]: entry["sha256"] for entry in manifest["files"]}
    assert hashlib.sha256(int8_file).hexdigest() == listed["model_int8.onnx"]
    session = onnxruntime.InferenceSession(int8_file, providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map["precision"] == "int8"
    stored = all_storage_text(settings)
    assert S3_SECRET not in stored and S3_KEY_ID not in stored
    assert S3_SECRET not in worker.text()
