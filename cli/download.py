"""Download a finished training's files (models, manifest, labels, metrics, plots) and check
each model file against the sha256 the manifest lists."""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TransferSpeedColumn,
)

from cli.config import HTTP_TIMEOUT_SECONDS
from cli.errors import CliError, command
from shared.contract import StatusResponse
from shared.storage.artifacts import RUNS_FOLDER

MANIFEST_NAME = "manifest.json"
DATASET_REPORT_NAME = "dataset_report.json"
DOWNLOAD_THREADS = 4
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Downloaded:
    """What `download` wrote: paths relative to `out_dir`, and the parsed manifest."""

    out_dir: Path
    files: list[str]
    manifest: dict[str, Any] | None

    def model_files(self) -> dict[str, str]:
        """format → the main model file's name, from the manifest."""
        if not self.manifest:
            return {}
        return {
            entry["format"]: entry["name"]
            for entry in self.manifest.get("files", [])
            if entry.get("role") == "model" and entry.get("name") in self.files
        }


def local_name(url: str, status: StatusResponse, fallback: str) -> str:
    """The file's path below the training's folder (`model.onnx`, `plots/curves.png`).

    Download URLs end in `<profile>/<project>/runs/<claim>/<name>` (each claim of a job
    delivers under its own folder; trainings from before that, `<profile>/<project>/<name>`);
    anything unsafe falls back to `fallback`.
    """
    path = unquote(urlsplit(url).path)
    marker = f"/{status.profile_id}/{status.project_name}/"
    at = path.find(marker)
    relative = path[at + len(marker) :] if at >= 0 else path.rsplit("/", 1)[-1]
    if relative.startswith(RUNS_FOLDER):
        relative = relative[len(RUNS_FOLDER) :].partition("/")[2]
    parts = relative.split("/")
    if not relative or "\\" in relative or any(part in ("", ".", "..") for part in parts):
        return fallback
    return relative


def planned(status: StatusResponse) -> dict[str, str]:
    """local name → URL of everything the status offers."""
    plan: dict[str, str] = {}
    if status.manifest:
        plan[MANIFEST_NAME] = status.manifest
    if status.dataset_report:
        plan[local_name(status.dataset_report, status, DATASET_REPORT_NAME)] = status.dataset_report
    for fmt, url in status.exports.items():
        plan[local_name(url, status, f"model.{fmt}")] = url
    for key, url in status.files.items():
        plan.setdefault(local_name(url, status, key), url)
    return plan


def download(status: StatusResponse, out_dir: Path, console: Console) -> Downloaded:
    """Fetch every file of `status` into `out_dir` and verify them against the manifest."""
    plan = planned(status)
    key = f"{status.profile_id}/{status.project_name}"
    again = command("download", status.profile_id, status.project_name)
    if not plan:
        raise CliError(f"training {key} has no files to download (it is {status.result.value})")
    if out_dir.exists() and not out_dir.is_dir():
        raise CliError(f"--out '{out_dir}' exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    bar = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    # Storage URLs carry their own signature: never send the API token there.
    with httpx.Client(timeout=HTTP_TIMEOUT_SECONDS) as http, bar:
        pool = ThreadPoolExecutor(DOWNLOAD_THREADS)
        try:
            jobs = [
                pool.submit(_fetch, http, url, out_dir / name, name, again, bar)
                for name, url in plan.items()
            ]
            for job in jobs:
                job.result()
        finally:
            # On a failure or Ctrl-C, files not yet started are not started at all.
            pool.shutdown(wait=True, cancel_futures=True)
    manifest = _read_manifest(out_dir / MANIFEST_NAME) if MANIFEST_NAME in plan else None
    if manifest:
        _verify(manifest, out_dir, plan)
    return Downloaded(out_dir, sorted(plan), manifest)


def _fetch(http: httpx.Client, url: str, path: Path, name: str, again: str, bar: Progress) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    task: TaskID = bar.add_task(name, total=None)
    try:
        with http.stream("GET", url) as response:
            if response.status_code in (401, 403):
                raise CliError(
                    f"the download link of {name} was refused (HTTP {response.status_code}); "
                    f"links expire: run `{again}` again"
                )
            if not response.is_success:
                raise CliError(f"downloading {name} failed (HTTP {response.status_code})")
            length = response.headers.get("content-length")
            bar.update(task, total=int(length) if length and length.isdigit() else None)
            with partial.open("wb") as handle:
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    handle.write(chunk)
                    bar.advance(task, len(chunk))
        os.replace(partial, path)
    except httpx.HTTPError:
        host = urlsplit(url).hostname
        raise CliError(f"cannot download {name} from {host}") from None
    finally:
        partial.unlink(missing_ok=True)
        bar.remove_task(task)


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise CliError(f"{path} is not a readable manifest") from None
    if not isinstance(manifest, dict):
        raise CliError(f"{path} is not a readable manifest")
    return manifest


def _verify(manifest: dict[str, Any], out_dir: Path, plan: dict[str, str]) -> None:
    for entry in manifest.get("files", []):
        name, expected = entry.get("name"), entry.get("sha256")
        if name not in plan or not expected:
            continue
        digest = hashlib.sha256()
        with (out_dir / name).open("rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                digest.update(chunk)
        if digest.hexdigest() != expected:
            raise CliError(f"{out_dir / name} does not match the sha256 in {MANIFEST_NAME}")
