"""Small synthetic object-detection datasets that a tiny detector learns in seconds.

Each image is dark textured noise with 0–2 bright filled rectangles; a class is a shape and
a colour ("square": a yellow square, "bar": a wide flat cyan bar, …), 30–60 % of the image
side. Every 6th image holds none (a background image). Boxes are whole pixels, so COCO,
YOLO and Pascal VOC describe exactly the same boxes. Deterministic for a seed.

Used by the detection tests and by hand: `python -m dev.sample_detection OUT --format coco`.
"""

from __future__ import annotations

import argparse
import json
import random
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from PIL import Image, ImageDraw

if TYPE_CHECKING:  # the parser imports torch (through worker.engine); writing needs none
    from worker.detection.annotations import DetectionFormat

Box = tuple[float, float, float, float]
SampleSplit = Literal["train", "val"]


@dataclass(frozen=True)
class ClassStyle:
    aspect: float  # width / height
    colour: tuple[int, int, int]


# Shape and colour both tell the classes apart; more classes than styles are refused.
STYLES = (
    ClassStyle(1.0, (250, 220, 60)),  # square, yellow
    ClassStyle(3.0, (60, 220, 250)),  # wide bar, cyan
    ClassStyle(1 / 3, (250, 80, 200)),  # tall column, magenta
    ClassStyle(1.0, (90, 250, 90)),  # square, green
    ClassStyle(2.0, (250, 130, 60)),  # wide box, orange
    ClassStyle(0.5, (210, 210, 255)),  # tall box, pale blue
)
BACKGROUND_EVERY = 6  # image index % 6 == 5 holds no object
VAL_EVERY = 4  # with splits, image index % 4 == 3 goes to val
LONG_SIDE = (0.3, 0.6)  # an object's long side, as a fraction of the image side
BACKGROUND_MAX = 50  # noise level of the dark background (0–255)
COLOUR_JITTER = 20
PLACEMENT_TRIES = 50


@dataclass(frozen=True)
class SampleImage:
    """Ground truth of one written image: boxes x1, y1, x2, y2 in whole pixels, 0-based labels."""

    name: str  # file name, e.g. img_003.png
    boxes: list[Box]
    labels: list[int]
    split: SampleSplit | None = None  # the folder it was written to with splits=True


def render_sample(
    index: int, size: int, class_names: Sequence[str], seed: int = 0
) -> tuple[Image.Image, SampleImage]:
    """The index-th image of a dataset and its ground truth; the same arguments, the same image."""
    if not 1 <= len(class_names) <= len(STYLES):
        raise ValueError(f"class_names must name 1 to {len(STYLES)} classes (got {class_names})")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels (got {size})")
    rng = random.Random(f"{seed}/{index}/{size}")  # noqa: S311 - test pictures, not secrets
    image = _background(rng, size)
    draw = ImageDraw.Draw(image)
    count = 0 if index % BACKGROUND_EVERY == BACKGROUND_EVERY - 1 else rng.choice((1, 2))
    boxes: list[Box] = []
    labels: list[int] = []
    for number in range(count):
        # The first object cycles through the classes so that every class appears.
        label = index % len(class_names) if number == 0 else rng.randrange(len(class_names))
        box = _place(rng, size, STYLES[label].aspect, boxes)
        if box is None:
            continue
        colour = tuple(
            max(0, min(255, c + rng.randint(-COLOUR_JITTER, COLOUR_JITTER)))
            for c in STYLES[label].colour
        )
        x1, y1, x2, y2 = box
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=colour)  # inclusive corners
        boxes.append((float(x1), float(y1), float(x2), float(y2)))
        labels.append(label)
    return image, SampleImage(f"img_{index:03d}.png", boxes, labels)


def write_detection_dataset(
    root: Path,
    fmt: DetectionFormat,
    images: int = 24,
    size: int = 64,
    class_names: Sequence[str] = ("square", "bar"),
    seed: int = 0,
    splits: bool = False,
) -> list[SampleImage]:
    """Write a dataset in one format (with train/ + val/ folders when splits); its ground truth."""
    if images < (2 if splits else 1):
        raise ValueError(f"images must be at least {2 if splits else 1} (got {images})")
    names = tuple(class_names)
    rendered = [render_sample(index, size, names, seed) for index in range(images)]
    groups: dict[SampleSplit | None, list[tuple[Image.Image, SampleImage]]] = {}
    for index, (image, truth) in enumerate(rendered):
        split = _split_of(index, images) if splits else None
        groups.setdefault(split, []).append((image, replace(truth, split=split)))
    root.mkdir(parents=True, exist_ok=True)
    if fmt == "yolo":
        _write_names(root / "data.yaml", names)
    for split, group in groups.items():
        folder = root / split if split else root
        WRITERS[fmt](folder, group, names, size)
    return [truth for group in groups.values() for _, truth in group]


def _split_of(index: int, images: int) -> SampleSplit:
    """Every VAL_EVERY-th image validates; a set smaller than that validates on its last one."""
    last_of_small = images < VAL_EVERY and index == images - 1
    return "val" if index % VAL_EVERY == VAL_EVERY - 1 or last_of_small else "train"


