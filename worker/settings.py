"""The worker's settings (`AITRAINER_*`), on top of what it shares with the API."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

from pydantic import Field, field_validator

from shared.settings import CommonSettings
from worker.engine.config import (
    DEFAULT_CACHE_BYTES,
    JpegDecoder,
    PrecisionRequest,
    PretrainedPolicy,
)


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class WorkerSettings(CommonSettings):
    """Queue polling, leases, retries, limits, weights and webhooks."""

    worker_id: str = Field(default_factory=_default_worker_id)
    poll_min_seconds: float = 1.0
    # Storage queues cannot long-poll: an idle worker polls, backing off up to this.
    poll_max_seconds: float = 5.0
    lease_seconds: int = Field(default=300, ge=10)
    heartbeat_seconds: float = Field(
        default=15.0, gt=0, description="renews the lease, refreshes the worker row, reads cancel"
    )
    max_attempts: int = Field(default=3, ge=1)
    retry_delay_seconds: int = Field(default=60, ge=0, description="before a failed job retries")
    pretrained: PretrainedPolicy = "fail"
    weights_dir: Path | None = None
    work_dir: Path = Field(default_factory=lambda: Path(tempfile.gettempdir()))
    webhook_allow_private: bool = False
    webhook_timeout_seconds: float = 10.0
    webhook_retries: int = 3
    max_dataset_bytes: int = 20 * 2**30
    max_images: int = 1_000_000
    max_wall_seconds: int = 24 * 3600
    max_zip_ratio: float = Field(default=200.0, description="uncompressed/compressed per entry")
    download_concurrency: int = 16
    cache_bytes: int = DEFAULT_CACHE_BYTES
    device: str | None = Field(
        default=None,
        description="cuda or cpu; default: cuda if present. cuda: refuse to start without it",
    )
    precision: PrecisionRequest = Field(
        default="auto",
        description="auto (bf16 on compute capability 8.0+, fp16 on 7.x, float32 below and on "
        "the CPU), bf16, fp16 or fp32; one the device cannot run stops the worker at start",
    )
    compile_backend: str | None = Field(
        default=None,
        description="torch.compile backend for classifiers' training step (inductor); unset "
        "or empty: eager. One this torch lacks stops the worker at start",
    )
    jpeg_decoder: JpegDecoder = Field(
        default="auto",
        description="who decodes classifiers' plain JPEGs: auto (torchvision's nvJPEG on a "
        "GPU, Pillow elsewhere), torchvision, or pillow (the switch if nvJPEG misreads files)",
    )
    checkpoint_seconds: float = Field(
        default=120.0, ge=0, description="seconds of training between checkpoints inside an epoch"
    )
    max_deliveries: int = Field(
        default=10,
        ge=1,
        description="deliveries of a message no worker could start, then the poison queue",
    )
    storage_timeout_seconds: float = Field(
        default=30.0, gt=0, description="per storage request, connecting and reading"
    )
    storage_retries: int = Field(
        default=6, ge=0, description="tries of a failed storage request, backing off from 1 s"
    )

    @field_validator("compile_backend", mode="before")
    @classmethod
    def _empty_is_eager(cls, value: object) -> object:
        """AITRAINER_COMPILE_BACKEND= (set, empty) means what unset means."""
        return None if value == "" else value
