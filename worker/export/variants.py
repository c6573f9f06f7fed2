"""Precision variants: fp16 and int8 files beside the float32 ONNX and Core ML ones, and
int8 beside the ExecuTorch one.

The ONNX variants are described here; the Core ML ones, whose scores are simulated in
PyTorch (no Core ML runtime on Linux), in coreml_variants.py; ExecuTorch's in
executorch_variants.py.

Each variant is made from the checked float32 `model.onnx`, keeps its input and output
(float32 RGB in [0, 1] in, probabilities out: callers change nothing) and its metadata, and
is scored on the validation split (up to MAX_SCORED_IMAGES of it): accuracy, top-1
agreement with the float32 PyTorch model, the largest probability difference, file size
and latency at batch 1. A variant more than the tolerance below the PyTorch model's
validation accuracy is not delivered; the table says why. int8 is onnxruntime's static
quantization (QDQ, per-channel weights, MinMax ranges from up to 256 training images);
fp16 is onnxruntime's float16 converter (weights and arithmetic in float16, the graph's
inputs and outputs kept float32).
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from shared.limits import VARIANT_FORMATS
from worker.export import coreml as coreml_format
from worker.export import coreml_variants, executorch_variants
from worker.export import executorch as executorch_format
from worker.export import onnx as onnx_format
from worker.export.context import (
    INPUT_NAME,
    OUTPUT_NAME,
    PRODUCER,
    ExportContext,
    ExportInterrupted,
)
from worker.export.manifest import FormatResult, PrecisionRow, PrecisionTable
from worker.export.precision_rows import median_ms, model_probabilities, not_made, scored_row

if TYPE_CHECKING:
    import onnxruntime

log = logging.getLogger(__name__)

VARIANT_FILES = {"fp16": "model_fp16.onnx", "int8": "model_int8.onnx"}
CALIBRATION_IMAGES = 256  # onnxruntime's MinMax ranges settle well before this
# Validation images each variant is scored on, spread over every class: the split itself
# up to this, a bound on memory (uint8 views on the host) and time beyond it.
MAX_SCORED_IMAGES = 5000
SCORE_BATCH = 64
MAX_REASON_CHARS = 300
# CPU features that decide int8 speed: VNNI (and AMX) do int8 dot products in one instruction.
INT8_CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


@dataclass(frozen=True)
class VariantData:
    """What the variants are calibrated and scored on: the run's own eval views."""

    validation: torch.Tensor  # uint8 N×3×S×S, the validation split
    labels: torch.Tensor  # int64 N
    calibration: torch.Tensor  # uint8 M×3×S×S, M ≤ CALIBRATION_IMAGES training images


def gate_reason(fp32_accuracy: float, accuracy: float, tolerance: float) -> str | None:
    """Why a variant with this validation accuracy is not delivered, or None when it is."""
    drop = fp32_accuracy - accuracy
    if drop <= tolerance + 1e-9:  # a tie at the tolerance is within it
        return None
    return (
        f"validation accuracy {accuracy:.1%} is {drop * 100:.1f} points below fp32's "
        f"{fp32_accuracy:.1%} (export_tolerance {tolerance}: {points(tolerance)})"
    )


def points(fraction: float) -> str:
    """An accuracy difference in percentage points: 0.01 → "1 point"."""
    value = round(fraction * 100, 6)
    return f"{value:g} point{'' if value == 1 else 's'}"


def precision_table(
    ctx: ExportContext,
    precisions: list[str],
    tolerance: float,
    gather: Callable[[], VariantData],
    results: Mapping[str, FormatResult],
    interrupted: Callable[[], bool] | None = None,
) -> tuple[PrecisionTable, list[Path]]:
    """Make, measure and gate each requested variant of each requested format that makes
    variants (ONNX, Core ML, ExecuTorch); the table (each format's float32 row first) and
    the variant files to deliver. gather() gives the images, called here: whatever goes
    wrong (memory, a runtime's error) costs the variants, never the formats already checked;
    a format's float32 file that cannot be scored costs that format's variants only.
    interrupted() is asked before each variant: ExportInterrupted when it says stop."""
    wanted = [p for p in precisions if p != "fp32"]
    try:
        return _precision_table(ctx, wanted, tolerance, gather(), results, interrupted)
    except ExportInterrupted:
        raise
    except Exception as error:
        log.exception("export %s: scoring the precision variants failed", ctx.model_version)
        for format_name in VARIANT_MAKERS:
            for name in VARIANT_MAKERS[format_name].files.values():
                (ctx.out_dir / name).unlink(missing_ok=True)
        why = f"could not be scored: {_reason(error)}"
        rows = [
            not_made(format_name, precision, why)
            for format_name, precision in _requested(wanted, results)
        ]
        return PrecisionTable(images=0, tolerance=tolerance, rows=rows), []


