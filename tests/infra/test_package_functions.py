"""The deployed Functions folder: built by the packaging script, imported in a clean interpreter."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.package_functions import API_PACKAGE, MARKER, build
from tests.function_app.test_isolation import REPO, worker_only_modules

# Runs inside the built folder with -I: no repo on sys.path, no PYTHON* variables, no cwd.
PROGRAM = """
import asyncio, json, sys
BLOCKED = set(json.loads(sys.argv[1]))
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not in requirements.txt")
sys.meta_path.insert(0, Blocker())
sys.path.insert(0, sys.argv[2])
import azure.functions as func
import function_app
functions = function_app.app.get_functions()
def call(path):
    request = func.HttpRequest("GET", "https://api.example.net" + path, headers={}, body=b"")
    response = asyncio.run(functions[0].get_user_function()(request, None))
    return response.status_code, json.loads(response.get_body())
openapi = call("/openapi.json")
checkserver = call("/checkserver/")
names = (
    "function_app",
    "aitrainer_api.api",
    "aitrainer_api.routes.trainings",
    "shared.settings",
    "shared.storage.account",
)
modules = {name: getattr(sys.modules[name], "__file__", None) for name in names}
print(json.dumps({
    "functions": [f.get_function_name() for f in functions],
    "openapi": [openapi[0], openapi[1]["info"]["title"]],
    "checkserver": [checkserver[0], checkserver[1]],
    "modules": modules,
}))
"""


def test_the_built_folder_holds_the_entry_point_the_api_shared_and_the_api_requirements(
    tmp_path: Path,
) -> None:
    out = build(tmp_path / "functions")
    assert (out / API_PACKAGE / "ui" / "index.html").is_file()  # the web page travels with it
    top = {path.name for path in out.iterdir()}
    assert top == {
        "function_app.py",
        API_PACKAGE,
        "shared",
        "host.json",
        "requirements.txt",
        ".funcignore",
        MARKER,
    }
    assert not (out / "function_app").exists()  # the name the worker imports is the entry point
    assert (out / "requirements.txt").read_text() == (REPO / "requirements/api.txt").read_text()
    assert json.loads((out / "host.json").read_text())["extensions"]["http"]["routePrefix"] == ""
    assert "from aitrainer_api.api import create_app" in (out / "function_app.py").read_text()
    copied = {p.relative_to(out / "shared") for p in (out / "shared").rglob("*.py")}
    assert copied == {p.relative_to(REPO / "shared") for p in (REPO / "shared").rglob("*.py")}
    api = {p.relative_to(out / API_PACKAGE) for p in (out / API_PACKAGE).rglob("*.py")}
    package = {p.relative_to(REPO / "function_app") for p in (REPO / "function_app").rglob("*.py")}
    assert api == package - {Path("function_app.py")}  # every module, routes/ included
    assert not list(out.rglob("__pycache__"))


def test_the_built_folder_imports_in_a_clean_interpreter_and_serves_through_the_function(
    tmp_path: Path,
) -> None:
    out = build(tmp_path / "functions")
    blocked = worker_only_modules()
    assert "torch" in blocked and "worker" not in os.listdir(out)  # the guard guards something
    env = {
        # What the Bicep template gives the Function App: prod, identity, Key Vault secrets.
        "AITRAINER_API_TOKENS": "deployed-token",
        "AITRAINER_SEALING_KEY": base64.b64encode(os.urandom(32)).decode(),
        "AITRAINER_WEBHOOK_SECRET": "webhook-master-secret-from-key-vault",
        "AITRAINER_STORAGE_ACCOUNT_URL": "https://aitrainerst.{service}.core.windows.net",
        "AITRAINER_WORKER_MODE": "on_demand",
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-I", "-c", PROGRAM, json.dumps(blocked), str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["functions"] == ["http_app_func"]
    assert answer["openapi"] == [200, "AI Trainer"]
    assert answer["checkserver"] == [401, {"message": "missing or invalid Authorization header"}]
    for name, file in answer["modules"].items():
        assert file is not None and Path(file).is_relative_to(out), (name, file)


def test_rebuilding_replaces_the_folder_but_keeps_its_gitignore(tmp_path: Path) -> None:
    out = tmp_path / "functions"
    out.mkdir()
    (out / ".gitignore").write_text("*\n")
    build(out)
    (out / "shared" / "stale.py").write_text("left over from an older build\n")
    build(out)
    assert not (out / "shared" / "stale.py").exists()
    assert (out / ".gitignore").read_text() == "*\n"


def test_a_folder_it_did_not_build_is_never_emptied(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(SystemExit, match="refusing to empty it"):
        build(tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"
