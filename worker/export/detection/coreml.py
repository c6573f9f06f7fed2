"""coreml for detectors: a pipeline of the SSD network with static decoding and Core ML's NMS.

The layout Vision turns into VNRecognizedObjectObservation (labels with confidences and a
bounding box), the approach Create ML and Ultralytics take: model 1, an ML Program, outputs
per-anchor class confidences and normalised centre/size boxes; model 2, Core ML's
NonMaximumSuppression, keeps the best boxes and carries the labels. Only SSD has a fixed set
of anchors to decode against; the two-stage and FPN detectors are refused by name.

Core ML cannot run on Linux, so the check reads the spec back from the shipped zip, and proves
the decoding the converted network does is torchvision's: the traced network's outputs on the
check images equal torchvision's own decoded boxes and scores, and torchvision's NMS over them
gives the PyTorch detector's detections.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from shared.contract import COREML_DETECTION_ARCHITECTURES
from worker.export.checks import with_problems
from worker.export.context import INPUT_NAME, PRODUCER, Exported
from worker.export.coreml import (
    COMPUTE_PRECISION,
    FILE_NAME,
    MIN_SPEC_VERSION,
    MINIMUM_DEPLOYMENT_TARGET,
    PACKAGE_NAME,
    convert,
    describe_image_input,
    image_input_problems,
    load_zipped_spec,
    pixel_scale_problems,
    program_ops,
    zip_folder,
)
from worker.export.detection.context import DetectionContext
from worker.export.detection.decoding import (
    SSDDecoder,
    corners,
    torchvision_decoded,
    torchvision_select,
)
from worker.export.detection.parity import compare
from worker.export.manifest import Check, InputContract
from worker.export.torchscript import quiet_jit_deprecation

__all__ = ["ARCHITECTURES", "FILE_NAME", "check", "export", "refusal"]

# The detectors with a fixed anchor set that the pipeline decodes against; the API refuses
# coreml for the others when the training is started.
ARCHITECTURES: tuple[str, ...] = COREML_DETECTION_ARCHITECTURES
RAW_CONFIDENCE = "raw_confidence"
RAW_COORDINATES = "raw_coordinates"
CONFIDENCE = "confidence"
COORDINATES = "coordinates"
IOU_INPUT = "iouThreshold"
CONFIDENCE_INPUT = "confidenceThreshold"
DECODER_KEY = "coreml_ssd_decoder"
# Our decoding against torchvision's, on the same float32 numbers: observed ≤ 3.1e-5 px at
# 320 px (the round trip through centre and size) and 0 for the confidences.
DECODE_BOX_ATOL_PX = 1e-3
DECODE_SCORE_ATOL = 1e-5


class UnsupportedArchitecture(ValueError):
    """Core ML's pipeline needs a fixed anchor set, which only SSD has."""


def refusal(architecture: str) -> str | None:
    """Why a detector of this architecture cannot be exported to coreml (None: it can)."""
    if architecture in ARCHITECTURES:
        return None
    return (
        f"coreml export of a detector needs architecture {' or '.join(ARCHITECTURES)} "
        f"(got {architecture}): Core ML's detection pipeline decodes against a fixed anchor "
        "set, which the two-stage and FPN detectors do not have; use onnx or torch"
    )


def decoder(ctx: DetectionContext) -> torch.jit.ScriptModule:
    """The traced network + static decoding that is converted, made on first use."""
    if DECODER_KEY not in ctx.cache:
        module = SSDDecoder(ctx.wrapper.detector, ctx.image_size).eval()
        with torch.no_grad(), quiet_jit_deprecation():
            ctx.cache[DECODER_KEY] = torch.jit.trace(module, ctx.sample(), check_trace=False)
    traced = ctx.cache[DECODER_KEY]
    assert isinstance(traced, torch.jit.ScriptModule)
    return traced


def export(ctx: DetectionContext) -> Exported:
    """Convert the decoder, add Core ML's NMS, save the pipeline to model.mlpackage.zip."""
    import coremltools as ct

    why = refusal(ctx.architecture)
    if why:
        raise UnsupportedArchitecture(why)
    network = convert(
        decoder(ctx),
        ctx.input_contract(),
        outputs=[ct.TensorType(name=RAW_CONFIDENCE), ct.TensorType(name=RAW_COORDINATES)],
    )
    anchors = int(decoder(ctx).anchors.shape[0])
    nms = _nms_model(ct, ctx, network.get_spec())
    pipeline = ct.utils.make_pipeline(network, nms)
    spec = pipeline.get_spec()
    _describe(spec, ctx)
    model = ct.models.MLModel(spec, weights_dir=pipeline.weights_dir, skip_model_load=True)
    path = ctx.out_dir / FILE_NAME
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / PACKAGE_NAME
        model.save(str(package))
        zip_folder(package, path)
    return Exported(
        files=[(path, "model")],
        details={
            "model_type": "pipeline (mlProgram, nonMaximumSuppression)",
            "minimum_deployment_target": MINIMUM_DEPLOYMENT_TARGET,
            "compute_precision": COMPUTE_PRECISION,
            "input_shape": [1, 3, ctx.image_size, ctx.image_size],
            "input": describe_image_input(ctx.input_contract()),
            "anchors": anchors,
            "outputs": [CONFIDENCE, COORDINATES],
            "optional_inputs": [IOU_INPUT, CONFIDENCE_INPUT],
            "vision_crop_and_scale": "scaleFill",
            "vision": "VNCoreMLRequest returns VNRecognizedObjectObservation (labels, boundingBox)",
            "package": f"{FILE_NAME} holds the folder {PACKAGE_NAME}/ (unzip for Xcode)",
        },
    )


