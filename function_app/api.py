"""The HTTP API: FastAPI routes over the storage facades.

Served by Azure Functions through `function_app.py` and locally by uvicorn
(`uvicorn function_app.api:create_app --factory`); the same code answers in both places.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal

from azure.core.exceptions import AzureError
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import Field, SecretStr, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool

from shared.contract import (
    CheckServerResponse,
    ErrorResponse,
    JobMessage,
    StartTrainingRequest,
    StartTrainingResponse,
    State,
    StatusResponse,
    TrainingList,
    TrainingRow,
    TrainingSummary,
    describe_validation_error,
    identifier_problem,
    utcnow,
)
from shared.sealing import seal
from shared.settings import DEV_API_TOKEN, CommonSettings
from shared.storage.account import StorageAccount
from shared.storage.artifacts import resume_prefix, training_prefix
from shared.storage.jobs import JobsTable, StaleRow, TrainingExists, TrainingNotFound
from shared.storage.queue import JobQueue
from shared.storage.workers import WorkersTable

log = logging.getLogger("aitrainer.api")

MAX_BODY_BYTES = 64 * 1024
STORAGE_DOWN = "storage is unavailable; try again shortly"


class ApiSettings(CommonSettings):
    """The API's settings (`AITRAINER_*`)."""

    api_tokens: SecretStr | None = None
    default_webhook_url: str | None = None
    webhook_allow_private: bool = False
    worker_mode: Literal["always_on", "on_demand"] = Field(
        default="always_on",
        description="always_on: a worker heartbeat must be fresh for /checkserver/ to be Ok; "
        "on_demand: workers start per queued job (Container Apps job), so none may be online",
    )

    @model_validator(mode="after")
    def _tokens_outside_dev(self) -> ApiSettings:
        if self.api_tokens is None or not self.api_tokens.get_secret_value().strip():
            if self.env != "dev":
                raise ValueError("AITRAINER_API_TOKENS must be set outside dev")
            self.api_tokens = SecretStr(DEV_API_TOKEN)
        if self.env != "dev":
            grants = parse_tokens(self.api_tokens.get_secret_value())
            if any(grant.token == DEV_API_TOKEN.encode() for grant in grants):
                raise ValueError("AITRAINER_API_TOKENS contains the published dev token")
        return self


@dataclass(frozen=True)
class Grant:
    """One accepted token, optionally limited to some profile ids."""

    token: bytes
    profiles: frozenset[str] | None  # None: every profile

    def allows(self, profile_id: str) -> bool:
        return self.profiles is None or profile_id in self.profiles


def parse_tokens(value: str) -> list[Grant]:
    """Parse `AITRAINER_API_TOKENS`: comma-separated `token` or `token=profile|profile`."""
    grants = []
    for item in value.split(","):
        token, _, profiles = item.strip().partition("=")
        if not token:
            continue
        limited = frozenset(p.strip() for p in profiles.split("|") if p.strip()) or None
        grants.append(Grant(token.encode(), limited))
    return grants


def _presented_token(header: str) -> bytes:
    scheme, _, rest = header.strip().partition(" ")
    if rest and scheme.lower() in ("bearer", "token"):
        return rest.strip().encode()
    return header.strip().encode()


class ApiError(Exception):
    """A refusal with an HTTP status and a message for the caller."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class Services:
    """What the routes talk to, built once per app from its settings."""

    def __init__(self, settings: ApiSettings) -> None:
        account = StorageAccount(settings, retries=1)
        self.settings = settings
        self.grants = parse_tokens(
            settings.api_tokens.get_secret_value() if settings.api_tokens else ""
        )
        self.jobs = JobsTable(account.table(settings.trainings_table))
        self.queue = JobQueue(account.queue(settings.jobs_queue))
        self.workers = WorkersTable(account.table(settings.workers_table))
        self.artifacts = account.artifacts()
        self.sealing_key = settings.sealing_key_bytes()


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def authorize(request: Request) -> Grant:
    """The grant the Authorization header carries; 401 otherwise (compared in constant time)."""
    header = request.headers.get("authorization", "")
    presented = _presented_token(header) if header else b""
    match = None
    for grant in _services(request).grants:
        # Compare against every grant so timing does not tell which one matched.
        if hmac.compare_digest(grant.token, presented) and match is None:
            match = grant
    if match is None:
        raise ApiError(
            401, "missing or invalid Authorization header", {"WWW-Authenticate": "Bearer"}
        )
    return match


ServicesDep = Annotated[Services, Depends(_services)]
GrantDep = Annotated[Grant, Depends(authorize)]


def _require_identifiers(grant: Grant, profile_id: str, project_name: str | None = None) -> None:
    for field, value in (("profile_id", profile_id), ("project_name", project_name)):
        if value is not None and identifier_problem(value):
            raise ApiError(400, f"{field} must be {identifier_problem(value)}")
    if not grant.allows(profile_id):
        # Exactly what an unknown training answers: a limited token learns nothing.
        raise _not_found(profile_id, project_name)


def _find(
    services: Services, grant: Grant, profile_id: str, project_name: str
) -> tuple[TrainingRow, str]:
    """The training's row and ETag, or the 400/404 a caller gets instead."""
    _require_identifiers(grant, profile_id, project_name)
    found = services.jobs.get(profile_id, project_name)
    if found is None:
        raise _not_found(profile_id, project_name)
    return found


