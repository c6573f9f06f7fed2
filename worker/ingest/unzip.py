"""Zip extraction that refuses traversal, links and bombs."""

from __future__ import annotations

import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from worker.ingest.source import IngestError

_CHUNK = 1 << 20
# Ratios of tiny entries say little (a 10-byte file can compress 1:50); judge larger ones.
_RATIO_MIN_BYTES = 1 << 20


@dataclass(frozen=True)
class ZipLimits:
    max_bytes: int
    max_files: int
    max_ratio: float


def _safe_relative(name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise IngestError(f"zip entry '{name}' points outside the archive; refusing the zip")
    return path


def extract(archive: Path, dest: Path, limits: ZipLimits) -> int:
    """Extract `archive` into `dest`; returns the number of files. IngestError on any danger."""
    try:
        bundle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError):
        raise IngestError("the dataset zip is not a valid zip file") from None
    with bundle:
        entries = bundle.infolist()
        files = [entry for entry in entries if not entry.is_dir()]
        if len(files) > limits.max_files:
            raise IngestError(
                f"the dataset zip has {len(files)} files; the limit is {limits.max_files}"
            )
        written = 0
        for entry in files:
            relative = _safe_relative(entry.filename)
            if stat.S_ISLNK(entry.external_attr >> 16):
                raise IngestError(f"zip entry '{entry.filename}' is a symbolic link; refusing")
            if entry.file_size >= _RATIO_MIN_BYTES and entry.file_size > limits.max_ratio * max(
                entry.compress_size, 1
            ):
                raise IngestError(
                    f"zip entry '{entry.filename}' expands more than {limits.max_ratio:g} times; "
                    "refusing a possible zip bomb"
                )
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with bundle.open(entry) as source, target.open("wb") as sink:
                    # Count real bytes: the sizes in the headers may lie.
                    while chunk := source.read(_CHUNK):
                        written += len(chunk)
                        if written > limits.max_bytes:
                            raise IngestError(
                                f"the dataset zip expands beyond {limits.max_bytes} bytes "
                                "(AITRAINER_MAX_DATASET_BYTES)"
                            )
                        sink.write(chunk)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError) as error:
                # RuntimeError: an encrypted entry; the others: damaged data.
                raise IngestError(
                    f"zip entry '{entry.filename}' is damaged ({type(error).__name__})"
                ) from None
        return len(files)
