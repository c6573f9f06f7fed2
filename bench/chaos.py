"""Random kill -9s of workers during several trainings: jobs lost, trained twice, attempts burned.

Starts Azurite, the API and `--workers` CPU workers (each checkpointing inside epochs every
`--checkpoint-seconds`), starts `--jobs` trainings, then kills a random worker that holds a
job and has saved a checkpoint since its claim, `--kills` times, starting a replacement after
each. At the end it prints, per job and in all: the state, the failed attempts the row
counted (burned), the epochs whose epoch_completed webhook came more than once (an epoch
trained twice to its end), and whether current_epoch ever moved backwards. Usage:
    python bench/chaos.py [--kills 50] [--jobs 4] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from azure.storage.blob import BlobServiceClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dev.sample_data import dataset_files
from dev.stack import REPO, ApiServer, start_azurite, stop_process
from function_app.api import ApiSettings, create_app
from shared.storage.account import StorageAccount
from shared.storage.jobs import JobsTable

EPOCHS_WEBHOOKED: dict[str, Counter[int]] = defaultdict(Counter)


class Hook(BaseHTTPRequestHandler):
    """Counts each job's epoch_completed events."""

    def do_POST(self) -> None:
        event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if event["event"] == "epoch_completed":
            EPOCHS_WEBHOOKED[event["project_name"]][event["current_epoch"]] += 1
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--checkpoint-seconds", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    azurite = start_azurite()
    hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    env = {key: value for key, value in os.environ.items() if not key.startswith("AITRAINER_")}
    env |= {
        "AITRAINER_ENV": "dev",
        "AITRAINER_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "AITRAINER_PRETRAINED": "scratch",
        "AITRAINER_DEVICE": "cpu",
        "AITRAINER_LEASE_SECONDS": "10",
        "AITRAINER_HEARTBEAT_SECONDS": "0.5",
        "AITRAINER_POLL_MAX_SECONDS": "1",
        "AITRAINER_WEBHOOK_ALLOW_PRIVATE": "true",
        "AITRAINER_CHECKPOINT_SECONDS": str(args.checkpoint_seconds),
        # Several torch processes on few cores: one thread each, or they slow each other.
        "OMP_NUM_THREADS": "1",
    }
    os.environ.update(env)
    settings = ApiSettings()
    account = StorageAccount(settings)
    account.provision()
    jobs = JobsTable(account.table(settings.trainings_table))
    container = BlobServiceClient.from_connection_string(azurite.connection_string)
    bench = container.create_container("chaos")
    for name, data in dataset_files(per_class=32, size=32).items():
        bench.upload_blob(f"photos/{name}", data)
    api = ApiServer(create_app(settings)).start()
    workers: dict[str, subprocess.Popen[bytes]] = {}
    names = (f"chaos-{n}" for n in range(10**6))

    def start_worker() -> None:
        name = next(names)
        workers[name] = subprocess.Popen(
            [sys.executable, "-m", "worker"],
            cwd=REPO,
            env=env | {"AITRAINER_WORKER_ID": name},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    projects = [f"job{n}" for n in range(args.jobs)]
    backwards: set[str] = set()
    last_epoch: dict[str, int] = defaultdict(int)
    kills = 0
    began = time.monotonic()
    try:
        for _ in range(args.workers):
            start_worker()
        with httpx.Client(base_url=api.url, headers={"Authorization": "dev-token"}) as http:
            for project in projects:
                body = {
                    "profile_id": "chaos",
                    "project_name": project,
                    "model_type": "classification",
                    "storage_type": "azure",
                    "container": "chaos",
                    "folder": "photos",
                    "zipped": False,
                    "azure_connection_string": azurite.connection_string,
                    "epochs": args.epochs,
                    "image_size": 32,
                    "batch_size": 8,
                    "architecture": "mobilenet_v3_small",
                    "export": ["onnx"],
                    "webhook_url": f"http://127.0.0.1:{hook.server_address[1]}/",
                }
                assert http.post("/starttraining/", json=body).status_code == 202
        while True:
            rows = {}
            for project in projects:
                found = jobs.get("chaos", project)
                assert found is not None
                rows[project] = found[0]
            for project, row in rows.items():
                if row.current_epoch < last_epoch[project]:
                    backwards.add(project)
                last_epoch[project] = row.current_epoch
            if all(row.state.finished for row in rows.values()):
                break
            holders = [
                row.worker_id
                for row in rows.values()
                if row.worker_id in workers and row.checkpoints > row.claimed_checkpoints
            ]
            if kills < args.kills and holders:
                victim = workers.pop(rng.choice(holders))
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                kills += 1
                start_worker()
                time.sleep(rng.uniform(1, 4))
            elif kills < args.kills and not any(not row.state.finished for row in rows.values()):
                break
            else:
                time.sleep(0.3)
        time.sleep(2)  # the last webhooks
        print(f"{kills} kills in {time.monotonic() - began:.0f} s, {len(projects)} jobs")
        print("job     state     attempts burned   epochs webhooked twice   backwards")
        lost = twice = burned = 0
        for project, row in rows.items():
            repeated = sorted(e for e, n in EPOCHS_WEBHOOKED[project].items() if n > 1)
            lost += row.state.value != "SUCCESS"
            twice += bool(repeated)
            burned += row.attempt
            print(
                f"{project:<7} {row.state.value:<9} {row.attempt:<17} {repeated!s:<24} "
                f"{project in backwards}"
            )
        print(
            f"jobs lost: {lost}; jobs with an epoch trained twice: {twice}; "
            f"attempts burned: {burned}; current_epoch moved backwards: {len(backwards)}"
        )
    finally:
        for process in workers.values():
            stop_process(process)
        api.stop()
        hook.shutdown()
        azurite.stop()


if __name__ == "__main__":
    main()
