"""Datasets in Azure Blob Storage, read with the user's connection string."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import requests
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient
from requests.adapters import HTTPAdapter

from worker.ingest.source import IngestError, RemoteFile

T = TypeVar("T")


class AzureSource:
    def __init__(self, connection_string: str, container: str, concurrency: int) -> None:
        self.description = f"container '{container}'"
        # One pooled connection per download thread (the SDK's default pool holds 10).
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(10, concurrency))
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        try:
            service = BlobServiceClient.from_connection_string(
                connection_string,
                retry_total=2,
                connection_timeout=20,
                # The endpoint was checked to be public; a redirect must not lead elsewhere.
                permit_redirects=False,
                transport=RequestsTransport(session=session, session_owner=True),
            )
        except ValueError as error:
            # The SDK's text may quote the string: say only what is wrong.
            raise IngestError("azure_connection_string is not a valid connection string") from error
        self.client = service.get_container_client(container)
        self.container = container

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except ResourceNotFoundError as error:
            if getattr(error, "error_code", None) == "ContainerNotFound":
                raise IngestError(f"container '{self.container}' does not exist") from None
            raise IngestError(f"a blob in {self.description} disappeared while reading") from None
        except ServiceRequestError:
            raise IngestError(
                "could not reach the storage account named in azure_connection_string"
            ) from None
        except (ClientAuthenticationError, HttpResponseError) as error:
            if error.status_code in (401, 403):
                code = getattr(error, "error_code", None)
                reason = getattr(code, "value", code) or "forbidden"
                raise IngestError(
                    f"the storage account refused azure_connection_string for {self.description} "
                    f"({reason})"
                ) from None
            raise

    def _call(self, action: Callable[[], T]) -> T:
        with self._errors():
            return action()

    def list(self, prefix: str) -> list[RemoteFile]:
        return self._call(
            lambda: [
                RemoteFile(blob.name, int(blob.size or 0))
                for blob in self.client.list_blobs(name_starts_with=prefix)
            ]
        )

    def download(self, name: str, path: Path, size: int) -> None:
        def fetch() -> None:
            with path.open("wb") as handle:
                if size > 0:  # a range of the listed size: a blob that grew stops there
                    blob = self.client.download_blob(name, offset=0, length=size, max_concurrency=2)
                    blob.readinto(handle)

        self._call(fetch)
