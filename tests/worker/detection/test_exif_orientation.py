"""A rotated phone photo's boxes turn with its pixels, in every annotation format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared.images import ImageHeader, decode_image, upright_box
from worker.detection.annotations import DetectionFormat, load_detection_dataset
from worker.detection.data import decode

# The photo as stored: 48×32, one red object at x 4–15, y 2–9 (EXIF says how to turn it).
STORED = (48, 32)
OBJECT = (4.0, 2.0, 16.0, 10.0)
SIZE = 32


def photo(path: Path, orientation: int) -> None:
    image = Image.new("RGB", STORED, (0, 0, 0))
    image.paste((255, 0, 0), (4, 2, 16, 10))  # OBJECT
    exif = Image.Exif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", exif=exif.tobytes(), quality=95)


def write(root: Path, fmt: DetectionFormat, orientation: int) -> Path:
    """Two photos (the tagged one and an upright one) annotated for their stored pixels, as
    the formats' tools write them; returns the tagged photo's path."""
    names = ("turned.jpg", "plain.jpg")
    folder = {"coco": root, "yolo": root / "images", "voc": root / "JPEGImages"}[fmt]
    for name, tag in zip(names, (orientation, 1), strict=True):
        photo(folder / name, tag)
    width, height = STORED
    x1, y1, x2, y2 = OBJECT
    if fmt == "coco":
        document = {
            "images": [
                {"id": i + 1, "file_name": name, "width": width, "height": height}
                for i, name in enumerate(names)
            ],
            "annotations": [
                {
                    "id": i + 1,
                    "image_id": i + 1,
                    "category_id": 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                }
                for i in range(2)
            ],
            "categories": [{"id": 1, "name": "object"}],
        }
        (root / "annotations.json").write_text(json.dumps(document))
    elif fmt == "yolo":
        (root / "labels").mkdir()
        line = f"0 {(x1 + x2) / 2 / width} {(y1 + y2) / 2 / height} "
        line += f"{(x2 - x1) / width} {(y2 - y1) / height}\n"
        for name in names:
            (root / "labels" / f"{Path(name).stem}.txt").write_text(line)
        (root / "data.yaml").write_text("names: [object]\n")
    else:
        (root / "Annotations").mkdir()
        for name in names:
            (root / "Annotations" / f"{Path(name).stem}.xml").write_text(
                f"<annotation><filename>{name}</filename><size><width>{width}</width>"
                f"<height>{height}</height><depth>3</depth></size><object><name>object</name>"
                f"<bndbox><xmin>{x1 + 1:g}</xmin><ymin>{y1 + 1:g}</ymin><xmax>{x2:g}</xmax>"
                f"<ymax>{y2:g}</ymax></bndbox></object></annotation>"
            )
    return folder / names[0]


def red_bbox(pixels: np.ndarray) -> tuple[float, float, float, float]:
    rows, cols = np.nonzero(pixels[:, :, 0] > 128)
    return (float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1))


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc"])
def test_the_box_lands_on_the_object_after_decoding(
    tmp_path: Path, fmt: DetectionFormat, orientation: int
) -> None:
    turned = write(tmp_path, fmt, orientation)
    dataset = load_detection_dataset(tmp_path)
    image = next(i for i in dataset.train + dataset.val if i.path == turned)
    upright = decode_image(turned).image
    assert (image.width, image.height) == upright.size
    assert image.boxes == (pytest.approx(red_bbox(np.asarray(upright))),)
    assert dataset.counts.rotated_images == (orientation != 1)
    # What training sees: the upright photo stretched to SIZE², the box scaled with it.
    pixels = decode(turned, SIZE)
    assert pixels is not None
    x1, y1, x2, y2 = image.boxes[0]
    sx, sy = SIZE / image.width, SIZE / image.height
    centre = pixels[:, int((y1 + y2) / 2 * sy), int((x1 + x2) / 2 * sx)].tolist()
    assert centre[0] > 200 and centre[1] < 60


def test_coco_sizes_declared_upright_mean_upright_boxes(tmp_path: Path) -> None:
    turned = write(tmp_path, "coco", 6)
    header = ImageHeader(STORED, 6)
    document = json.loads((tmp_path / "annotations.json").read_text())
    x1, y1, x2, y2 = upright_box(OBJECT, header)
    document["images"][0].update(width=header.upright_size[0], height=header.upright_size[1])
    document["annotations"][0]["bbox"] = [x1, y1, x2 - x1, y2 - y1]
    (tmp_path / "annotations.json").write_text(json.dumps(document))
    dataset = load_detection_dataset(tmp_path)
    image = next(i for i in dataset.train + dataset.val if i.path == turned)
    assert image.boxes == ((x1, y1, x2, y2),)  # taken as given, not turned a second time
    assert dataset.counts.problems == ()
