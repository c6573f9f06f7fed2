"""The function app imports with only the API requirements' packages importable."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]


def requirement_names(path: Path) -> list[str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return [Requirement(line).name for line in lines if line and not line.startswith("-")]


def closure(names: list[str]) -> set[str]:
    """The distributions `names` need, transitively (extras not requested are left out)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = metadata.distribution(todo.pop()).metadata["Name"].lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        for spec in metadata.requires(name) or []:
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                try:
                    metadata.distribution(requirement.name)
                except metadata.PackageNotFoundError:
                    continue  # not installed, so nothing to import from it either
                todo.append(requirement.name)
    return seen


def worker_only_modules() -> list[str]:
    """Top-level modules installed here that requirements/api.txt does not bring."""
    allowed_dists = closure(requirement_names(REPO / "requirements" / "api.txt"))
    owners = metadata.packages_distributions()
    allowed = {
        module
        for module, dists in owners.items()
        if any(d.lower().replace("_", "-") in allowed_dists for d in dists)
    }
    return sorted(set(owners) - allowed - {"shared", "function_app"})


def test_function_app_imports_without_the_worker_packages() -> None:
    blocked = worker_only_modules()
    assert "torch" in blocked and "numpy" in blocked  # the guard guards something
    program = f"""
import sys
BLOCKED = set({blocked!r})
STARTUP = set(sys.modules)  # what site.py loaded (setuptools' .pth hooks) is not ours
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not in the API requirements")
sys.meta_path.insert(0, Blocker())
import function_app.function_app
loaded = BLOCKED & (set(sys.modules) - STARTUP)
assert not loaded, loaded
print("imported")
"""
    result = subprocess.run(
        [sys.executable, "-c", program],
        cwd=REPO,
        env={"AITRAINER_ENV": "dev", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported"
