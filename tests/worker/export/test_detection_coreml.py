"""Detector Core ML: a pipeline Vision reads as an object detector, decoding as torchvision does."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import coremltools as ct
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import batched_nms, clip_boxes_to_image

from tests.worker.export.conftest import (
    DETECTION_IMAGE_SIZE,
    DETECTION_LABELS,
    DETECTION_METRICS,
    DETECTION_SCORE_THRESHOLD,
    MODEL_VERSION,
    DetectionRun,
    random_detector,
    reference_detections,
)
from worker.export import ExportFailed
from worker.export.detection import export_detector
from worker.export.detection.decoding import SSDDecoder

S = DETECTION_IMAGE_SIZE


@pytest.fixture(scope="module")
def spec(detection_export: DetectionRun, tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("coreml-detector")
    with zipfile.ZipFile(detection_export.out_dir / "model.mlpackage.zip") as archive:
        assert {Path(name).parts[0] for name in archive.namelist()} == {"model.mlpackage"}
        archive.extractall(folder)
    return ct.utils.load_spec(str(folder / "model.mlpackage"))


def test_a_pipeline_of_the_network_and_core_mls_nms(spec: Any) -> None:
    assert spec.WhichOneof("Type") == "pipeline"
    assert spec.specificationVersion >= 7  # iOS 16, as the classifiers
    network, nms = spec.pipeline.models
    assert network.WhichOneof("Type") == "mlProgram"
    assert nms.WhichOneof("Type") == "nonMaximumSuppression"


def test_nms_carries_the_labels_thresholds_and_wiring(spec: Any) -> None:
    network, model = spec.pipeline.models
    nms = model.nonMaximumSuppression
    assert list(nms.stringClassLabels.vector) == DETECTION_LABELS
    assert nms.confidenceThreshold == DETECTION_SCORE_THRESHOLD
    assert nms.iouThreshold == 0.55  # SSDlite's own NMS IoU
    assert nms.pickTop.perClass  # torchvision's NMS is per class too
    raw = [o.name for o in network.description.output]
    assert [nms.confidenceInputFeatureName, nms.coordinatesInputFeatureName] == raw
    assert [nms.confidenceOutputFeatureName, nms.coordinatesOutputFeatureName] == [
        "confidence",
        "coordinates",
    ]
    # At most 100 boxes come out (the output's row range), as from the other formats.
    rows = model.description.output[0].type.multiArrayType.shapeRange.sizeRanges[0]
    assert (rows.lowerBound, rows.upperBound) == (0, 100)


def test_vision_sees_an_image_in_and_confidence_and_coordinates_out(spec: Any) -> None:
    inputs = {i.name: i.type for i in spec.description.input}
    assert list(inputs) == ["image", "iouThreshold", "confidenceThreshold"]
    image = inputs["image"].imageType
    assert (image.width, image.height, image.colorSpace) == (S, S, image.RGB)
    assert inputs["iouThreshold"].isOptional and inputs["confidenceThreshold"].isOptional
    assert [o.name for o in spec.description.output] == ["confidence", "coordinates"]
    metadata = spec.description.metadata
    assert json.loads(metadata.userDefined["labels"]) == DETECTION_LABELS
    assert metadata.versionString == MODEL_VERSION


def test_the_network_scales_pixels_by_1_over_255_and_outputs_one_row_per_anchor(
    spec: Any, ssdlite: nn.Module
) -> None:
    network = spec.pipeline.models[0]
    main = network.mlProgram.functions["main"]
    ops = list(main.block_specializations[main.opset].operations)
    (scale,) = [
        op for op in ops if op.type == "mul" and op.inputs["x"].arguments[0].name == "image"
    ]
    consts = {op.outputs[0].name: op for op in ops if op.type == "const"}
    factor = consts[scale.inputs["y"].arguments[0].name].attributes["val"]
    assert factor.immediateValue.tensor.floats.values[0] == pytest.approx(1 / 255, abs=1e-9)
    anchors = torchvision_anchors(ssdlite, torch.zeros(3, S, S)).shape[0]
    shapes = [list(o.type.multiArrayType.shape) for o in network.description.output]
    assert shapes == [[anchors, len(DETECTION_LABELS)], [anchors, 4]]


def torchvision_anchors(ssd: nn.Module, image: torch.Tensor) -> torch.Tensor:
    images, _ = ssd.transform([image])
    features = list(ssd.backbone(images.tensors).values())
    return ssd.anchor_generator(ImageList(images.tensors, images.image_sizes), features)[0]


def test_the_static_decoding_equals_torchvisions_own(
    ssdlite: nn.Module, detection_images: torch.Tensor
) -> None:
    decoder = SSDDecoder(ssdlite, S).eval()
    with torch.no_grad():
        for image in detection_images:
            confidence, coordinates = decoder(image[None])
            # torchvision's SSD.forward up to its score threshold, step by step.
            images, _ = ssdlite.transform([image])
            features = list(ssdlite.backbone(images.tensors).values())
            head = ssdlite.head(features)
            anchors = ssdlite.anchor_generator(images, features)[0]
            boxes = ssdlite.box_coder.decode_single(head["bbox_regression"][0], anchors)
            boxes = clip_boxes_to_image(boxes, (S, S))
            scores = F.softmax(head["cls_logits"][0], dim=-1)
            centre, size = coordinates[:, :2] * S, coordinates[:, 2:] * S
            assert torch.allclose(centre - size / 2, boxes[:, :2], atol=1e-4)
            assert torch.allclose(centre + size / 2, boxes[:, 2:], atol=1e-4)
            assert torch.equal(confidence, scores[:, 1:])


def test_nms_over_the_decoded_outputs_gives_the_models_detections(
    ssdlite: nn.Module, detection_images: torch.Tensor
) -> None:
    decoder = SSDDecoder(ssdlite, S).eval()
    found = 0
    for image in detection_images:
        with torch.no_grad():
            confidence, coordinates = decoder(image[None])
        centre, size = coordinates[:, :2] * S, coordinates[:, 2:] * S
        boxes = torch.cat((centre - size / 2, centre + size / 2), dim=1)
        anchor, label = torch.nonzero(confidence > DETECTION_SCORE_THRESHOLD, as_tuple=True)
        scores = confidence[anchor, label]
        keep = batched_nms(boxes[anchor], scores, label, iou_threshold=0.55)[:100]
        expected_boxes, expected_scores, expected_labels = reference_detections(
            ssdlite, image, DETECTION_SCORE_THRESHOLD
        )
        assert len(keep) == len(expected_scores)
        order = torch.argsort(scores[keep], descending=True)
        assert torch.allclose(scores[keep][order], expected_scores, atol=1e-6)
        assert torch.allclose(boxes[anchor][keep][order], expected_boxes, atol=1e-3)
        assert torch.equal(label[keep][order], expected_labels)
        found += len(keep)
    assert found >= 10


def test_the_check_records_the_decoding_and_nms_parity(detection_export: DetectionRun) -> None:
    result = detection_export.manifest.formats["coreml"]
    assert result.status == "passed" and result.check is not None
    details = result.check.details
    assert details["models"] == ["mlProgram", "nonMaximumSuppression"]
    assert details["decoding_max_box_abs_diff_px"] <= 1e-3
    assert details["decoding_max_confidence_abs_diff"] <= 1e-5
    assert details["paired"] == details["detections"] >= 10
    assert result.details["vision_crop_and_scale"] == "scaleFill"


def test_other_architectures_are_refused_by_name_while_the_rest_is_delivered(
    detection_images: torch.Tensor, tmp_path: Path
) -> None:
    model = random_detector("fasterrcnn_mobilenet_v3_large_fpn")
    with pytest.raises(ExportFailed) as failure:
        export_detector(
            model,
            DETECTION_LABELS,
            S,
            "fasterrcnn_mobilenet_v3_large_fpn",
            ["coreml", "torch"],
            detection_images[:2],
            tmp_path,
            DETECTION_METRICS,
            MODEL_VERSION,
        )
    assert list(failure.value.failures) == ["coreml"]
    assert "needs architecture ssdlite320_mobilenet_v3_large" in failure.value.failures["coreml"]
    manifest = failure.value.manifest
    assert manifest.formats["torch"].status == "passed"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(manifest.upload_names())
