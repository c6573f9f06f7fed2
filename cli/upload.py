"""Put a local dataset (a folder of class folders, or a zip) where the worker can fetch it.

The dataset goes to `<container>/<profile>/<project>/` of the configured storage; whatever
was there before is removed first, so an earlier dataset under the same name cannot leak
into this training.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.config import StorageConfig
from cli.errors import CliError, one_line, redact

UPLOAD_THREADS = 8
ZIP_BLOB_NAME = "dataset.zip"
# What the worker ignores anyway: no need to send it.
_SKIPPED_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})

Progress = Callable[[int], None]  # called with the bytes just uploaded


@dataclass(frozen=True)
class LocalDataset:
    """The files of a local dataset, relative names in POSIX form."""

    path: Path
    zipped: bool
    files: list[tuple[str, Path]]

    @property
    def total_bytes(self) -> int:
        return sum(path.stat().st_size for _, path in self.files)


def scan(path: Path) -> LocalDataset:
    """The dataset at `path`: a folder (its visible files) or a .zip file."""
    if not path.exists():
        raise CliError(f"dataset '{path}' does not exist")
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise CliError(f"dataset '{path}' is neither a folder nor a zip file")
        return LocalDataset(path, True, [(ZIP_BLOB_NAME, path)])
    if not path.is_dir():
        raise CliError(f"dataset '{path}' is neither a folder nor a zip file")
    files = sorted(_visible_files(path))
    if not files:
        raise CliError(f"dataset folder '{path}' holds no files (one folder per class expected)")
    return LocalDataset(path, False, files)


def _visible_files(root: Path) -> Iterator[tuple[str, Path]]:
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [
            name for name in subfolders if not name.startswith(".") and name not in _SKIPPED_NAMES
        ]
        for name in names:
            if name.startswith(".") or name in _SKIPPED_NAMES:
                continue
            file = Path(folder, name)
            if file.is_file():
                yield file.relative_to(root).as_posix(), file


@dataclass(frozen=True)
class UploadedDataset:
    """Where the dataset now lives, as the start request's fields (credentials included)."""

    fields: dict[str, Any]

    @property
    def where(self) -> str:
        scheme = "azure" if self.fields["storage_type"] == "azure" else "s3"
        return f"{scheme}://{self.fields['container']}/{self.fields['folder']}"


def upload(
    dataset: LocalDataset,
    storage: StorageConfig,
    prefix: str,
    progress: Progress = lambda _: None,
) -> UploadedDataset:
    """Replace whatever is under `prefix/` with `dataset`; any failure is one `CliError` line."""
    folder = f"{prefix}/{ZIP_BLOB_NAME}" if dataset.zipped else prefix
    try:
        target: _AzureTarget | _S3Target = (
            _AzureTarget(storage) if storage.kind == "azure" else _S3Target(storage)
        )
    except CliError:
        raise
    except Exception as error:  # e.g. a malformed endpoint URL
        raise _unexpected(error, storage) from None
    try:
        target.prepare()
        target.clear(f"{prefix}/")
        pool = ThreadPoolExecutor(UPLOAD_THREADS)
        try:
            uploads = [
                pool.submit(target.put, f"{prefix}/{name}", path, progress)
                for name, path in dataset.files
            ]
            for done in uploads:
                done.result()
        finally:
            # On a failure or Ctrl-C, files not yet started are not started at all.
            pool.shutdown(wait=True, cancel_futures=True)
    except CliError:
        raise
    except Exception as error:
        raise target.explain(error) from None
    fields: dict[str, Any] = {
        "storage_type": storage.kind,
        "container": storage.container,
        "folder": folder,
        "zipped": dataset.zipped,
    }
    if storage.kind == "azure":
        fields["azure_connection_string"] = storage.azure_connection_string
    else:
        fields["aws_access_key_id"] = storage.aws_access_key_id
        fields["aws_secret_access_key"] = storage.aws_secret_access_key
        if storage.aws_session_token:
            fields["aws_session_token"] = storage.aws_session_token
        if storage.aws_region:
            fields["aws_region"] = storage.aws_region
    return UploadedDataset(fields)


class _AzureTarget:
    def __init__(self, storage: StorageConfig) -> None:
        from azure.storage.blob import BlobServiceClient

        self.storage = storage
        try:
            service = BlobServiceClient.from_connection_string(
                storage.azure_connection_string or "", retry_total=2, connection_timeout=10
            )
        except ValueError:
            raise CliError("the storage connection string is not valid") from None
        self.container = service.get_container_client(storage.container)

    def prepare(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        with contextlib.suppress(ResourceExistsError):
            self.container.create_container()

    def clear(self, prefix: str) -> None:
        for blob in self.container.list_blobs(name_starts_with=prefix):
            self.container.delete_blob(blob.name)

    def put(self, name: str, path: Path, progress: Progress) -> None:
        size = path.stat().st_size
        with path.open("rb") as handle:
            self.container.upload_blob(name, handle, length=size, overwrite=True)
        progress(size)

    def explain(self, error: Exception) -> CliError:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ServiceRequestError,
        )

        where = f"Azure storage (container '{self.storage.container}')"
        if isinstance(error, ClientAuthenticationError):
            return CliError(f"{where} refused the connection string's credentials")
        if isinstance(error, ServiceRequestError):
            return CliError(f"cannot reach {where}; check the connection string's endpoints")
        if isinstance(error, HttpResponseError):
            code = getattr(error, "error_code", None) or error.reason or error.status_code
            return CliError(f"{where} refused the upload ({code})")
        return _unexpected(error, self.storage)


class _S3Target:
    def __init__(self, storage: StorageConfig) -> None:
        import boto3
        from botocore.config import Config

        self.storage = storage
        self.client = boto3.client(
            "s3",
            aws_access_key_id=storage.aws_access_key_id,
            aws_secret_access_key=storage.aws_secret_access_key,
            aws_session_token=storage.aws_session_token,
            region_name=storage.aws_region,
            endpoint_url=storage.s3_endpoint_url,
            config=Config(retries={"max_attempts": 3}, connect_timeout=10, max_pool_connections=16),
        )

    def prepare(self) -> None:
        # Buckets are not created: where one lives and who owns it is the user's decision.
        self.client.head_bucket(Bucket=self.storage.container)

    def clear(self, prefix: str) -> None:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.storage.container, Prefix=prefix
        )
        for page in pages:
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(
                    Bucket=self.storage.container, Delete={"Objects": keys, "Quiet": True}
                )

    def put(self, name: str, path: Path, progress: Progress) -> None:
        self.client.upload_file(str(path), self.storage.container, name, Callback=progress)

    def explain(self, error: Exception) -> CliError:
        from botocore.exceptions import BotoCoreError, ClientError

        bucket = self.storage.container
        if isinstance(error, ClientError):
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket"):
                return CliError(f"S3 bucket '{bucket}' does not exist")
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return CliError(f"S3 refused these keys for bucket '{bucket}' ({code})")
            return CliError(f"S3 refused the upload to bucket '{bucket}' ({code or 'error'})")
        if isinstance(error, BotoCoreError):
            where = self.storage.s3_endpoint_url or "S3"
            text = redact(one_line(str(error)), self.storage.secrets())
            return CliError(f"cannot upload to {where}: {text}")
        return _unexpected(error, self.storage)


def _unexpected(error: Exception, storage: StorageConfig) -> CliError:
    text = redact(one_line(str(error) or type(error).__name__), storage.secrets())
    return CliError(f"the upload failed: {text}")
