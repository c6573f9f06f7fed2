"""One `APIRouter` module per resource; `function_app.api.create_app` includes them all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter


class SeedRouter(APIRouter):
    """An `APIRouter` whose routes answer with and without their trailing slash.

    The seed's clients use both forms; a redirect would turn their POSTs into GETs.
    Only the declared form appears in the OpenAPI schema.
    """

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().add_api_route(path, endpoint, **kwargs)
        other = path[:-1] if path.endswith("/") else path + "/"
        super().add_api_route(other, endpoint, **(kwargs | {"include_in_schema": False}))
