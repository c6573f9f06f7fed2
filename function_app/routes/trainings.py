"""Trainings: start, status, list, delete and cancel."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Annotated, Any

from anyio import CapacityLimiter, to_thread
from anyio.lowlevel import RunVar
from azure.core.exceptions import AzureError
from fastapi import Header, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from shared.contract import (
    DeleteTrainingResponse,
    JobMessage,
    StartTrainingRequest,
    StartTrainingResponse,
    State,
    StatusResponse,
    TrainingList,
    TrainingRow,
    TrainingSummary,
    describe_validation_error,
    utcnow,
)
from shared.sealing import seal
from shared.storage.artifacts import resume_prefix, training_prefix
from shared.storage.jobs import ANY_ETAG, StaleRow, TrainingExists, TrainingNotFound

from .. import idempotency
from ..auth import Grant
from ..deps import GrantDep, ProfileDep, ServicesDep, StoredTrainingDep, TrainingKeyDep
from ..errors import ERROR_RESPONSES, STORAGE_DOWN, ApiError, not_found
from ..services import Services
from ..settings import ApiSettings
from . import SeedRouter

log = logging.getLogger("aitrainer.api")

router = SeedRouter()

MAX_BODY_BYTES = 64 * 1024
# Start requests run on threads of their own (per event loop, like anyio's default limiter):
# those waiting on a slow webhook host name cannot take the threads other routes run on.
START_THREADS = 16
_start_threads: RunVar[CapacityLimiter] = RunVar("aitrainer_start_threads")

_START_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": StartTrainingRequest.model_json_schema()}},
    }
}


@router.post(
    "/starttraining/",
    status_code=202,
    response_model=StartTrainingResponse,
    responses={
        code: {"model": StartTrainingResponse} for code in (400, 401, 403, 409, 413, 422, 429, 503)
    },
    openapi_extra=_START_SCHEMA,
)
async def start_training(
    request: Request,
    services: ServicesDep,
    grant: GrantDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=idempotency.HEADER,
            description="the same key and body within 24 h answer the first 202 again "
            "(a retry after a lost response starts no second training); another body: 422",
            json_schema_extra={"pattern": "^[!-~]{1,255}$"},
        ),
    ] = None,
) -> JSONResponse:
    """Validate a training request, record it and queue it (202 PENDING)."""
    try:
        body = await _read_body(request)
    except ApiError as error:
        return _seed_failure(error.status, error.message)
    # Validation resolves the webhook's host name: never on the event loop.
    return await to_thread.run_sync(
        _start, services, grant, body, idempotency_key, limiter=_start_limiter()
    )


def _start_limiter() -> CapacityLimiter:
    try:
        return _start_threads.get()
    except LookupError:
        limiter = CapacityLimiter(START_THREADS)
        _start_threads.set(limiter)
        return limiter


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, f"body must be at most {MAX_BODY_BYTES} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, f"body must be at most {MAX_BODY_BYTES} bytes")
    return body


def _seed_failure(status: int, message: str, **fields: Any) -> JSONResponse:
    body = StartTrainingResponse(status="FAILED", message=message, **fields)
    return JSONResponse(body.model_dump(), status_code=status)


def _start(
    services: Services, grant: Grant, body: bytes, idempotency_key: str | None
) -> JSONResponse:
    """The answer to a start request: validated, allowed, recorded and queued, or why not."""
    try:
        start = _parse(services.settings, body)
    except ValidationError as error:
        if any(item["type"] == "json_invalid" for item in error.errors()):
            return _seed_failure(400, "body is not valid JSON")
        return _seed_failure(400, describe_validation_error(error))
    ids = _ids(start)
    if not grant.allows(start.profile_id):
        return _seed_failure(
            403, f"this token may not start trainings for profile '{start.profile_id}'", **ids
        )
    if idempotency_key is None:
        return _start_now(services, grant, start)
    try:
        return idempotency.start_once(
            services.idempotency,
            grant.fingerprint,
            idempotency_key,
            body,
            lambda: _start_now(services, grant, start),
            lambda status, message: _seed_failure(status, message, **ids),
        )
    except ApiError as error:
        return _seed_failure(error.status, error.message, **ids)
    except AzureError as error:
        return _storage_down(error, start)


def _storage_down(error: AzureError, start: StartTrainingRequest) -> JSONResponse:
    log.warning("starttraining: storage error %s", type(error).__name__)
    return _seed_failure(503, STORAGE_DOWN, dataset=start.dataset, **_ids(start))


def _ids(start: StartTrainingRequest) -> dict[str, str]:
    return {"profile_id": start.profile_id, "project_name": start.project_name}


def _start_now(services: Services, grant: Grant, start: StartTrainingRequest) -> JSONResponse:
    ids = _ids(start)
    try:
        answer = _queue(services, start, grant)
    except TooManyActive as busy:
        refusal = _seed_failure(
            429,
            f"this token has {busy.active} trainings queued or running and may have at most "
            f"{busy.cap}; start more when one ends",
            dataset=start.dataset,
            **ids,
        )
        refusal.headers["Retry-After"] = str(busy.retry_after)
        return refusal
    except TrainingExists:
        return _seed_failure(
            409,
            f"a training named '{start.project_name}' already exists for profile "
            f"'{start.profile_id}'; choose another project_name or DELETE the finished one",
            dataset=start.dataset,
            **ids,
        )
    except AzureError as error:
        return _storage_down(error, start)
    return JSONResponse(answer.model_dump(), 202)


def _parse(settings: ApiSettings, body: bytes) -> StartTrainingRequest:
    return StartTrainingRequest.model_validate_json(
        body or b"null",
        context={
            "max_batch_size": settings.max_batch_size,
            "allow_private_webhooks": settings.webhook_allow_private,
            "webhook_resolve_seconds": settings.webhook_resolve_seconds,
            "dataset_rules": {
                **settings.dataset_rules,
                "resolve_seconds": settings.webhook_resolve_seconds,
            },
        },
    )


class TooManyActive(Exception):
    """The token already has the most active trainings its cap allows."""

    def __init__(self, active: int, cap: int, retry_after: int) -> None:
        super().__init__(active, cap)
        self.active, self.cap, self.retry_after = active, cap, retry_after


# What a 429 suggests: trainings take minutes, so sooner would only be refused again; a
# start that lost a race with other starts for the last places may try again at once.
RETRY_AFTER_BUSY_SECONDS = 60
RETRY_AFTER_RACE_SECONDS = 1


def _queue(
    services: Services, request: StartTrainingRequest, grant: Grant
) -> StartTrainingResponse:
    """Insert the row (the uniqueness check), check the token's cap, then queue its message.

    The cap counts after the insert: starts racing for the last place all see each other's
    rows, so the cap is never exceeded; at worst all of them are refused, told to retry in a
    second (the rows created before theirs left room).
    """
    webhook_url = request.webhook_url or services.settings.default_webhook_url
    job_id = uuid.uuid4().hex
    row = TrainingRow.from_request(request, webhook_url, job_id)
    row.started_by = grant.fingerprint
    message = JobMessage(
        profile_id=request.profile_id,
        project_name=request.project_name,
        job_id=job_id,
        sealed_credentials=seal(
            request.credentials(),
            services.sealing_ring,
            request.profile_id,
            request.project_name,
            job_id,
        ),
    )
    services.jobs.insert(row)
    try:
        cap = services.settings.max_active_per_token
        active = services.jobs.active_since(grant.fingerprint, grant.profiles)
        if len(active) > cap:
            raced = sum(created < row.created for created in active) < cap
            retry = RETRY_AFTER_RACE_SECONDS if raced else RETRY_AFTER_BUSY_SECONDS
            raise TooManyActive(len(active) - 1, cap, retry)
        services.queue.send(message.model_dump_json())
    except (AzureError, TooManyActive):
        # Without its message the row would wait forever: remove it (whatever changed it
        # since, a cancel for one) so the name stays usable and the cap counts it no more.
        services.jobs.delete(row.profile_id, row.project_name, ANY_ETAG)
        raise
    log.info("training %s/%s queued", row.profile_id, row.project_name)
    return StartTrainingResponse(
        status="PENDING",
        profile_id=row.profile_id,
        project_name=row.project_name,
        dataset=request.dataset,
        message=f"training queued: {request.epochs} epochs of {request.architecture}",
    )


@router.get(
    "/statustraining/{profile_id}/{project_name}",
    response_model=StatusResponse,
    responses=ERROR_RESPONSES,
)
def status_training(stored: StoredTrainingDep, services: ServicesDep) -> StatusResponse:
    """A training's state and progress."""
    lifetime = timedelta(seconds=services.settings.sas_lifetime_seconds)
    return StatusResponse.from_row(
        stored.row, lambda blob: services.artifacts.download_url(blob, lifetime)
    )


