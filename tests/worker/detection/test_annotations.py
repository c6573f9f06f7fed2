"""Detection dataset parsing (worker.detection.annotations) on sets from dev.sample_detection."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from dev.sample_detection import SampleImage, write_detection_dataset
from worker.detection.annotations import (
    DatasetError,
    DetectionDataset,
    DetectionFormat,
    detect_format,
    load_detection_dataset,
)

FORMATS: tuple[DetectionFormat, ...] = ("coco", "yolo", "voc")
NAMES = ("square", "bar")


def _all(dataset: DetectionDataset) -> dict[str, Any]:
    return {image.path.name: image for image in dataset.train + dataset.val}


def _read_coco(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def _write_coco(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document))


def _first_annotated(truth: list[SampleImage]) -> SampleImage:
    return next(sample for sample in truth if sample.boxes)


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_parses_to_the_writers_boxes_and_labels(
    tmp_path: Path, fmt: DetectionFormat
) -> None:
    truth = write_detection_dataset(tmp_path, fmt, images=12, size=64)
    dataset = load_detection_dataset(tmp_path)
    assert dataset.format == fmt
    assert sorted(dataset.class_names) == sorted(NAMES)
    images = _all(dataset)
    assert sorted(images) == sorted(sample.name for sample in truth)
    for sample in truth:
        image = images[sample.name]
        assert (image.width, image.height) == (64, 64)
        assert [dataset.class_names[label] for label in image.labels] == [
            NAMES[label] for label in sample.labels
        ]
        assert len(image.boxes) == len(sample.boxes)
        for got, expected in zip(image.boxes, sample.boxes, strict=True):
            assert got == pytest.approx(expected, abs=1e-6)
    assert dataset.counts.boxes == sum(len(sample.boxes) for sample in truth)
    assert dataset.counts.background_images == sum(1 for sample in truth if not sample.boxes) > 0
    assert dataset.counts.clipped_boxes == dataset.counts.dropped_boxes == 0
    assert dataset.counts.problems == ()


def test_the_three_formats_agree_exactly(tmp_path: Path) -> None:
    parsed = {}
    for fmt in FORMATS:
        write_detection_dataset(tmp_path / fmt, fmt, images=12, class_names=("a", "b", "c"))
        dataset = load_detection_dataset(tmp_path / fmt)
        parsed[fmt] = {
            name: (image.boxes, [dataset.class_names[label] for label in image.labels])
            for name, image in _all(dataset).items()
        }
    assert parsed["coco"] == parsed["voc"]
    for name, (boxes, labels) in parsed["coco"].items():
        yolo_boxes, yolo_labels = parsed["yolo"][name]
        assert yolo_labels == labels
        assert [pytest.approx(box, abs=1e-6) for box in boxes] == list(yolo_boxes)


def test_voc_one_based_pixels_become_zero_based_edges(tmp_path: Path) -> None:
    write_detection_dataset(tmp_path, "voc", images=2, size=64)
    xml = tmp_path / "Annotations" / "img_000.xml"
    text = xml.read_text()
    start, end = text.index("<bndbox>"), text.index("</bndbox>") + len("</bndbox>")
    whole = "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>64</xmax><ymax>64</ymax></bndbox>"
    xml.write_text(text[:start] + whole + text[end:])
    dataset = load_detection_dataset(tmp_path)
    assert _all(dataset)["img_000.png"].boxes[0] == (0.0, 0.0, 64.0, 64.0)
    assert dataset.counts.clipped_boxes == 0


def test_coco_category_ids_map_to_contiguous_indices_in_id_order(tmp_path: Path) -> None:
    truth = write_detection_dataset(tmp_path, "coco", images=6, class_names=("a", "b", "c"))
    path = tmp_path / "annotations.json"
    document = _read_coco(path)
    new_ids = {1: 7, 2: 1, 3: 3}  # a → 7, b → 1, c → 3: id order is b, c, a
    document["categories"] = [
        {"id": new_ids[c["id"]], "name": c["name"]} for c in reversed(document["categories"])
    ]
    for annotation in document["annotations"]:
        annotation["category_id"] = new_ids[annotation["category_id"]]
    _write_coco(path, document)
    dataset = load_detection_dataset(tmp_path)
    assert dataset.class_names == ("b", "c", "a")
    images = _all(dataset)
    for sample in truth:
        got = [dataset.class_names[label] for label in images[sample.name].labels]
        assert got == [("a", "b", "c")[label] for label in sample.labels]


def test_roboflow_unused_parent_category_is_not_a_class(tmp_path: Path) -> None:
    write_detection_dataset(tmp_path, "coco", images=6)
    path = tmp_path / "annotations.json"
    document = _read_coco(path)
    for category in document["categories"]:
        category["supercategory"] = "shapes-xyz"
    document["categories"].insert(0, {"id": 0, "name": "shapes-xyz", "supercategory": "none"})
    _write_coco(path, document)
    assert load_detection_dataset(tmp_path).class_names == NAMES


@pytest.mark.parametrize("fmt", FORMATS)
def test_train_and_val_folders_keep_their_split(tmp_path: Path, fmt: DetectionFormat) -> None:
    truth = write_detection_dataset(tmp_path, fmt, images=12, splits=True)
    assert detect_format(tmp_path) == fmt
    dataset = load_detection_dataset(tmp_path, seed=5)
    expected_val = sorted(sample.name for sample in truth if sample.split == "val")
    assert sorted(image.path.name for image in dataset.val) == expected_val
    assert all(image.split == "val" and "val" in image.path.parts for image in dataset.val)
    assert all(image.split == "train" for image in dataset.train)
    assert len(dataset.train) + len(dataset.val) == 12


def test_a_valid_folder_is_the_val_split(tmp_path: Path) -> None:
    write_detection_dataset(tmp_path, "coco", images=12, splits=True)
    (tmp_path / "val").rename(tmp_path / "valid")
    (tmp_path / "valid" / "annotations.json").rename(tmp_path / "valid" / "_annotations.coco.json")
    dataset = load_detection_dataset(tmp_path)
    assert {image.path.parent.name for image in dataset.val} == {"valid"}
    assert len(dataset.val) == 3


def test_val_and_valid_together_are_refused(tmp_path: Path) -> None:
    write_detection_dataset(tmp_path, "coco", images=8, splits=True)
    shutil.copytree(tmp_path / "val", tmp_path / "valid")
    with pytest.raises(DatasetError, match="both a 'val' and a 'valid'"):
        load_detection_dataset(tmp_path)


def test_ultralytics_images_train_val_layout(tmp_path: Path) -> None:
    source = tmp_path / "roboflow"
    truth = write_detection_dataset(source, "yolo", images=12, splits=True)
    root = tmp_path / "ultralytics"
    for split in ("train", "val"):
        for kind in ("images", "labels"):
            shutil.copytree(source / split / kind, root / kind / split)
    shutil.copy(source / "data.yaml", root / "data.yaml")
    dataset = load_detection_dataset(root)
    assert dataset.format == "yolo"
    assert sorted(image.path.name for image in dataset.val) == sorted(
        sample.name for sample in truth if sample.split == "val"
    )
    assert {image.path.parent for image in dataset.train} == {root / "images" / "train"}
    assert dataset.counts.boxes == sum(len(sample.boxes) for sample in truth)


def test_coco_instances_files_for_train_and_val(tmp_path: Path) -> None:
    source = tmp_path / "source"
    write_detection_dataset(source, "coco", images=12, splits=True)
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    for split in ("train", "val"):
        shutil.copytree(source / split, root / f"{split}2017")
        (root / f"{split}2017" / "annotations.json").rename(
            root / "annotations" / f"instances_{split}2017.json"
        )
    dataset = load_detection_dataset(root)
    assert len(dataset.train) == 9 and len(dataset.val) == 3
    assert {image.path.parent.name for image in dataset.val} == {"val2017"}


def test_coco_splits_must_agree_on_categories(tmp_path: Path) -> None:
    write_detection_dataset(tmp_path, "coco", images=8, splits=True)
    path = tmp_path / "val" / "annotations.json"
    document = _read_coco(path)
    document["categories"][1]["name"] = "rectangle"
    _write_coco(path, document)
    with pytest.raises(DatasetError) as error:
        load_detection_dataset(tmp_path)
    assert "train/annotations.json" in str(error.value)
    assert "val/annotations.json" in str(error.value)
    assert "'rectangle'" in str(error.value)


def test_single_set_split_is_deterministic_per_seed(tmp_path: Path) -> None:
    write_detection_dataset(tmp_path, "yolo", images=24)
    first, again = (
        load_detection_dataset(tmp_path, seed=1),
        load_detection_dataset(tmp_path, seed=1),
    )
    other = load_detection_dataset(tmp_path, seed=2)
    assert first == again
    assert [image.path for image in first.val] != [image.path for image in other.val]
    assert len(first.val) == round(24 * 0.2) == 5 and len(first.train) == 19
    assert all(image.split is None for image in first.train + first.val)
    assert [image.path for image in first.train] == sorted(image.path for image in first.train)
    assert not {image.path for image in first.train} & {image.path for image in first.val}


def test_a_tiny_set_still_gets_one_train_and_one_val_image(tmp_path: Path) -> None:
    write_detection_dataset(tmp_path, "coco", images=2)
    dataset = load_detection_dataset(tmp_path, val_fraction=0.01)
    assert (len(dataset.train), len(dataset.val)) == (1, 1)
    with pytest.raises(ValueError, match="val_fraction"):
        load_detection_dataset(tmp_path, val_fraction=1.0)


def test_a_box_partly_outside_is_clipped_and_counted(tmp_path: Path) -> None:
    truth = write_detection_dataset(tmp_path, "coco", images=6)
    path = tmp_path / "annotations.json"
    document = _read_coco(path)
    document["annotations"][0]["bbox"] = [50, -10, 30, 20]  # right and top edges overshoot
    _write_coco(path, document)
    dataset = load_detection_dataset(tmp_path)
    assert dataset.counts.clipped_boxes == 1
    assert _all(dataset)[truth[0].name].boxes[0] == (50.0, 0.0, 64.0, 10.0)
    assert any("annotation 1" in note and "clipped" in note for note in dataset.counts.problems)


@pytest.mark.parametrize(
    "line", ["0 0.5 0.5 0 0.2", "1 0.5 0.5 0.3 -0.1", "0 1.5 0.5 0.2 0.2", "0 0.5 -0.5 0.2 0.2"]
)
def test_degenerate_or_outside_yolo_boxes_are_dropped_and_counted(
    tmp_path: Path, line: str
) -> None:
    truth = write_detection_dataset(tmp_path, "yolo", images=6)
    label_file = tmp_path / "labels" / "img_000.txt"
    label_file.write_text(label_file.read_text() + line + "\n")
    dataset = load_detection_dataset(tmp_path)
    assert dataset.counts.dropped_boxes == 1
    assert dataset.counts.boxes == sum(len(sample.boxes) for sample in truth)
    assert len(_all(dataset)["img_000.png"].boxes) == len(truth[0].boxes)
    line_number = len(truth[0].boxes) + 1
    assert any(f"labels/img_000.txt line {line_number}" in n for n in dataset.counts.problems)


def test_coco_crowd_regions_are_dropped_and_noted(tmp_path: Path) -> None:
    truth = write_detection_dataset(tmp_path, "coco", images=6)
    path = tmp_path / "annotations.json"
    document = _read_coco(path)
    document["annotations"][0]["iscrowd"] = 1
    _write_coco(path, document)
    dataset = load_detection_dataset(tmp_path)
    assert dataset.counts.dropped_boxes == 1
    assert dataset.counts.boxes == sum(len(sample.boxes) for sample in truth) - 1
    assert "iscrowd" in dataset.counts.problems[0]


def test_unknown_coco_category_names_file_and_id(tmp_path: Path) -> None:
    write_detection_dataset(tmp_path, "coco", images=6)
    path = tmp_path / "annotations.json"
    document = _read_coco(path)
    document["annotations"][2]["category_id"] = 9
    _write_coco(path, document)
    with pytest.raises(DatasetError, match=r"annotations\.json annotation 3 has category_id 9"):
        load_detection_dataset(tmp_path)


@pytest.mark.parametrize("class_id", ["2", "-1", "1.5", "cat"])
def test_unknown_yolo_class_id_names_file_line_and_id(tmp_path: Path, class_id: str) -> None:
    write_detection_dataset(tmp_path, "yolo", images=6)
    (tmp_path / "labels" / "img_001.txt").write_text(
        f"0 0.5 0.5 0.2 0.2\n{class_id} 0.5 0.5 0.2 0.2\n"
    )
    with pytest.raises(DatasetError) as error:
        load_detection_dataset(tmp_path)
    message = str(error.value)
    assert "labels/img_001.txt line 2" in message and f"'{class_id}'" in message
    assert "data.yaml" in message


def test_an_integral_float_yolo_class_id_is_accepted(tmp_path: Path) -> None:
    write_detection_dataset(tmp_path, "yolo", images=6)
    (tmp_path / "labels" / "img_001.txt").write_text("1.0 0.5 0.5 0.25 0.25\n")
    dataset = load_detection_dataset(tmp_path)
    image = _all(dataset)["img_001.png"]
    assert image.labels == (1,) and image.boxes == ((24.0, 24.0, 40.0, 40.0),)


def test_a_yolo_polygon_line_becomes_its_bounding_box(tmp_path: Path) -> None:
    write_detection_dataset(tmp_path, "yolo", images=6)
    (tmp_path / "labels" / "img_001.txt").write_text("0 0.25 0.5 0.5 0.25 0.75 0.5 0.5 0.75\n")
    image = _all(load_detection_dataset(tmp_path))["img_001.png"]
    assert image.boxes == ((16.0, 16.0, 48.0, 48.0),)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("0 0.5 0.5 0.2\n", "got 4 values"),
        ("0 0.5 0.5 0.2 0.2 0.9\n", "got 6 values"),
        ("0 0.5 half 0.2 0.2\n", "'half' is not a number"),
        ("0 0.5 nan 0.2 0.2\n", "'nan' is not a number"),
    ],
)
def test_malformed_yolo_lines_name_file_and_line(
    tmp_path: Path, content: str, expected: str
) -> None:
    write_detection_dataset(tmp_path, "yolo", images=6)
    (tmp_path / "labels" / "img_002.txt").write_text("\n" + content)
    with pytest.raises(DatasetError, match=r"labels/img_002\.txt line 2") as error:
        load_detection_dataset(tmp_path)
    assert expected in str(error.value)


def test_malformed_json_names_file_and_position(tmp_path: Path) -> None:
    write_detection_dataset(tmp_path, "coco", images=4)
    (tmp_path / "annotations.json").write_text('{\n  "images": [\n    {"id": 1 "file_name": "a"}')
    with pytest.raises(DatasetError) as error:
        load_detection_dataset(tmp_path)
    assert str(error.value) == (
        "annotations.json is not valid JSON: Expecting ',' delimiter at line 3 column 14"
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"annotations": None}, "has no 'annotations' list"),
        ({"categories": [{"id": "one", "name": "square"}]}, "ids must be integers"),
        ({"images": [{"id": 1}]}, "image 1 has no file_name"),
    ],
)
def test_coco_structure_errors_name_the_rule(
    tmp_path: Path, change: dict[str, Any], expected: str
) -> None:
    write_detection_dataset(tmp_path, "coco", images=4)
    path = tmp_path / "annotations.json"
    _write_coco(path, _read_coco(path) | change)
    with pytest.raises(DatasetError, match=r"annotations\.json") as error:
        load_detection_dataset(tmp_path)
    assert expected in str(error.value)


def test_a_bad_coco_bbox_names_the_annotation(tmp_path: Path) -> None:
    write_detection_dataset(tmp_path, "coco", images=4)
    path = tmp_path / "annotations.json"
    document = _read_coco(path)
    document["annotations"][1]["bbox"] = [1, 2, 3]
    _write_coco(path, document)
    with pytest.raises(DatasetError, match=r"annotation 2 has bbox \[1, 2, 3\]"):
        load_detection_dataset(tmp_path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("<annotation>\n<object></annotation>", "is not valid XML: mismatched tag: line 2"),
        ("<annotations><image/></annotations>", "its root element is <annotations>"),
    ],
)
def test_malformed_xml_names_the_file_and_what_is_wrong(
    tmp_path: Path, content: str, expected: str
) -> None:
    write_detection_dataset(tmp_path, "voc", images=4)
    (tmp_path / "Annotations" / "img_001.xml").write_text(content)
    with pytest.raises(DatasetError) as error:
        load_detection_dataset(tmp_path)
    assert str(error.value).startswith("Annotations/img_001.xml ")
    assert expected in str(error.value)


def test_a_voc_object_without_bndbox_names_file_and_object(tmp_path: Path) -> None:
    write_detection_dataset(tmp_path, "voc", images=4)
    (tmp_path / "Annotations" / "img_000.xml").write_text(
        "<annotation><filename>img_000.png</filename>"
        "<object><name>square</name><bndbox><xmin>1</xmin></bndbox></object></annotation>"
    )
    with pytest.raises(DatasetError, match=r"img_000\.xml object 1 \('square'\) needs a <bndbox>"):
        load_detection_dataset(tmp_path)


def test_voc_difficult_objects_are_kept_and_filenames_fall_back_to_the_stem(
    tmp_path: Path,
) -> None:
    truth = write_detection_dataset(tmp_path, "voc", images=6)
    xml = tmp_path / "Annotations" / "img_000.xml"
    text = xml.read_text().replace("<difficult>0</difficult>", "<difficult>1</difficult>")
    xml.write_text(text.replace("<filename>img_000.png", "<filename>img_000.jpg"))
    dataset = load_detection_dataset(tmp_path)
    assert len(_all(dataset)["img_000.png"].boxes) == len(truth[0].boxes) > 0
    assert dataset.counts.missing_images == 0


def test_a_missing_image_is_skipped_counted_and_named(tmp_path: Path) -> None:
    truth = write_detection_dataset(tmp_path, "coco", images=8)
    (tmp_path / truth[1].name).unlink()
    dataset = load_detection_dataset(tmp_path)
    assert dataset.counts.missing_images == 1
    assert dataset.counts.images == 7
    assert truth[1].name not in _all(dataset)
    assert dataset.counts.problems == (
        f"{truth[1].name} does not exist (named in annotations.json); skipped",
    )


def test_an_undecodable_image_is_skipped_and_counted(tmp_path: Path) -> None:
    truth = write_detection_dataset(tmp_path, "voc", images=8)
    (tmp_path / "JPEGImages" / truth[2].name).write_bytes(b"\x89PNG\r\n\x1a\n not really")
    dataset = load_detection_dataset(tmp_path)
    assert dataset.counts.missing_images == 1
    assert truth[2].name not in _all(dataset)
    assert f"JPEGImages/{truth[2].name} cannot be read" in dataset.counts.problems[0]


def test_an_image_with_a_broken_checksum_is_skipped_not_fatal(tmp_path: Path) -> None:
    truth = write_detection_dataset(tmp_path, "voc", images=8)
    path = tmp_path / "JPEGImages" / truth[3].name
    data = bytearray(path.read_bytes())
    data[-13] ^= 0xFF  # the last IDAT chunk's CRC (before IEND): verify() raises SyntaxError
    path.write_bytes(bytes(data))
    dataset = load_detection_dataset(tmp_path)
    assert dataset.counts.missing_images == 1
    assert truth[3].name not in _all(dataset)
    assert "truncated or corrupt" in dataset.counts.problems[0]


def test_coco_sizes_are_checked_against_the_file(tmp_path: Path) -> None:
    write_detection_dataset(tmp_path, "coco", images=4)
    path = tmp_path / "annotations.json"
    document = _read_coco(path)
    document["images"][0]["width"] = 640
    _write_coco(path, document)
    dataset = load_detection_dataset(tmp_path)
    assert _all(dataset)["img_000.png"].width == 64
    assert "640×64 in the annotations but 64×64 in the file" in dataset.counts.problems[0]


def test_yolo_images_without_label_files_or_with_empty_ones_are_background(
    tmp_path: Path,
) -> None:
    truth = write_detection_dataset(tmp_path, "yolo", images=8)
    (tmp_path / "labels" / "img_000.txt").unlink()
    (tmp_path / "labels" / "img_001.txt").write_text("\n")
    dataset = load_detection_dataset(tmp_path)
    images = _all(dataset)
    assert images["img_000.png"].boxes == images["img_001.png"].boxes == ()
    backgrounds = {sample.name for sample in truth if not sample.boxes}
    assert dataset.counts.background_images == len(backgrounds | {"img_000.png", "img_001.png"})
    assert dataset.counts.images == 8


def test_yolo_class_names_from_a_names_map_or_classes_txt(tmp_path: Path) -> None:
    write_detection_dataset(tmp_path, "yolo", images=6)
    (tmp_path / "data.yaml").write_text("names:\n  1: bar\n  0: square\n")
    assert load_detection_dataset(tmp_path).class_names == NAMES
    (tmp_path / "data.yaml").unlink()
    (tmp_path / "labels" / "classes.txt").write_text("square\nbar\n")
    assert load_detection_dataset(tmp_path).class_names == NAMES
    (tmp_path / "labels" / "classes.txt").write_text("square\nsquare\n")
    with pytest.raises(DatasetError, match=r"labels/classes\.txt names class 'square' twice"):
        load_detection_dataset(tmp_path)
    (tmp_path / "labels" / "classes.txt").unlink()
    with pytest.raises(DatasetError, match="need class names"):
        load_detection_dataset(tmp_path)


def test_malformed_data_yaml_names_the_file(tmp_path: Path) -> None:
    write_detection_dataset(tmp_path, "yolo", images=6)
    (tmp_path / "data.yaml").write_text("names: [square, bar\n")
    with pytest.raises(DatasetError, match=r"data\.yaml is not valid YAML: .* at line 2"):
        load_detection_dataset(tmp_path)


BILLION_LAUGHS = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]" for i in range(8)]
    + ["names: *i"]
)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        (BILLION_LAUGHS, "aliases .* are not allowed"),  # 10^9 names if expanded
        ("names: [square, [bar, baz]]", "every class name in 'names' must be text"),
        ("names: {0: square, 1: {nested: map}}", "every class name in 'names' must be text"),
        ("names: [square, null]", "every class name in 'names' must be text"),
    ],
)
def test_a_hostile_data_yaml_fails_fast_naming_the_rule(
    tmp_path: Path, text: str, rule: str
) -> None:
    write_detection_dataset(tmp_path, "yolo", images=6)
    (tmp_path / "data.yaml").write_text(text)
    began = time.monotonic()
    with pytest.raises(DatasetError, match=rule):
        load_detection_dataset(tmp_path)
    assert time.monotonic() - began < 1  # nothing was expanded


def test_a_data_yaml_bigger_than_any_names_file_is_refused(tmp_path: Path) -> None:
    write_detection_dataset(tmp_path, "yolo", images=6)
    (tmp_path / "data.yaml").write_text("names: [square, bar]\n" + "# padding\n" * 200_000)
    with pytest.raises(DatasetError, match=r"data\.yaml is \d+ bytes; class names fit in"):
        load_detection_dataset(tmp_path)


@pytest.mark.parametrize("layout", ["{c}", "train/{c}", "val/{c}"])
def test_a_classification_folder_is_no_detection_format(tmp_path: Path, layout: str) -> None:
    for name in ("cats", "dogs"):
        folder = tmp_path / layout.format(c=name)
        folder.mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(folder / "a.png")
    assert detect_format(tmp_path) is None
    with pytest.raises(DatasetError, match="no detection annotations found"):
        load_detection_dataset(tmp_path)


def test_a_single_wrapping_folder_and_archive_debris_are_looked_through(tmp_path: Path) -> None:
    write_detection_dataset(tmp_path / "export" / "dataset", "coco", images=6)
    (tmp_path / "__MACOSX").mkdir()
    (tmp_path / "export" / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "export" / "dataset" / "._img_000.png").write_bytes(b"AppleDouble")
    assert detect_format(tmp_path) == "coco"
    dataset = load_detection_dataset(tmp_path)
    assert dataset.root == tmp_path / "export" / "dataset"
    assert dataset.counts.images == 6


def test_a_set_without_any_box_is_refused(tmp_path: Path) -> None:
    write_detection_dataset(tmp_path, "yolo", images=6)
    for label_file in (tmp_path / "labels").glob("*.txt"):
        label_file.write_text("")
    with pytest.raises(DatasetError, match="no boxes: a detector needs at least one labelled obj"):
        load_detection_dataset(tmp_path)


def test_a_set_whose_images_are_all_missing_is_refused(tmp_path: Path) -> None:
    write_detection_dataset(tmp_path, "voc", images=3)
    shutil.rmtree(tmp_path / "JPEGImages")
    with pytest.raises(DatasetError, match="no usable images: all 3") as error:
        load_detection_dataset(tmp_path)
    assert "JPEGImages/img_000.png does not exist" in str(error.value)


def test_the_writer_is_deterministic_per_seed(tmp_path: Path) -> None:
    first = write_detection_dataset(tmp_path / "a", "coco", images=6, seed=3)
    again = write_detection_dataset(tmp_path / "b", "coco", images=6, seed=3)
    other = write_detection_dataset(tmp_path / "c", "coco", images=6, seed=4)
    assert first == again != other
    assert (tmp_path / "a" / "img_000.png").read_bytes() == (
        tmp_path / "b" / "img_000.png"
    ).read_bytes()
    assert {label for sample in first for label in sample.labels} == {0, 1}


def test_annotations_without_any_class_are_refused(tmp_path: Path) -> None:
    write_detection_dataset(tmp_path / "coco", "coco", images=4)
    path = tmp_path / "coco" / "annotations.json"
    _write_coco(path, _read_coco(path) | {"categories": [], "annotations": []})
    with pytest.raises(DatasetError, match="name no class"):
        load_detection_dataset(tmp_path / "coco")
    write_detection_dataset(tmp_path / "yolo", "yolo", images=4)
    (tmp_path / "yolo" / "data.yaml").write_text("names: []\n")
    with pytest.raises(DatasetError, match=r"data\.yaml lists no class names"):
        load_detection_dataset(tmp_path / "yolo")
