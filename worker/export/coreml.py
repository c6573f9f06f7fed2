"""coreml: an ML Program .mlpackage with an image input and class labels, zipped for upload.

Core ML cannot run on Linux, so the check reads the spec back from the zip we ship and
verifies the input against the manifest's description of what an app feeds the model (the
one the raw-file check follows: the image input is its final view, in its colour space,
scaled to its value range, and Vision's crop-and-scale option does its resize and crop), the
outputs, the labels in order and that the probabilities come out of a softmax.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from worker.export import torchscript
from worker.export.checks import spec_check
from worker.export.context import INPUT_NAME, OUTPUT_NAME, PRODUCER, ExportContext, Exported
from worker.export.manifest import Check, InputContract, input_contract

FILE_NAME = "model.mlpackage.zip"
PACKAGE_NAME = "model.mlpackage"
# iOS 16 / macOS 13: ML Program spec 7 (opset CoreML6), the floor for VNCoreMLRequest with
# ML Programs on every iPhone still receiving updates.
MINIMUM_DEPLOYMENT_TARGET = "iOS16"
MIN_SPEC_VERSION = 7
LABEL_OUTPUT = "classLabel"
PROBABILITIES_OUTPUT = "classLabel_probs"
# Float32 weights and compute: the same numbers as the checked formats. The Neural Engine
# still computes in float16 on device; apps wanting exact numbers choose .cpuOnly.
COMPUTE_PRECISION = "float32"


def convert(
    module: Any, contract: InputContract, compute_precision: str = "float32", **options: Any
) -> Any:
    """An ML Program from a traced module with the image input contract describes
    (image_input), unloaded; float32 unless asked for float16 (weights and arithmetic: the
    fp16 variant).

    Shared by classifiers and detectors: options name the outputs (and a classifier config).
    """
    import coremltools as ct

    return ct.convert(
        module,
        source="pytorch",
        inputs=[image_input(contract)],
        convert_to="mlprogram",
        minimum_deployment_target=getattr(ct.target, MINIMUM_DEPLOYMENT_TARGET),
        compute_precision=ct.precision(compute_precision),
        skip_model_load=True,  # no Core ML framework on Linux
        **options,
    )


def image_input(contract: InputContract) -> Any:
    """Core ML's image input as the manifest describes the model's: the size of the view the
    host steps end at, the channel order, and bytes 0-255 scaled to the value range (the
    check, image_input_problems and pixel_scale_problems, reads the file against the same)."""
    import coremltools as ct

    low, high = contract.value_range
    _, (height, width) = described_view(contract.host_preprocessing)
    return ct.ImageType(
        name=INPUT_NAME,
        shape=(1, 3, height, width),
        scale=(high - low) / 255,
        bias=[low] * 3,
        color_layout=getattr(ct.colorlayout, contract.colour_order),
    )


def describe_image_input(contract: InputContract) -> str:
    """image_input in words, for the manifest's format details."""
    low, high = contract.value_range
    return f"image ({contract.colour_order}), scale {(high - low) / 255:.8g}, bias {[low] * 3}"


def described_view(host: dict[str, Any]) -> tuple[str, tuple[int, int]]:
    """The step the host preprocessing ends at (a classifier's centre crop, a detector's
    resize) and its height and width: the size of the model's image input."""
    view = "center_crop" if "center_crop" in host else "resize"
    height, width = host[view]
    return view, (height, width)


def export(ctx: ExportContext) -> Exported:
    """Convert a trace of the wrapper to out_dir/model.mlpackage.zip."""
    size = ctx.image_size
    path = ctx.out_dir / FILE_NAME
    save_zipped(classifier_program(ctx), path)
    return Exported(
        files=[(path, "model")],
        details={
            "model_type": "mlprogram",
            "minimum_deployment_target": MINIMUM_DEPLOYMENT_TARGET,
            "compute_precision": COMPUTE_PRECISION,
            "input_shape": [1, 3, size, size],
            "input": describe_image_input(input_contract(size)),
            "outputs": [LABEL_OUTPUT, PROBABILITIES_OUTPUT],
            "vision_crop_and_scale": "centerCrop",
            "package": f"{FILE_NAME} holds the folder {PACKAGE_NAME}/ (unzip for Xcode)",
        },
    )


