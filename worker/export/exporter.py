"""export_all: every requested format from one wrapper, each checked, one manifest."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import torch
from torch import nn

from shared.contract import (
    DEFAULT_EXPORT_TOLERANCE,
    EXPORT_FORMATS,
    EXPORT_PRECISIONS,
    VARIANT_FORMATS,
)
from worker.export import coreml, executorch, mobile, onnx, torchscript, variants
from worker.export.context import ExportContext, Exported, ExportInterrupted, FileRole
from worker.export.manifest import (
    Check,
    ClassThresholds,
    ExportedFile,
    FormatResult,
    Manifest,
    PrecisionTable,
    input_contract,
    library_versions,
    output_contract,
    sha256_of,
    utcnow,
)
from worker.export.variants import VariantData
from worker.export.wrapper import wrap

log = logging.getLogger(__name__)

# The API's names ("torch" is TorchScript plus the plain state_dict), from the contract.
FORMATS: tuple[str, ...] = EXPORT_FORMATS
# Long exporter errors (torch.export's are pages) are cut here; the log has the traceback.
MAX_REASON_CHARS = 600


class Run(Protocol):
    """What the format runner needs of an export run (classifier or detector context)."""

    @property
    def out_dir(self) -> Path: ...

    @property
    def model_version(self) -> str: ...

    @property
    def architecture(self) -> str: ...

    @property
    def image_size(self) -> int: ...

    @property
    def labels(self) -> list[str]: ...


C = TypeVar("C", bound=Run)


@dataclass(frozen=True)
class Format(Generic[C]):
    """How one format is written and how its files are checked before upload."""

    export: Callable[[C], Exported]
    check: Callable[[C, Exported], Check]
    # Every file the format may write, so a failure (even a half-written file) leaves none.
    files: tuple[str, ...] = ()


EXPORTERS: dict[str, Format[ExportContext]] = {
    "onnx": Format(onnx.export, onnx.check, (onnx.FILE_NAME,)),
    "coreml": Format(coreml.export, coreml.check, (coreml.FILE_NAME,)),
    "pytorchmobile": Format(mobile.export, mobile.check, (mobile.FILE_NAME,)),
    "torch": Format(
        torchscript.export, torchscript.check, (torchscript.FILE_NAME, torchscript.STATE_DICT_FILE)
    ),
    "executorch": Format(executorch.export, executorch.check, (executorch.FILE_NAME,)),
}
assert tuple(EXPORTERS) == FORMATS


class ExportFailed(RuntimeError):
    """Some requested formats failed to export or failed their check.

    Raised after manifest.json and labels.txt are written: out_dir then holds exactly the
    files that passed (manifest.upload_names()), so they can still be delivered.
    """

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.failures = dict(manifest.failed)
        reasons = "; ".join(f"{name}: {why}" for name, why in self.failures.items())
        super().__init__(f"export failed for {', '.join(self.failures)} ({reasons})")

    def __reduce__(self) -> tuple[type[ExportFailed], tuple[Manifest]]:
        # Rebuilt from the manifest, so the exception survives a trip between processes.
        return (ExportFailed, (self.manifest,))


def export_all(
    model: nn.Module,
    class_names: list[str],
    image_size: int,
    architecture: str,
    formats: list[str],
    check_images: torch.Tensor,
    out_dir: Path,
    metrics: dict[str, Any],
    model_version: str,
    class_thresholds: ClassThresholds | None = None,
    precisions: list[str] | None = None,
    tolerance: float = DEFAULT_EXPORT_TOLERANCE,
    variant_data: Callable[[], VariantData] | None = None,
    check_files: list[Path] | None = None,
    interrupted: Callable[[], bool] | None = None,
) -> Manifest:
    """Export model in every requested format to out_dir, check each, write the manifest.

    class_thresholds go into the manifest and into every format's metadata. precisions
    beside fp32 (fp16, int8) are extra files of the requested formats that make them
    (VARIANT_FORMATS: ONNX, Core ML, ExecuTorch), scored on what variant_data() gives and
    delivered within tolerance of fp32's validation accuracy (variants.py).
    check_files, the stored files check_images were decoded from, are also fed through
    host_preprocessing into each runnable format (the raw-file check). interrupted() is
    asked before each format and each variant; when true, ExportInterrupted is raised and
    no manifest is written.

    model outputs logits for ImageNet-normalised input; every export instead takes RGB in
    [0, 1] and outputs probabilities. Returns the manifest when every format passed; raises
    ExportFailed (after writing the manifest for what passed) when any failed, and
    ValueError, before exporting anything, for arguments that make any export meaningless.
    """
    labels = list(class_names)
    if not formats:
        raise ValueError(f"formats must name at least one of {', '.join(FORMATS)}")
    validate_arguments(labels, image_size, check_images, metrics, min_classes=2)
    out_dir.mkdir(parents=True, exist_ok=True)
    wrapper = wrap(model)
    images = check_images.detach().to("cpu", torch.float32).contiguous()
    with torch.no_grad():
        reference = wrapper(images)
    if reference.shape != (len(images), len(labels)):
        raise ValueError(
            f"the model outputs {reference.shape[-1]} classes but class_names has {len(labels)}"
        )
    ctx = ExportContext(
        wrapper=wrapper,
        labels=labels,
        image_size=image_size,
        architecture=architecture,
        model_version=model_version,
        check_images=images,
        reference=reference,
        out_dir=out_dir,
        class_thresholds=class_thresholds,
        check_files=list(check_files or []),
    )
    if class_thresholds is not None and list(class_thresholds.thresholds) != labels:
        raise ValueError("class_thresholds must name every label, in the labels' order")
    if check_files and len(check_files) != len(images):
        raise ValueError(
            f"check_files must be the {len(images)} files check_images were decoded from "
            f"(got {len(check_files)})"
        )
    asked = precisions if precisions is not None else ["fp32"]
    if "fp32" not in asked or any(p not in EXPORT_PRECISIONS for p in asked):
        raise ValueError(f"precisions must include fp32, from {', '.join(EXPORT_PRECISIONS)}")
    wanted = [p for p in EXPORT_PRECISIONS if p in asked]
    make_variants = None
    if wanted != ["fp32"]:
        for precision in wanted[1:]:
            makers = VARIANT_FORMATS[precision]
            if not set(makers) & set(formats) or variant_data is None:
                raise ValueError(
                    f"{precision} variants are {', '.join(sorted(makers))} files: they need "
                    "one of those formats and variant_data"
                )
        gather = variant_data
        assert gather is not None  # refused above

        def make_variants(results: Mapping[str, FormatResult]) -> tuple[PrecisionTable, list[Path]]:
            return variants.precision_table(ctx, wanted, tolerance, gather, results, interrupted)

    return export_formats(
        ctx,
        formats,
        EXPORTERS,
        metrics,
        make_variants=make_variants,
        interrupted=interrupted,
        input=input_contract(image_size),
        output=output_contract(len(labels)),
        class_thresholds=class_thresholds,
    )


def export_formats(
    ctx: C,
    formats: list[str],
    exporters: Mapping[str, Format[C]],
    metrics: dict[str, Any],
    refused: Mapping[str, str] | None = None,
    make_variants: (
        Callable[[Mapping[str, FormatResult]], tuple[PrecisionTable, list[Path]]] | None
    ) = None,
    interrupted: Callable[[], bool] | None = None,
    **task_fields: Any,
) -> Manifest:
    """Run each requested format (a refused one fails with its reason), then make_variants
    from their results, and write the manifest. interrupted() is asked before each format
    (and by make_variants before each variant): ExportInterrupted when it says stop.

    task_fields are the manifest's task-specific fields (input, output, task, thresholds).
    Returns the manifest when every format passed, else raises ExportFailed after writing it;
    a variant not delivered is no failure (the precision table says why).
    """
    requested = list(dict.fromkeys(formats))
    results: dict[str, FormatResult] = {}
    files: list[ExportedFile] = []
    for name in requested:
        if interrupted is not None and interrupted():
            raise ExportInterrupted(list(results))
        if refused and name in refused:
            results[name] = FormatResult(format=name, status="failed", error=refused[name])
            continue
        results[name], delivered = run_format(ctx, name, exporters)
        files += [describe_file(name, path, role) for path, role in delivered]
    precisions = None
    if make_variants is not None:
        if interrupted is not None and interrupted():
            raise ExportInterrupted(list(results))
        precisions, variant_paths = make_variants(results)
        keys = {row.file: row.key for row in precisions.rows if row.file}
        files += [describe_file(keys[path.name], path, "model") for path in variant_paths]
    manifest = Manifest(
        model_version=ctx.model_version,
        created_at=utcnow(),
        architecture=ctx.architecture,
        image_size=ctx.image_size,
        labels=ctx.labels,
        num_classes=len(ctx.labels),
        metrics=metrics,
        requested_formats=requested,
        formats=results,
        files=files,
        failed=failures(results),
        libraries=library_versions(),
        precisions=precisions,
        **task_fields,
    )
    manifest.write(ctx.out_dir)
    if manifest.failed:
        raise ExportFailed(manifest)
    return manifest


def failures(results: Mapping[str, FormatResult]) -> dict[str, str]:
    """format → why, for the formats that failed."""
    return {name: r.error or "failed" for name, r in results.items() if r.status == "failed"}


def run_format(
    ctx: C, name: str, exporters: Mapping[str, Format[C]]
) -> tuple[FormatResult, list[tuple[Path, FileRole]]]:
    """Export and check one format: its result and the files it delivers (none on failure)."""
    if name not in exporters:
        why = f"unknown format '{name}' (known: {', '.join(exporters)})"
        log.error("export %s: %s", ctx.model_version, why)
        return FormatResult(format=name, status="failed", error=why), []
    started = time.perf_counter()
    try:
        exported = exporters[name].export(ctx)
    except Exception as error:
        log.exception("export %s: %s export failed", ctx.model_version, name)
        _remove(ctx.out_dir, exporters[name])
        failed = FormatResult(
            format=name,
            status="failed",
            export_seconds=round(time.perf_counter() - started, 3),
            error=f"export failed: {_reason(error)}",
        )
        return failed, []
    seconds = round(time.perf_counter() - started, 3)
    names = [path.name for path, _ in exported.files]
    started = time.perf_counter()
    try:
        check = exporters[name].check(ctx, exported)
    except Exception as error:
        log.exception("export %s: %s check failed", ctx.model_version, name)
        check = Check(method="error", passed=False, summary=f"check crashed: {_reason(error)}")
    check_seconds = round(time.perf_counter() - started, 3)
    sizes = ", ".join(f"{path.name} {path.stat().st_size} bytes" for path, _ in exported.files)
    log.info(
        "export %s: %s in %.1fs (%s); check %s: %s",
        ctx.model_version,
        name,
        seconds,
        sizes,
        "passed" if check.passed else "FAILED",
        check.summary,
    )
    if not check.passed:
        _remove(ctx.out_dir, exporters[name], exported)
    result = FormatResult(
        format=name,
        status="passed" if check.passed else "failed",
        files=names if check.passed else [],
        export_seconds=seconds,
        check_seconds=check_seconds,
        check=check,
        error=None if check.passed else f"check failed: {check.summary}",
        details=exported.details,
    )
    return result, exported.files if check.passed else []


def describe_file(name: str, path: Path, role: FileRole) -> ExportedFile:
    """The manifest's entry for one delivered file: size and sha256."""
    return ExportedFile(
        format=name,
        name=path.name,
        role=role,
        size_bytes=path.stat().st_size,
        sha256=sha256_of(path),
        check_passed=True,
    )


