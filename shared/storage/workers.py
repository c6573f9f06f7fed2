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
    gpu: str  # the card's name, or "cpu"
    device: str  # where it trains: cuda or cpu
    precision: str  # bf16, fp16 or fp32 (worker/engine/device.py); "" from older workers
    current_job: str | None = None


class WorkersTable:
    def __init__(self, client: TableClient) -> None:
        self.client = client

    def heartbeat(
        self, worker_id: str, gpu: str, current_job: str | None, *, device: str, precision: str
    ) -> None:
        """Record that `worker_id` is alive now, what it computes on, and what it works on."""
        entity = {
            "PartitionKey": PARTITION,
            "RowKey": worker_id,
            "heartbeat": datetime.now(UTC),
            "gpu": gpu,
            "device": device,
            "precision": precision,
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
        # Rows of workers from before these fields: a named card meant CUDA.
        device=entity.get("device") or ("cpu" if entity["gpu"] == "cpu" else "cuda"),
        precision=entity.get("precision", ""),
        current_job=entity["current_job"] or None,
    )
