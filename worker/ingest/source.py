"""What every dataset source offers, and the error a user can act on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class IngestError(ValueError):
    """The dataset cannot be fetched for a reason the user can fix; the text says which."""


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

    def download(self, name: str, path: Path) -> None: ...
