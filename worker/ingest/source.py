"""What every dataset source offers, and the error a user can act on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class IngestError(ValueError):
    """The dataset cannot be fetched for a reason the user can fix; the text says which."""


class DiskFull(OSError):
    """This worker's disk cannot hold the dataset: the worker's problem, so the job retries
    (on this worker once space frees, or on another)."""

    def __init__(self, needed: int, free: int) -> None:
        super().__init__(
            f"the worker's disk has {free} bytes free, the dataset needs {needed}; "
            "the job retries (AITRAINER_WORK_DIR needs room)"
        )


@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int


class Source(Protocol):
    """A container or bucket, read with the user's credentials."""

    description: str  # e.g. "container 'photos'": used in messages, never holds secrets

    def list(self, prefix: str) -> list[RemoteFile]:
        """Every object whose name starts with `prefix`."""
        ...

    def download(self, name: str, path: Path, size: int) -> None:
        """Write the object's first `size` bytes (its listed size) to `path`, never more:
        an object that grew since it was listed cannot exceed the limits checked on the
        listing."""
        ...
