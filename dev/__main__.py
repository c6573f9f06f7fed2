"""`make dev`: Azurite in memory, one CPU worker, and the API on 127.0.0.1:7071, until Ctrl-C."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import uvicorn

from dev.stack import REPO, start_azurite, stop_process
from function_app.api import ApiSettings, create_app
from shared.settings import AZURITE_PORTS, DEV_API_TOKEN
from shared.storage.account import StorageAccount

API_PORT = 7071  # the Azure Functions host's default, so clients need no change


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # one line per HTTP call is noise
    azurite = start_azurite(*AZURITE_PORTS)
    worker = None
    try:
        os.environ.setdefault("AITRAINER_ENV", "dev")
        os.environ.setdefault("AITRAINER_WEBHOOK_ALLOW_PRIVATE", "true")
        os.environ.setdefault("AITRAINER_STORAGE_CONNECTION_STRING", azurite.connection_string)
        # No ImageNet weights can be downloaded here: dev trains from scratch and says so.
        os.environ.setdefault("AITRAINER_PRETRAINED", "scratch")
        settings = ApiSettings()
        # The page at /ui/ reads files through SAS URLs from the API's own origin.
        origins = [f"http://{host}:{API_PORT}" for host in ("127.0.0.1", "localhost")]
        StorageAccount(settings).provision(web_origins=origins)
        worker = subprocess.Popen([sys.executable, "-m", "worker"], cwd=REPO)
        token = DEV_API_TOKEN if "AITRAINER_API_TOKENS" not in os.environ else "<yours>"
        print(f"Azurite on 127.0.0.1:{AZURITE_PORTS[0]}-{AZURITE_PORTS[2]} (in memory)")
        print(f"one worker (pid {worker.pid}) on the CPU")
        print(f"API on http://127.0.0.1:{API_PORT}  token: {token}  docs: /docs  page: /ui/")
        print("sample dataset: .venv/bin/python -m dev.sample_data")
        uvicorn.run(create_app(settings), host="127.0.0.1", port=API_PORT, log_level="info")
    finally:
        if worker is not None:
            stop_process(worker, grace=60)  # SIGTERM: a warm stop at the end of the epoch
        azurite.stop()


if __name__ == "__main__":
    main()