def _not_found(profile_id: str, project_name: str | None) -> ApiError:
    if project_name is None:
        return ApiError(404, f"no trainings for profile '{profile_id}'")
    return ApiError(404, f"no training '{project_name}' for profile '{profile_id}'")


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


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _seed_failure(status: int, message: str, **fields: Any) -> JSONResponse:
    body = StartTrainingResponse(status="FAILED", message=message, **fields)
    return JSONResponse(body.model_dump(), status_code=status)


def _start(services: Services, request: StartTrainingRequest) -> StartTrainingResponse:
    webhook_url = request.webhook_url or services.settings.default_webhook_url
    row = TrainingRow.from_request(request, webhook_url)
    message = JobMessage(
        profile_id=request.profile_id,
        project_name=request.project_name,
        sealed_credentials=seal(
            request.credentials(), services.sealing_key, request.profile_id, request.project_name
        ),
    )
    etag = services.jobs.insert(row)
    try:
        services.queue.send(message.model_dump_json())
    except AzureError:
        # Without its message the row would wait forever: remove it so the name stays usable.
        services.jobs.delete(row.profile_id, row.project_name, etag)
        raise
    log.info("training %s/%s queued", row.profile_id, row.project_name)
    return StartTrainingResponse(
        status="PENDING",
        profile_id=row.profile_id,
        project_name=row.project_name,
        dataset=request.dataset,
        message=f"training queued: {request.epochs} epochs of {request.architecture}",
    )


