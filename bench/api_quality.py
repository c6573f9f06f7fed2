"""Issue 14's two requests through the HTTP API, timed, scored by the delivered model.onnx.

Starts Azurite, the API and one CPU worker (as `make dev` does), sets 200 digits aside
(stratified, seed 0, as bench/quality.py does), uploads the rest zipped, then sends:

- the digits request of issue 14 (resnet18, 10 epochs, image_size 32, batch_size 32,
  learning_rate 0.05, step_size 7, gamma 0.1; no recipe fields);
- the default architecture at the seed's defaults, from scratch, image_size 64, 10 epochs.

For each: seconds from POST /starttraining/ to SUCCESS, the validation accuracy the status
reports, and the held-out accuracy of the delivered model.onnx in plain onnxruntime (RGB in
[0, 1] at image_size, as the manifest says). Usage:
    python bench/api_quality.py [--only digits|default]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime
from azure.storage.blob import BlobServiceClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.quality import split, write_folder
from dev.sample_quality import quality_set
from dev.stack import REPO, ApiServer, start_azurite, stop_process
from function_app.api import ApiSettings, create_app
from shared.storage.account import StorageAccount
from worker.classification.preprocessing import decode_image

REQUESTS: dict[str, dict[str, Any]] = {
    "digits": {
        "architecture": "resnet18",
        "epochs": 10,
        "image_size": 32,
        "batch_size": 32,
        "learning_rate": 0.05,
        "step_size": 7,
        "gamma": 0.1,
    },
    # The seed's defaults (mobilenet_v3_large, learning_rate 0.01, batch_size 36, step_size
    # 10, gamma 0.1) but for image_size and epochs.
    "default": {"image_size": 64, "epochs": 10},
}


def zipped(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(folder.rglob("*.png")):
            bundle.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def held_out_accuracy(model: bytes, held: list[Path], image_size: int) -> float:
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    labels = json.loads(session.get_modelmeta().custom_metadata_map["labels"])
    correct = 0
    for path in held:
        image = decode_image(path, image_size).numpy().astype(np.float32)[None] / 255
        (logits,) = session.run(None, {"image": image})
        correct += labels[int(logits.argmax())] == path.parent.name
    return correct / len(held)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(REQUESTS))
    args = parser.parse_args()
    azurite = start_azurite()
    env = os.environ | {
        "AITRAINER_ENV": "dev",
        "AITRAINER_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "AITRAINER_PRETRAINED": "scratch",
        "AITRAINER_DEVICE": "cpu",
    }
    os.environ.update(env)
    settings = ApiSettings()
    StorageAccount(settings).provision()
    scratch = Path(tempfile.mkdtemp(prefix="api-quality-"))
    kept, held = split(quality_set("digits", 32))
    write_folder(scratch / "train", kept)
    held_paths = write_folder(scratch / "held", held)
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    blobs.create_container("bench").upload_blob("digits.zip", zipped(scratch / "train"))
    api = ApiServer(create_app(settings)).start()
    worker = subprocess.Popen(
        [sys.executable, "-m", "worker"], cwd=REPO, env=env, stderr=subprocess.DEVNULL
    )
    try:
        with httpx.Client(
            base_url=api.url, headers={"Authorization": "dev-token"}, timeout=60
        ) as http:
            for name, fields in REQUESTS.items():
                if args.only and name != args.only:
                    continue
                body = {
                    "profile_id": "bench",
                    "project_name": name,
                    "model_type": "classification",
                    "storage_type": "azure",
                    "container": "bench",
                    "folder": "digits.zip",
                    "zipped": True,
                    "azure_connection_string": azurite.connection_string,
                    "export": ["onnx"],
                    **fields,
                }
                began = time.perf_counter()
                response = http.post("/starttraining/", json=body)
                assert response.status_code == 202, response.text
                while True:
                    status = http.get(f"/statustraining/bench/{name}").json()
                    if status["result"] in ("SUCCESS", "FAILED", "CANCELLED"):
                        break
                    time.sleep(0.2)
                seconds = time.perf_counter() - began
                assert status["result"] == "SUCCESS", status["message"]
                model = httpx.get(status["exports"]["onnx"], timeout=60).content
                image_size = status["parameters"]["image_size"]
                accuracy = held_out_accuracy(model, held_paths, image_size)
                print(
                    f"{name:<8} {status['parameters']['architecture']:<18} start → SUCCESS "
                    f"{seconds:5.1f} s   validation {status['accuracy']:.3f}   "
                    f"held-out (model.onnx) {accuracy:.3f}",
                    flush=True,
                )
    finally:
        stop_process(worker)
        api.stop()
        azurite.stop()


if __name__ == "__main__":
    main()
