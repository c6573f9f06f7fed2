"""`aitrainer train` end to end: a local folder or zip → storage → API → a real worker →
SUCCESS → model files downloaded and checked; then status, list and download."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from azure.storage.blob import BlobServiceClient

from dev.sample_data import dataset_files, zip_bytes
from dev.stack import Azurite, S3Server
from function_app.api import ApiSettings
from tests.cli.conftest import TINY_FLAGS, Cli, secrets_of
from tests.worker.conftest import S3_KEY_ID, S3_SECRET


def assert_checked_download(folder: Path, labels: list[str]) -> dict[str, Any]:
    """The folder holds the ONNX model and a manifest whose sha256 match the files."""
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["labels"] == labels
    assert manifest["requested_formats"] == ["onnx"]
    assert (folder / "model.onnx").stat().st_size > 100_000
    for entry in manifest["files"]:
        data = (folder / entry["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["name"]
    assert (folder / "labels.txt").read_text() == "".join(f"{label}\n" for label in labels)
    return manifest


def test_train_uploads_a_folder_follows_progress_and_downloads_checked_model_files(
    cli: Cli,
    photos: Path,
    start_worker: Any,
    settings: ApiSettings,
    azurite: Azurite,
    dataset_container: str,
) -> None:
    worker = start_worker()
    result = cli.run("train", str(photos), "--project", "teeth", "--profile", "clinic", *TINY_FLAGS)
    out = result.stdout
    assert result.returncode == 0, (out, result.stderr, worker.text()[-3000:])
    assert result.stderr == ""

    # What the user saw: the upload, each state and epoch as it happened, the result.
    assert "uploading 32 files (" in out
    assert f"to azure://{dataset_container}/clinic/teeth" in out
    assert "started clinic/teeth: training queued: 2 epochs of mobilenet_v3_small" in out
    lines = out.splitlines()
    progress = [line.split()[0] for line in lines if line.split()[:1] and line.split()[0].isupper()]
    assert progress[0] == "PENDING" and progress[-1] == "SUCCESS"
    assert {"RUNNING", "EXPORTING"} <= set(progress)
    # An epoch's line (which one depends on when the CLI polls: epochs here take a second).
    assert any(line.startswith("RUNNING") and " · loss " in line for line in lines)
    assert any(line.startswith("SUCCESS") and "epoch 2/2" in line for line in lines)
    assert any(line.startswith("validation accuracy: ") for line in lines)
    assert "(best epoch " in out
    assert "downloaded 8 files to teeth (sha256 checked against manifest.json):" in out
    assert "model.onnx" in out and "onnx model" in out

    # The files, byte-checked against the manifest.
    manifest = assert_checked_download(cli.cwd / "teeth", ["bad", "good"])
    assert manifest["image_size"] == 32 and manifest["architecture"] == "mobilenet_v3_small"
    for name in ("metrics.json", "plots/curves.png", "checkpoints/checkpoint_best.pt"):
        assert (cli.cwd / "teeth" / name).is_file(), name
    assert not list((cli.cwd / "teeth").rglob("*.part"))

    # The dataset sits where the output said, and no secret was printed.
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    blobs = [b.name for b in service.get_container_client(dataset_container).list_blobs()]
    assert len(blobs) == 32 and all(name.startswith("clinic/teeth/") for name in blobs)
    for secret in secrets_of(settings, azurite):
        assert secret not in out

    # The other commands on the finished training.
    status = cli.run("status", "clinic", "teeth")
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("clinic/teeth: SUCCESS\n  epoch 2/2 · loss ")
    assert "export onnx" in status.stdout
    assert "exports: onnx; download with: aitrainer download clinic teeth" in status.stdout
    as_json = json.loads(cli.run("status", "clinic", "teeth", "--json").stdout)
    assert as_json["result"] == "SUCCESS" and set(as_json["exports"]) == {"onnx"}

    listed = cli.run("list", "clinic")
    assert listed.returncode == 0
    assert listed.stdout.splitlines()[1].split()[:2] == ["teeth", "SUCCESS"]

    again = cli.run("download", "clinic", "teeth", "--out", "again")
    assert again.returncode == 0, again.stderr
    assert "downloaded 8 files to again" in again.stdout
    assert_checked_download(cli.cwd / "again", ["bad", "good"])

    check = cli.run("check")
    assert check.returncode == 0
    assert check.stdout.startswith("Ok: 1 worker online, 0 jobs waiting (http://127.0.0.1:")


def test_train_uploads_a_zip_to_s3_and_downloads_the_model(
    cli: Cli,
    tmp_path: Path,
    s3_server: S3Server,
    s3_bucket: tuple[Any, str],
    start_worker: Any,
) -> None:
    s3, bucket = s3_bucket
    archive = tmp_path / "Teeth Photos.zip"
    archive.write_bytes(zip_bytes(dataset_files(("bad", "okay")), top="teeth/"))
    worker = start_worker()
    result = cli.run(
        "train",
        str(archive),
        "--project=teeth zip",
        "--profile=clinic",
        "--out=models",
        *TINY_FLAGS,
        AITRAINER_CLI_STORAGE_CONNECTION_STRING=None,
        AITRAINER_CLI_CONTAINER=bucket,
        AITRAINER_CLI_AWS_ACCESS_KEY_ID=S3_KEY_ID,
        AITRAINER_CLI_AWS_SECRET_ACCESS_KEY=S3_SECRET,
        AITRAINER_CLI_S3_ENDPOINT_URL=s3_server.endpoint_url,
    )
    assert result.returncode == 0, (result.stdout, result.stderr, worker.text()[-3000:])
    assert "uploading the zip (" in result.stdout
    assert f"to s3://{bucket}/clinic/teeth zip" in result.stdout
    assert "SUCCESS" in result.stdout
    assert_checked_download(cli.cwd / "models", ["bad", "okay"])
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["clinic/teeth zip/dataset.zip"]
    assert S3_SECRET not in result.stdout + result.stderr
