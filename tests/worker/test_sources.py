"""Dataset sources against real servers (Azurite, the S3-protocol server): a download stops
at the size the listing gave, whatever the object has grown to since."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dev.stack import Azurite, S3Server
from tests.worker.conftest import S3_KEY_ID, S3_SECRET
from worker.ingest.azure import AzureSource
from worker.ingest.s3 import S3Source
from worker.ingest.source import Source


def grown_then_downloaded(source: Source, put: Any, tmp_path: Path) -> bytes:
    put("photos/a.png", b"x" * 100)
    (listed,) = source.list("photos/")
    put("photos/a.png", b"y" * 5000)  # replaced by something bigger after the listing
    path = tmp_path / "a.png"
    source.download(listed.name, path, listed.size)
    return path.read_bytes()


def test_an_azure_download_stops_at_the_listed_size(
    azurite: Azurite, dataset_container: Any, tmp_path: Path
) -> None:
    source = AzureSource(azurite.connection_string, dataset_container.container_name, 4)

    def put(name: str, data: bytes) -> None:
        dataset_container.upload_blob(name, data, overwrite=True)

    assert grown_then_downloaded(source, put, tmp_path) == b"y" * 100
    put("photos/empty.png", b"")
    source.download("photos/empty.png", tmp_path / "empty.png", 0)
    assert (tmp_path / "empty.png").read_bytes() == b""


def test_an_s3_download_stops_at_the_listed_size(
    s3_server: S3Server, s3_bucket: tuple[Any, str], tmp_path: Path, monkeypatch: Any
) -> None:
    client, bucket = s3_bucket
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    secrets = {"aws_access_key_id": S3_KEY_ID, "aws_secret_access_key": S3_SECRET}
    source = S3Source(secrets, bucket, "us-east-1")

    def put(name: str, data: bytes) -> None:
        client.put_object(Bucket=bucket, Key=name, Body=data)

    assert grown_then_downloaded(source, put, tmp_path) == b"y" * 100