def _requested(variants: list[str], results: Mapping[str, FormatResult]) -> list[tuple[str, str]]:
    """(format, precision) of every variant asked for that a requested format makes."""
    return [
        (format_name, precision)
        for format_name in VARIANT_MAKERS
        if format_name in results
        for precision in variants
        if format_name in VARIANT_FORMATS[precision]
    ]


def _precision_table(
    ctx: ExportContext,
    variants: list[str],
    tolerance: float,
    data: VariantData,
    results: Mapping[str, FormatResult],
    interrupted: Callable[[], bool] | None,
) -> tuple[PrecisionTable, list[Path]]:
    import onnxruntime

    # The float32 PyTorch model's probabilities: what every row is measured against.
    reference = model_probabilities(ctx.wrapper, data.validation, SCORE_BATCH)
    labels = data.labels.numpy()
    fp32_accuracy = float((reference.argmax(1) == labels).mean())
    scored = Scored(data, reference, labels)
    rows: list[PrecisionRow] = []
    delivered: list[Path] = []
    requested = _requested(variants, results)
    formats_scored = []
    for format_name, maker in VARIANT_MAKERS.items():
        precisions = [p for f, p in requested if f == format_name]
        if not precisions:
            continue
        formats_scored.append(format_name)
        why = None
        if results[format_name].status != "passed":
            why = f"the float32 {format_name} export it is made from failed"
        else:
            try:
                fp32_file = ctx.out_dir / maker.fp32_file
                rows.append(maker.score(ctx, "fp32", fp32_file, scored, None))
            except Exception as error:  # costs this format's variants only
                log.exception(
                    "export %s: scoring the float32 %s file failed", ctx.model_version, format_name
                )
                why = f"the float32 {format_name} file could not be scored: {_reason(error)}"
        for precision in precisions:
            if why is not None:
                rows.append(not_made(format_name, precision, why))
                continue
            if interrupted is not None and interrupted():
                made = [row.key for row in rows if row.delivered and row.precision != "fp32"]
                raise ExportInterrupted(list(results) + made)
            row, path = _variant(ctx, maker, format_name, precision, scored)
            if row.delivered and row.accuracy is not None:
                reason = gate_reason(fp32_accuracy, row.accuracy, tolerance)
                if reason:
                    path.unlink()
                    row = row.model_copy(
                        update={"delivered": False, "file": None, "reason": reason}
                    )
                else:
                    delivered.append(path)
            rows.append(row)
    scored_by = {
        "onnx": f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider, one thread "
        "for latency)",
        "coreml": "Core ML: simulated in PyTorch (no Core ML runtime on Linux)",
        "executorch": "ExecuTorch runtime (XNNPACK, its default threads)",
    }
    table = PrecisionTable(
        images=len(labels),
        pytorch_fp32_accuracy=fp32_accuracy,
        tolerance=tolerance,
        runtime="; ".join(text for name, text in scored_by.items() if name in formats_scored),
        cpu=cpu_description(),
        rows=rows,
    )
    return table, delivered


def _variant(
    ctx: ExportContext, maker: FormatVariants, format_name: str, precision: str, scored: Scored
) -> tuple[PrecisionRow, Path]:
    """Make one variant and score it; a row saying why not when either fails (no file left)."""
    started = time.perf_counter()
    path = ctx.out_dir / maker.files.get(precision, f"{format_name}_{precision}.unmade")
    try:
        maker.make(ctx, precision, path, scored.data)
        problems = maker.problems(ctx, path, precision)
        if problems:
            path.unlink()
            return not_made(format_name, precision, "; ".join(problems)), path
        return maker.score(ctx, precision, path, scored, started), path
    except Exception as error:  # the exporters' libraries raise anything
        log.exception(
            "export %s: the %s %s variant failed", ctx.model_version, format_name, precision
        )
        path.unlink(missing_ok=True)
        return not_made(format_name, precision, f"could not be made: {_reason(error)}"), path