def _nms_model(ct: Any, ctx: DetectionContext, network: Any) -> Any:
    """Core ML's NonMaximumSuppression over the network's outputs, with labels and thresholds."""
    labels = len(ctx.labels)
    spec = ct.proto.Model_pb2.Model()
    spec.specificationVersion = MIN_SPEC_VERSION
    raw = {output.name: output for output in network.description.output}
    for name, final, columns in (
        (RAW_CONFIDENCE, CONFIDENCE, labels),
        (RAW_COORDINATES, COORDINATES, 4),
    ):
        spec.description.input.add().CopyFrom(raw[name])
        output = spec.description.output.add()
        output.CopyFrom(raw[name])
        output.name = final
        # Rows: however many survive, at most max_detections (Core ML has no other cap).
        array = output.type.multiArrayType
        del array.shape[:]
        rows, cols = array.shapeRange.sizeRanges.add(), array.shapeRange.sizeRanges.add()
        rows.lowerBound, rows.upperBound = 0, ctx.thresholds.max_detections
        cols.lowerBound = cols.upperBound = columns
    for name in (IOU_INPUT, CONFIDENCE_INPUT):
        threshold = spec.description.input.add()
        threshold.name = name
        threshold.type.doubleType.SetInParent()
    nms = spec.nonMaximumSuppression
    nms.confidenceInputFeatureName = RAW_CONFIDENCE
    nms.coordinatesInputFeatureName = RAW_COORDINATES
    nms.confidenceOutputFeatureName = CONFIDENCE
    nms.coordinatesOutputFeatureName = COORDINATES
    nms.iouThresholdInputFeatureName = IOU_INPUT
    nms.confidenceThresholdInputFeatureName = CONFIDENCE_INPUT
    nms.iouThreshold = ctx.thresholds.nms_iou_threshold
    nms.confidenceThreshold = ctx.thresholds.score_threshold
    # torchvision's NMS is per class (batched_nms); so is this.
    nms.pickTop.perClass = True
    nms.stringClassLabels.vector.extend(ctx.labels)
    return ct.models.MLModel(spec, skip_model_load=True)


def _describe(spec: Any, ctx: DetectionContext) -> None:
    """Descriptions, optional threshold inputs and metadata on the pipeline's spec."""
    description = spec.description
    thresholds = ctx.thresholds
    size = ctx.image_size
    texts = {
        INPUT_NAME: (
            f"RGB image, stretched to {size}x{size}; scaling and normalisation happen inside"
        ),
        IOU_INPUT: (
            "(optional) overlap above which a box of the same label is suppressed "
            f"(default: {thresholds.nms_iou_threshold:g})"
        ),
        CONFIDENCE_INPUT: (
            f"(optional) minimum confidence of a box (default: {thresholds.score_threshold:g})"
        ),
        CONFIDENCE: "boxes × label confidence, in the order of the labels",
        COORDINATES: "boxes × [centre x, centre y, width, height], relative to the image size",
    }
    for feature in [*description.input, *description.output]:
        feature.shortDescription = texts.get(feature.name, "")
        if feature.name in (IOU_INPUT, CONFIDENCE_INPUT):
            # Vision passes only the image: the NMS model then uses its defaults.
            feature.type.isOptional = True
    metadata = description.metadata
    metadata.author = PRODUCER
    metadata.versionString = ctx.model_version
    metadata.shortDescription = (
        f"{ctx.architecture} object detector ({len(ctx.labels)} labels), {ctx.model_version}"
    )
    metadata.userDefined.update(ctx.string_metadata())


