"""Zip extraction that refuses traversal, links and bombs."""

from __future__ import annotations

import errno
import shutil
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from worker.ingest.source import DiskFull, IngestError

_CHUNK = 1 << 20
# Ratios of tiny entries say little (a 10-byte file can compress 1:50); judge larger ones.
_RATIO_MIN_BYTES = 1 << 20
# The end-of-central-directory record sits in the last 22 bytes plus a comment of ≤ 64 KiB.
_EOCD_SEARCH = 22 + (1 << 16)


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


def entry_count(archive: Path) -> int:
    """The number of entries the end-of-central-directory record declares, read before the
    central directory itself (zipfile.ZipFile builds the whole entry list as it opens)."""
    with archive.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - _EOCD_SEARCH))
        tail = handle.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) < at + 22:
        raise IngestError("the dataset zip is not a valid zip file")
    (count,) = struct.unpack("<H", tail[at + 10 : at + 12])
    if count == 0xFFFF:  # ZIP64: the count sits in the zip64 end record its locator names
        locator = tail.rfind(b"PK\x06\x07", 0, at)
        if locator < 0:
            raise IngestError("the dataset zip is not a valid zip file")
        (record,) = struct.unpack("<Q", tail[locator + 8 : locator + 16])
        with archive.open("rb") as handle:
            handle.seek(record)
            header = handle.read(56)
        if header[:4] != b"PK\x06\x06":
            raise IngestError("the dataset zip is not a valid zip file")
        (count,) = struct.unpack("<Q", header[32:40])
    return int(count)


def extract(archive: Path, dest: Path, limits: ZipLimits) -> int:
    """Extract `archive` into `dest`; returns the number of files. IngestError on any danger,
    DiskFull when this worker lacks the room (a worker's problem: the job retries)."""
    # Before zipfile reads the central directory into a list: a forged count of millions
    # costs nothing here. Folders are entries too, hence the slack; files are counted below.
    declared = entry_count(archive)
    if declared > 2 * limits.max_files:
        raise IngestError(
            f"the dataset zip has {declared} entries; the limit is {limits.max_files} files"
        )
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
        # The whole archive's ratio too: many entries each just under the per-entry floor
        # (1 MiB of zeros apiece) add up to a bomb no single entry shows.
        compressed = max(archive.stat().st_size, 1)
        max_total = max(limits.max_ratio * compressed, _RATIO_MIN_BYTES)
        if sum(entry.file_size for entry in files) > max_total:
            raise IngestError(
                f"the dataset zip expands more than {limits.max_ratio:g} times its size; "
                "refusing a possible zip bomb"
            )
        needed = sum(entry.file_size for entry in files)
        dest.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(dest).free
        if needed > free:
            raise DiskFull(needed, free)
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
                        if written > max_total:
                            raise IngestError(
                                f"the dataset zip expands more than {limits.max_ratio:g} times "
                                "its size; refusing a possible zip bomb"
                            )
                        sink.write(chunk)
            except OSError as error:
                if error.errno == errno.ENOSPC:
                    raise DiskFull(needed, shutil.disk_usage(dest).free) from None
                raise _damaged(entry, error) from None
            except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError) as error:
                raise _damaged(entry, error) from None
        return len(files)


def _damaged(entry: zipfile.ZipInfo, error: BaseException) -> IngestError:
    # RuntimeError: an encrypted entry; the others: damaged data.
    return IngestError(f"zip entry '{entry.filename}' is damaged ({type(error).__name__})")