def classifier_program(
    ctx: ExportContext, compute_precision: str = COMPUTE_PRECISION, precision: str | None = None
) -> Any:
    """The classifier's ML Program with its labels, descriptions and metadata (plus
    `precision` for a variant)."""
    import coremltools as ct

    size = ctx.image_size
    # A trace of its own: the converter runs graph passes on the module it is given, and the
    # shared trace also feeds the torch and pytorchmobile files.
    mlmodel = convert(
        torchscript.trace(ctx),
        input_contract(size),
        compute_precision,
        # Naming the probabilities keeps the converter from renaming an anonymous tensor.
        outputs=[ct.TensorType(name=OUTPUT_NAME)],
        classifier_config=ct.ClassifierConfig(
            list(ctx.labels),
            predicted_feature_name=LABEL_OUTPUT,
            predicted_probabilities_output=None,
        ),
    )
    mlmodel.author = PRODUCER
    mlmodel.version = ctx.model_version
    mlmodel.short_description = (
        f"{ctx.architecture} image classifier ({len(ctx.labels)} classes), {ctx.model_version}"
    )
    mlmodel.input_description[INPUT_NAME] = (
        f"RGB image, {size}x{size} (resize the short side, then center-crop); "
        "scaling and ImageNet normalisation happen inside the model"
    )
    mlmodel.output_description[LABEL_OUTPUT] = "most probable label"
    mlmodel.output_description[PROBABILITIES_OUTPUT] = "probability of every label"
    mlmodel.user_defined_metadata.update(ctx.string_metadata())
    if precision is not None:
        mlmodel.user_defined_metadata["precision"] = precision
    return mlmodel


def package_name(path: Path) -> str:
    """The folder a zip holds: model.mlpackage in model.mlpackage.zip, model_int8.mlpackage in
    model_int8.mlpackage.zip (variants unzipped side by side never overwrite each other)."""
    return path.name.removesuffix(".zip")


def save_zipped(mlmodel: Any, path: Path) -> None:
    """Save an ML Program as package_name(path)/ inside the zip at path."""
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / package_name(path)
        mlmodel.save(str(package))
        zip_folder(package, path)


def check(ctx: ExportContext, exported: Exported) -> Check:
    """Unzip the shipped file and verify its spec: input, preprocessing, outputs, labels."""
    spec = load_zipped_spec(exported.model_path)
    return spec_check("coremltools spec (Core ML does not run on Linux)", *inspect(ctx, spec))


def load_zipped_spec(path: Path) -> Any:
    """The spec of the model.mlpackage inside a zip written by zip_folder."""
    import coremltools as ct

    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(path) as archive:
            safe_extract(archive, Path(tmp))
        return ct.utils.load_spec(str(Path(tmp) / package_name(path)))


def inspect(
    ctx: ExportContext, spec: Any, contract: InputContract | None = None
) -> tuple[list[str], dict[str, Any]]:
    """What is wrong with a classifier's spec (its image input against contract, by default
    the manifest's; outputs, labels, softmax), and what was read."""
    contract = contract or input_contract(ctx.image_size)
    problems: list[str] = []
    details: dict[str, Any] = {"specification_version": spec.specificationVersion}
    if spec.WhichOneof("Type") != "mlProgram":
        return [f"model type is {spec.WhichOneof('Type')}, not mlProgram"], details
    if spec.specificationVersion < MIN_SPEC_VERSION:
        problems.append(f"specification version {spec.specificationVersion} < {MIN_SPEC_VERSION}")
    description = spec.description
    inputs = list(description.input)
    if [i.name for i in inputs] != [INPUT_NAME] or inputs[0].type.WhichOneof("Type") != "imageType":
        problems.append(f"expected one image input named '{INPUT_NAME}'")
    else:
        problems += image_input_problems(inputs[0].type.imageType, contract, details)
    outputs = [o.name for o in description.output]
    details["outputs"] = outputs
    if outputs != [LABEL_OUTPUT, PROBABILITIES_OUTPUT] or (
        description.predictedFeatureName,
        description.predictedProbabilitiesName,
    ) != (LABEL_OUTPUT, PROBABILITIES_OUTPUT):
        problems.append(f"outputs are {outputs}, not a classifier's label and probabilities")
    metadata = dict(description.metadata.userDefined)
    if json.loads(metadata.get("labels", "null")) != ctx.labels:
        problems.append("user-defined metadata lacks the labels")
    problems += _program_problems(ctx, spec, contract, details)
    return problems, details


def image_input_problems(image: Any, contract: InputContract, details: dict[str, Any]) -> list[str]:
    """An ImageType input read against the description an app follows: its size is the view
    the description ends at (the centre crop, or a detector's resize), its colour space the
    described channel order (and decode), and the Vision option it names
    (imageCropAndScaleOption, which resizes and crops on device) does the described resize
    and crop."""
    host = contract.host_preprocessing
    colour = image.ColorSpace.Name(image.colorSpace)
    details["input"] = {"width": image.width, "height": image.height, "color_space": colour}
    problems = []
    view, (height, width) = described_view(host)
    if (image.width, image.height) != (width, height):
        problems.append(
            f"image input is {image.width}x{image.height}, the {view} is {width}x{height}"
        )
    # The channel order the model takes (colour_order), which the decode must also give.
    for described in {contract.colour_order, host["color_space"]}:
        if colour != described:
            problems.append(f"image input colour space is {colour}, the description's {described}")
    vision = host["apple_vision_crop_and_scale"]
    # centerCrop scales the short side to the input's and crops the long one: the described
    # resize and crop only for a square crop of the resized short side. scaleFill stretches.
    if vision == "centerCrop":
        if view != "center_crop" or height != width or host.get("resize_short_side") != width:
            problems.append(
                "Vision's centerCrop does not do the described resize and crop (it needs a "
                f"square crop of the resized short side; described: {_steps(host)})"
            )
    elif vision == "scaleFill":
        if view != "resize" or host.get("keep_aspect_ratio") is not False:
            problems.append(f"Vision's scaleFill does not do the described resize ({_steps(host)})")
    else:
        problems.append(f"Vision option {vision!r} is not one this check can read")
    return problems


