"""The Azure Functions wiring: the function AsgiFunctionApp registers, called with real requests."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from typing import Any

import azure.functions as func
import httpx
import pytest
from pydantic import SecretStr

from function_app.api import ApiSettings
from tests.conftest import TOKEN
from tests.function_app.helpers import start_body


@pytest.fixture
def http_function(settings: ApiSettings, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The registered function of a freshly imported function_app, configured like `settings`."""
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is not None:
            monkeypatch.setenv(f"AITRAINER_{name.upper()}", str(value))
    sys.modules.pop("function_app.function_app", None)
    module = importlib.import_module("function_app.function_app")
    functions = module.app.get_functions()
    assert [f.get_function_name() for f in functions] == ["http_app_func"]
    return functions[0].get_user_function()


def call(
    function: Any, method: str, path: str, body: Any = None, token: str | None = TOKEN
) -> tuple[int, Any]:
    headers = {"Authorization": token} if token else {}
    request = func.HttpRequest(
        method=method,
        url=f"https://aitrainer.example.net{path}",
        headers=headers | {"Content-Type": "application/json"},
        body=json.dumps(body).encode() if body is not None else b"",
    )
    response = asyncio.run(function(request, None))
    return response.status_code, json.loads(response.get_body())


def test_function_answers_like_the_http_server(http_function: Any, client: httpx.Client) -> None:
    body = start_body()
    name = body["project_name"]
    status, answer = call(http_function, "POST", "/starttraining/", body)
    assert status == 202
    assert answer["status"] == "PENDING"

    # The same row, read through the function and through uvicorn: identical answers.
    via_function = call(http_function, "GET", f"/statustraining/alice/{name}")
    via_http = client.get(f"/statustraining/alice/{name}")
    assert via_function == (via_http.status_code, via_http.json())

    assert call(http_function, "POST", "/starttraining/", body)[0] == 409
    invalid = call(http_function, "POST", "/starttraining/", start_body(epochs=1))
    assert invalid[0] == 400
    assert "epochs must be between 2 and 99" in invalid[1]["message"]
    assert call(http_function, "GET", "/statustraining/alice/none")[0] == 404
    assert call(http_function, "GET", "/trainings/alice", token=None)[0] == 401
    assert call(http_function, "GET", f"/statustraining/alice/{name}/")[0] == 200
