"""The routes' dependencies, as `Annotated[..., Depends(...)]` aliases.

`GrantDep` answers 401 without a valid token; `ProfileDep`, `TrainingKeyDep` and
`StoredTrainingDep` check the path's identifiers and the token's profiles first (400, then
404), so a token limited to other profiles learns exactly what an unknown name tells.
"""

from __future__ import annotations

from typing import Annotated, NamedTuple

from fastapi import Depends, Path, Request

from shared.contract import IDENTIFIER_SCHEMA, TrainingRow, identifier_problem

from .auth import Grant, matching_grant
from .errors import ApiError, not_found
from .services import Services


def get_services(request: Request) -> Services:
    """The services `create_app` built for this app."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def authorize(request: Request, services: ServicesDep) -> Grant:
    """The grant the Authorization header carries; 401 otherwise."""
    grant = matching_grant(services.grants, request.headers.get("authorization", ""))
    if grant is None:
        raise ApiError(
            401, "missing or invalid Authorization header", {"WWW-Authenticate": "Bearer"}
        )
    return grant


GrantDep = Annotated[Grant, Depends(authorize)]


class TrainingKey(NamedTuple):
    profile_id: str
    project_name: str


class StoredTraining(NamedTuple):
    row: TrainingRow
    etag: str


def _require_identifiers(grant: Grant, profile_id: str, project_name: str | None) -> None:
    for field, value in (("profile_id", profile_id), ("project_name", project_name)):
        if value is not None and (problem := identifier_problem(value)):
            raise ApiError(400, f"{field} must be {problem}")
    if not grant.allows(profile_id):
        # Exactly what an unknown training answers: a limited token learns nothing.
        raise not_found(profile_id, project_name)


# The schema states the identifier rule; the check (400 naming the rule) is ours, below.
IdentifierPath = Annotated[str, Path(json_schema_extra=IDENTIFIER_SCHEMA)]


def visible_profile(profile_id: IdentifierPath, grant: GrantDep) -> str:
    """The path's profile_id, once valid and visible to the token."""
    _require_identifiers(grant, profile_id, None)
    return profile_id


def visible_training(
    profile_id: IdentifierPath, project_name: IdentifierPath, grant: GrantDep
) -> TrainingKey:
    """The path's profile_id and project_name, once valid and visible to the token."""
    _require_identifiers(grant, profile_id, project_name)
    return TrainingKey(profile_id, project_name)


ProfileDep = Annotated[str, Depends(visible_profile)]
TrainingKeyDep = Annotated[TrainingKey, Depends(visible_training)]


def stored_training(key: TrainingKeyDep, services: ServicesDep) -> StoredTraining:
    """The training's row and ETag; 404 when there is none."""
    found = services.jobs.get(key.profile_id, key.project_name)
    if found is None:
        raise not_found(key.profile_id, key.project_name)
    return StoredTraining(*found)


StoredTrainingDep = Annotated[StoredTraining, Depends(stored_training)]
