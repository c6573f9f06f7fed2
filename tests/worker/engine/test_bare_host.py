"""The GPU benchmarks run on a host with only torch and torchvision (and their Pillow and
NumPy): bench/train_throughput.py, engine included, trains end to end with everything else
made unimportable."""

from __future__ import annotations

import os
import subprocess
import sys

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
BARE_HOST = f"""
import runpy, sys
for name in {ABSENT!r}:
    sys.modules[name] = None  # import fails, importlib.util.find_spec answers None
sys.argv = ["train_throughput.py", *sys.argv[1:]]
runpy.run_path("bench/train_throughput.py", run_name="__main__")
"""


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
