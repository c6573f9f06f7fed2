"""Precision variants (worker/export/variants.py, coreml_variants.py) of the tiny trained
classifier: made, scored on a whole validation split (onnxruntime; Core ML simulated in
PyTorch), and gated on accuracy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnxruntime
import pytest
import torch
from torch import nn

from tests.worker.export.conftest import (
    ARCHITECTURE,
    IMAGE_SIZE,
    LABELS,
    METRICS,
    MODEL_VERSION,
    VALIDATION_IMAGES,
    VALIDATION_SEED,
    VARIANT_TOLERANCE,
    ExportRun,
    toy_context,
    views,
)
from worker.export import ExportInterrupted, export_all
from worker.export.coreml_variants import spec_problems
from worker.export.manifest import FormatResult
from worker.export.variants import VariantData, gate_reason, precision_table
from worker.export.wrapper import wrap


def test_int8_and_fp16_are_smaller_agree_and_describe_themselves(
    exported: ExportRun,
) -> None:
    manifest, out_dir = exported.manifest, exported.out_dir
    table = manifest.precisions
    assert table is not None and table.images == VALIDATION_IMAGES
    assert table.tolerance == VARIANT_TOLERANCE
    rows = {row.key: row for row in table.rows}
    assert list(rows) == [
        "onnx",
        "onnx_fp16",
        "onnx_int8",
        "coreml",
        "coreml_fp16",
        "coreml_int8",
        "executorch",
        "executorch_int8",
    ]
    assert all(row.delivered for row in rows.values()), [r.reason for r in rows.values()]
    fp32, fp16, int8 = rows["onnx"], rows["onnx_fp16"], rows["onnx_int8"]
    assert fp32.accuracy == table.pytorch_fp32_accuracy > 0.7  # float32 is PyTorch's
    assert fp32.agreement == 1.0 and fp32.max_abs_diff is not None and fp32.max_abs_diff < 1e-4
    assert fp16.size_bytes is not None and fp32.size_bytes is not None
    assert int8.size_bytes is not None
    assert fp16.size_bytes < 0.6 * fp32.size_bytes
    assert int8.size_bytes < 0.4 * fp32.size_bytes
    # This toy's soft probabilities put many images near a class boundary: int8 agrees on
    # 89% of them here, 99.1% on a trained MobileNetV3 (docs/exports.md "Precision variants").
    assert fp16.agreement is not None and fp16.agreement >= 0.98
    assert int8.agreement is not None and int8.agreement >= 0.85
    assert all(row.simulated is None for row in (fp32, fp16, int8))
    for row in (fp16, int8):
        assert row.accuracy is not None
        assert row.accuracy >= table.pytorch_fp32_accuracy - VARIANT_TOLERANCE
        assert row.latency_ms is not None and row.latency_ms > 0
    assert manifest.variant_files() == {
        "onnx_fp16": "model_fp16.onnx",
        "onnx_int8": "model_int8.onnx",
        "coreml_fp16": "model_fp16.mlpackage.zip",
        "coreml_int8": "model_int8.mlpackage.zip",
        "executorch_int8": "model_int8.pte",
    }
    described = {entry.name: entry for entry in manifest.files}
    assert described["model_int8.onnx"].format == "onnx_int8"
    assert described["model_int8.onnx"].size_bytes == int8.size_bytes
    for precision in ("fp16", "int8"):
        session = onnxruntime.InferenceSession(
            str(out_dir / f"model_{precision}.onnx"), providers=["CPUExecutionProvider"]
        )
        meta = session.get_modelmeta().custom_metadata_map
        assert meta["precision"] == precision and json.loads(meta["labels"]) == LABELS
        # Callers change nothing: float32 in, float32 probabilities out.
        assert [i.type for i in session.get_inputs()] == ["tensor(float)"]
        assert [o.type for o in session.get_outputs()] == ["tensor(float)"]
    assert manifest.variants_not_delivered() == {}
    assert table.runtime is not None and "Core ML: simulated in PyTorch" in table.runtime
    saved = json.loads((out_dir / "manifest.json").read_text())
    assert saved["precisions"]["rows"][2]["key"] == "onnx_int8"
    assert saved["precisions"]["rows"][5]["key"] == "coreml_int8"
    if Path("/proc/cpuinfo").exists():  # Linux names the CPU's int8 instructions
        assert "int8_instructions" in saved["precisions"]["cpu"]


def test_a_variant_beyond_the_tolerance_is_not_delivered(
    classifier: nn.Module,
    check_images: torch.Tensor,
    exported: ExportRun,
    tmp_path: Path,
) -> None:
    """int8 calibrated on black pictures: every activation range is wrong, the accuracy
    collapses, and the file is not delivered (made from the float32 file exported above)."""
    shutil.copy(exported.out_dir / "model.onnx", tmp_path / "model.onnx")
    ctx = toy_context(wrap(classifier), check_images, tmp_path)
    validation, labels = views(VALIDATION_IMAGES, VALIDATION_SEED)
    black = torch.zeros(8, 3, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)
    passed = FormatResult(format="onnx", status="passed", files=["model.onnx"])
    table, delivered = precision_table(
        ctx,
        ["fp32", "int8"],
        0.01,
        lambda: VariantData(validation, labels, black),
        {"onnx": passed},
    )
    assert [row.key for row in table.rows] == ["onnx", "onnx_int8"]
    int8 = table.rows[1]
    assert not int8.delivered and int8.file is None and delivered == []
    assert int8.reason is not None and int8.reason.startswith("validation accuracy ")
    assert "(export_tolerance 0.01: 1 point)" in int8.reason
    assert not (tmp_path / "model_int8.onnx").exists()
    # Without its float32 file a variant is not made, and says why.
    failed = FormatResult(format="onnx", status="failed", error="export failed: …")
    table, delivered = precision_table(
        ctx,
        ["fp32", "fp16"],
        0.01,
        lambda: VariantData(validation, labels, black),
        {"onnx": failed},
    )
    assert [(row.key, row.reason) for row in table.rows] == [
        ("onnx_fp16", "the float32 onnx export it is made from failed")
    ]
    # A format whose float32 file cannot be scored (here: no model.pte at all) costs its own
    # variants only; the ONNX one is made, scored and delivered beside it.
    executorch = FormatResult(format="executorch", status="passed", files=["model.pte"])
    table, delivered = precision_table(
        ctx,
        ["fp32", "int8"],
        1.0,
        lambda: VariantData(validation, labels, validation[:8]),
        {"onnx": passed, "executorch": executorch},
    )
    rows = {row.key: row for row in table.rows}
    assert list(rows) == ["onnx", "onnx_int8", "executorch_int8"]
    assert rows["onnx_int8"].delivered and delivered == [tmp_path / "model_int8.onnx"]
    reason = rows["executorch_int8"].reason or ""
    assert reason.startswith("the float32 executorch file could not be scored: ")
    assert table.runtime is not None and "ExecuTorch runtime" in table.runtime
    # A stop asked between variants is not a variant's failure: it goes up, and the
    # variant it came before is not made.
    (tmp_path / "model_int8.onnx").unlink()
    with pytest.raises(ExportInterrupted) as stop:
        precision_table(
            ctx,
            ["fp32", "fp16", "int8"],
            1.0,
            lambda: VariantData(validation, labels, validation[:8]),
            {"onnx": passed},
            interrupted=lambda: (tmp_path / "model_fp16.onnx").exists(),
        )
    assert stop.value.done == ["onnx", "onnx_fp16"]
    assert not (tmp_path / "model_int8.onnx").exists()


def test_the_gate_allows_the_tolerance_and_names_the_drop() -> None:
    assert gate_reason(0.9, 0.89, 0.01) is None  # exactly the tolerance
    assert gate_reason(0.9, 0.95, 0.0) is None
    assert gate_reason(0.9, 0.85, 0.01) == (
        "validation accuracy 85.0% is 5.0 points below fp32's 90.0% (export_tolerance 0.01: "
        "1 point)"
    )


def test_variants_need_a_format_that_makes_them_and_the_validation_split(
    classifier: nn.Module, check_images: torch.Tensor, tmp_path: Path
) -> None:
    arguments = {
        "model": classifier,
        "class_names": LABELS,
        "image_size": IMAGE_SIZE,
        "architecture": ARCHITECTURE,
        "check_images": check_images,
        "out_dir": tmp_path,
        "metrics": METRICS,
        "model_version": MODEL_VERSION,
    }
    with pytest.raises(ValueError, match="int8 variants are coreml, executorch, onnx files: they"):
        export_all(formats=["torch"], precisions=["fp32", "int8"], **arguments)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="they need one of those formats and variant_data"):
        export_all(formats=["onnx"], precisions=["fp32", "fp16"], **arguments)  # type: ignore[arg-type]
    for wrong in (["int8"], [], ["fp32", "bf16"]):
        with pytest.raises(ValueError, match="precisions must include fp32"):
            export_all(formats=["onnx"], precisions=wrong, **arguments)  # type: ignore[arg-type]


def test_core_ml_variants_are_smaller_simulated_and_read_back_at_their_precision(
    classifier: nn.Module, check_images: torch.Tensor, exported: ExportRun
) -> None:
    manifest, out_dir = exported.manifest, exported.out_dir
    assert manifest.precisions is not None
    rows = {row.key: row for row in manifest.precisions.rows if row.format == "coreml"}
    fp32, fp16, int8 = rows["coreml"], rows["coreml_fp16"], rows["coreml_int8"]
    assert fp32.accuracy == manifest.precisions.pytorch_fp32_accuracy and fp32.agreement == 1
    assert fp32.simulated is not None and "float32 PyTorch model" in fp32.simulated
    assert fp16.simulated is not None and "float16" in fp16.simulated
    assert int8.simulated is not None and "PostTrainingQuantizer" in int8.simulated
    assert all(row.latency_ms is None and row.delivered for row in (fp32, fp16, int8))
    assert fp32.size_bytes and fp16.size_bytes and int8.size_bytes
    assert fp16.size_bytes < 0.6 * fp32.size_bytes and int8.size_bytes < 0.4 * fp32.size_bytes
    assert fp16.agreement is not None and fp16.agreement >= 0.98
    assert int8.agreement is not None and int8.agreement >= 0.85
    assert fp16.max_abs_diff is not None and 0 < fp16.max_abs_diff < 0.05
    # The spec check reads each file's precision back, and refuses a file without it.
    ctx = toy_context(wrap(classifier), check_images, out_dir)
    for precision in ("fp16", "int8"):
        problems, details = spec_problems(
            ctx, out_dir / f"model_{precision}.mlpackage.zip", precision
        )
        assert problems == [] and details["weights"]["checked"] > 10, (precision, problems)
        assert details["scale"] == pytest.approx(1 / 255)
        problems, _ = spec_problems(ctx, out_dir / "model.mlpackage.zip", precision)
        assert "user-defined metadata lacks precision " + precision in problems
        assert any(
            problem.endswith(
                "weights are not "
                + ("float16" if precision == "fp16" else "an int8 constant dequantized on load")
            )
            for problem in problems
        ), problems


def test_the_executorch_int8_program_is_smaller_and_scored_in_its_runtime(
    exported: ExportRun,
) -> None:
    from executorch.runtime import Runtime

    manifest, out_dir = exported.manifest, exported.out_dir
    assert manifest.precisions is not None
    rows = {row.key: row for row in manifest.precisions.rows if row.format == "executorch"}
    fp32, int8 = rows["executorch"], rows["executorch_int8"]
    assert fp32.simulated is None and int8.simulated is None  # the runtime ran the files
    assert fp32.agreement == 1.0 and fp32.max_abs_diff is not None and fp32.max_abs_diff < 1e-4
    assert fp32.size_bytes and int8.size_bytes and int8.size_bytes < 0.5 * fp32.size_bytes
    assert int8.agreement is not None and int8.agreement >= 0.85
    assert int8.delivered and int8.latency_ms is not None and int8.latency_ms > 0
    program = Runtime.get().load_program(out_dir / "model_int8.pte")
    assert program.load_method("precision").execute([]) == ["int8"]
    assert json.loads(program.load_method("labels").execute([])[0]) == LABELS
