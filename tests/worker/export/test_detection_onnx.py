"""Detector ONNX: the full model (NMS inside) runs in onnxruntime like PyTorch, empty or not."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import nn
from torchvision.models.detection.rpn import concat_box_prediction_layers

from tests.worker.export.conftest import (
    DETECTION_IMAGE_SIZE,
    DETECTION_LABELS,
    DETECTION_METRICS,
    DETECTION_SCORE_THRESHOLD,
    DETECTOR,
    MODEL_VERSION,
    DetectionRun,
    random_detector,
    rectangle_images,
    reference_detections,
)
from worker.export import Manifest
from worker.export.detection import BOX_ATOL_PX, SCORE_ATOL, export_detector

OTHER_ARCHITECTURES = [
    "fasterrcnn_mobilenet_v3_large_fpn",
    "retinanet_resnet50_fpn_v2",
    "fcos_resnet50_fpn",
]


def session(path: Path) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run(runtime: onnxruntime.InferenceSession, image: torch.Tensor) -> list[np.ndarray]:
    return list(runtime.run(["boxes", "scores", "labels"], {"image": image[None].numpy()}))


def assert_same_detections(
    expected: tuple[torch.Tensor, torch.Tensor, torch.Tensor], got: list[np.ndarray]
) -> None:
    """Same count; each reference detection has a counterpart of its label within tolerance."""
    boxes, scores, labels = (t.numpy() for t in expected)
    got_boxes, got_scores, got_labels = got
    assert len(got_scores) == len(scores)
    assert got_labels.dtype == np.int64 and got_boxes.shape == (len(scores), 4)
    unused = set(range(len(got_scores)))
    for box, score, label in zip(boxes, scores, labels, strict=True):
        distance = {j: float(np.abs(got_boxes[j] - box).max()) for j in unused}
        candidates = [j for j in unused if got_labels[j] == label]
        assert candidates, f"no detection of label {label}"
        j = min(candidates, key=distance.__getitem__)
        assert distance[j] <= BOX_ATOL_PX
        assert abs(float(got_scores[j]) - float(score)) <= SCORE_ATOL
        unused.remove(j)


def test_onnxruntime_finds_pytorchs_detections_on_every_check_image(
    detection_export: DetectionRun,
) -> None:
    runtime = session(detection_export.out_dir / "model.onnx")
    found = 0
    for image in detection_export.images:
        expected = reference_detections(detection_export.model, image, DETECTION_SCORE_THRESHOLD)
        assert_same_detections(expected, run(runtime, image))
        found += len(expected[1])
    assert found >= 10  # the comparison is about real detections, not empty lists


def test_the_check_records_paired_detections_within_the_stated_tolerance(
    detection_export: DetectionRun,
) -> None:
    check = detection_export.manifest.formats["onnx"].check
    assert check is not None and check.passed, check
    assert check.tolerance is not None
    assert check.tolerance.model_dump()["box_abs_px"] == BOX_ATOL_PX
    details = check.details
    assert details["paired"] == details["detections"] >= 10
    assert details["images_without_detections"] >= 1  # an empty image ran through both
    assert details["max_box_abs_diff_px"] <= BOX_ATOL_PX
    assert details["max_score_abs_diff"] <= SCORE_ATOL


def test_an_image_without_detections_gives_empty_outputs(
    detection_export: DetectionRun,
) -> None:
    runtime = session(detection_export.out_dir / "model.onnx")
    empty = [
        image
        for image in detection_export.images
        if not len(
            reference_detections(detection_export.model, image, DETECTION_SCORE_THRESHOLD)[1]
        )
    ]
    assert empty
    boxes, scores, labels = run(runtime, empty[0])
    assert boxes.shape == (0, 4) and scores.shape == (0,) and labels.shape == (0,)


def test_a_threshold_nothing_reaches_exports_and_checks_empty_outputs(
    ssdlite: nn.Module, detection_images: torch.Tensor, tmp_path: Path
) -> None:
    manifest = export_detector(
        ssdlite,
        DETECTION_LABELS,
        DETECTION_IMAGE_SIZE,
        DETECTOR,
        ["onnx"],
        detection_images[:3],
        tmp_path,
        DETECTION_METRICS,
        MODEL_VERSION,
        score_threshold=0.99,
    )
    check = manifest.formats["onnx"].check
    assert check is not None and check.passed
    assert check.details["images_without_detections"] == 3
    for image in detection_images[:3]:
        assert [a.shape[0] for a in run(session(tmp_path / "model.onnx"), image)] == [0, 0, 0]


def test_one_file_with_named_outputs_metadata_and_a_batch_of_one(
    detection_export: DetectionRun,
) -> None:
    path = detection_export.out_dir / "model.onnx"
    model = onnx.load(str(path), load_external_data=False)
    assert not any(onnx.external_data_helper.uses_external_data(t) for t in model.graph.initializer)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert opset >= 11
    runtime = session(path)
    assert [i.name for i in runtime.get_inputs()] == ["image"]
    assert runtime.get_inputs()[0].shape == [1, 3, DETECTION_IMAGE_SIZE, DETECTION_IMAGE_SIZE]
    assert [o.name for o in runtime.get_outputs()] == ["boxes", "scores", "labels"]
    assert [o.type for o in runtime.get_outputs()] == [
        "tensor(float)",
        "tensor(float)",
        "tensor(int64)",
    ]
    metadata = runtime.get_modelmeta().custom_metadata_map
    assert json.loads(metadata["labels"]) == DETECTION_LABELS
    assert metadata["task"] == "detection"
    assert float(metadata["score_threshold"]) == DETECTION_SCORE_THRESHOLD
    assert float(metadata["nms_iou_threshold"]) == 0.55  # SSDlite's own
    assert metadata["max_detections"] == "100"


@pytest.fixture(scope="module")
def other_exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[nn.Module, Path]]:
    """The three other architectures, ONNX only, on four images (about 20 s on two cores)."""
    images = rectangle_images(4, DETECTION_IMAGE_SIZE, seed=11)
    exported = {}
    for architecture in OTHER_ARCHITECTURES:
        model = random_detector(architecture)
        out_dir = tmp_path_factory.mktemp(architecture)
        export_detector(
            model,
            DETECTION_LABELS,
            DETECTION_IMAGE_SIZE,
            architecture,
            ["onnx"],
            images,
            out_dir,
            DETECTION_METRICS,
            MODEL_VERSION,
            score_threshold=DETECTION_SCORE_THRESHOLD,
        )
        exported[architecture] = (model, out_dir)
    return exported


@pytest.mark.parametrize("architecture", OTHER_ARCHITECTURES)
def test_every_architecture_exports_to_onnx_and_matches_pytorch(
    other_exports: dict[str, tuple[nn.Module, Path]], architecture: str
) -> None:
    model, out_dir = other_exports[architecture]
    manifest = Manifest.read(out_dir / "manifest.json")
    assert manifest.succeeded and manifest.architecture == architecture
    runtime = session(out_dir / "model.onnx")
    # Faster R-CNN's output dict is (boxes, labels, scores), the others' (boxes, scores,
    # labels): the file's outputs are in one order whatever the architecture.
    assert [o.name for o in runtime.get_outputs()] == ["boxes", "scores", "labels"]
    for image in rectangle_images(4, DETECTION_IMAGE_SIZE, seed=11):
        expected = reference_detections(model, image, DETECTION_SCORE_THRESHOLD)
        assert_same_detections(expected, run(runtime, image))


def proposals(model: nn.Module, image: torch.Tensor) -> int:
    """How many region proposals Faster R-CNN's first stage keeps for image."""
    with torch.no_grad():
        images, _ = model.transform([image])
        boxes, _ = model.rpn(images, model.backbone(images.tensors))
    return len(boxes[0])


