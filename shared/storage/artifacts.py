"""The `models` container: each training's files under `<profile>/<project>/`."""

from __future__ import annotations

from pathlib import Path

from azure.storage.blob import ContainerClient


def training_prefix(profile_id: str, project_name: str) -> str:
    return f"{profile_id}/{project_name}/"


class ArtifactStore:
    def __init__(self, client: ContainerClient) -> None:
        self.client = client

    def upload_file(self, path: Path, blob_name: str) -> None:
        with path.open("rb") as handle:
            self.client.upload_blob(blob_name, handle, overwrite=True)

    def upload_bytes(self, data: bytes, blob_name: str) -> None:
        self.client.upload_blob(blob_name, data, overwrite=True)

    def download_file(self, blob_name: str, path: Path) -> None:
        with path.open("wb") as handle:
            self.client.download_blob(blob_name).readinto(handle)

    def exists(self, blob_name: str) -> bool:
        return bool(self.client.get_blob_client(blob_name).exists())

    def list(self, prefix: str) -> list[str]:
        return [blob.name for blob in self.client.list_blobs(name_starts_with=prefix)]

    def delete_prefix(self, prefix: str) -> int:
        """Delete every blob under `prefix`; returns how many."""
        names = self.list(prefix)
        for name in names:
            self.client.delete_blob(name)
        return len(names)
