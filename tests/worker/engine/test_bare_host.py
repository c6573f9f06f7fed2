"""The GPU benchmarks run on a host with only torch and torchvision (and their Pillow and
NumPy): bench/train_throughput.py, engine included, trains end to end with everything else
made unimportable, and bench/gpu_check.py --smoke runs every step of the GPU check without
what the lent GPU host lacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dev.stack import REPO

# Installed here, absent from a bare GPU host: importing any of them must not be needed.
ABSENT = (
    "pydantic",
    "pydantic_core",
    "pydantic_settings",
    "matplotlib",
    "pillow_heif",
    "cv2",
    "imagehash",
    "scipy",
    "yaml",
    "azure",
    "boto3",
    "httpx",
    "requests",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "coremltools",
    "executorch",
)
# What the device tool's H200 host lacks (it has matplotlib, onnx, onnxscript, scipy, …).
ABSENT_ON_THE_GPU_HOST = (
    "pydantic",
    "pydantic_core",
    "pydantic_settings",
    "pillow_heif",
    "imagehash",
    "azure",
    "boto3",
    "coremltools",
    "executorch",
)
WITHOUT = """
import runpy, sys
for name in {absent!r}:
    sys.modules[name] = None  # import fails, importlib.util.find_spec answers None
sys.argv = [{script!r}, *sys.argv[1:]]
runpy.run_path({script!r}, run_name="__main__")
"""
BARE_HOST = WITHOUT.format(absent=ABSENT, script="bench/train_throughput.py")


def test_the_throughput_bench_trains_with_only_torch_and_torchvision() -> None:
    tiny = ["--device", "cpu", "--architecture", "mobilenet_v3_small", "--image-size", "32"]
    tiny += ["--batch-size", "8", "--images", "48", "--classes", "2", "--epochs", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    done = subprocess.run(
        [sys.executable, "-c", BARE_HOST, *tiny],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "matplotlib is not installed: this run writes no plots" in done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("ratio ") and float(last.split()[1]) > 0, done.stdout
    assert ", fp32" in done.stdout  # the precision the CPU trains in, printed


def test_the_gpu_check_runs_every_step_without_what_the_gpu_host_lacks(tmp_path: Path) -> None:
    script = WITHOUT.format(absent=ABSENT_ON_THE_GPU_HOST, script="bench/gpu_check.py")
    results = tmp_path / "gpu_check.json"
    done = subprocess.run(
        [sys.executable, "-c", script, "--smoke", str(results)],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    checked = json.loads(results.read_text())
    runs = checked["throughput"]["runs"] + checked["compiled"]["runs"]
    assert [run.get("error") for run in runs] == [None, None]
    assert [run["compiled"] for run in runs] == [None, "eager"]
    assert all(run["ratio"] > 0 for run in runs)
    profile = runs[0]["profile"]  # of the eager run's step; a CPU has no GPU time
    assert profile["ms_per_step"] > 0 and profile["gpu_busy_percent"] == 0
    assert profile["top_kernels"] == "none (CPU)"
    decode = checked["decode"]
    assert "error" not in decode and decode["pillow_images_per_s"] > 0
    difference = "mean_abs_difference_of_views"
    assert decode[difference] <= decode["targets"][difference]  # Pillow's and torch's views
    training = checked["training"]
    assert "error" not in training, training
    assert training["epochs"] == 2 and training["precision"] == "fp32"
    assert training["decoded_by_torchvision"] == 40  # every generated JPEG, as on a GPU
    assert set(training["seconds"]) == {"generate", "data", "training"}
    assert all(export["bytes"] > 0 for export in training["exports"].values())
