"""Pickup latency (enqueued → DOWNLOADING) and start → SUCCESS time for a tiny dataset.

Starts Azurite, the API and one idle CPU worker (as `make dev` does), uploads a small
dataset, then times a few trainings made through the HTTP API. Usage:
    python bench/worker_latency.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from azure.storage.blob import BlobServiceClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dev.sample_data import dataset_files
from dev.stack import REPO, ApiServer, start_azurite, stop_process
from function_app.api import ApiSettings, create_app
from shared.storage.account import StorageAccount
from shared.storage.workers import WorkersTable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
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
    account = StorageAccount(settings)
    account.provision()
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = blobs.create_container("bench")
    for name, data in dataset_files(per_class=16, size=32).items():
        container.upload_blob(f"tiny/{name}", data)
    api = ApiServer(create_app(settings)).start()
    worker = subprocess.Popen(
        [sys.executable, "-m", "worker"], cwd=REPO, env=env, stderr=subprocess.DEVNULL
    )
    try:
        workers = WorkersTable(account.table(settings.workers_table))
        while not workers.online(60):
            time.sleep(0.2)
        time.sleep(6)  # let the idle worker back off fully: the worst case for pickup
        pickups, totals = [], []
        with httpx.Client(base_url=api.url, headers={"Authorization": "dev-token"}) as http:
            for run in range(args.runs):
                body = {
                    "profile_id": "bench",
                    "project_name": f"run{run}",
                    "model_type": "classification",
                    "storage_type": "azure",
                    "container": "bench",
                    "folder": "tiny",
                    "zipped": False,
                    "azure_connection_string": azurite.connection_string,
                    "epochs": 2,
                    "image_size": 32,
                    "batch_size": 8,
                    "architecture": "mobilenet_v3_small",
                    "export": ["onnx"],
                }
                began = time.perf_counter()
                assert http.post("/starttraining/", json=body).status_code == 202
                picked = None
                while True:
                    result = http.get(f"/statustraining/bench/run{run}").json()["result"]
                    if picked is None and result != "PENDING":
                        picked = time.perf_counter() - began
                    if result in ("SUCCESS", "FAILED"):
                        break
                    time.sleep(0.02)
                assert result == "SUCCESS", result
                pickups.append(picked)
                totals.append(time.perf_counter() - began)
                time.sleep(6)
        print(
            f"pickup (enqueued → DOWNLOADING): median {statistics.median(pickups):.2f} s, "
            f"max {max(pickups):.2f} s"
        )
        print(
            "starttraining → SUCCESS (2 epochs, 32 images, 32 px): "
            f"median {statistics.median(totals):.2f} s"
        )
    finally:
        stop_process(worker)
        api.stop()
        azurite.stop()


if __name__ == "__main__":
    main()
