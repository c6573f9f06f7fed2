"""`make demo`: the whole system, end to end, on this machine, in a few minutes.

Starts Azurite (in memory), the API on 127.0.0.1:7071 and one CPU worker; writes a real
image dataset (scikit-learn's handwritten digits, one PNG folder per class); uploads it to
Azurite; starts a training through the HTTP API exactly as a client would; follows it;
downloads the exports; prints the validation accuracy and the manifest. Stops everything it
started, also on Ctrl-C, and exits non-zero when the training did not succeed.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from azure.storage.blob import BlobServiceClient
from PIL import Image
from sklearn.datasets import load_digits

from dev.sample_data import zip_bytes
from dev.stack import REPO, ApiServer, start_azurite, stop_process
from function_app.api import ApiSettings, create_app
from shared.storage.account import StorageAccount

API_PORT = 7071
TOKEN = "demo-token"  # noqa: S105 - a throwaway token for a stack that lives for one run
OUTPUT = REPO / "demo-output"
DATASET = OUTPUT / "dataset"
ARCHIVE = "digits.zip"
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TRAINING = {
    "profile_id": "demo",
    "project_name": "digits",
    "model_type": "classification",
    "storage_type": "azure",
    "container": "demo",
    # One zip, as the seed's clients upload: one blob each way instead of 1,797.
    "folder": ARCHIVE,
    "zipped": True,
    # The default architecture (mobilenet_v3_large) and the seed's other defaults; the
    # digits are 8×8 at heart, so 32 px loses nothing, and 5 epochs reach ~96 % validation
    # (6 reach ~98 %, but the demo must end within two minutes on 2 cores).
    "image_size": 32,
    "epochs": 5,
    "export": ["onnx", "coreml", "pytorchmobile", "torch", "executorch"],
}
TIMEOUT_SECONDS = 15 * 60


def digit_pngs() -> dict[str, bytes]:
    """scikit-learn's 1,797 8×8 digits, scaled to 32×32 RGB PNGs: `<digit name>/<n>.png`."""
    digits = load_digits()
    files = {}
    for index, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        grey = (pixels * (255 / 16)).astype(np.uint8)
        image = Image.fromarray(grey).resize((32, 32), Image.Resampling.BILINEAR).convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        files[f"{DIGIT_NAMES[label]}/{index:04d}.png"] = buffer.getvalue()
    return files


def follow(http: httpx.Client, path: str) -> dict[str, Any]:
    """Print each change of state or epoch until the training ends; return the last status."""
    shown = None
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        status = http.get(path).json()
        line = f"{status['result']:<11} epoch {status['current_epoch']}/{status['epochs']}"
        if status["loss"] is not None:
            line += f"  loss {status['loss']:.3f}  val accuracy {status['accuracy']:.1%}"
        if line != shown:
            print(f"  {line}  {status['message']}", flush=True)
            shown = line
        if status["result"] in ("SUCCESS", "FAILED", "CANCELLED"):
            return status
        time.sleep(0.5)
    raise TimeoutError(f"the training did not end within {TIMEOUT_SECONDS} s")


def download(status: dict[str, Any]) -> list[Path]:
    urls = {url.split("?")[0].rsplit("/", 1)[1]: url for url in status["exports"].values()}
    urls["manifest.json"] = status["manifest"]
    urls["labels.txt"] = status["files"]["labels"]
    (OUTPUT / "model").mkdir(parents=True, exist_ok=True)
    paths = []
    for name, url in urls.items():
        path = OUTPUT / "model" / name
        path.write_bytes(httpx.get(url, timeout=120).raise_for_status().content)
        paths.append(path)
    return paths


def summarise(manifest: dict[str, Any]) -> None:
    print(f"labels: {', '.join(manifest['labels'])}")
    print(f"input: RGB in [0, 1], {manifest['image_size']}² (normalisation and softmax inside)")
    for name, result in manifest["formats"].items():
        check = result.get("check") or {}
        print(f"  {name:<14} {result['status']:<7} {check.get('summary', result.get('error', ''))}")


def main() -> int:
    # Ctrl-C and SIGTERM both end in `finally`, which stops what was started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    began = time.monotonic()
    azurite = start_azurite()
    api = worker = None
    try:
        env = os.environ | {
            "AITRAINER_ENV": "dev",
            "AITRAINER_STORAGE_CONNECTION_STRING": azurite.connection_string,
            "AITRAINER_API_TOKENS": TOKEN,
            "AITRAINER_PRETRAINED": "scratch",  # no ImageNet weights can be downloaded here
            "AITRAINER_DEVICE": "cpu",
            "AITRAINER_HEARTBEAT_SECONDS": "2",
        }
        os.environ.update(env)
        settings = ApiSettings()
        StorageAccount(settings).provision()
        api = ApiServer(create_app(settings), API_PORT).start()
        worker = subprocess.Popen([sys.executable, "-m", "worker"], cwd=REPO, env=env)
        print(f"stack up: Azurite, API on {api.url}, one CPU worker (pid {worker.pid})")

        files = digit_pngs()
        for name, data in files.items():
            path = DATASET / name  # kept, so the CLI can train on it too
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        photos = BlobServiceClient.from_connection_string(azurite.connection_string)
        photos.create_container("demo").upload_blob(ARCHIVE, zip_bytes(files))
        print(f"dataset: {len(files)} handwritten digits in 10 class folders, in {DATASET}")
        print(f"         uploaded zipped to azure://demo/{ARCHIVE}")

        with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            body = TRAINING | {"azure_connection_string": azurite.connection_string}
            answer = http.post("/starttraining/", json=body, timeout=30)
            print(f"POST /starttraining/ → {answer.status_code} {answer.json()['message']}")
            if answer.status_code != 202:
                return 1
            status = follow(http, "/statustraining/demo/digits")
        if status["result"] != "SUCCESS":
            print(f"training ended {status['result']}: {status['message']}", file=sys.stderr)
            return 1
        paths = download(status)
        manifest = httpx.get(status["manifest"], timeout=60).json()
        print(f"\nvalidation accuracy {status['accuracy']:.1%} (best epoch)")
        summarise(manifest)
        print(f"exports in {OUTPUT / 'model'}: {', '.join(path.name for path in paths)}")
        print(f"demo finished in {time.monotonic() - began:.0f} s")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted; stopping what the demo started", file=sys.stderr)
        return 130
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            worker.send_signal(signal.SIGTERM)  # second signal: stop now, nothing to keep
            stop_process(worker)
        if api is not None:
            api.stop()
        azurite.stop()


if __name__ == "__main__":
    sys.exit(main())
