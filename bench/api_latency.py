"""Median and p95 latency of /starttraining/ and /statustraining/ on Azurite.

Starts Azurite and the API (uvicorn in its own process, as `make dev` serves it) on
loopback, then times sequential requests from this process. Usage:
    python bench/api_latency.py [--requests 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dev.stack import REPO, free_port, start_azurite, stop_process, wait_for_port
from function_app.api import ApiSettings
from shared.storage.account import StorageAccount

TOKEN = "bench-token"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()

    azurite = start_azurite()
    port = free_port()
    env = os.environ | {
        "AITRAINER_ENV": "dev",
        "AITRAINER_API_TOKENS": TOKEN,
        "AITRAINER_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "AITRAINER_TRAININGS_TABLE": f"bench{uuid.uuid4().hex[:8]}",
        # No worker runs: every start stays active, and each start counts them (the cap).
        "AITRAINER_MAX_ACTIVE_PER_TOKEN": str(args.requests),
    }
    settings = ApiSettings(
        **{k[10:].lower(): v for k, v in env.items() if k.startswith("AITRAINER_")}
    )
    StorageAccount(settings).provision()
    api = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "function_app.api:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=REPO,
        env=env,
    )
    try:
        wait_for_port(port, api)
        timings: dict[str, list[float]] = {"starttraining": [], "statustraining": []}
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": TOKEN}
        ) as http:
            for index in range(args.requests):
                body = {
                    "profile_id": "bench",
                    "project_name": f"p{index}",
                    "model_type": "classification",
                    "storage_type": "azure",
                    "container": "photos",
                    "folder": "set",
                    "zipped": False,
                    "azure_connection_string": "AccountName=a;AccountKey=eA==",
                }
                began = time.perf_counter()
                assert http.post("/starttraining/", json=body).status_code == 202
                timings["starttraining"].append(time.perf_counter() - began)
                began = time.perf_counter()
                assert http.get(f"/statustraining/bench/p{index}").status_code == 200
                timings["statustraining"].append(time.perf_counter() - began)
        for route, values in timings.items():
            print(
                f"{route:15s} n={len(values)} median={statistics.median(values) * 1000:.1f} ms "
                f"p95={percentile(values, 0.95) * 1000:.1f} ms"
            )
    finally:
        stop_process(api)
        azurite.stop()


if __name__ == "__main__":
    main()
