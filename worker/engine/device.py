"""Where a run computes: the device, its arithmetic precision, and timing that waits for it.

Precision follows the card: bf16 autocast where the hardware has bf16 (compute capability
8.0, Ampere, and later), fp16 autocast with a gradient scaler from 7.0 (Volta; a T4 is 7.5:
bf16 there is emulated, slower than fp32), float32 below (Pascal's fp16 is slow), on the CPU
(CPU autocast is slower than float32), for a task that does not autocast (detection) or on
request. A request the hardware cannot honour is refused, never quietly
changed: a worker told `cuda` that finds no CUDA, or `bf16` on a card without it, does not
start.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
from torch import nn

from worker.engine.config import PRECISION_REQUESTS

Precision = Literal["bf16", "fp16", "fp32"]
BF16_CAPABILITY = (8, 0)  # Ampere: bf16 tensor cores, and TF32 matmuls
FP16_CAPABILITY = (7, 0)  # Volta: fp16 tensor cores
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class DeviceUnavailable(RuntimeError):
    """The requested device or precision is not what this machine has."""


@dataclass(frozen=True)
class Compute:
    """A run's device and the precision its forward passes use there."""

    device: torch.device
    precision: Precision = "fp32"
    gpu: str = "cpu"  # the card's name
    # float32 matmuls and convolutions on tensor cores (10-bit mantissa): on 8.0+ beside
    # bf16/fp16 autocast, for what autocast leaves in float32; never for a float32 run.
    tf32: bool = False

    def autocast(self, enabled: bool = True) -> contextlib.AbstractContextManager[Any]:
        """Mixed precision on the GPU (unless not enabled: float32, as exports compute)."""
        dtype = AUTOCAST_DTYPES.get(self.precision)
        if dtype is None or not enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """fp16's gradient range is narrow: the scaler keeps small gradients from flushing
        to zero. A pass-through for bf16 (float32's exponent range) and float32."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    @contextlib.contextmanager
    def full_precision(self) -> Iterator[None]:
        """IEEE float32 matmuls and convolutions inside, TF32 or not outside: the final
        scoring, which the shipped thresholds and the test accuracy come from, computes
        as the float32 exports do."""
        if self.device.type == "cuda":
            set_tf32(False)
        try:
            yield
        finally:
            if self.device.type == "cuda":
                set_tf32(self.tf32)

    def describe(self) -> dict[str, Any]:
        """What metrics.json, the log and the worker's heartbeat say about it."""
        return {
            "device": self.device.type,
            "gpu": self.gpu,
            "precision": self.precision,
            "tf32": self.tf32,
        }


def choose_device(requested: str | None) -> torch.device:
    """The requested device, else CUDA when available, else the CPU. Raises
    DeviceUnavailable when CUDA is requested and torch finds none."""
    if requested is not None and requested.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceUnavailable(
            f"AITRAINER_DEVICE is {requested!r} but torch finds no CUDA device (torch "
            f"{torch.__version__}, built for CUDA {torch.version.cuda}): check the driver "
            "and the container's GPU access; unset AITRAINER_DEVICE to allow the CPU"
        )
    device = torch.device(requested or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        # Input shapes are fixed within a run, so cuDNN's per-shape autotuning pays off.
        torch.backends.cudnn.benchmark = True
    return device


def choose_precision(
    device: torch.device, requested: str = "auto", capability: tuple[int, int] | None = None
) -> Precision:
    """The precision for requested (auto|bf16|fp16|fp32) on device; capability: the GPU's
    compute capability (read from the device when None). Raises DeviceUnavailable for a
    request the hardware cannot run as asked."""
    if requested not in PRECISION_REQUESTS:
        raise DeviceUnavailable(
            f"AITRAINER_PRECISION must be one of {', '.join(PRECISION_REQUESTS)} "
            f"(got {requested!r})"
        )
    if device.type != "cuda":
        if requested in ("bf16", "fp16"):
            raise DeviceUnavailable(
                f"AITRAINER_PRECISION {requested} needs a GPU; this worker trains on the "
                f"{device.type} (float32 there: use auto or fp32)"
            )
        return "fp32"
    major, minor = capability or torch.cuda.get_device_capability(device)
    has_bf16 = (major, minor) >= BF16_CAPABILITY
    if requested == "auto":
        if has_bf16:
            return "bf16"
        return "fp16" if (major, minor) >= FP16_CAPABILITY else "fp32"
    if requested == "bf16" and not has_bf16:
        raise DeviceUnavailable(
            f"AITRAINER_PRECISION bf16 needs compute capability 8.0 or later; this GPU has "
            f"{major}.{minor} (use auto or fp16)"
        )
    return requested  # type: ignore[return-value]  # fp16 or fp32, checked above


def prepare_compute(
    requested_device: str | None, requested_precision: str = "auto", autocasts: bool = True
) -> Compute:
    """Choose device and precision (float32 for a task that does not autocast, after the
    request is checked against the card) and set the matmul mode they call for."""
    device = choose_device(requested_device)
    precision = choose_precision(device, requested_precision)
    if not autocasts:
        precision = "fp32"
    if device.type != "cuda":
        return Compute(device, precision)
    tf32 = precision != "fp32" and torch.cuda.get_device_capability(device) >= BF16_CAPABILITY
    set_tf32(tf32)
    return Compute(device, precision, torch.cuda.get_device_name(device), tf32)


def check_compile_backend(backend: str | None) -> None:
    """Raises DeviceUnavailable when backend is not one of this torch's torch.compile
    backends (None: eager, always there)."""
    if backend is not None and backend not in torch.compiler.list_backends(exclude_tags=()):
        raise DeviceUnavailable(
            f"AITRAINER_COMPILE_BACKEND {backend!r} is not a torch.compile backend of torch "
            f"{torch.__version__} (inductor is its compiler); unset it to train eagerly"
        )


def training_module(model: nn.Module, backend: str | None) -> nn.Module:
    """What the training step calls: model, or torch.compile(model) with backend. The two
    share parameters; the weight average, evaluation, checkpoints and exports use model, so
    nothing saved carries the compiled wrapper's names."""
    check_compile_backend(backend)
    if backend is None:
        return model
    # A worker trains job after job in one process: the last job's graphs (other classes,
    # sizes, a halved batch) would count against torch's recompile limit, past which it
    # quietly runs eagerly. dynamic=False: a graph per batch shape (the full one and the
    # epoch's last), each specialised, rather than a slower dynamic-shape graph for both.
    torch.compiler.reset()
    return cast(nn.Module, torch.compile(model, backend=backend, dynamic=False))


def set_tf32(on: bool) -> None:
    """TF32 for float32 matmuls and cuDNN convolutions, or IEEE float32 (torch's own
    default leaves cuDNN's convolutions on TF32): torch's fp32_precision switches."""
    mode = "tf32" if on else "ieee"
    torch.backends.cuda.matmul.fp32_precision = mode
    torch.backends.cudnn.conv.fp32_precision = mode  # type: ignore[attr-defined]


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a wall-clock reading covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
