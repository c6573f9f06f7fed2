"""A typed client of the AI Trainer API: each route returns its `shared.contract` model.

Every failure becomes a `CliError` whose message is one line a person can act on.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from cli.config import ENV_TOKEN, HTTP_TIMEOUT_SECONDS, ApiConfig
from cli.errors import CliError, one_line
from shared.contract import (
    CheckServerResponse,
    DeleteTrainingResponse,
    StartTrainingResponse,
    StatusResponse,
    TrainingList,
)

Model = TypeVar("Model", bound=BaseModel)


def _path(*parts: str) -> str:
    # Profile and project names may hold spaces and '@': quote each segment on its own.
    return "/".join(quote(part, safe="") for part in parts)


class ApiClient:
    """The API at `config.url`, with the token in every request's Authorization header."""

    def __init__(self, config: ApiConfig, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        headers = {"User-Agent": "aitrainer-cli"}
        if config.token:
            headers["Authorization"] = f"Bearer {config.token}"
        self.http = httpx.Client(
            base_url=config.url,
            headers=headers,
            timeout=HTTP_TIMEOUT_SECONDS,
            transport=transport,
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # Routes -------------------------------------------------------------------------------

    def check(self) -> CheckServerResponse:
        """GET /checkserver/; a 503 "Failed" is an answer, not an error."""
        response = self._send("GET", "/checkserver/", answers=(200, 503))
        return self._parse(response, CheckServerResponse)

    def start(self, body: dict[str, Any]) -> StartTrainingResponse:
        response = self._send("POST", "/starttraining/", json=body)
        return self._parse(response, StartTrainingResponse)

    def status(self, profile_id: str, project_name: str) -> StatusResponse:
        response = self._send("GET", f"/statustraining/{_path(profile_id, project_name)}")
        return self._parse(response, StatusResponse)

    def find(self, profile_id: str, project_name: str) -> StatusResponse | None:
        """The training's status, or None when the API knows no such training."""
        response = self._send(
            "GET", f"/statustraining/{_path(profile_id, project_name)}", answers=(200, 404)
        )
        if response.status_code == 404:
            return None
        return self._parse(response, StatusResponse)

    def trainings(self, profile_id: str) -> TrainingList:
        response = self._send("GET", f"/trainings/{_path(profile_id)}")
        return self._parse(response, TrainingList)

    def cancel(self, profile_id: str, project_name: str) -> StatusResponse:
        response = self._send("POST", f"/canceltraining/{_path(profile_id, project_name)}")
        return self._parse(response, StatusResponse)

    def delete(self, profile_id: str, project_name: str) -> str:
        response = self._send("DELETE", f"/trainings/{_path(profile_id, project_name)}")
        return self._parse(response, DeleteTrainingResponse).message

    # Plumbing -----------------------------------------------------------------------------

    def _send(
        self, method: str, path: str, *, answers: tuple[int, ...] = (), **kwargs: Any
    ) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TimeoutException as error:
            if isinstance(error, httpx.ConnectTimeout):
                raise self._unreachable() from None
            raise CliError(
                f"the API at {self.config.url} did not answer within {HTTP_TIMEOUT_SECONDS:g} s",
                transient=True,
            ) from None
        except httpx.TransportError:
            # Connection refused, DNS failure, TLS failure, dropped connection.
            raise self._unreachable() from None
        if response.is_success or response.status_code in answers:
            return response
        raise self._refusal(response)

    def _unreachable(self) -> CliError:
        return CliError(f"cannot reach the API at {self.config.url}", transient=True)

    def _refusal(self, response: httpx.Response) -> CliError:
        code = response.status_code
        if code == 401:
            if self.config.token is None:
                return CliError(f"the API needs a token: pass --token or set {ENV_TOKEN}")
            return CliError("the API refused the token")
        message = _message(response)
        if message is None:
            return CliError(
                f"the API at {self.config.url} answered HTTP {code} without a message",
                transient=code >= 500,
            )
        return CliError(message, transient=code == 503)

    def _parse(self, response: httpx.Response, model: type[Model]) -> Model:
        try:
            return model.model_validate_json(response.content)
        except ValidationError:
            raise CliError(
                f"the API at {self.config.url} answered HTTP {response.status_code} with "
                f"something that is not a {model.__name__}; is --api-url right?"
            ) from None


def _message(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"]:
        return one_line(body["message"])
    return None
