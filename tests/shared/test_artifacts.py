"""Download URLs: signed, read-only, expiring, enforced by Azurite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import httpx
from azure.storage.blob import UserDelegationKey

from shared.storage.account import StorageAccount
from shared.storage.artifacts import blob_sas


def test_url_downloads_the_blob_until_it_expires(storage: StorageAccount) -> None:
    artifacts = storage.artifacts()
    artifacts.upload_bytes(b"model bytes", "alice/teeth/model file.onnx")
    url = artifacts.download_url("alice/teeth/model file.onnx", timedelta(minutes=10))
    assert httpx.get(url).content == b"model bytes"
    query = parse_qs(url.split("?", 1)[1])
    assert query["sp"] == ["r"]  # read only
    assert "spr" not in query  # Azurite on loopback speaks plain http
    assert (
        httpx.put(url, content=b"overwrite", headers={"x-ms-blob-type": "BlockBlob"}).status_code
        == 403
    )
    expired = artifacts.download_url("alice/teeth/model file.onnx", timedelta(seconds=-1))
    assert httpx.get(expired).status_code == 403


def test_user_delegation_sas_carries_the_key_identity() -> None:
    """The managed-identity path (Azurite cannot issue delegation keys): check what is signed."""
    key = UserDelegationKey()
    key.signed_oid = "11111111-2222-3333-4444-555555555555"
    key.signed_tid = "66666666-7777-8888-9999-000000000000"
    key.signed_start = "2026-11-27T00:00:00Z"
    key.signed_expiry = "2026-11-28T00:00:00Z"
    key.signed_service = "b"
    key.signed_version = "2025-01-05"
    key.value = "a2V5LWJ5dGVzLWZvci10aGUtdGVzdA=="
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    sas = blob_sas(
        "acct", "models", "a/b.onnx", now, now + timedelta(hours=1), user_delegation_key=key
    )
    query = parse_qs(sas)
    assert query["skoid"] == [key.signed_oid]
    assert query["sktid"] == [key.signed_tid]
    assert query["sp"] == ["r"]
    assert query["sr"] == ["b"]
    assert query["se"] == ["2026-11-27T13:00:00Z"]
    assert query["st"] == ["2026-11-27T11:55:00Z"]
    assert query["spr"] == ["https"]  # Storage refuses the URL over plain http
    assert "sig" in query and "AccountKey" not in sas


def test_an_https_only_url_is_refused_over_plain_http(storage: StorageAccount) -> None:
    """What every URL outside loopback signs (`spr=https`), enforced by Storage itself."""
    artifacts = storage.artifacts()
    artifacts.upload_bytes(b"model bytes", "alice/teeth/model.onnx")
    now = datetime.now(UTC)
    sas = blob_sas(
        artifacts.client.account_name or "",
        artifacts.client.container_name,
        "alice/teeth/model.onnx",
        now,
        now + timedelta(minutes=10),
        account_key=artifacts.client.credential.account_key,
        https_only=True,
    )
    response = httpx.get(f"{artifacts.client.url}/alice/teeth/model.onnx?{sas}")
    assert response.status_code == 403
    assert "AuthorizationProtocolMismatch" in response.text
