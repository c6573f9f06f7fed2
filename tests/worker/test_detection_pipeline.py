"""Detection end to end: API → queue → a real worker → Azurite → SUCCESS, and a broken set."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime
import requests

from dev.sample_detection import write_detection_dataset
from dev.stack import Azurite
from function_app.api import ApiSettings
from shared.contract import State
from shared.storage.account import StorageAccount
from tests.worker.conftest import WebhookReceiver, all_storage_text, upload_azure, wait_for

ORDER = [s.value for s in State]


def folder_files(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def detection_request(azurite: Azurite, container: str, folder: str) -> dict[str, Any]:
    return {
        "profile_id": "clinic",
        "project_name": f"boxes-{folder}",
        "model_type": "detection",
        "storage_type": "azure",
        "container": container,
        "folder": folder,
        "zipped": False,
        "azure_connection_string": azurite.connection_string,
        "epochs": 3,
        "image_size": 64,
        "batch_size": 4,
        "export": ["onnx", "torch"],
    }


def test_a_detector_trains_exports_and_a_broken_set_fails_clearly(
    client: httpx.Client,
    settings: ApiSettings,
    azurite: Azurite,
    dataset_container: Any,
    start_worker: Any,
    webhook: WebhookReceiver,
    tmp_path: Path,
) -> None:
    truth = write_detection_dataset(tmp_path / "yolo", "yolo", images=32, size=64)
    upload_azure(dataset_container, "yolo/", folder_files(tmp_path / "yolo"))
    broken = folder_files(tmp_path / "yolo")
    broken["labels/img_001.txt"] = b"7 0.5 0.5 0.2 0.2\n"  # class 7 of 2
    upload_azure(dataset_container, "broken/", broken)
    good = detection_request(azurite, dataset_container.container_name, "yolo")
    good["webhook_url"] = webhook.url
    bad = detection_request(azurite, dataset_container.container_name, "broken")
    for body in (bad, good):
        assert client.post("/starttraining/", json=body).status_code == 202

    worker = start_worker()
    failed = wait_for(client, "clinic", bad["project_name"])
    assert failed["result"] == "FAILED", (failed, worker.text()[-3000:])
    assert "img_001.txt" in failed["message"] and "7" in failed["message"], failed["message"]

    seen: list[dict[str, Any]] = []
    status = wait_for(client, "clinic", good["project_name"], seen=seen)
    assert status["result"] == "SUCCESS", (status, worker.text()[-3000:])
    states = [ORDER.index(s["result"]) for s in seen]
    assert states == sorted(states)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (
        not webhook.received or webhook.events()[-1]["result"] != "SUCCESS"
    ):
        time.sleep(0.1)
    downloaded = [e["message"] for e in webhook.events() if e["result"] == "DOWNLOADED"]
    assert "images with" in downloaded[0] and "(YOLO) in 2 classes (square, bar)" in downloaded[0]
    assert "checked 32 images (32 readable)" in downloaded[0]
    # The dataset check counted every box, per class, as the writer drew them.
    report = requests.get(status["dataset_report"], timeout=30).json()
    drawn = [label for sample in truth for label in sample.labels]
    assert report["boxes"]["per_class"] == {"square": drawn.count(0), "bar": drawn.count(1)}
    assert report["boxes"]["images_without_boxes"]["count"] == sum(1 for t in truth if not t.boxes)
    epochs = [e for e in webhook.events() if e["event"] == "epoch_completed"]
    assert [e["current_epoch"] for e in epochs] == [1, 2, 3]
    assert all("validation mAP@0.5" in e["message"] for e in epochs)
    assert status["current_epoch"] == 3 and status["loss"] > 0
    assert 0 <= status["accuracy"] <= 1
    assert "mAP@0.5" in status["message"] and "trained from scratch" in status["message"]

    manifest = requests.get(status["manifest"], timeout=30).json()
    assert manifest["labels"] == ["square", "bar"]
    assert manifest["task"] == "detection"
    assert manifest["metrics"]["best_val_accuracy"] == status["accuracy"]
    assert set(manifest["metrics"]["report"]["per_class_ap_50"]) == {"square", "bar"}
    assert set(status["exports"]) == {"onnx", "torch"}
    assert "confusion_matrix" not in status["files"] and "curves" in status["files"]
    listed = {entry["name"]: entry["sha256"] for entry in manifest["files"]}
    onnx_bytes = requests.get(status["exports"]["onnx"], timeout=30).content
    assert hashlib.sha256(onnx_bytes).hexdigest() in listed.values()

    # The delivered ONNX file detects: named outputs, 0-based labels, boxes inside the image.
    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["boxes", "scores", "labels"]
    image = np.zeros((1, 3, 64, 64), dtype=np.float32)
    image[:, :, 16:48, 16:48] = 1.0
    boxes, scores, labels = session.run(None, {session.get_inputs()[0].name: image})
    assert boxes.shape[1:] == (4,) and len(boxes) == len(scores) == len(labels)
    assert set(labels.tolist()) <= {0, 1}
    assert (boxes >= -1e-3).all() and (boxes <= 64 + 1e-3).all()

    models = StorageAccount(settings).container(settings.models_container)
    names = {blob.name for blob in models.list_blobs()}
    # One resume checkpoint (each epoch's replaces the one before), apart from the delivery.
    checkpoints = [name for name in names if name.startswith(".resume/clinic/boxes-yolo/")]
    assert len(checkpoints) == 1 and checkpoints[0].endswith(".pt"), names
    secret_key = azurite.connection_string.split("AccountKey=")[1].split(";")[0]
    assert secret_key not in all_storage_text(settings)
    assert secret_key not in worker.text()