def _remove(out_dir: Path, spec: Format[Any], exported: Exported | None = None) -> None:
    """Delete a failed format's files (a half-written one included): nobody may download them."""
    paths = {out_dir / file for file in spec.files}
    paths |= {path for path, _ in (exported.files if exported else [])}
    for path in paths:
        path.unlink(missing_ok=True)


def _reason(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".strip()
    first = text.splitlines()[0] if text else type(error).__name__
    return first[:MAX_REASON_CHARS]


def validate_arguments(
    labels: list[str],
    image_size: int,
    check_images: torch.Tensor,
    metrics: dict[str, Any],
    min_classes: int,
) -> None:
    """Fail fast, naming the argument and the rule, before any export starts."""
    if len(labels) < min_classes:
        noun = "class" if min_classes == 1 else "classes"
        raise ValueError(f"class_names must name at least {min_classes} {noun} (got {len(labels)})")
    if len(set(labels)) != len(labels):
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        raise ValueError(f"class_names must be unique (repeated: {', '.join(duplicates)})")
    bad = [label for label in labels if not label.strip() or "\n" in label or "\r" in label]
    if bad:
        raise ValueError(f"class_names must be non-blank single lines (got {bad!r})")
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 (got {image_size})")
    expected = (3, image_size, image_size)
    if check_images.ndim != 4 or tuple(check_images.shape[1:]) != expected or not len(check_images):
        raise ValueError(
            f"check_images must be N×3×{image_size}×{image_size} with N ≥ 1 "
            f"(got {list(check_images.shape)})"
        )
    if not check_images.is_floating_point():
        raise ValueError(f"check_images must be float in [0, 1] (got {check_images.dtype})")
    low, high = float(check_images.min()), float(check_images.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"check_images must be in [0, 1], not normalised (got {low:.3g} to {high:.3g})"
        )
    try:
        json.dumps(metrics, allow_nan=True)
    except TypeError as error:
        raise ValueError(f"metrics must be JSON-serialisable ({error})") from error