def check(ctx: DetectionContext, exported: Exported) -> Check:
    """The shipped spec, then the decoding in PyTorch against torchvision's, image by image."""
    spec = load_zipped_spec(exported.model_path)
    problems, details = _inspect(ctx, spec)
    network = decoder(ctx)
    ssd = ctx.wrapper.detector
    box_diff = score_diff = 0.0
    candidates = []
    with torch.no_grad():
        for image in ctx.check_images:
            confidence, coordinates = network(image[None])
            boxes = corners(coordinates, ctx.image_size)
            expected_confidence, expected_boxes = torchvision_decoded(ssd, image)
            box_diff = max(box_diff, float((boxes - expected_boxes).abs().max()))
            score_diff = max(score_diff, float((confidence - expected_confidence).abs().max()))
            candidates.append(torchvision_select(ssd, confidence, boxes))
    details |= {
        "decoding_max_box_abs_diff_px": box_diff,
        "decoding_max_confidence_abs_diff": score_diff,
        "decoding_tolerance": {"box_abs_px": DECODE_BOX_ATOL_PX, "score_abs": DECODE_SCORE_ATOL},
    }
    if box_diff > DECODE_BOX_ATOL_PX or score_diff > DECODE_SCORE_ATOL:
        problems.append(
            f"the network's decoding differs from torchvision's by {box_diff:.3g} px / "
            f"confidence {score_diff:.3g}"
        )
    result = compare(
        "coremltools spec; decoding traced in PyTorch vs torchvision, then torchvision's NMS "
        "(Core ML does not run on Linux)",
        ctx.reference,
        candidates,
        ctx.thresholds,
        len(ctx.labels),
        details=details,
    )
    return with_problems(result, problems)


def _inspect(ctx: DetectionContext, spec: Any) -> tuple[list[str], dict[str, Any]]:
    """What is wrong with a detector's pipeline spec (its image input against the manifest's
    input), and what was read."""
    contract = ctx.input_contract()
    problems: list[str] = []
    details: dict[str, Any] = {"specification_version": spec.specificationVersion}
    if spec.WhichOneof("Type") != "pipeline":
        return [f"model type is {spec.WhichOneof('Type')}, not a pipeline"], details
    models = list(spec.pipeline.models)
    kinds = [model.WhichOneof("Type") for model in models]
    details["models"] = kinds
    if kinds != ["mlProgram", "nonMaximumSuppression"]:
        return [f"pipeline holds {kinds}, not an ML Program and its NMS"], details
    if spec.specificationVersion < MIN_SPEC_VERSION:
        problems.append(f"specification version {spec.specificationVersion} < {MIN_SPEC_VERSION}")
    problems += _description_problems(ctx, spec.description, contract, details)
    network, nms_model = models
    problems += pixel_scale_problems(program_ops(network, details), contract, details)
    anchors = int(decoder(ctx).anchors.shape[0])
    shapes = {o.name: list(o.type.multiArrayType.shape) for o in network.description.output}
    details["network_outputs"] = shapes
    expected = {RAW_CONFIDENCE: [anchors, len(ctx.labels)], RAW_COORDINATES: [anchors, 4]}
    if shapes != expected:
        problems.append(f"the network outputs {shapes}, expected {expected}")
    nms = nms_model.nonMaximumSuppression
    details["nms"] = {
        "iou_threshold": nms.iouThreshold,
        "confidence_threshold": nms.confidenceThreshold,
        "per_class": nms.pickTop.perClass,
    }
    if list(nms.stringClassLabels.vector) != ctx.labels:
        problems.append(f"NMS labels are {list(nms.stringClassLabels.vector)}, not the labels")
    wanted = (ctx.thresholds.nms_iou_threshold, ctx.thresholds.score_threshold)
    if (nms.iouThreshold, nms.confidenceThreshold) != wanted:
        problems.append(f"NMS thresholds are {nms.iouThreshold}, {nms.confidenceThreshold}")
    wiring = (nms.confidenceInputFeatureName, nms.coordinatesInputFeatureName)
    if wiring != (RAW_CONFIDENCE, RAW_COORDINATES):
        problems.append(f"NMS reads {wiring}, not the network's outputs")
    return problems, details


def _description_problems(
    ctx: DetectionContext, description: Any, contract: InputContract, details: dict[str, Any]
) -> list[str]:
    problems = []
    inputs = {i.name: i.type for i in description.input}
    details["inputs"] = list(inputs)
    if list(inputs) != [INPUT_NAME, IOU_INPUT, CONFIDENCE_INPUT]:
        problems.append(f"inputs are {list(inputs)}")
    image = inputs.get(INPUT_NAME)
    if image is None or image.WhichOneof("Type") != "imageType":
        problems.append(f"'{INPUT_NAME}' is not an image input")
    else:
        problems += image_input_problems(image.imageType, contract, details)
    for name in (IOU_INPUT, CONFIDENCE_INPUT):
        if name in inputs and not inputs[name].isOptional:
            problems.append(f"'{name}' is not optional (Vision passes only the image)")
    outputs = [o.name for o in description.output]
    details["outputs"] = outputs
    if outputs != [CONFIDENCE, COORDINATES]:
        problems.append(f"outputs are {outputs}, not {[CONFIDENCE, COORDINATES]}")
    if json.loads(description.metadata.userDefined.get("labels", "null")) != ctx.labels:
        problems.append("user-defined metadata lacks the labels")
    return problems