@dataclass(frozen=True)
class Scored:
    """What every row is scored against: the split, the float32 PyTorch model's
    probabilities on it (float64) and its labels."""

    data: VariantData
    reference: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class FormatVariants:
    """How one format makes, checks and scores its variants."""

    fp32_file: str
    files: dict[str, str]  # precision → file name
    make: Callable[[ExportContext, str, Path, VariantData], None]
    problems: Callable[[ExportContext, Path, str], list[str]]
    score: Callable[[ExportContext, str, Path, Scored, float | None], PrecisionRow]


def _reason(error: BaseException) -> str:
    first = (str(error).splitlines() or [""])[0][:MAX_REASON_CHARS]
    return f"{type(error).__name__}: {first}"


def make_fp16(ctx: ExportContext, source: Path, target: Path, _: torch.Tensor) -> None:
    """float16 weights and arithmetic; the graph's input and output stay float32."""
    import onnx
    from onnxruntime.transformers import float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = float16.convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    # The converter appends the casts of the kept float32 input after the nodes that read
    # them; onnx's checker (and some runtimes) want nodes in topological order.
    OnnxModel.graph_topological_sort(model.graph, is_deterministic=True)
    _save(ctx, model, target, "fp16")


def int8_settings() -> dict[str, Any]:
    """quantize_static's options for the shipped int8 file: QDQ, int8 weights per output
    channel in 7 bits, uint8 activations (bench/onnx_int8_forms.py varies them from here)."""
    from onnxruntime.quantization import QuantFormat, QuantType

    return {
        "quant_format": QuantFormat.QDQ,
        "per_channel": True,
        "activation_type": QuantType.QUInt8,
        "weight_type": QuantType.QInt8,
        # Weights in [-64, 63]: an x86 CPU without VNNI multiplies uint8 by int8 with
        # VPMADDUBSW, whose 16-bit pair sums saturate on full-range weights. There a
        # MobileNetV3-Large scored 0.84 instead of fp32's 0.994 (EfficientNet-B0: 0.12),
        # so the gate refused files a phone would have run well; with 7 bits both score
        # as fp32 on every CPU (docs/exports.md "Precision variants").
        "reduce_range": True,
    }


def make_int8(ctx: ExportContext, source: Path, target: Path, calibration: torch.Tensor) -> None:
    """Static QDQ quantization: 7-bit int8 weights per output channel, uint8 activations whose
    ranges come from the calibration images."""
    import onnx

    quantize_int8(source, target, calibration)
    _save(ctx, onnx.load(str(target)), target, "int8")


def quantize_int8(source: Path, target: Path, calibration: torch.Tensor, **overrides: Any) -> None:
    """quantize_static with int8_settings() (and overrides: the benches try others),
    calibrated one image at a time on the uint8 calibration views."""
    from onnxruntime.quantization import CalibrationDataReader, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = _float_batches(calibration, 1)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    prepared = target.with_suffix(".prepared.onnx")
    try:
        # Shape inference and graph folding first, as onnxruntime's guide asks.
        quant_pre_process(str(source), str(prepared))
        quantize_static(str(prepared), str(target), Images(), **(int8_settings() | overrides))
    finally:
        prepared.unlink(missing_ok=True)


MAKERS = {"fp16": make_fp16, "int8": make_int8}


def _make_onnx(ctx: ExportContext, precision: str, target: Path, data: VariantData) -> None:
    MAKERS[precision](ctx, ctx.out_dir / onnx_format.FILE_NAME, target, data.calibration)


def _score_coreml(
    ctx: ExportContext, precision: str, path: Path, scored: Scored, started: float | None
) -> PrecisionRow:
    probabilities = (
        scored.reference  # the float32 file computes the PyTorch model's numbers
        if precision == "fp32"
        else coreml_variants.simulated_probabilities(ctx, precision, scored.data.validation)
    )
    return scored_row(
        "coreml",
        precision,
        path,
        probabilities,
        scored.reference,
        scored.labels,
        simulated=coreml_variants.SIMULATED_BY[precision],
        started=started,
    )


def _problems_coreml(ctx: ExportContext, path: Path, precision: str) -> list[str]:
    problems, _ = coreml_variants.spec_problems(ctx, path, precision)
    return problems


