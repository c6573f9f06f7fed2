"""Pascal VOC: one Annotations/<name>.xml per image, the images in JPEGImages/.

VOC counts pixels from 1 and includes both ends: a box over the first 10 columns is
xmin 1, xmax 10. In our continuous pixel coordinates (0 at the image's left edge) that is
x1 = xmin − 1, x2 = xmax (and likewise for y), so a box over the whole W×H image becomes
(0, 0, W, H). `<difficult>1</difficult>` objects are kept. The XML files define the set: an
image in JPEGImages/ without one is not part of it. class_names are the object names, sorted.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path

from worker.detection.annotations.common import (
    DatasetError,
    Layout,
    ParsedSets,
    RawBox,
    RawImage,
    files_under,
    image_files,
    number,
    relative,
    require,
    resolve_image,
)

CORNERS = ("xmin", "ymin", "xmax", "ymax")


@dataclass(frozen=True)
class _Object:
    name: str
    box: tuple[float, float, float, float]
    where: str


def parse(layout: Layout) -> ParsedSets:
    entries: list[tuple[RawImage, list[_Object]]] = []
    for part in layout.sets:
        by_stem = _images_by_stem(part.image_folders)
        for xml_path in files_under(part.annotations, {".xml"}):
            file_name, size, objects = _read_xml(layout.root, xml_path)
            path = _image_path(file_name, xml_path.stem, part.image_folders, by_stem)
            source = relative(xml_path, layout.root)
            entries.append((RawImage(path, part.split, source, (), declared_size=size), objects))
    class_names = tuple(sorted({obj.name for _, objects in entries for obj in objects}))
    index = {name: i for i, name in enumerate(class_names)}
    images = [
        replace(raw, boxes=tuple(RawBox(obj.box, index[obj.name], obj.where) for obj in objects))
        for raw, objects in entries
    ]
    return ParsedSets(class_names, images)


def _read_xml(root: Path, path: Path) -> tuple[str | None, tuple[int, int] | None, list[_Object]]:
    name = relative(path, root)
    try:
        # expat ≥ 2.4 caps entity expansion and ElementTree never fetches external entities.
        tree = ET.fromstring(path.read_bytes())  # noqa: S314
    except ET.ParseError as error:
        raise DatasetError(f"{name} is not valid XML: {error}") from None
    require(
        tree.tag == "annotation",
        f"{name} is not a Pascal VOC annotation: its root element is <{tree.tag}>, "
        "not <annotation>",
    )
    file_name = (tree.findtext("filename") or "").strip() or None
    width, height = number(tree.findtext("size/width")), number(tree.findtext("size/height"))
    size = (int(width), int(height)) if width and height and width > 0 and height > 0 else None
    objects: list[_Object] = []
    for position, element in enumerate(tree.findall("object"), start=1):
        label = (element.findtext("name") or "").strip()
        where = f"{name} object {position}"
        require(label != "", f"{where} has no <name>")
        values = [number(element.findtext(f"bndbox/{tag}")) for tag in CORNERS]
        corners = [value for value in values if value is not None]
        if len(corners) != len(CORNERS):
            raise DatasetError(
                f"{where} ('{label}') needs a <bndbox> with numeric {', '.join(CORNERS)}"
            )
        xmin, ymin, xmax, ymax = corners
        objects.append(_Object(label, (xmin - 1, ymin - 1, xmax, ymax), f"{where} ('{label}')"))
    return file_name, size, objects


def _images_by_stem(folders: tuple[Path, ...]) -> dict[str, Path]:
    """Image files by stem, first folder and first sorted name winning: the fallback lookup."""
    found: dict[str, Path] = {}
    for folder in folders:
        if folder.is_dir():
            for path in image_files(folder):
                found.setdefault(path.stem, path)
    return found


def _image_path(
    file_name: str | None, xml_stem: str, folders: tuple[Path, ...], by_stem: dict[str, Path]
) -> Path:
    """<filename> in the image folders; else an image named like it or like the XML file."""
    expected = resolve_image(file_name or f"{xml_stem}.jpg", folders)
    if expected.is_file():
        return expected
    for stem in (Path(file_name).stem if file_name else None, xml_stem):
        if stem and stem in by_stem:
            return by_stem[stem]
    return expected
