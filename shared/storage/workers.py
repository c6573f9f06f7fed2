"""The `workers` table: one heartbeat row per worker process."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode
from pydantic import BaseModel

# All workers share one partition: the table is small and read whole by /checkserver/.
PARTITION = "workers"


class WorkerInfo(BaseModel):
    worker_id: str
    heartbeat: datetime
    gpu: str
    current_job: str | None = None


class WorkersTable:
    def __init__(self, client: TableClient) -> None:
        self.client = client

    def heartbeat(self, worker_id: str, gpu: str, current_job: str | None) -> None:
        """Record that `worker_id` is alive now (and what it is working on)."""
        entity = {
            "PartitionKey": PARTITION,
            "RowKey": worker_id,
            "heartbeat": datetime.now(UTC),
            "gpu": gpu,
            "current_job": current_job or "",
        }
        self.client.upsert_entity(entity, mode=UpdateMode.REPLACE)

    def remove(self, worker_id: str) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            self.client.delete_entity(PARTITION, worker_id)

    def get(self, worker_id: str) -> WorkerInfo | None:
        """One worker's last heartbeat, or None when it has no row (stopped cleanly)."""
        try:
            entity = self.client.get_entity(PARTITION, worker_id)
        except ResourceNotFoundError:
            return None
        return _info(entity)

    def online(self, fresh_seconds: int) -> list[WorkerInfo]:
        """Workers whose last heartbeat is at most `fresh_seconds` old."""
        since = datetime.now(UTC) - timedelta(seconds=fresh_seconds)
        entities = self.client.query_entities(
            "PartitionKey eq @p and heartbeat ge @since",
            parameters={"p": PARTITION, "since": since},
        )
        return [_info(entity) for entity in entities]


def _info(entity: dict[str, Any]) -> WorkerInfo:
    return WorkerInfo(
        worker_id=entity["RowKey"],
        heartbeat=entity["heartbeat"],
        gpu=entity["gpu"],
        current_job=entity["current_job"] or None,
    )