@router.get("/trainings/{profile_id}", response_model=TrainingList, responses=ERROR_RESPONSES)
def list_trainings(profile: ProfileDep, services: ServicesDep) -> TrainingList:
    """A profile's trainings, newest first."""
    rows = services.jobs.list_profile(profile)
    if not rows:
        raise not_found(profile, None)
    summaries = [
        TrainingSummary(
            project_name=row.project_name,
            result=row.state,
            created=row.created,
            lastupdate=row.lastupdate,
            current_epoch=row.current_epoch,
            epochs=row.params.epochs,
            accuracy=row.accuracy,
        )
        for row in rows
    ]
    return TrainingList(profile_id=profile, trainings=summaries)


@router.delete(
    "/trainings/{profile_id}/{project_name}",
    response_model=DeleteTrainingResponse,
    responses=ERROR_RESPONSES,
)
def delete_training(stored: StoredTrainingDep, services: ServicesDep) -> DeleteTrainingResponse:
    """Remove a finished training and its files, so its name can be used again.

    The row is marked first (it then names no files), so a conflict or a crash part-way
    never leaves a row pointing at deleted files; a repeated DELETE completes it.
    """
    row, etag = stored
    if not row.state.finished:
        raise ApiError(
            409,
            f"training '{row.project_name}' is {row.state.value}; cancel it or wait until it "
            "ends before deleting it",
        )
    try:
        if not row.deleting:
            row.deleting, row.message, row.exports, row.files = True, "being deleted", {}, {}
            etag = services.jobs.update(row, etag)
        removed = sum(
            services.artifacts.delete_prefix(prefix(row.profile_id, row.project_name))
            for prefix in (training_prefix, resume_prefix)
        )
        services.jobs.delete(row.profile_id, row.project_name, etag)
    except StaleRow as error:
        raise ApiError(409, f"training '{row.project_name}' changed; try again") from error
    except TrainingNotFound as error:  # a concurrent DELETE removed it first
        raise not_found(row.profile_id, row.project_name) from error
    log.info("training %s/%s deleted with %d files", row.profile_id, row.project_name, removed)
    return DeleteTrainingResponse(
        message=f"training '{row.project_name}' deleted ({removed} files)"
    )


@router.post(
    "/canceltraining/{profile_id}/{project_name}",
    response_model=StatusResponse,
    responses=ERROR_RESPONSES,
)
def cancel_training(key: TrainingKeyDep, services: ServicesDep) -> StatusResponse:
    """Cancel a training: a queued one ends now, a training one at its next batch, an
    exporting one before its next format (nothing of the export is delivered)."""
    try:
        row, _ = services.jobs.modify(key.profile_id, key.project_name, _request_cancel)
    except TrainingNotFound as error:
        raise not_found(key.profile_id, key.project_name) from error
    log.info("training %s/%s: cancel requested", key.profile_id, key.project_name)
    return StatusResponse.from_row(row)


def _request_cancel(row: TrainingRow) -> None:
    if row.state.finished:
        raise ApiError(409, f"training '{row.project_name}' already ended {row.state.value}")
    if row.state == State.PENDING:
        row.state, row.message = State.CANCELLED, "cancelled before it started"
        row.event_pending = True  # no worker ran it: the one that drops its message says so
    else:
        row.cancel_requested, row.message = True, "cancel requested"
    row.lastupdate = utcnow()
