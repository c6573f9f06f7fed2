"""Parity of an export's probabilities with the PyTorch wrapper on the check images."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from worker.export.manifest import Check, Tolerance

if TYPE_CHECKING:
    from worker.export.context import ExportContext

# Every runnable format is float32 end to end, so the only differences come from kernel order
# and fusion (observed: 0 for TorchScript, up to 2.3e-5 for onnxruntime and XNNPACK); 1e-4
# leaves room for other CPUs without hiding a real mismatch.
PROBABILITY_ATOL = 1e-4
# The raw-file check's bound (the issue's): its input takes more steps than the check
# images' (decode, resize, crop from the file), each done from the manifest's words. A
# changed step (nearest for bilinear, no EXIF rotation) moves probabilities by far more.
RAW_FILE_ATOL = 1e-3


def tie_margin(atol: float) -> float:
    """Top-1 must agree on every image, except where the reference's two best classes are
    so close that the allowed probability error could swap them: no real difference."""
    return 2 * atol


def tolerance(atol: float = PROBABILITY_ATOL) -> Tolerance:
    """The tolerance recorded with every parity check."""
    rule = (
        "100% agreement, except images whose reference top-2 probabilities differ by ≤ "
        f"{tie_margin(atol):g} (a tie within tolerance)"
    )
    return Tolerance(max_abs_diff=atol, top1=rule)


def parity(
    method: str,
    reference: torch.Tensor,
    candidate: torch.Tensor | np.ndarray,
    atol: float = PROBABILITY_ATOL,
    details: dict[str, Any] | None = None,
) -> Check:
    """Compare an export's probabilities with the reference: max abs diff and top-1 agreement."""
    expected = reference.detach().double().cpu()
    got = torch.as_tensor(np.asarray(candidate), dtype=torch.float64)
    images = int(expected.shape[0])
    if got.shape != expected.shape:
        return Check(
            method=method,
            passed=False,
            summary=f"output shape {list(got.shape)} != expected {list(expected.shape)}",
            images=images,
            tolerance=tolerance(atol),
            details=details or {},
        )
    max_abs_diff = float((got - expected).abs().max())
    agree = got.argmax(dim=1) == expected.argmax(dim=1)
    top2 = expected.topk(min(2, expected.shape[1]), dim=1).values
    ties = (top2[:, 0] - top2[:, -1]) <= tie_margin(atol)
    real_disagreements = int((~agree & ~ties).sum())
    agreement = float(agree.double().mean())
    finite = bool(torch.isfinite(got).all())
    passed = finite and max_abs_diff <= atol and real_disagreements == 0
    if not finite:
        summary = "output has NaN or infinite values"
    elif max_abs_diff > atol:
        summary = f"max abs diff {max_abs_diff:.3g} > tolerance {atol:g} on {images} images"
    elif real_disagreements:
        summary = f"top-1 differs on {real_disagreements} of {images} images"
    else:
        summary = (
            f"max abs diff {max_abs_diff:.3g} ≤ {atol:g}, "
            f"top-1 agreement {agreement:.0%} on {images} images"
        )
    return Check(
        method=method,
        passed=passed,
        summary=summary,
        images=images,
        max_abs_diff=max_abs_diff,
        top1_agreement=agreement,
        tolerance=tolerance(atol),
        details={"top1_flips_on_ties": int((~agree & ties).sum()), **(details or {})},
    )


def raw_file_check(
    ctx: ExportContext, run: Callable[[np.ndarray], Any], method: str
) -> Check | None:
    """The stored check files through host_preprocessing (as the manifest describes it) into
    an export, run(batch of one) → probabilities, against the worker's training decode into
    the PyTorch model: ctx.reference, the check images being that decode of those files.
    None when the run has no stored files to check."""
    if not ctx.check_files:
        return None
    from worker.export.host_preprocessing import HostSteps, host_input
    from worker.export.manifest import input_contract

    steps = HostSteps.described(input_contract(ctx.image_size).host_preprocessing)
    candidate = [np.asarray(run(host_input(path, steps))) for path in ctx.check_files]
    return parity(
        f"{method}, fed the stored files through host_preprocessing",
        ctx.reference,
        np.concatenate(candidate),
        atol=RAW_FILE_ATOL,
        details={"files": len(ctx.check_files), "host_steps": asdict(steps)},
    )


def with_raw_files(check: Check, raw: Check | None) -> Check:
    """The format's check with its raw-file check in details (and failed with it)."""
    if raw is None:
        return check
    details = {**check.details, "raw_files": raw.model_dump(mode="json")}
    if raw.passed:
        return check.model_copy(update={"details": details})
    summary = f"stored files through host_preprocessing: {raw.summary}; {check.summary}"
    return check.model_copy(update={"passed": False, "summary": summary, "details": details})


def spec_check(method: str, problems: list[str], details: dict[str, Any]) -> Check:
    """A check of a file's structure (no runtime): passed when problems is empty."""
    if problems:
        summary = "; ".join(problems)
    else:
        summary = "spec has the expected inputs, outputs, labels and preprocessing"
    return Check(method=method, passed=not problems, summary=summary, details=details)


def with_problems(check: Check, problems: list[str]) -> Check:
    """The check, failed and with problems leading its summary when there are any."""
    if not problems:
        return check
    summary = "; ".join([*problems, check.summary])
    return check.model_copy(update={"passed": False, "summary": summary})
