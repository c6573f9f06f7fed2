"""Refusals: `ApiError` and the handlers that turn it, or a storage outage, into JSON."""

from __future__ import annotations

import logging
from typing import Any

from azure.core.exceptions import AzureError
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from shared.contract import ErrorResponse

log = logging.getLogger("aitrainer.api")

STORAGE_DOWN = "storage is unavailable; try again shortly"

# The OpenAPI description of the `{"message": ...}` refusals outside /starttraining/.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 503)
}


class ApiError(Exception):
    """A refusal with an HTTP status and a message for the caller."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def not_found(profile_id: str, project_name: str | None) -> ApiError:
    """The 404 of a missing profile or training (also what a token limited elsewhere gets)."""
    if project_name is None:
        return ApiError(404, f"no trainings for profile '{profile_id}'")
    return ApiError(404, f"no training '{project_name}' for profile '{profile_id}'")


async def api_error(request: Request, error: ApiError) -> JSONResponse:
    """`ApiError` → its status and `{"message": ...}`."""
    return JSONResponse({"message": error.message}, error.status, headers=error.headers)


async def storage_down(request: Request, error: AzureError) -> JSONResponse:
    """Any storage failure a route did not handle → 503, naming no detail of the account."""
    log.warning("storage error on %s: %s", request.url.path, type(error).__name__)
    return JSONResponse({"message": STORAGE_DOWN}, 503)


def add_handlers(app: FastAPI) -> None:
    """Answer `ApiError` and storage failures no route handled as `{"message": ...}`."""
    app.exception_handler(ApiError)(api_error)
    app.exception_handler(AzureError)(storage_down)
