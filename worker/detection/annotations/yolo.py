"""YOLO text labels: images/ + labels/, one `class cx cy w h` line per box, as fractions.

labels/<path>.txt belongs to images/<path>.<ext>; an image without one, or with an empty
one, is a background image. Class names come from data.yaml (`names:` as a list or an
{id: name} map) or classes.txt (one per line), looked for in the dataset root, then in each
set's folder and its labels/ folder. A line of more than 5 values with an odd count is a
segmentation polygon (class x1 y1 x2 y2 …); its box is the polygon's bounds. A class id
written as an integral float ("3.0", as some exporters do) is accepted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from worker.detection.annotations.common import (
    DatasetError,
    Layout,
    ParsedSets,
    RawBox,
    RawImage,
    child_file,
    image_files,
    number,
    relative,
    require,
)

NAMES_YAML = ("data.yaml", "data.yml")
NAMES_TXT = "classes.txt"
# data.yaml holds class names and paths: a few KiB. Bigger is not a names file.
MAX_NAMES_BYTES = 1 << 20


def parse(layout: Layout) -> ParsedSets:
    class_names, names_file = _class_names(layout)
    parsed = ParsedSets(class_names, [])
    for part in layout.sets:
        images = part.image_folders[0]
        for image in image_files(images):
            label = part.annotations.joinpath(*image.relative_to(images).parts).with_suffix(".txt")
            boxes = _read_labels(layout.root, label, class_names, names_file)
            source = relative(label if label.is_file() else image, layout.root)
            parsed.images.append(RawImage(image, part.split, source, boxes, normalised=True))
    return parsed


def _class_names(layout: Layout) -> tuple[tuple[str, ...], str]:
    """The class names and the file they came from (relative to root)."""
    places = [layout.root]
    for part in layout.sets:
        # A set's folder is the one holding its images/ and labels/ (Ultralytics: the root).
        folder = part.annotations.parent
        if folder.name.lower() == "labels":
            folder = folder.parent
        places += [folder, part.annotations]
    found: dict[str, tuple[str, ...]] = {}
    for place in dict.fromkeys(places):
        path = child_file(place, *NAMES_YAML) or child_file(place, NAMES_TXT)
        if path is None:
            continue
        found[relative(path, layout.root)] = _read_names(layout.root, path)
        if place == layout.root:
            break  # one data.yaml at the root names the classes of every split
    if not found:
        raise DatasetError(
            f"YOLO labels need class names: add data.yaml with 'names:' or {NAMES_TXT} "
            "(one name per line) beside images/ and labels/"
        )
    (first, names), *others = found.items()
    for other, other_names in others:
        require(
            other_names == names,
            f"{first} and {other} name different classes; the splits must share one class list",
        )
    require(len(names) > 0, f"{first} lists no class names")
    return names, first


def _read_names(root: Path, path: Path) -> tuple[str, ...]:
    name = relative(path, root)
    size = path.stat().st_size
    require(
        size <= MAX_NAMES_BYTES, f"{name} is {size} bytes; class names fit in {MAX_NAMES_BYTES}"
    )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DatasetError(f"{name} is not UTF-8 text ({error.reason})") from None
    if path.suffix.lower() == ".txt":
        return _unique(name, tuple(line.strip() for line in text.splitlines() if line.strip()))
    try:
        doc: Any = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as error:
        raise DatasetError(f"{name} is not valid YAML: {_yaml_problem(error)}") from None
    require(isinstance(doc, dict) and "names" in doc, f"{name} has no 'names:' list")
    raw = doc["names"]
    if isinstance(raw, dict):
        ids = sorted(raw, key=str)
        require(
            set(ids) == set(range(len(raw))),
            f"{name}: 'names' ids must be 0 to {len(raw) - 1} (got {', '.join(map(str, ids))})",
        )
        values = [raw[i] for i in range(len(raw))]
    else:
        require(isinstance(raw, list), f"{name}: 'names' must be a list or an {{id: name}} map")
        values = list(raw)
    # Scalars only: a nested list or map would become its Python text as a class name.
    require(
        all(isinstance(value, str | int) and not isinstance(value, bool) for value in values),
        f"{name}: every class name in 'names' must be text",
    )
    names = tuple(str(value).strip() for value in values)
    count = doc.get("nc")
    require(
        count is None or count == len(names),
        f"{name}: nc is {count} but 'names' lists {len(names)} classes",
    )
    require(all(names), f"{name}: 'names' has an empty name")
    return _unique(name, names)


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader without anchors' aliases: a few lines of nested aliases expand to billions
    of nodes (a "billion laughs"), and class names never need them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed here", event.start_mark
            )
        return super().compose_node(parent, index)


def _unique(file_name: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """Two ids with one name would be one class in the app and two in training."""
    seen: set[str] = set()
    for class_name in names:
        require(class_name not in seen, f"{file_name} names class '{class_name}' twice")
        seen.add(class_name)
    return names


def _yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    return f"{problem} at line {mark.line + 1} column {mark.column + 1}" if mark else problem


def _read_labels(
    root: Path, path: Path, class_names: tuple[str, ...], names_file: str
) -> tuple[RawBox, ...]:
    if not path.is_file():
        return ()
    name = relative(path, root)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DatasetError(f"{name} is not UTF-8 text ({error.reason})") from None
    boxes: list[RawBox] = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{name} line {line_number}"
        if len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
            raise DatasetError(
                f"{where}: expected 'class cx cy w h' (5 values) or a polygon "
                f"'class x1 y1 x2 y2 …', got {len(fields)} values"
            )
        label = _class_id(fields[0])
        if label is None or not 0 <= label < len(class_names):
            raise DatasetError(
                f"{where}: class id {fields[0]!r} is not one of the {len(class_names)} "
                f"classes in {names_file} (0 to {len(class_names) - 1})"
            )
        values = [number(value) for value in fields[1:]]
        coords = [value for value in values if value is not None]
        if len(coords) != len(values):
            bad = next(f for f, v in zip(fields[1:], values, strict=True) if v is None)
            raise DatasetError(f"{where}: {bad!r} is not a number")
        if len(coords) == 4:
            cx, cy, w, h = coords
            box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        else:
            xs, ys = coords[0::2], coords[1::2]
            box = (min(xs), min(ys), max(xs), max(ys))
        boxes.append(RawBox(box, label, where))
    return tuple(boxes)


def _class_id(text: str) -> int | None:
    value = number(text)
    return int(value) if value is not None and value.is_integer() else None
