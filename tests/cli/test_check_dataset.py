"""`aitrainer check-dataset`, and `train`'s check before any upload: the worker's verdict here."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from dev.sample_data import dataset_files, write_dataset, zip_bytes
from dev.stack import REPO, Azurite
from tests.cli.conftest import TINY_FLAGS, Cli
from tests.cli.test_errors import uploaded
from tests.function_app.test_isolation import closure, requirement_names


def small_class(root: Path) -> Path:
    """bad: 16 images; good: 4, which leaves 3 to train on after the split."""
    files = {
        name: data
        for name, data in dataset_files().items()
        if name.startswith("bad/") or name < "good/good_004"
    }
    return write_dataset(root, files)


def test_a_class_too_small_to_train_fails_the_check_and_is_named(cli: Cli, tmp_path: Path) -> None:
    result = cli.run("check-dataset", str(small_class(tmp_path / "set")), "--image-size=32")
    assert result.returncode == 1
    assert result.stderr == (
        "error: the worker would refuse this dataset: class 'good' has 3 training images; each "
        "class needs at least 5 (add images to it, or remove the class folder)\n"
    )
    assert "images per class" in result.stdout and "│ good  │ 3     │ 1   │ 0    │" in result.stdout


def test_a_zip_with_a_duplicate_passes_with_its_findings(cli: Cli, tmp_path: Path) -> None:
    files = dataset_files()
    files["good/also_bad.png"] = files["bad/bad_000.png"]
    archive = tmp_path / "teeth.zip"
    archive.write_bytes(zip_bytes(files, top="teeth/"))
    result = cli.run("check-dataset", str(archive), "--image-size=64", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["images"] == 33 and report["errors"] == []
    assert report["duplicates"]["across_classes"][0]["files"] == [
        "bad/bad_000.png",
        "good/also_bad.png",
    ]
    assert report["smaller_than_image_size"]["count"] == 33  # 32 px images, checked for 64
    table = cli.run("check-dataset", str(archive), "--image-size=64")
    assert "warning: 1 pictures in more than one class (a labelling error?)" in table.stdout


def test_train_stops_before_uploading_a_dataset_the_worker_would_refuse(
    cli: Cli, tmp_path: Path, azurite: Azurite, dataset_container: str
) -> None:
    dataset = small_class(tmp_path / "set")
    result = cli.run("train", str(dataset), "--project=tiny", "--profile=alice", *TINY_FLAGS)
    assert result.returncode == 1
    assert result.stderr.startswith(
        "error: the dataset check failed: class 'good' has 3 training images"
    )
    assert "nothing was uploaded (details: aitrainer check-dataset " in result.stderr
    assert "checked 20 images (20 readable); class 'good' has 3" in result.stdout
    assert uploaded(azurite, dataset_container) == []


def test_the_check_runs_with_only_the_cli_requirements(tmp_path: Path) -> None:
    """No torch, no FastAPI: what requirements/cli.txt installs is enough."""
    allowed = closure(requirement_names(REPO / "requirements" / "cli.txt"))
    owners = metadata.packages_distributions()
    blocked = sorted(
        module
        for module, dists in owners.items()
        if not any(d.lower().replace("_", "-") in allowed for d in dists)
    )
    blocked = [module for module in blocked if module not in ("shared", "worker", "cli", "dev")]
    assert "torch" in blocked and "fastapi" in blocked  # the guard guards something
    dataset = write_dataset(tmp_path / "set", dataset_files())
    program = f"""
import sys
BLOCKED = set({blocked!r})
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not in the CLI requirements")
sys.meta_path.insert(0, Blocker())
from cli.__main__ import main
main(["check-dataset", {str(dataset)!r}, "--image-size=32"])
"""
    result = subprocess.run(
        [sys.executable, "-c", program],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "warning: 2 classes with fewer than 20 training images ('bad' 13, 'good' 13)" in (
        result.stdout
    )
