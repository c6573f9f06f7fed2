"""`python -m infra.package_functions OUT`: assemble the folder Azure Functions deploys.

The Functions Python worker imports the root `function_app.py` of the deployed folder as the
module `function_app`. In the repo the API is the package `function_app/` (`api.py` and
`routes/` beside the entry point), and a folder holding both `function_app.py` and a
`function_app/` package would make `import function_app` find the package (packages win),
not the entry point. So the deployed folder holds the API package under another name:

    OUT/function_app.py     the repo's function_app/function_app.py, importing API_PACKAGE
    OUT/aitrainer_api/      the rest of function_app/: api.py, routes/, deps.py, … and ui/,
                            the web page `npm run build` wrote there (required)
    OUT/shared/             the shared package (contract, settings, storage)
    OUT/host.json           function_app/host.json
    OUT/requirements.txt    requirements/api.txt (Flex Consumption installs it: remote build)
    OUT/.funcignore         what a local tool may have left there (virtual environments)

azure.yaml runs this before azd restores and packages the `api` service;
tests/infra/test_package_functions.py builds it and imports it in a clean interpreter.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
API_PACKAGE = "aitrainer_api"
ENTRY_IMPORT = "from function_app.api import create_app"
MARKER = ".aitrainer-functions-package"  # written into OUT: a folder this script may empty
BUILD_LEFTOVERS = ("__pycache__", "*.pyc")
KEPT = {".gitignore"}  # dist/functions/.gitignore keeps the folder in the repo
FUNCIGNORE = ".venv\n*_env\n__pycache__\n.gitignore\n" + MARKER + "\n"


def build(out: Path) -> Path:
    """Write the deployable Functions folder to `out` (emptied first) and return it."""
    if not (REPO / "function_app" / "ui" / "index.html").is_file():
        raise SystemExit(
            "function_app/ui/ holds no built web page: run `npm ci && npm run build` first"
        )
    _empty(out)
    entry = (REPO / "function_app" / "function_app.py").read_text()
    if entry.count(ENTRY_IMPORT) != 1:
        raise SystemExit(
            f"function_app/function_app.py must contain '{ENTRY_IMPORT}' exactly once; "
            "infra/package_functions.py rewrites it for the deployed folder"
        )
    (out / "function_app.py").write_text(
        entry.replace(ENTRY_IMPORT, f"from {API_PACKAGE}.api import create_app")
    )
    # The package's modules import each other relatively, so they work under the new name.
    shutil.copytree(
        REPO / "function_app",
        out / API_PACKAGE,
        ignore=shutil.ignore_patterns("function_app.py", "host.json", *BUILD_LEFTOVERS),
    )
    shutil.copytree(
        REPO / "shared", out / "shared", ignore=shutil.ignore_patterns(*BUILD_LEFTOVERS)
    )
    shutil.copy2(REPO / "function_app" / "host.json", out / "host.json")
    shutil.copy2(REPO / "requirements" / "api.txt", out / "requirements.txt")
    (out / ".funcignore").write_text(FUNCIGNORE)
    (out / MARKER).write_text("built by python -m infra.package_functions\n")
    return out


def _empty(out: Path) -> None:
    """Create `out`, or empty it when it is a folder this script built (never anything else)."""
    out.mkdir(parents=True, exist_ok=True)
    present = {path.name for path in out.iterdir()} - KEPT
    if present and MARKER not in present:
        raise SystemExit(
            f"{out} is not empty and was not built by this script; refusing to empty it"
        )
    for path in out.iterdir():
        if path.name in KEPT:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.package_functions", description=__doc__)
    parser.add_argument("out", type=Path, help="folder to write (dist/functions for azd)")
    args = parser.parse_args(argv)
    out = build(args.out.resolve())
    print(f"Functions package written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
