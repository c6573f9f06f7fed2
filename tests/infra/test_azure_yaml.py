"""azure.yaml and the azd hooks: what `azd up` runs, checked without azd."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from shared.settings import CommonSettings

REPO = Path(__file__).resolve().parents[2]
# The web page is built into function_app/ui/ first: the package carries it.
PACKAGE_COMMAND = (
    "npm ci --no-audit --no-fund && npm run build"
    " && python3 -m infra.package_functions dist/functions"
)


def azure_yaml() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "azure.yaml").read_text())
    return loaded


def test_infra_points_at_the_bicep_entry_point() -> None:
    infra = azure_yaml()["infra"]
    assert infra["provider"] == "bicep"
    assert (REPO / infra["path"] / f"{infra['module']}.bicep").is_file()
    assert (REPO / infra["path"] / f"{infra['module']}.parameters.json").is_file()


def test_the_api_service_is_the_folder_the_packaging_script_writes_before_restore_and_package() -> (
    None
):
    api = azure_yaml()["services"]["api"]
    assert (api["host"], api["language"]) == ("function", "python")
    project = (REPO / api["project"]).resolve()
    assert project == REPO / "dist" / "functions"
    assert (project / ".gitignore").is_file()  # the folder exists in a fresh clone
    for hook in ("prerestore", "prepackage"):
        posix = api["hooks"][hook]["posix"]
        # Service hooks run in the service folder: the command goes back to the root first.
        cd, _, command = posix["run"].partition(" && ")
        assert (project / cd.split()[1]).resolve() == REPO, hook
        assert command == PACKAGE_COMMAND, hook
        assert PACKAGE_COMMAND.replace("python3", "python") in api["hooks"][hook]["windows"]["run"]


def test_the_worker_is_not_an_azd_service_and_its_image_hook_runs_before_the_api() -> None:
    assert set(azure_yaml()["services"]) == {"api"}  # azd cannot deploy to VMs or ACA jobs
    hooks = azure_yaml()["hooks"]
    # Workers first: an older worker cannot read the messages a newer API queues.
    assert hooks["predeploy"]["posix"]["run"] == "infra/hooks/worker-image.sh"
    assert "postdeploy" not in hooks
    assert hooks["preprovision"]["posix"]["run"] == "infra/hooks/preprovision.sh"


def test_hook_scripts_exist_are_executable_and_parse() -> None:
    for hook in azure_yaml()["hooks"].values():
        script = REPO / hook["posix"]["run"]
        assert script.is_file() and os.access(script, os.X_OK), script
        subprocess.run(["sh", "-n", str(script)], check=True)


def test_preprovision_generates_every_secret_the_parameters_file_asks_for() -> None:
    parameters = json.loads((REPO / "infra/bicep/main.parameters.json").read_text())["parameters"]
    secrets = {
        re.fullmatch(r"\$\{(\w+)\}", parameters[name]["value"]).group(1)  # type: ignore[union-attr]
        for name in ("apiTokens", "sealingKey", "webhookSecret")
    }
    hook = (REPO / "infra/hooks/preprovision.sh").read_text()
    generated = {}
    for line in hook.splitlines():
        if line.startswith("ensure "):
            words = shlex.split(line)
            generated[words[1]] = words[2:]
    assert set(generated) == secrets
    # 32 random bytes, base64: what AITRAINER_SEALING_KEY must be (shared/settings.py).
    assert generated["AITRAINER_SEALING_KEY"] == ["openssl", "rand", "-base64", "32"]
    if shutil.which("openssl"):
        made = {
            name: subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
            for name, command in generated.items()
        }
        settings = CommonSettings(
            env="prod",
            storage_account_url="https://st.{service}.core.windows.net",
            sealing_key=made["AITRAINER_SEALING_KEY"],
            webhook_secret=made["AITRAINER_WEBHOOK_SECRET"],
        )
        assert len(settings.sealing_ring().current) == 32
        assert all(len(value) >= 32 for value in made.values())
