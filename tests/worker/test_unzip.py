"""Zip extraction refuses traversal, links and bombs, within limits."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from worker.ingest.source import DiskFull, IngestError
from worker.ingest.unzip import ZipLimits, entry_count, extract

LIMITS = ZipLimits(max_bytes=10 << 20, max_files=100, max_ratio=100)


def archive(tmp_path: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for info, data in entries:
            bundle.writestr(info, data)
    path = tmp_path / "data.zip"
    path.write_bytes(buffer.getvalue())
    return path


def test_ordinary_zip_is_extracted(tmp_path: Path) -> None:
    path = archive(tmp_path, [("set/a/1.png", b"one"), ("set/b/2.png", b"two")])
    assert extract(path, tmp_path / "out", LIMITS) == 2
    assert (tmp_path / "out/set/b/2.png").read_bytes() == b"two"


@pytest.mark.parametrize(
    "name", ["../evil.png", "a/../../evil.png", "/abs/evil.png", "..\\evil.png", "C:/evil.png"]
)
def test_entries_outside_the_folder_are_refused(tmp_path: Path, name: str) -> None:
    path = archive(tmp_path, [("a/1.png", b"x"), (name, b"x")])
    with pytest.raises(IngestError, match="points outside the archive"):
        extract(path, tmp_path / "out", LIMITS)
    assert not (tmp_path / "evil.png").exists()


def test_symbolic_links_are_refused(tmp_path: Path) -> None:
    info = zipfile.ZipInfo("a/link.png")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with pytest.raises(IngestError, match="symbolic link"):
        extract(archive(tmp_path, [(info, b"/etc/passwd")]), tmp_path / "out", LIMITS)


def test_highly_compressed_entries_are_refused(tmp_path: Path) -> None:
    path = archive(tmp_path, [("a/zeros.png", b"\0" * (4 << 20))])
    with pytest.raises(IngestError, match="possible zip bomb"):
        extract(path, tmp_path / "out", LIMITS)


def test_total_size_is_counted_from_real_bytes(tmp_path: Path) -> None:
    import os

    path = archive(tmp_path, [(f"a/{i}.bin", os.urandom(1 << 20)) for i in range(3)])
    with pytest.raises(IngestError, match="expands beyond 2097152 bytes"):
        extract(path, tmp_path / "out", ZipLimits(2 << 20, 100, 100))


def test_too_many_files_are_refused(tmp_path: Path) -> None:
    path = archive(tmp_path, [(f"a/{i}.png", b"x") for i in range(5)])
    with pytest.raises(IngestError, match="has 5 files; the limit is 4"):
        extract(path, tmp_path / "out", ZipLimits(1 << 20, 4, 100))


def test_a_file_that_is_not_a_zip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.zip"
    path.write_bytes(b"PK not really")
    with pytest.raises(IngestError, match="not a valid zip file"):
        extract(path, tmp_path / "out", LIMITS)


def test_many_entries_just_under_the_per_entry_floor_are_refused_by_the_overall_ratio(
    tmp_path: Path,
) -> None:
    zeros = bytes((1 << 20) - 1)  # each below the size the per-entry ratio judges
    path = archive(tmp_path, [(f"set/a/{n}.png", zeros) for n in range(9)])
    with pytest.raises(IngestError, match="expands more than 100 times its size"):
        extract(path, tmp_path / "out", LIMITS)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png"))


def test_the_entry_count_is_read_before_the_entry_list(tmp_path: Path) -> None:
    path = archive(tmp_path, [(f"set/a/{n}.png", b"x") for n in range(250)])
    assert entry_count(path) == 250
    with pytest.raises(IngestError, match="has 250 entries; the limit is 100 files"):
        extract(path, tmp_path / "out", LIMITS)


def test_a_zip_bigger_than_the_free_disk_is_the_workers_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    from collections import namedtuple

    path = archive(tmp_path, [("set/a/1.png", b"x" * 1000), ("set/b/2.png", b"y" * 1000)])
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(10**9, 10**9 - 500, 500))
    with pytest.raises(DiskFull, match="has 500 bytes free, the dataset needs 2000"):
        extract(path, tmp_path / "out", LIMITS)
    assert not isinstance(DiskFull(1, 0), IngestError)  # retried, not failed as the user's fault
