"""Device and precision choice (worker/engine/device.py), by faked compute capabilities."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from worker.engine.device import (
    Compute,
    DeviceUnavailable,
    choose_device,
    choose_precision,
    prepare_compute,
    set_tf32,
)

CUDA = torch.device("cuda")  # a device object needs no GPU; nothing here runs on it
CPU = torch.device("cpu")
P40, T4, V100, A100, H100 = (6, 1), (7, 5), (7, 0), (8, 0), (9, 0)


@pytest.mark.parametrize(
    ("capability", "expected"),
    [(P40, "fp32"), (T4, "fp16"), (V100, "fp16"), (A100, "bf16"), (H100, "bf16")],
)
def test_auto_is_bf16_from_ampere_on_fp16_from_volta_and_float32_below(
    capability: tuple[int, int], expected: str
) -> None:
    assert choose_precision(CUDA, "auto", capability) == expected


def test_a_precision_the_card_has_is_taken_as_asked() -> None:
    assert choose_precision(CUDA, "fp32", H100) == "fp32"
    assert choose_precision(CUDA, "fp16", H100) == "fp16"
    assert choose_precision(CUDA, "fp32", T4) == "fp32"
    assert choose_precision(CUDA, "bf16", A100) == "bf16"


def test_bf16_on_a_card_without_it_is_refused_naming_the_capability() -> None:
    with pytest.raises(DeviceUnavailable, match=r"bf16 needs compute capability 8\.0.*has 7\.5"):
        choose_precision(CUDA, "bf16", T4)


def test_the_cpu_trains_in_float32_and_refuses_reduced_precision() -> None:
    assert choose_precision(CPU, "auto") == "fp32"
    assert choose_precision(CPU, "fp32") == "fp32"
    for reduced in ("bf16", "fp16"):
        with pytest.raises(DeviceUnavailable, match=f"{reduced} needs a GPU"):
            choose_precision(CPU, reduced)
    with pytest.raises(DeviceUnavailable, match="must be one of auto, bf16, fp16, fp32"):
        choose_precision(CPU, "fp8")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA to find")
def test_cuda_requested_where_there_is_none_is_refused_not_replaced_by_the_cpu() -> None:
    with pytest.raises(DeviceUnavailable, match="AITRAINER_DEVICE is 'cuda' but torch finds no"):
        choose_device("cuda")
    assert choose_device(None) == CPU  # unset: the CPU is allowed


def test_autocast_computes_in_the_chosen_dtype_and_only_when_enabled() -> None:
    weights, inputs = torch.randn(8, 8), torch.randn(4, 8)
    with Compute(CPU, "bf16").autocast():  # CPU autocast stands in for CUDA's here
        assert (inputs @ weights).dtype == torch.bfloat16
    with Compute(CPU, "bf16").autocast(enabled=False):
        assert (inputs @ weights).dtype == torch.float32
    with Compute(CPU, "fp32").autocast():
        assert (inputs @ weights).dtype == torch.float32


def test_fp16_scales_the_loss_and_the_others_do_not() -> None:
    assert Compute(CPU, "fp16").grad_scaler().is_enabled()
    assert not Compute(CPU, "bf16").grad_scaler().is_enabled()
    assert not Compute(CPU, "fp32").grad_scaler().is_enabled()
    # A step through the scaler as the loop takes it: the loss falls, the scale is kept.
    torch.manual_seed(0)
    compute = Compute(CPU, "fp16")
    model, scaler = nn.Linear(8, 2), compute.grad_scaler()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    inputs, labels = torch.randn(64, 8), torch.randint(0, 2, (64,))
    losses = []
    for _ in range(20):
        with compute.autocast():
            loss = nn.functional.cross_entropy(model(inputs), labels)
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    state = scaler.state_dict()  # every step finite: taken, counted, the scale kept
    assert state["scale"] == 2.0**16 and state["_growth_tracker"] == 20


def test_describe_names_device_card_and_precision() -> None:
    described = Compute(CPU).describe()
    assert described == {"device": "cpu", "gpu": "cpu", "precision": "fp32", "tf32": False}


def test_the_final_scoring_computes_in_ieee_float32_even_where_training_uses_tf32() -> None:
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    before = (matmul.fp32_precision, conv.fp32_precision)  # type: ignore[attr-defined]
    try:
        set_tf32(True)  # what prepare_compute sets on an A100 beside bf16 autocast
        compute = Compute(CUDA, "bf16", "NVIDIA A100", tf32=True)
        with compute.full_precision():  # flags only: nothing runs on the device
            assert (matmul.fp32_precision, conv.fp32_precision) == ("ieee", "ieee")  # type: ignore[attr-defined]
        assert (matmul.fp32_precision, conv.fp32_precision) == ("tf32", "tf32")  # type: ignore[attr-defined]
    finally:
        matmul.fp32_precision, conv.fp32_precision = before  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("capability", "autocasts", "precision", "tf32"),
    [
        (A100, True, "bf16", True),
        (A100, False, "fp32", False),  # detection: float32, and no TF32 either
        (T4, True, "fp16", False),  # TF32 is Ampere's
        (P40, True, "fp32", False),
    ],
)
def test_prepare_compute_sets_tf32_only_beside_autocast_on_ampere(
    monkeypatch: pytest.MonkeyPatch,
    capability: tuple[int, int],
    autocasts: bool,
    precision: str,
    tf32: bool,
) -> None:
    """A faked card: torch's CUDA queries answer as the card would; only flags change."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "a faked card")
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    before = (matmul.fp32_precision, conv.fp32_precision)  # type: ignore[attr-defined]
    try:
        compute = prepare_compute("cuda", "auto", autocasts)
        mode = "tf32" if tf32 else "ieee"
        assert (matmul.fp32_precision, conv.fp32_precision) == (mode, mode)  # type: ignore[attr-defined]
    finally:
        matmul.fp32_precision, conv.fp32_precision = before  # type: ignore[attr-defined]
    assert compute == Compute(CUDA, precision, "a faked card", tf32)  # type: ignore[arg-type]
    assert torch.backends.cudnn.benchmark  # fixed shapes: cuDNN's autotuning pays


def test_a_task_that_does_not_autocast_still_has_its_request_checked() -> None:
    with pytest.raises(DeviceUnavailable, match="bf16 needs a GPU"):
        prepare_compute("cpu", "bf16", autocasts=False)
