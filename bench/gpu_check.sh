#!/usr/bin/env bash
# The GPU acceptance check (issue 21): run on one H100/H200 that has torch, torchvision and
# NumPy, from a checkout; writes one JSON file of results (default $OUT/gpu_check.json when
# the device tool's $OUT is set, else ./gpu_check.json). About 5 minutes; see
# bench/gpu_check.py for what it measures and the targets.
set -euo pipefail
cd "$(dirname "$0")/.."
results="${1:-${OUT:-.}/gpu_check.json}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
PYTHONUNBUFFERED=1 exec python3 bench/gpu_check.py "$results"
