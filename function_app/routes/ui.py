"""The web page: `web/`'s build served at /ui/ as static files, and `/` redirecting there.

The files need no token (the page asks for one, and every data call it makes carries it);
this is the one exception to the API's auth rule. A Content-Security-Policy lets the page
load only from itself, fetch from itself and from the storage account (its SAS URLs: the
model, metrics.json, plots), and compile WebAssembly (onnxruntime-web runs the model).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI
from fastapi.responses import PlainTextResponse, RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

# `make` builds web/ here (vite's outDir), so the Functions package carries it.
WEB_ROOT = Path(__file__).resolve().parents[1] / "ui"
NOT_BUILT = "the web page is not built: run `make setup` (it runs `npm run build`)"

router = APIRouter()  # not SeedRouter: '/' has no slashless form


@router.get("/", include_in_schema=False)
def to_the_page() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


def content_security_policy(storage_origin: str) -> str:
    """Itself, the storage account for data, WebAssembly compilation; nothing else."""
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self' 'wasm-unsafe-eval'",
            f"connect-src 'self' {storage_origin}",
            f"img-src 'self' {storage_origin} blob: data:",
            "style-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class PageFiles(StaticFiles):
    """StaticFiles with the page's security headers on every answer."""

    def __init__(self, directory: Path, policy: str) -> None:
        super().__init__(directory=directory, html=True, check_dir=False)
        self.policy = policy

    async def get_response(self, path: str, scope: Scope) -> Response:
        if not Path(self.directory or "").is_dir():
            return PlainTextResponse(NOT_BUILT, status_code=404)
        response = await super().get_response(path, scope)
        response.headers["Content-Security-Policy"] = self.policy
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        # index.html names the hashed assets of this build: never an old one from a cache.
        if not path.startswith("assets/"):
            response.headers["Cache-Control"] = "no-cache"
        return response


def mount(app: FastAPI, storage_url: str, root: Path = WEB_ROOT) -> None:
    """Serve the page at /ui/ with a policy allowing `storage_url`'s origin."""
    app.include_router(router)
    app.mount("/ui", PageFiles(root, content_security_policy(origin(storage_url))), name="ui")
