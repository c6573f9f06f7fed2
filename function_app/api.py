"""The HTTP API: `create_app` builds the settings and services and includes the routers.

Served by Azure Functions through `function_app.py` and locally by uvicorn
(`uvicorn function_app.api:create_app --factory`); the same code answers in both places.
The routes live in `routes/` (one module per resource), their dependencies in `deps.py`.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI

from .errors import add_handlers
from .routes import health, profiles, trainings, ui
from .services import Services
from .settings import ApiSettings

DESCRIPTION = (
    "Train image models from a folder of labelled images in Azure Blob Storage or S3; "
    "download them as ONNX, Core ML, PyTorch Mobile or TorchScript. Every route but /docs, "
    "/openapi.json and the web page (/ui/, which asks for a token itself) needs the "
    "Authorization header: the raw token, `Bearer <token>` or `Token <token>`."
)


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """Build the API for `settings` (read from the environment when omitted)."""
    settings = settings or ApiSettings()
    app = FastAPI(title="AI Trainer", version="1.0", description=DESCRIPTION)
    app.state.services = Services(settings)
    add_handlers(app)
    app.include_router(health.router)
    app.include_router(trainings.router)
    app.include_router(profiles.router)
    ui.mount(app, app.state.services.artifacts.client.url)
    app.openapi = lambda: _schema_with_settings(app, settings)  # type: ignore[method-assign]
    return app


def _schema_with_settings(app: FastAPI, settings: ApiSettings) -> dict[str, Any]:
    """The OpenAPI schema, stating the limits this deployment's settings set."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    # A copy: FastAPI's schema holds the route's module-level request schema by reference,
    # and every app of the process would see this app's limits.
    schema = copy.deepcopy(FastAPI.openapi(app))
    app.openapi_schema = schema
    start = schema["paths"]["/starttraining/"]["post"]["requestBody"]["content"]
    fields = start["application/json"]["schema"]["properties"]
    fields["batch_size"]["maximum"] = settings.max_batch_size
    return schema
