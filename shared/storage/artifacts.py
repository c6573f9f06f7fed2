"""The `models` container: each training's files under `<profile>/<project>/`."""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContainerClient,
    UserDelegationKey,
    generate_blob_sas,
)

from shared.addresses import is_loopback

# Clock skew between us and Storage: a SAS starts a little in the past.
_SAS_SKEW = timedelta(minutes=5)


# Resume checkpoints live apart from the delivered files, under a root folder no profile id
# can name (ids never start with a dot), so one lifecycle rule can expire abandoned ones.
RESUME_ROOT = ".resume/"


def training_prefix(profile_id: str, project_name: str) -> str:
    """Where a training's delivered files live: exports, manifest, metrics, plots."""
    return f"{profile_id}/{project_name}/"


# Each claim of a job delivers under a folder of its own (the row names the one delivered).
RUNS_FOLDER = "runs/"


def delivery_prefix(profile_id: str, project_name: str, claim_token: str) -> str:
    """Where one claim of a training uploads its exports, manifest, metrics and plots."""
    return f"{training_prefix(profile_id, project_name)}{RUNS_FOLDER}{claim_token}/"


def resume_prefix(profile_id: str, project_name: str) -> str:
    """Where a training's resume checkpoint lives while it runs."""
    return RESUME_ROOT + training_prefix(profile_id, project_name)


class ArtifactStore:
    def __init__(self, client: ContainerClient, service: BlobServiceClient | None = None) -> None:
        self.client = client
        self.service = service
        self._delegation: UserDelegationKey | None = None
        self._delegation_expiry = datetime.min.replace(tzinfo=UTC)
        self._lock = threading.Lock()

    def download_url(self, blob_name: str, lifetime: timedelta) -> str:
        """A read-only URL for one blob that expires after `lifetime`.

        With an account key (connection strings, Azurite) the SAS is signed with it; with a
        token credential (managed identity, where shared keys are off) with a user
        delegation key, fetched once and reused while it outlives the SAS.
        """
        now = datetime.now(UTC)
        expiry = now + lifetime
        account_key = getattr(self.client.credential, "account_key", None)
        delegation = None if account_key else self._delegation_key(now, expiry)
        sas = blob_sas(
            self.client.account_name or "",
            self.client.container_name,
            blob_name,
            now,
            expiry,
            account_key=account_key,
            user_delegation_key=delegation,
            https_only=not is_loopback(urlsplit(self.client.url).hostname or ""),
        )
        return f"{self.client.url}/{quote(blob_name)}?{sas}"

    def _delegation_key(self, now: datetime, expiry: datetime) -> UserDelegationKey:
        with self._lock:
            if self._delegation is None or self._delegation_expiry < expiry:
                assert self.service is not None, "a token credential needs the service client"
                # A key lives at most 7 days; take a day, so one key serves many URLs.
                key_expiry = max(expiry, now + timedelta(days=1))
                self._delegation = self.service.get_user_delegation_key(now - _SAS_SKEW, key_expiry)
                self._delegation_expiry = key_expiry
            return self._delegation

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

    def delete(self, blob_name: str) -> None:
        """Delete one blob; one already gone is fine."""
        with contextlib.suppress(ResourceNotFoundError):
            self.client.delete_blob(blob_name)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every blob under `prefix`; returns how many."""
        names = self.list(prefix)
        for name in names:
            self.client.delete_blob(name)
        return len(names)


def blob_sas(
    account_name: str,
    container: str,
    blob_name: str,
    now: datetime,
    expiry: datetime,
    *,
    account_key: str | None = None,
    user_delegation_key: UserDelegationKey | None = None,
    https_only: bool = True,
) -> str:
    """The query string of a read-only SAS for one blob.

    `https_only` signs `spr=https`: Storage refuses the URL over plain http, so a model
    never travels unencrypted. Only Azurite on loopback (plain http) signs without it.
    """
    return generate_blob_sas(
        account_name,
        container,
        blob_name,
        account_key=account_key,
        user_delegation_key=user_delegation_key,
        permission=BlobSasPermissions(read=True),
        start=now - _SAS_SKEW,
        expiry=expiry,
        protocol="https" if https_only else None,
    )