def _steps(host: dict[str, Any]) -> str:
    keys = ("resize_short_side", "center_crop", "resize", "keep_aspect_ratio")
    return ", ".join(f"{key} {host[key]}" for key in keys if key in host)


def _program_problems(
    ctx: ExportContext, spec: Any, contract: InputContract, details: dict[str, Any]
) -> list[str]:
    """Read the ML Program: pixel scale/bias ops on the input, the classify op and its inputs."""
    ops = program_ops(spec, details)
    producers = {out.name: op for op in ops for out in op.outputs}
    problems = pixel_scale_problems(ops, contract, details)
    classify = [op for op in ops if op.type == "classify"]
    if len(classify) != 1:
        return [*problems, f"expected one classify op, found {len(classify)}"]
    classes = [_immediate(v.immediateValue)[0] for v in _list_values(classify[0])]
    details["labels"] = len(classes)
    if classes != ctx.labels:
        problems.append(f"class labels are {classes}, expected {ctx.labels}")
    source = classify[0].inputs["probabilities"].arguments[0].name
    # A float16 program casts its probabilities back to float32 before classify.
    while source in producers and producers[source].type == "cast":
        source = producers[source].inputs["x"].arguments[0].name
    details["probabilities_from"] = producers[source].type if source in producers else None
    if details["probabilities_from"] != "softmax":
        problems.append("the classifier's probabilities do not come from a softmax")
    return problems


def program_ops(spec: Any, details: dict[str, Any]) -> list[Any]:
    """The operations of an ML Program's main function (its opset is noted in details)."""
    main = spec.mlProgram.functions["main"]
    details["opset"] = main.opset
    return list(main.block_specializations[main.opset].operations)


def pixel_scale_problems(
    ops: list[Any], contract: InputContract, details: dict[str, Any]
) -> list[str]:
    """The image input's bytes 0-255 must be scaled to the contract's value range (the model
    normalises): multiplied by (high - low) / 255, plus low."""
    low, high = contract.value_range
    expected_scale = (high - low) / 255
    producers = {out.name: op for op in ops for out in op.outputs}
    consumers: dict[str, list[Any]] = {}
    for op in ops:
        for argument in op.inputs.values():
            for binding in argument.arguments:
                if binding.name:
                    consumers.setdefault(binding.name, []).append(op)

    def value(binding: Any) -> list[Any]:
        held = producers[binding.name].attributes["val"] if binding.name else binding.value
        return _immediate(held.immediateValue)

    problems = []
    scale_ops = [op for op in consumers.get(INPUT_NAME, []) if op.type == "mul"]
    scale = value(scale_ops[0].inputs["y"].arguments[0]) if scale_ops else None
    details["scale"] = scale[0] if scale else None
    if not scale or abs(scale[0] - expected_scale) > 1e-7:
        problems.append(
            f"image input is scaled by {details['scale']}, not {expected_scale:.8g} "
            f"(bytes to the value range {[low, high]})"
        )
    bias = [0.0]
    if scale_ops:
        added = [op for op in consumers.get(scale_ops[0].outputs[0].name, []) if op.type == "add"]
        if added:
            bias = value(added[0].inputs["y"].arguments[0])
    details["bias"] = bias
    if any(abs(b - low) > 1e-7 for b in bias):
        problems.append(f"image input has bias {bias}, not {low} (the value range's low end)")
    return problems


def _list_values(classify: Any) -> list[Any]:
    return list(classify.inputs["classes"].arguments[0].value.immediateValue.list.values)


def _immediate(immediate: Any) -> list[Any]:
    tensor = immediate.tensor
    kind = tensor.WhichOneof("value")
    values = list(getattr(tensor, kind).values) if kind else []
    return [v.decode() if isinstance(v, bytes) else v for v in values]


def zip_folder(folder: Path, destination: Path) -> None:
    """Zip folder so that it unzips as folder.name/… (what Xcode opens)."""
    with zipfile.ZipFile(destination, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                file = Path(root) / name
                archive.write(file, arcname=str(file.relative_to(folder.parent)))


def safe_extract(archive: zipfile.ZipFile, destination: Path) -> None:
    for member in archive.namelist():
        target = (destination / member).resolve()
        if not target.is_relative_to(destination.resolve()):
            raise ValueError(f"zip member escapes the folder: {member}")
    archive.extractall(destination)  # members checked above