def _background(rng: random.Random, size: int) -> Image.Image:
    noise = Image.frombytes("RGB", (size, size), rng.randbytes(size * size * 3))
    image = noise.point(lambda value: value * BACKGROUND_MAX // 255)
    draw = ImageDraw.Draw(image)
    for _ in range(4):  # dim strokes: texture that is never an object
        points = [rng.randrange(size) for _ in range(4)]
        shade = tuple(rng.randint(40, 90) for _ in range(3))
        draw.line(points, fill=shade, width=rng.randint(1, 2))
    return image


def _place(
    rng: random.Random, size: int, aspect: float, taken: list[Box]
) -> tuple[int, int, int, int] | None:
    """A whole-pixel box of that aspect that overlaps no taken box, or None when none fits."""
    for _ in range(PLACEMENT_TRIES):
        long_side = rng.uniform(*LONG_SIDE) * size
        width = round(long_side if aspect >= 1 else long_side * aspect)
        height = round(long_side / aspect if aspect >= 1 else long_side)
        width, height = max(3, width), max(3, height)
        x1, y1 = rng.randint(0, size - width), rng.randint(0, size - height)
        box = (x1, y1, x1 + width, y1 + height)
        if not any(_overlap(box, other) for other in taken):
            return box
    return None


def _overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    # One pixel of gap keeps neighbouring objects apart to the eye as well.
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _write_coco(
    folder: Path, group: list[tuple[Image.Image, SampleImage]], names: tuple[str, ...], size: int
) -> None:
    """annotations.json beside the images; category ids start at 1, as COCO's own do."""
    folder.mkdir(parents=True, exist_ok=True)
    images: list[dict[str, object]] = []
    annotations: list[dict[str, object]] = []
    for image_id, (image, truth) in enumerate(group, start=1):
        image.save(folder / truth.name)
        images.append({"id": image_id, "file_name": truth.name, "width": size, "height": size})
        for (x1, y1, x2, y2), label in zip(truth.boxes, truth.labels, strict=True):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": label + 1,
                    "bbox": [int(x1), int(y1), int(x2 - x1), int(y2 - y1)],
                    "area": int((x2 - x1) * (y2 - y1)),
                    "iscrowd": 0,
                }
            )
    categories = [
        {"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(names)
    ]
    document = {"images": images, "annotations": annotations, "categories": categories}
    (folder / "annotations.json").write_text(json.dumps(document, indent=1))


def _write_yolo(
    folder: Path, group: list[tuple[Image.Image, SampleImage]], names: tuple[str, ...], size: int
) -> None:
    """images/ + labels/ (an empty label file for a background image); data.yaml is the root's."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    for image, truth in group:
        image.save(folder / "images" / truth.name)
        lines = [
            # repr-exact fractions: parsed back, they give the whole-pixel boxes to ~1e-12 px.
            f"{label} {(x1 + x2) / 2 / size!r} {(y1 + y2) / 2 / size!r} "
            f"{(x2 - x1) / size!r} {(y2 - y1) / size!r}"
            for (x1, y1, x2, y2), label in zip(truth.boxes, truth.labels, strict=True)
        ]
        label_file = (folder / "labels" / truth.name).with_suffix(".txt")
        label_file.write_text("".join(f"{line}\n" for line in lines))


def _write_names(path: Path, names: tuple[str, ...]) -> None:
    lines = [f"nc: {len(names)}", "names:", *(f"  - {json.dumps(name)}" for name in names)]
    path.write_text("\n".join(lines) + "\n")


def _write_voc(
    folder: Path, group: list[tuple[Image.Image, SampleImage]], names: tuple[str, ...], size: int
) -> None:
    """Annotations/*.xml + JPEGImages/ (PNG files; the folder name is historical), 1-based."""
    (folder / "Annotations").mkdir(parents=True, exist_ok=True)
    (folder / "JPEGImages").mkdir(parents=True, exist_ok=True)
    for image, truth in group:
        image.save(folder / "JPEGImages" / truth.name)
        annotation = ET.Element("annotation")
        ET.SubElement(annotation, "folder").text = "JPEGImages"
        ET.SubElement(annotation, "filename").text = truth.name
        size_element = ET.SubElement(annotation, "size")
        for tag, value in (("width", size), ("height", size), ("depth", 3)):
            ET.SubElement(size_element, tag).text = str(value)
        for (x1, y1, x2, y2), label in zip(truth.boxes, truth.labels, strict=True):
            element = ET.SubElement(annotation, "object")
            ET.SubElement(element, "name").text = names[label]
            ET.SubElement(element, "difficult").text = "0"
            bndbox = ET.SubElement(element, "bndbox")
            # VOC counts pixels from 1, both ends included: x1 = xmin − 1, x2 = xmax.
            corners = (x1 + 1, y1 + 1, x2, y2)
            for tag, corner in zip(("xmin", "ymin", "xmax", "ymax"), corners, strict=True):
                ET.SubElement(bndbox, tag).text = str(int(corner))
        ET.indent(annotation)
        xml_path = (folder / "Annotations" / truth.name).with_suffix(".xml")
        ET.ElementTree(annotation).write(xml_path, encoding="utf-8", xml_declaration=True)


WRITERS = {"coco": _write_coco, "yolo": _write_yolo, "voc": _write_voc}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m dev.sample_detection", description=__doc__.splitlines()[0]
    )
    parser.add_argument("out", type=Path, help="folder to write the dataset into")
    parser.add_argument("--format", choices=sorted(WRITERS), default="coco")
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--classes", default="square,bar", help="comma-separated class names")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--splits", action="store_true", help="write train/ and val/ folders")
    args = parser.parse_args(argv)
    truth = write_detection_dataset(
        args.out,
        args.format,
        images=args.images,
        size=args.size,
        class_names=[name.strip() for name in args.classes.split(",") if name.strip()],
        seed=args.seed,
        splits=args.splits,
    )
    boxes = sum(len(sample.boxes) for sample in truth)
    background = sum(1 for sample in truth if not sample.boxes)
    print(
        f"wrote {len(truth)} images ({boxes} boxes, {background} background) "
        f"as {args.format} to {args.out}"
    )


if __name__ == "__main__":
    main()
