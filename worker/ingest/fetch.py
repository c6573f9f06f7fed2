"""Fetch a dataset (folder or zip) from a source into a local folder, within limits."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from shared.contract import DatasetLocation
from worker.ingest.azure import AzureSource
from worker.ingest.s3 import S3Source
from worker.ingest.source import IngestError, RemoteFile, Source
from worker.ingest.unzip import ZipLimits, extract

# Folders that carry nothing but operating-system clutter.
_CLUTTER = {"__MACOSX"}


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int
    max_files: int
    max_zip_ratio: float
    concurrency: int


def open_source(location: DatasetLocation, secrets: dict[str, str], concurrency: int) -> Source:
    if location.storage_type == "azure":
        return AzureSource(secrets["azure_connection_string"], location.container, concurrency)
    return S3Source(secrets, location.container, location.aws_region)


def _visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.name not in _CLUTTER


def _visible_children(folder: Path) -> list[Path]:
    return [child for child in folder.iterdir() if _visible(child)]


def dataset_root(folder: Path) -> Path:
    """Enter single wrapping folders (`dataset.zip` → `dataset/` → classes).

    A lone folder that holds files is a class, not a wrapper: a one-class dataset must
    reach the engine as such, to be refused with the right reason.
    """
    while True:
        children = _visible_children(folder)
        if (
            len(children) == 1
            and children[0].is_dir()
            and all(child.is_dir() for child in _visible_children(children[0]))
        ):
            folder = children[0]
        else:
            return folder


def _find_zip(source: Source, folder: str) -> RemoteFile:
    """`folder` names the zip, with or without `.zip`, or a folder holding exactly one zip."""
    candidates = [folder] if folder.lower().endswith(".zip") else [folder, f"{folder}.zip"]
    listed = source.list(folder) if folder else source.list("")
    by_name = {item.name: item for item in listed}
    for name in candidates:
        if name in by_name:
            return by_name[name]
    prefix = f"{folder}/" if folder else ""
    inside = [
        item
        for item in listed
        if item.name.startswith(prefix)
        and item.name.lower().endswith(".zip")
        and "/" not in item.name[len(prefix) :]
    ]
    if len(inside) == 1:
        return inside[0]
    where = f"folder '{folder}'" if folder else "the root"
    if not inside:
        raise IngestError(f"no zip file named '{folder}' or '{folder}.zip' in {source.description}")
    names = ", ".join(sorted(item.name for item in inside)[:5])
    raise IngestError(f"{where} of {source.description} holds several zips ({names}); name one")


def _check_size(total: int, count: int, limits: FetchLimits) -> None:
    if total > limits.max_bytes:
        raise IngestError(
            f"the dataset is {total} bytes; the limit is {limits.max_bytes} "
            "(AITRAINER_MAX_DATASET_BYTES)"
        )
    if count > limits.max_files:
        raise IngestError(
            f"the dataset has {count} files; the limit is {limits.max_files} (AITRAINER_MAX_IMAGES)"
        )


def _local_path(dest: Path, relative: str) -> Path:
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise IngestError(f"object name '{relative}' points outside the dataset folder")
    return dest.joinpath(*path.parts)


def fetch(
    source: Source, folder: str, zipped: bool, dest: Path, limits: FetchLimits
) -> tuple[Path, int]:
    """Download the dataset into `dest`; returns its root folder and the bytes fetched."""
    data = dest / "data"
    data.mkdir(parents=True)
    if zipped:
        archive_item = _find_zip(source, folder)
        _check_size(archive_item.size, 1, limits)
        archive = dest / "dataset.zip"
        source.download(archive_item.name, archive, archive_item.size)
        try:
            extract(
                archive, data, ZipLimits(limits.max_bytes, limits.max_files, limits.max_zip_ratio)
            )
        finally:
            archive.unlink()
        fetched = archive_item.size
    else:
        prefix = f"{folder}/" if folder else ""  # `data` means data/…, never data2/…
        items = [item for item in source.list(prefix) if not item.name.endswith("/")]
        if not items:
            where = f"folder '{folder}'" if folder else "the root"
            raise IngestError(f"{where} of {source.description} is empty or does not exist")
        fetched = sum(item.size for item in items)
        _check_size(fetched, len(items), limits)
        targets = [
            (item.name, _local_path(data, item.name[len(prefix) :]), item.size) for item in items
        ]
        for _, path, _ in targets:
            path.parent.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max(1, limits.concurrency)) as pool:
            # list() re-raises the first download error here, in this thread.
            list(pool.map(lambda target: source.download(*target), targets))
    if not _visible_children(data):
        raise IngestError(f"the dataset in {source.description} has no files")
    return dataset_root(data), fetched
