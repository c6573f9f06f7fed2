"""Core ML: the spec read back from the shipped zip has the image input, scale and labels."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import coremltools as ct
import pytest

from tests.worker.export.conftest import IMAGE_SIZE, LABELS, MODEL_VERSION, ExportRun, toy_context
from worker.export import coreml
from worker.export.manifest import input_contract
from worker.export.wrapper import wrap


@pytest.fixture(scope="module")
def spec(exported: ExportRun, tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("coreml")
    with zipfile.ZipFile(exported.out_dir / "model.mlpackage.zip") as archive:
        assert all(name.startswith("model.mlpackage/") for name in archive.namelist())
        archive.extractall(folder)
    return ct.utils.load_spec(str(folder / "model.mlpackage"))


def main_ops(spec: Any) -> list[Any]:
    main = spec.mlProgram.functions["main"]
    return list(main.block_specializations[main.opset].operations)


def test_an_ml_program_for_ios16(spec: Any) -> None:
    assert spec.WhichOneof("Type") == "mlProgram"
    assert spec.specificationVersion == 7  # iOS 16 / macOS 13
    assert spec.mlProgram.functions["main"].opset == "CoreML6"


def test_the_input_is_an_rgb_image_of_image_size(spec: Any) -> None:
    (image,) = spec.description.input
    assert image.name == "image"
    assert image.type.WhichOneof("Type") == "imageType"
    assert (image.type.imageType.width, image.type.imageType.height) == (IMAGE_SIZE, IMAGE_SIZE)
    assert image.type.imageType.colorSpace == image.type.imageType.RGB


def test_pixels_are_scaled_by_1_over_255_with_no_bias(spec: Any) -> None:
    ops = main_ops(spec)
    consts = {op.outputs[0].name: op for op in ops if op.type == "const"}
    (scale,) = [
        op for op in ops if op.type == "mul" and op.inputs["x"].arguments[0].name == "image"
    ]
    factor = consts[scale.inputs["y"].arguments[0].name].attributes["val"]
    assert factor.immediateValue.tensor.floats.values[0] == pytest.approx(1 / 255, abs=1e-9)
    scaled = scale.outputs[0].name
    assert not [op for op in ops if op.type == "add" and op.inputs["x"].arguments[0].name == scaled]


def test_a_classifier_with_the_labels_in_output_order(spec: Any) -> None:
    description = spec.description
    assert description.predictedFeatureName == "classLabel"
    assert description.predictedProbabilitiesName == "classLabel_probs"
    assert [o.name for o in description.output] == ["classLabel", "classLabel_probs"]
    (classify,) = [op for op in main_ops(spec) if op.type == "classify"]
    values = classify.inputs["classes"].arguments[0].value.immediateValue.list.values
    assert [v.immediateValue.tensor.strings.values[0] for v in values] == LABELS


def test_metadata_names_the_version_and_the_input_contract(spec: Any) -> None:
    metadata = spec.description.metadata
    assert metadata.versionString == MODEL_VERSION
    assert json.loads(metadata.userDefined["labels"]) == LABELS
    assert metadata.userDefined["image_size"] == str(IMAGE_SIZE)
    assert "inside" in metadata.userDefined["input"]


def test_the_zip_unpacks_to_one_mlpackage_folder(exported: ExportRun) -> None:
    with zipfile.ZipFile(exported.out_dir / "model.mlpackage.zip") as archive:
        tops = {Path(name).parts[0] for name in archive.namelist()}
        assert tops == {"model.mlpackage"}
        assert "model.mlpackage/Manifest.json" in archive.namelist()


def described_otherwise(**changes: Any) -> Any:
    """The manifest's input contract at IMAGE_SIZE with some host steps (or fields) changed."""
    contract = input_contract(IMAGE_SIZE)
    host = {**contract.host_preprocessing, **changes.pop("host", {})}
    return contract.model_copy(update={"host_preprocessing": host, **changes})


@pytest.mark.parametrize(
    ("contract", "problem"),
    [
        (described_otherwise(), None),
        # The usual ImageNet recipe (short side to 256/224 of the crop, then crop) is not what
        # Vision's centerCrop does with an input of the crop's size.
        (described_otherwise(host={"resize_short_side": 55}), "Vision's centerCrop does not do"),
        (
            described_otherwise(host={"resize_short_side": 40, "center_crop": [40, 40]}),
            "image input is 48x48, the center_crop is 40x40",
        ),
        (described_otherwise(host={"color_space": "BGR"}), "colour space is RGB, the description"),
        (described_otherwise(colour_order="BGR"), "colour space is RGB, the description's BGR"),
        (described_otherwise(value_range=(0.0, 255.0)), "not 1 (bytes to the value range"),
        (described_otherwise(value_range=(0.5, 1.5)), "bias [0.0], not 0.5"),
        (described_otherwise(host={"apple_vision_crop_and_scale": "scaleFit"}), "'scaleFit'"),
    ],
)
def test_the_image_input_is_read_against_the_hosts_description(
    classifier: Any,
    check_images: Any,
    spec: Any,
    tmp_path: Path,
    contract: Any,
    problem: str | None,
) -> None:
    ctx = toy_context(wrap(classifier), check_images, tmp_path)
    problems, details = coreml.inspect(ctx, spec, contract)
    assert details["input"] == {"width": IMAGE_SIZE, "height": IMAGE_SIZE, "color_space": "RGB"}
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0], problems


def test_the_image_input_is_built_from_the_description_it_is_checked_against() -> None:
    """convert takes the input contract: another size, channel order and value range give
    a file whose image input and pixel scaling the check reads as that contract's."""
    import torch

    contract = described_otherwise(
        colour_order="BGR",
        value_range=(-1.0, 1.0),
        host={"resize_short_side": 40, "center_crop": [40, 40], "color_space": "BGR"},
    )
    traced = torch.jit.trace(torch.nn.Conv2d(3, 2, 3).eval(), torch.zeros(1, 3, 40, 40))
    spec = coreml.convert(traced, contract, outputs=[ct.TensorType(name="out")]).get_spec()
    (image,) = spec.description.input
    details: dict[str, Any] = {}
    assert coreml.image_input_problems(image.type.imageType, contract, details) == []
    assert details["input"] == {"width": 40, "height": 40, "color_space": "BGR"}
    ops = coreml.program_ops(spec, details)
    assert coreml.pixel_scale_problems(ops, contract, details) == []
    assert details["scale"] == pytest.approx(2 / 255) and details["bias"] == [-1.0] * 3
    assert coreml.describe_image_input(contract) == (
        "image (BGR), scale 0.0078431373, bias [-1.0, -1.0, -1.0]"
    )
    # The default description (48 px, RGB, [0, 1]) finds the file wrong on each count.
    problems = coreml.image_input_problems(image.type.imageType, input_contract(IMAGE_SIZE), {})
    problems += coreml.pixel_scale_problems(ops, input_contract(IMAGE_SIZE), {})
    assert len(problems) == 4, problems
