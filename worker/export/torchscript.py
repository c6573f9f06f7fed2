"""torch: the TorchScript wrapper (.pt, labels inside) plus the classifier's plain state_dict."""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch

from worker.export.checks import parity, raw_file_check, with_problems, with_raw_files
from worker.export.context import ExportContext, Exported
from worker.export.manifest import Check

FILE_NAME = "model.pt"
STATE_DICT_FILE = "model_state_dict.pt"
TRACE_KEY = "torchscript_trace"
EXTRA_LABELS = "labels.txt"
EXTRA_METADATA = "metadata.json"


@contextlib.contextmanager
def quiet_jit_deprecation() -> Iterator[None]:
    """Silence torch 2.14's 'TorchScript / Lite Interpreter is deprecated' warnings here only.

    The formats are requested on purpose; docs/exports.md records the deprecation.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*is deprecated.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r".*is deprecated.*", category=DeprecationWarning)
        yield


def trace(ctx: ExportContext) -> torch.jit.ScriptModule:
    """A fresh trace of the wrapper on one check image."""
    # Tracing, not scripting: torchvision classifiers have no data-dependent control flow,
    # and coremltools converts traced modules. The parity checks catch a model whose trace
    # froze a branch or a Python value.
    with torch.no_grad(), quiet_jit_deprecation():
        module = torch.jit.trace(ctx.wrapper, ctx.sample(1), check_trace=False)
    assert isinstance(module, torch.jit.ScriptModule)
    return module


def traced(ctx: ExportContext) -> torch.jit.ScriptModule:
    """The trace shared by the torch and pytorchmobile files, made on first use."""
    if TRACE_KEY not in ctx.cache:
        ctx.cache[TRACE_KEY] = trace(ctx)
    module = ctx.cache[TRACE_KEY]
    assert isinstance(module, torch.jit.ScriptModule)
    return module


class SelfDescribing(Protocol):
    """What an archive's extra files are written from (a classifier's or a detector's run)."""

    labels: list[str]

    def string_metadata(self) -> dict[str, str]: ...


def extra_files(ctx: SelfDescribing) -> dict[str, str]:
    """Files stored inside .pt/.ptl archives so they describe themselves."""
    return {
        EXTRA_LABELS: "".join(f"{label}\n" for label in ctx.labels),
        EXTRA_METADATA: json.dumps(ctx.string_metadata()),
    }


def export(ctx: ExportContext) -> Exported:
    """Write out_dir/model.pt (TorchScript wrapper) and model_state_dict.pt (plain classifier)."""
    path = ctx.out_dir / FILE_NAME
    with quiet_jit_deprecation():
        torch.jit.save(traced(ctx), str(path), _extra_files=extra_files(ctx))
    state_path = ctx.out_dir / STATE_DICT_FILE
    # The bare classifier's weights (no wrapper buffers): they load with weights_only=True
    # into torchvision's get_model(architecture, num_classes=len(labels)).
    torch.save(ctx.wrapper.classifier.state_dict(), state_path)
    return Exported(
        files=[(path, "model"), (state_path, "state_dict")],
        details={
            "torchscript": "torch.jit.trace of the wrapper",
            "input_shape": ["batch", 3, ctx.image_size, ctx.image_size],
            "state_dict": f"{ctx.architecture} with {len(ctx.labels)} outputs, logits (no wrapper)",
            "extra_files": sorted(extra_files(ctx)),
        },
    )


def check(ctx: ExportContext, exported: Exported) -> Check:
    """Reload both files: the TorchScript matches PyTorch, the state_dict equals the model's."""
    path, state_path = (p for p, _ in exported.files)
    extra = dict.fromkeys(extra_files(ctx), "")
    with quiet_jit_deprecation():
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    with torch.no_grad():
        probabilities = module(ctx.check_images)
    result = parity("torch.jit.load", ctx.reference, probabilities)
    problems = archive_problems(
        path, extra, ctx.labels, state_path, ctx.wrapper.classifier.state_dict()
    )
    raw = raw_file_check(ctx, lambda batch: run_module(module, batch), "torch.jit.load")
    return with_raw_files(with_problems(result, problems), raw)


def run_module(module: Any, batch: Any) -> torch.Tensor:
    """A scripted module's output for a numpy batch (the raw-file check's runner)."""
    with torch.no_grad():
        return module(torch.from_numpy(batch))


def archive_problems(
    path: Path,
    extra: dict[str, Any],
    labels: list[str],
    state_path: Path,
    expected: dict[str, torch.Tensor],
) -> list[str]:
    """What a reloaded .pt and its state_dict companion must hold: the labels, the weights."""
    problems = []
    stored = extra[EXTRA_LABELS]  # torch.jit.load fills in bytes, whatever the dict held
    stored_text = stored.decode() if isinstance(stored, bytes) else stored
    if stored_text.splitlines() != labels:
        problems.append(f"{EXTRA_LABELS} inside {path.name} does not list the labels")
    loaded = torch.load(state_path, map_location="cpu", weights_only=True)
    if loaded.keys() != expected.keys() or any(
        not torch.equal(loaded[key], expected[key]) for key in expected
    ):
        problems.append(f"{state_path.name} does not reload to the model's weights")
    return problems
