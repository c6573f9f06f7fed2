"""The `trainings` table: one row per (profile_id, project_name), every write conditional."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.contract import FINISHED_STATES, TrainingRow

# An ETag that matches whatever the row holds now: delete it unconditionally.
ANY_ETAG = "*"


class TrainingExists(Exception):
    """A training with this (profile_id, project_name) already exists."""


class TrainingNotFound(Exception):
    """No training with this (profile_id, project_name)."""


class StaleRow(Exception):
    """The row changed since it was read; read it again and redo the change."""


class JobsTable:
    """Insert-unique, read, conditional update and delete of training rows."""

    def __init__(self, client: TableClient) -> None:
        self.client = client

    def insert(self, row: TrainingRow) -> str:
        """Create the row; the insert itself is the uniqueness check. Returns the ETag."""
        try:
            metadata = self.client.create_entity(row.to_entity())
        except ResourceExistsError as error:
            raise TrainingExists(row.profile_id, row.project_name) from error
        return str(metadata["etag"])

    def get(self, profile_id: str, project_name: str) -> tuple[TrainingRow, str] | None:
        """The row and its ETag, or None."""
        try:
            entity = self.client.get_entity(profile_id, project_name)
        except ResourceNotFoundError:
            return None
        return TrainingRow.from_entity(entity), str(entity.metadata["etag"])

    def update(self, row: TrainingRow, etag: str) -> str:
        """Replace the row only if it still has `etag` (no lost updates). Returns the new ETag."""
        try:
            metadata = self.client.update_entity(
                row.to_entity(),
                mode=UpdateMode.REPLACE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceModifiedError as error:
            raise StaleRow(row.profile_id, row.project_name) from error
        except ResourceNotFoundError as error:
            raise TrainingNotFound(row.profile_id, row.project_name) from error
        return str(metadata["etag"])

    def modify(
        self, profile_id: str, project_name: str, change: Callable[[TrainingRow], None]
    ) -> tuple[TrainingRow, str]:
        """Read, apply `change`, write conditionally; redo on a concurrent write.

        `change` mutates the row in place and may raise to abandon the write.
        """
        while True:
            found = self.get(profile_id, project_name)
            if found is None:
                raise TrainingNotFound(profile_id, project_name)
            row, etag = found
            change(row)
            try:
                return row, self.update(row, etag)
            except StaleRow:
                continue

    def delete(self, profile_id: str, project_name: str, etag: str) -> None:
        """Delete the row only if it still has `etag`."""
        try:
            self.client.delete_entity(
                profile_id, project_name, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except ResourceModifiedError as error:
            raise StaleRow(profile_id, project_name) from error

    def active_since(
        self, started_by: str, profiles: frozenset[str] | None = None
    ) -> list[datetime]:
        """When each training the token with this fingerprint has queued or running was
        created. A token limited to `profiles` is looked for in their partitions only; an
        unlimited one costs a scan of the table (started_by is no key)."""
        finished = " and ".join(f"state ne '{state.value}'" for state in FINISHED_STATES)
        names = sorted(profiles or ())
        parameters = {"token": started_by} | {f"p{n}": name for n, name in enumerate(names)}
        where = f"started_by eq @token and {finished}"
        if names:
            partitions = " or ".join(f"PartitionKey eq @p{n}" for n in range(len(names)))
            # Spaced: the SDK finds @parameters between spaces only.
            where = f"( {partitions} ) and {where}"
        entities = self.client.query_entities(where, parameters=parameters, select=["created"])
        return [entity["created"] for entity in entities]

    def profiles(self) -> list[str]:
        """Every profile with trainings, sorted (a scan of the keys only)."""
        entities = self.client.list_entities(select=["PartitionKey"])
        return sorted({entity["PartitionKey"] for entity in entities})

    def list_profile(self, profile_id: str) -> list[TrainingRow]:
        """Every training of one profile, newest first."""
        entities = self.client.query_entities(
            "PartitionKey eq @profile", parameters={"profile": profile_id}
        )
        rows = [TrainingRow.from_entity(entity) for entity in entities]
        return sorted(rows, key=lambda row: row.created, reverse=True)
