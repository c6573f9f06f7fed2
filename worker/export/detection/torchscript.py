"""torch for detectors: the scripted wrapper (.pt, labels inside) plus the detector's state_dict.

Scripted, not traced: the number of detections, and NMS, depend on the data.
"""

from __future__ import annotations

import torch

from worker.export.checks import with_problems
from worker.export.context import Exported
from worker.export.detection.context import DetectionContext
from worker.export.detection.parity import compare
from worker.export.detection.wrapper import has_frozen_batch_norm
from worker.export.manifest import Check
from worker.export.torchscript import (
    FILE_NAME,
    STATE_DICT_FILE,
    archive_problems,
    extra_files,
    quiet_jit_deprecation,
)

__all__ = ["FILE_NAME", "STATE_DICT_FILE", "check", "export"]

# The same kernels run scripted and eager: observed differences are 0.
ATOL = 1e-5


def export(ctx: DetectionContext) -> Exported:
    """Write out_dir/model.pt (scripted wrapper) and model_state_dict.pt (the detector's)."""
    path = ctx.out_dir / FILE_NAME
    with quiet_jit_deprecation():
        module = torch.jit.script(ctx.wrapper)
        torch.jit.save(module, str(path), _extra_files=extra_files(ctx))
    state_path = ctx.out_dir / STATE_DICT_FILE
    detector = ctx.wrapper.detector
    torch.save(detector.state_dict(), state_path)
    return Exported(
        files=[(path, "model"), (state_path, "state_dict")],
        details={
            "torchscript": "torch.jit.script of the wrapper (batch 1)",
            "input_shape": [1, 3, ctx.image_size, ctx.image_size],
            "state_dict": (
                f"torchvision {ctx.architecture} with num_classes = {len(ctx.labels) + 1} "
                "(0 is the background, label i is labels[i - 1]); build it as training did "
                "(worker.detection.models.build_detector) and load_state_dict"
            ),
            "frozen_batch_norm": has_frozen_batch_norm(detector),
            "extra_files": sorted(extra_files(ctx)),
        },
    )


def check(ctx: DetectionContext, exported: Exported) -> Check:
    """Reload both files: the script's detections equal PyTorch's, the state_dict the model's."""
    path, state_path = (p for p, _ in exported.files)
    extra = dict.fromkeys(extra_files(ctx), "")
    with quiet_jit_deprecation():
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    result = compare(
        "torch.jit.load",
        ctx.reference,
        ctx.run(module),
        ctx.thresholds,
        len(ctx.labels),
        box_atol=ATOL,
        score_atol=ATOL,
    )
    problems = archive_problems(
        path, extra, ctx.labels, state_path, ctx.wrapper.detector.state_dict()
    )
    return with_problems(result, problems)
