"""The `idempotency` table: which start requests an `Idempotency-Key` already answered.

One row per (token, key): the body's digest, when it was first seen and, once the start
succeeded, the response it got. The row is reserved before the start runs, so a retry that
arrives while the first request still works waits instead of starting a second training.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode

# How long a key answers with its first response; after that it may be used afresh.
KEY_LIFETIME = timedelta(hours=24)


class KeyTaken(Exception):
    """Another request reserved or changed this key's row first."""


@dataclass(frozen=True)
class KeyRecord:
    """What one key's row says."""

    digest: str
    created: datetime
    status: int | None  # None while the first request is under way
    response: str | None

    def expired(self, now: datetime) -> bool:
        return now - self.created > KEY_LIFETIME


def body_digest(body: bytes) -> str:
    """The digest of a JSON body, the same for any spacing or key order of the same JSON."""
    canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def row_key(key: str) -> str:
    """The table row key of a client's key (keys may hold characters tables forbid: / # ?)."""
    return hashlib.sha256(key.encode()).hexdigest()


class IdempotencyKeys:
    """Reserve, complete, release and read keys; every write is conditional."""

    def __init__(self, client: TableClient) -> None:
        self.client = client

    def get(self, owner: str, key: str) -> tuple[KeyRecord, str] | None:
        """The key's record and ETag, or None."""
        try:
            entity = self.client.get_entity(owner, row_key(key))
        except ResourceNotFoundError:
            return None
        record = KeyRecord(
            digest=entity["digest"],
            created=entity["created"],
            status=entity.get("status"),
            response=entity.get("response"),
        )
        return record, str(entity.metadata["etag"])

    def prune(self, owner: str, now: datetime, most: int = 20) -> None:
        """Delete up to `most` of the owner's expired records (each reservation prunes a few,
        so a token's rows stay about as many as its keys of the last day)."""
        expired = self.client.query_entities(
            "PartitionKey eq @owner and created lt @cutoff",
            parameters={"owner": owner, "cutoff": now - KEY_LIFETIME},
            select=["PartitionKey", "RowKey"],
            results_per_page=most,
        )
        for entity in itertools.islice(expired, most):
            self.client.delete_entity(entity["PartitionKey"], entity["RowKey"])

    def reserve(self, owner: str, key: str, digest: str, replacing: str | None = None) -> str:
        """Claim the key for a request now under way; `replacing`: the ETag of an expired or
        abandoned record to take over. Returns the new ETag; KeyTaken if someone was first."""
        entity = {
            "PartitionKey": owner,
            "RowKey": row_key(key),
            "digest": digest,
            "created": datetime.now(UTC),
        }
        try:
            if replacing is None:
                metadata = self.client.create_entity(entity)
            else:
                metadata = self.client.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=replacing,
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceModifiedError) as error:
            raise KeyTaken(key) from error
        return str(metadata["etag"])

    def complete(self, owner: str, key: str, etag: str, status: int, response: str) -> None:
        """Record the response a reserved key's request got (a retry gets it again)."""
        self.client.update_entity(
            {
                "PartitionKey": owner,
                "RowKey": row_key(key),
                "status": status,
                "response": response,
            },
            mode=UpdateMode.MERGE,
            etag=etag,
            match_condition=MatchConditions.IfNotModified,
        )

    def release(self, owner: str, key: str, etag: str) -> None:
        """Forget a reserved key whose request did not start a training (it may be retried)."""
        self.client.delete_entity(
            owner, row_key(key), etag=etag, match_condition=MatchConditions.IfNotModified
        )