def _routes(app: FastAPI, path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
    """Register a route with and without its trailing slash (the seed uses both)."""
    methods = kwargs.pop("methods")

    def register(handler: Callable[..., Any]) -> Any:
        app.api_route(path, methods=methods, **kwargs)(handler)
        other = path[:-1] if path.endswith("/") else path + "/"
        app.api_route(other, methods=methods, include_in_schema=False, **kwargs)(handler)
        return handler

    return register


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """Build the API for `settings` (read from the environment when omitted)."""
    settings = settings or ApiSettings()
    app = FastAPI(
        title="AI Trainer",
        version="1.0",
        description="Train image models from a folder of labelled images in Azure Blob "
        "Storage or S3; download them as ONNX, Core ML, PyTorch Mobile or TorchScript. "
        "Every route but /docs and /openapi.json needs the Authorization header: the raw "
        "token, `Bearer <token>` or `Token <token>`.",
    )
    app.state.services = Services(settings)
    error_responses: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 503)
    }

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"message": error.message}, error.status, headers=error.headers)

    @app.exception_handler(AzureError)
    async def _storage_down(request: Request, error: AzureError) -> JSONResponse:
        log.warning("storage error on %s: %s", request.url.path, type(error).__name__)
        return JSONResponse({"message": STORAGE_DOWN}, 503)

    @_routes(
        app,
        "/checkserver/",
        methods=["GET"],
        response_model=CheckServerResponse,
        responses={503: {"model": CheckServerResponse}, 401: {"model": ErrorResponse}},
    )
    def check_server(services: ServicesDep, grant: GrantDep) -> JSONResponse:
        """Ok when the table and queue answer and a worker heartbeat is fresh.

        With `AITRAINER_WORKER_MODE=on_demand` workers start per queued job, so zero online
        workers is the idle state and the answer is Ok as long as storage answers.
        """
        try:
            workers = services.workers.online(services.settings.worker_fresh_seconds)
            waiting = services.queue.depth()
        except AzureError as error:
            log.warning("checkserver: storage error %s", type(error).__name__)
            body = CheckServerResponse(result="Failed", message=STORAGE_DOWN)
            return JSONResponse(body.model_dump(), 503)
        counts = f"{_count(len(workers), 'worker')} online, {_count(waiting, 'job')} waiting"
        if services.settings.worker_mode == "on_demand":
            message = f"{counts}; workers start on demand"
            return JSONResponse(CheckServerResponse(result="Ok", message=message).model_dump())
        if workers:
            return JSONResponse(CheckServerResponse(result="Ok", message=counts).model_dump())
        body = CheckServerResponse(result="Failed", message=f"no worker online; {counts}")
        return JSONResponse(body.model_dump(), 503)

    @_routes(
        app,
        "/starttraining/",
        methods=["POST"],
        status_code=202,
        response_model=StartTrainingResponse,
        responses={
            code: {"model": StartTrainingResponse} for code in (400, 401, 403, 409, 413, 503)
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": StartTrainingRequest.model_json_schema()}
                },
            }
        },
    )
    async def start_training(
        request: Request, services: ServicesDep, grant: GrantDep
    ) -> JSONResponse:
        """Validate a training request, record it and queue it (202 PENDING)."""
        try:
            body = await _read_body(request)
        except ApiError as error:
            return _seed_failure(error.status, error.message)
        try:
            start = StartTrainingRequest.model_validate_json(
                body or b"null",
                context={
                    "max_batch_size": services.settings.max_batch_size,
                    "allow_private_webhooks": services.settings.webhook_allow_private,
                },
            )
        except ValidationError as error:
            if any(item["type"] == "json_invalid" for item in error.errors()):
                return _seed_failure(400, "body is not valid JSON")
            return _seed_failure(400, describe_validation_error(error))
        ids = {"profile_id": start.profile_id, "project_name": start.project_name}
        if not grant.allows(start.profile_id):
            return _seed_failure(
                403, f"this token may not start trainings for profile '{start.profile_id}'", **ids
            )
        try:
            answer = await run_in_threadpool(_start, services, start)
        except TrainingExists:
            return _seed_failure(
                409,
                f"a training named '{start.project_name}' already exists for profile "
                f"'{start.profile_id}'; choose another project_name or DELETE the finished one",
                dataset=start.dataset,
                **ids,
            )
        except AzureError as error:
            log.warning("starttraining: storage error %s", type(error).__name__)
            return _seed_failure(503, STORAGE_DOWN, dataset=start.dataset, **ids)
        return JSONResponse(answer.model_dump(), 202)

    @_routes(
        app,
        "/statustraining/{profile_id}/{project_name}",
        methods=["GET"],
        response_model=StatusResponse,
        responses=error_responses,
    )
    def status_training(
        profile_id: str, project_name: str, services: ServicesDep, grant: GrantDep
    ) -> StatusResponse:
        """A training's state and progress."""
        row, _ = _find(services, grant, profile_id, project_name)
        lifetime = timedelta(seconds=services.settings.sas_lifetime_seconds)
        return StatusResponse.from_row(
            row, lambda blob: services.artifacts.download_url(blob, lifetime)
        )

    @_routes(
        app,
        "/trainings/{profile_id}",
        methods=["GET"],
        response_model=TrainingList,
        responses=error_responses,
    )
    def list_trainings(profile_id: str, services: ServicesDep, grant: GrantDep) -> TrainingList:
        """A profile's trainings, newest first."""
        _require_identifiers(grant, profile_id)
        rows = services.jobs.list_profile(profile_id)
        if not rows:
            raise _not_found(profile_id, None)
        return TrainingList(
            profile_id=profile_id,
            trainings=[
                TrainingSummary(
                    project_name=row.project_name,
                    result=row.state,
                    created=row.created,
                    lastupdate=row.lastupdate,
                )
                for row in rows
            ],
        )

    @_routes(
        app,
        "/trainings/{profile_id}/{project_name}",
        methods=["DELETE"],
        response_model=ErrorResponse,
        responses=error_responses,
    )
    def delete_training(
        profile_id: str, project_name: str, services: ServicesDep, grant: GrantDep
    ) -> ErrorResponse:
        """Remove a finished training and its files, so its name can be used again."""
        row, etag = _find(services, grant, profile_id, project_name)
        if not row.state.finished:
            raise ApiError(
                409,
                f"training '{project_name}' is {row.state.value}; cancel it or wait until it "
                "ends before deleting it",
            )
        removed = sum(
            services.artifacts.delete_prefix(prefix(profile_id, project_name))
            for prefix in (training_prefix, resume_prefix)
        )
        try:
            services.jobs.delete(profile_id, project_name, etag)
        except StaleRow as error:
            raise ApiError(409, f"training '{project_name}' changed; try again") from error
        log.info("training %s/%s deleted with %d files", profile_id, project_name, removed)
        return ErrorResponse(message=f"training '{project_name}' deleted ({removed} files)")

    @_routes(
        app,
        "/canceltraining/{profile_id}/{project_name}",
        methods=["POST"],
        response_model=StatusResponse,
        responses=error_responses,
    )
    def cancel_training(
        profile_id: str, project_name: str, services: ServicesDep, grant: GrantDep
    ) -> StatusResponse:
        """Cancel a training: a queued one ends now, a running one at its next batch."""
        _require_identifiers(grant, profile_id, project_name)

        def request_cancel(row: TrainingRow) -> None:
            if row.state.finished:
                raise ApiError(409, f"training '{project_name}' already ended {row.state.value}")
            if row.state == State.PENDING:
                row.state, row.message = State.CANCELLED, "cancelled before it started"
            else:
                row.cancel_requested, row.message = True, "cancel requested"
            row.lastupdate = utcnow()

        try:
            row, _ = services.jobs.modify(profile_id, project_name, request_cancel)
        except TrainingNotFound as error:
            raise _not_found(profile_id, project_name) from error
        log.info("training %s/%s: cancel requested", profile_id, project_name)
        return StatusResponse.from_row(row)

    return app
