"""One storage account: builds the SDK clients from settings, and provisions resources."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.blob import BlobServiceClient, ContainerClient, CorsRule
from azure.storage.queue import QueueClient, QueueServiceClient

from shared.settings import CommonSettings
from shared.storage.artifacts import ArtifactStore


class StorageAccount:
    """Clients for the account named by settings: a connection string or an account URL.

    With an account URL the managed identity (DefaultAzureCredential) signs requests; the
    URL is a template such as ``https://acct.{service}.core.windows.net``.
    """

    def __init__(
        self,
        settings: CommonSettings,
        *,
        retries: int = 3,
        backoff_seconds: float = 0.2,
        timeout_seconds: float = 10,
    ) -> None:
        # The API prefers a quick 503 to a request that hangs on retries; the worker waits.
        # A storage account that accepts connections but does not answer (paused, overloaded)
        # costs timeout_seconds per try: the read timeout is bounded as well as the connect.
        options: dict[str, Any] = {
            "retry_total": retries,
            "retry_backoff_factor": backoff_seconds,
            "connection_timeout": timeout_seconds,
            "read_timeout": timeout_seconds,
        }
        if settings.storage_connection_string is not None:
            secret = settings.storage_connection_string.get_secret_value()
            self.tables = TableServiceClient.from_connection_string(secret, **options)
            self.queues = QueueServiceClient.from_connection_string(secret, **options)
            self.blobs = BlobServiceClient.from_connection_string(secret, **options)
        else:
            from azure.identity import DefaultAzureCredential

            assert settings.storage_account_url is not None  # settings enforce one of the two
            credential = DefaultAzureCredential()
            url = settings.storage_account_url
            self.tables = TableServiceClient(
                url.format(service="table"), credential=credential, **options
            )
            self.queues = QueueServiceClient(
                url.format(service="queue"), credential=credential, **options
            )
            self.blobs = BlobServiceClient(
                url.format(service="blob"), credential=credential, **options
            )
        self.settings = settings

    def table(self, name: str) -> TableClient:
        return self.tables.get_table_client(name)

    def queue(self, name: str) -> QueueClient:
        return self.queues.get_queue_client(name)

    def container(self, name: str) -> ContainerClient:
        return self.blobs.get_container_client(name)

    def artifacts(self) -> ArtifactStore:
        """The models container, able to hand out download URLs."""
        return ArtifactStore(self.container(self.settings.models_container), self.blobs)

    def provision(self, web_origins: Sequence[str] = ()) -> None:
        """Create the tables, queues and container the settings name (idempotent); with
        web_origins, let the web page served there GET blobs (the blob service's CORS rule,
        as infra/bicep sets it in Azure)."""
        s = self.settings
        if web_origins:
            self.blobs.set_service_properties(cors=[web_cors_rule(web_origins)])
        for table in (s.trainings_table, s.workers_table, s.idempotency_table):
            self.tables.create_table_if_not_exists(table)
        for queue in (s.jobs_queue, s.poison_queue):
            with contextlib.suppress(ResourceExistsError):
                self.queues.create_queue(queue)
        with contextlib.suppress(ResourceExistsError):
            self.blobs.create_container(s.models_container)


def web_cors_rule(web_origins: Sequence[str]) -> CorsRule:
    """The page's origins may read blobs through their SAS URLs; no other origin may."""
    return CorsRule(
        allowed_origins=[origin.rstrip("/") for origin in web_origins],
        allowed_methods=["GET", "HEAD"],
        allowed_headers=["range"],
        exposed_headers=["content-length", "content-type", "etag"],
        max_age_in_seconds=3600,
    )