def best_proposal(model: nn.Module, image: torch.Tensor) -> float:
    """The best objectness among the proposals Faster R-CNN's first stage would keep."""
    rpn = model.rpn
    with torch.no_grad():
        images, _ = model.transform([image])
        features = list(model.backbone(images.tensors).values())
        objectness, deltas = rpn.head(features)
        anchors = rpn.anchor_generator(images, features)
        per_level = [level[0].numel() for level in objectness]
        objectness, deltas = concat_box_prediction_layers(objectness, deltas)
        boxes = rpn.box_coder.decode(deltas, anchors).view(1, -1, 4)
        _, scores = rpn.filter_proposals(boxes, objectness, images.image_sizes, per_level)
    return float(scores[0].max())


def test_faster_rcnn_runs_in_onnx_on_an_image_without_region_proposals(
    other_exports: dict[str, tuple[nn.Module, Path]], tmp_path: Path
) -> None:
    # A proposal threshold that leaves the first image (the one traced) with proposals and
    # the last with none: torchvision's box decoding once reshaped to (0, -1) there, which
    # onnxruntime refuses.
    model = copy.deepcopy(other_exports["fasterrcnn_mobilenet_v3_large_fpn"][0])
    images = rectangle_images(6, DETECTION_IMAGE_SIZE, seed=11)
    best = torch.tensor([best_proposal(model, image) for image in images])
    order = torch.argsort(best, descending=True)
    images, best = images[order], best[order]
    model.rpn.score_thresh = float(best[0] + best[-1]) / 2
    assert proposals(model, images[0]) and not proposals(model, images[-1])
    manifest = export_detector(
        model,
        DETECTION_LABELS,
        DETECTION_IMAGE_SIZE,
        "fasterrcnn_mobilenet_v3_large_fpn",
        ["onnx"],
        images,
        tmp_path,
        DETECTION_METRICS,
        MODEL_VERSION,
        score_threshold=0.05,
    )
    assert manifest.succeeded
    assert [a.shape[0] for a in run(session(tmp_path / "model.onnx"), images[-1])] == [0, 0, 0]


@pytest.mark.parametrize("architecture", ["retinanet_resnet50_fpn_v2", "fcos_resnet50_fpn"])
def test_an_image_without_detections_runs_in_the_graph_traced_on_one_with_them(
    other_exports: dict[str, tuple[nn.Module, Path]], architecture: str, tmp_path: Path
) -> None:
    model, _ = other_exports[architecture]
    images = rectangle_images(6, DETECTION_IMAGE_SIZE, seed=11)
    best = torch.tensor(
        [float(reference_detections(model, image, 0.01)[1].max()) for image in images]
    )
    order = torch.argsort(best, descending=True)
    images, best = images[order], best[order]
    # Traced on the first image (the best score), checked on all, the last scoring below.
    threshold = float(best[0] + best[-1]) / 2
    manifest = export_detector(
        model,
        DETECTION_LABELS,
        DETECTION_IMAGE_SIZE,
        architecture,
        ["onnx"],
        images,
        tmp_path,
        DETECTION_METRICS,
        MODEL_VERSION,
        score_threshold=threshold,
    )
    check = manifest.formats["onnx"].check
    assert check is not None and check.passed, check
    assert check.details["images_without_detections"] >= 1
    assert check.details["detections"] >= 1
    assert [a.shape[0] for a in run(session(tmp_path / "model.onnx"), images[-1])] == [0, 0, 0]
