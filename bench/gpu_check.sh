#!/usr/bin/env bash
# The GPU acceptance check (issue 21): run on one H100/H200 that has torch, torchvision and
# NumPy, from a checkout; writes one JSON file of results (default $OUT/gpu_check.json when
# the device tool's $OUT is set, else ./gpu_check.json) and passes the rest to gpu_check.py
# (--steps to run some of them). About 5 minutes without the compiled step; see
# bench/gpu_check.py for what it measures and the targets.
set -euo pipefail
cd "$(dirname "$0")/.."
results="${1:-${OUT:-.}/gpu_check.json}"
shift || true  # the rest goes to gpu_check.py, e.g. --steps throughput,decode
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
PYTHONUNBUFFERED=1 exec python3 bench/gpu_check.py "$results" "$@"
