"""manifest.json and labels.txt: self-describing, and the hashes match the files."""

from __future__ import annotations

import hashlib
import json

from tests.worker.export.conftest import (
    ARCHITECTURE,
    IMAGE_SIZE,
    LABELS,
    METRICS,
    MODEL_VERSION,
    ExportRun,
)
from worker.classification.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from worker.export import Manifest


def test_every_file_in_the_manifest_has_its_real_size_and_sha256(exported: ExportRun) -> None:
    manifest = Manifest.read(exported.out_dir / "manifest.json")
    # Every format's files and every delivered precision variant's (onnx_int8, …).
    described = {entry.format for entry in manifest.files}
    assert described == {*manifest.formats, *manifest.variant_files()}
    assert len(manifest.variant_files()) == 5
    for entry in manifest.files:
        data = (exported.out_dir / entry.name).read_bytes()
        assert entry.size_bytes == len(data)
        assert entry.sha256 == hashlib.sha256(data).hexdigest()
        assert entry.check_passed


def test_manifest_describes_labels_contract_metrics_and_libraries(exported: ExportRun) -> None:
    raw = json.loads((exported.out_dir / "manifest.json").read_text())
    assert raw["labels"] == LABELS
    assert raw["image_size"] == IMAGE_SIZE
    assert raw["architecture"] == ARCHITECTURE
    assert raw["model_version"] == MODEL_VERSION
    assert raw["metrics"] == METRICS
    contract = raw["input"]
    assert contract["layout"] == "NCHW" and contract["colour_order"] == "RGB"
    assert contract["value_range"] == [0.0, 1.0]
    assert contract["normalisation_inside"] is True
    assert contract["mean"] == list(IMAGENET_MEAN) and contract["std"] == list(IMAGENET_STD)
    assert contract["host_preprocessing"]["resize_short_side"] == IMAGE_SIZE
    assert raw["output"]["softmax_inside"] is True
    for library in ("torch", "onnx", "onnxruntime", "coremltools", "executorch"):
        assert raw["libraries"][library], library
    assert raw["created_at"].endswith("Z") or raw["created_at"].endswith("+00:00")


def test_labels_txt_lists_the_labels_in_output_order(exported: ExportRun) -> None:
    assert (exported.out_dir / "labels.txt").read_text().splitlines() == LABELS


def test_each_format_records_its_export_facts(exported: ExportRun) -> None:
    formats = exported.manifest.formats
    assert formats["onnx"].details["opset"] >= 17
    assert formats["coreml"].details["minimum_deployment_target"] == "iOS16"
    assert formats["executorch"].details["delegate"] == "XnnpackBackend"
    assert formats["executorch"].details["delegated_subgraphs"] >= 1
    assert {f.role for f in exported.manifest.files if f.format == "torch"} == {
        "model",
        "state_dict",
    }
