"""pytorchmobile: the TorchScript wrapper saved for the lite interpreter (.ptl)."""

from __future__ import annotations

import zipfile

import torch
from torch.jit.mobile import _load_for_lite_interpreter
from torch.utils.mobile_optimizer import optimize_for_mobile

from worker.export import torchscript
from worker.export.checks import parity, raw_file_check, with_problems, with_raw_files
from worker.export.context import ExportContext, Exported
from worker.export.manifest import Check

FILE_NAME = "model.ptl"


def xnnpack_available() -> bool:
    """Whether this torch build has XNNPACK, which optimize_for_mobile's rewrites target."""
    return bool(torch._C._is_xnnpack_enabled())


def export(ctx: ExportContext) -> Exported:
    """Write out_dir/model.ptl, through optimize_for_mobile when this torch has XNNPACK."""
    path = ctx.out_dir / FILE_NAME
    module = torchscript.traced(ctx)
    optimised = xnnpack_available()
    with torchscript.quiet_jit_deprecation():
        if optimised:
            module = optimize_for_mobile(module)
        module._save_for_lite_interpreter(str(path), _extra_files=torchscript.extra_files(ctx))
    reason = (
        "torch was built with XNNPACK"
        if optimised
        else "this torch build lacks XNNPACK (torch._C._is_xnnpack_enabled() is False): "
        "saved unoptimised"
    )
    return Exported(
        files=[(path, "model")],
        details={
            "optimized_for_mobile": optimised,
            "optimized_for_mobile_reason": reason,
            "input_shape": ["batch", 3, ctx.image_size, ctx.image_size],
            "deprecated_upstream": "torch 2.14 deprecates the lite interpreter; see executorch",
        },
    )


def check(ctx: ExportContext, exported: Exported) -> Check:
    """Run the .ptl in the lite interpreter on the check images and compare."""
    path = exported.model_path
    with torchscript.quiet_jit_deprecation():
        module = _load_for_lite_interpreter(str(path))
    with torch.no_grad():
        probabilities = module(ctx.check_images)
    method = "torch.jit.mobile lite interpreter"
    result = parity(method, ctx.reference, probabilities)
    raw = raw_file_check(ctx, lambda batch: torchscript.run_module(module, batch), method)
    # The lite loader cannot return extra files; the archive is a zip, so read them there.
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.endswith(f"/extra/{torchscript.EXTRA_LABELS}")]
        labels = archive.read(names[0]).decode().splitlines() if names else None
    problems = []
    if labels != ctx.labels:
        problems.append(f"{torchscript.EXTRA_LABELS} inside {path.name} does not list the labels")
    return with_raw_files(with_problems(result, problems), raw)