def _score_executorch(
    _: ExportContext, precision: str, path: Path, scored: Scored, started: float | None
) -> PrecisionRow:
    return executorch_variants.measured(
        precision, path, scored.data.validation, scored.reference, scored.labels, started
    )


def cpu_description() -> dict[str, Any]:
    """The CPU model and its int8-relevant instruction sets (from /proc/cpuinfo on Linux)."""
    described: dict[str, Any] = {"machine": platform.machine(), "model": platform.processor()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return described
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line and line.strip())
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    described["model"] = fields.get("model name") or described["model"]
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    described["int8_instructions"] = [flag for flag in INT8_CPU_FLAGS if flag in flags]
    return described


def _save(ctx: ExportContext, model: Any, target: Path, precision: str) -> None:
    """The variant with the float32 file's self-description plus its precision, in one file."""
    import onnx

    model.producer_name = PRODUCER
    model.doc_string = f"{ctx.architecture} classifier, {ctx.model_version}, {precision}"
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {**ctx.string_metadata(), "precision": precision})
    onnx.save_model(model, str(target), save_as_external_data=False)


def _file_problems(ctx: ExportContext, path: Path, precision: str) -> list[str]:
    """What the float32 file must be (one file, its metadata, a recent opset), and a float32
    input and output: a caller swaps the file and changes nothing."""
    import onnx

    model, _, problems = onnx_format.open_checked(path, ctx.labels)
    metadata = {**ctx.string_metadata(), "precision": precision}
    problems += onnx_format.file_problems(model, metadata, onnx_format.MIN_OPSET)
    float32 = onnx.TensorProto.FLOAT
    for value in (*model.graph.input, *model.graph.output):
        if value.type.tensor_type.elem_type != float32:
            problems.append(f"{value.name} is not float32")
    return problems


def _measured(
    _: ExportContext, precision: str, path: Path, scored: Scored, started: float | None
) -> PrecisionRow:
    """Score one ONNX file on the validation split and time it at batch 1 on one CPU thread
    (a phone's inference thread, and steady on a shared machine)."""
    validation = scored.data.validation
    one_thread = _session(path, threads=1)
    image = next(_float_batches(validation[:1], 1))
    return scored_row(
        "onnx",
        precision,
        path,
        onnx_probabilities(path, validation),
        scored.reference,
        scored.labels,
        latency_ms=median_ms(lambda: _run(one_thread, image)),
        started=started,
    )


def onnx_probabilities(path: Path, images: torch.Tensor) -> np.ndarray:
    """An ONNX file's probabilities on uint8 views (onnxruntime's default threads)."""
    session = _session(path)
    return np.concatenate([_run(session, batch) for batch in _float_batches(images, SCORE_BATCH)])


def _session(path: Path, threads: int = 0) -> onnxruntime.InferenceSession:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads  # 0: onnxruntime's default
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run(session: onnxruntime.InferenceSession, batch: np.ndarray) -> np.ndarray:
    (probabilities,) = session.run([OUTPUT_NAME], {INPUT_NAME: batch})
    return np.asarray(probabilities)


def _float_batches(images: torch.Tensor, size: int) -> Iterator[np.ndarray]:
    """uint8 views as the float32 [0, 1] batches every export takes."""
    for batch in images.split(size):
        yield (batch.float() / 255).numpy()


# What each format that makes variants makes them with (after the functions it names).
VARIANT_MAKERS = {
    "onnx": FormatVariants(
        fp32_file=onnx_format.FILE_NAME,
        files=VARIANT_FILES,
        make=_make_onnx,
        problems=_file_problems,
        score=_measured,
    ),
    "coreml": FormatVariants(
        fp32_file=coreml_format.FILE_NAME,
        files=coreml_variants.VARIANT_FILES,
        make=lambda ctx, precision, path, _: coreml_variants.make(ctx, precision, path),
        problems=_problems_coreml,
        score=_score_coreml,
    ),
    "executorch": FormatVariants(
        fp32_file=executorch_format.FILE_NAME,
        files=executorch_variants.VARIANT_FILES,
        make=lambda ctx, precision, path, data: executorch_variants.make(
            ctx, precision, path, data.calibration
        ),
        problems=executorch_variants.problems,
        score=_score_executorch,
    ),
}
