"""COCO JSON: `images`, `annotations` with `bbox` [x, y, width, height] in pixels, `categories`.

Category ids may be any integers: class_names are the categories' names in id order, and
index i is the i-th of them. Roboflow adds a category named after the dataset as the
`supercategory` of all the others and never uses it; such an unused parent is left out.
Crowd regions (`iscrowd: 1`) are not objects a detector can box one by one: dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from worker.detection.annotations.common import (
    AnnotationSet,
    DatasetError,
    Layout,
    ParsedSets,
    RawBox,
    RawImage,
    number,
    quoted,
    relative,
    require,
    resolve_image,
)


def parse(layout: Layout) -> ParsedSets:
    """Read every set's JSON; the sets' categories must agree by name."""
    documents = [(part, _load(layout.root, part.annotations)) for part in layout.sets]
    categories = [_categories(layout.root, part.annotations, doc) for part, doc in documents]
    first_file = relative(layout.sets[0].annotations, layout.root)
    class_names = tuple(name for _, name in sorted(categories[0].items()))
    for part, other in zip(layout.sets[1:], categories[1:], strict=True):
        if set(other.values()) != set(class_names):
            raise DatasetError(
                f"{first_file} and {relative(part.annotations, layout.root)} must list the same "
                f"categories; {first_file} has {quoted(sorted(class_names))}, "
                f"{relative(part.annotations, layout.root)} has {quoted(sorted(other.values()))}"
            )
    index = {name: i for i, name in enumerate(class_names)}
    parsed = ParsedSets(class_names, [])
    for (part, doc), by_id in zip(documents, categories, strict=True):
        labels = {category_id: index[name] for category_id, name in by_id.items()}
        _read_set(layout.root, part, doc, labels, parsed)
    return parsed


def _load(root: Path, path: Path) -> dict[str, Any]:
    name = relative(path, root)
    try:
        doc = json.loads(path.read_bytes())
    except json.JSONDecodeError as error:
        raise DatasetError(
            f"{name} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except UnicodeDecodeError as error:
        raise DatasetError(f"{name} is not valid JSON: not UTF-8 text ({error.reason})") from None
    require(isinstance(doc, dict), f"{name} must hold a JSON object with images and annotations")
    for key in ("images", "annotations", "categories"):
        require(isinstance(doc.get(key), list), f"{name} has no '{key}' list (COCO format)")
        for position, entry in enumerate(doc[key]):
            require(isinstance(entry, dict), f"{name}: {key}[{position}] is not a JSON object")
    return doc


def _categories(root: Path, path: Path, doc: dict[str, Any]) -> dict[int, str]:
    """Category id → name, in id order, without Roboflow's unused parent category."""
    name = relative(path, root)
    by_id: dict[int, str] = {}
    parents: set[str] = set()
    for category in doc["categories"]:
        category_id, category_name = category.get("id"), category.get("name")
        require(
            isinstance(category_id, int) and not isinstance(category_id, bool),
            f"{name}: category {category_name!r} has id {category_id!r}; ids must be integers",
        )
        require(
            isinstance(category_name, str) and category_name.strip() != "",
            f"{name}: category {category_id} has no name",
        )
        require(category_id not in by_id, f"{name}: category id {category_id} appears twice")
        by_id[category_id] = category_name.strip()
        supercategory = category.get("supercategory")
        if isinstance(supercategory, str) and supercategory.strip() != category_name.strip():
            parents.add(supercategory.strip())
    used = {a.get("category_id") for a in doc["annotations"] if _is_key(a.get("category_id"))}
    kept = {i: n for i, n in sorted(by_id.items()) if i in used or n not in parents}
    duplicates = sorted({n for n in kept.values() if list(kept.values()).count(n) > 1})
    require(not duplicates, f"{name}: several categories are named {quoted(duplicates)}")
    return kept


def _read_set(
    root: Path, part: AnnotationSet, doc: dict[str, Any], labels: dict[int, int], out: ParsedSets
) -> None:
    name = relative(part.annotations, root)
    images: dict[Any, dict[str, Any]] = {}
    for image in doc["images"]:
        image_id, file_name = image.get("id"), image.get("file_name")
        require(
            isinstance(image_id, int | str) and not isinstance(image_id, bool),
            f"{name}: image {file_name!r} has no id",
        )
        require(
            isinstance(file_name, str) and file_name.strip() != "",
            f"{name}: image {image_id} has no file_name",
        )
        require(image_id not in images, f"{name}: image id {image_id} appears twice")
        images[image_id] = image
    boxes: dict[Any, list[RawBox]] = {image_id: [] for image_id in images}
    for position, annotation in enumerate(doc["annotations"]):
        annotation_id = annotation.get("id", f"#{position}")
        where = f"{name} annotation {annotation_id}"
        image_id, category_id = annotation.get("image_id"), annotation.get("category_id")
        require(
            _is_key(image_id) and image_id in images,
            f"{where} refers to image_id {image_id!r}, which is not listed",
        )
        if not (_is_key(category_id) and category_id in labels):
            known = ", ".join(str(i) for i in sorted(labels))
            raise DatasetError(
                f"{where} has category_id {category_id!r}, which is not among the "
                f"categories (ids {known})"
            )
        if annotation.get("iscrowd") in (1, True):
            out.tally.dropped += 1
            out.tally.note(f"{where}: a crowd region (iscrowd 1), not one object; dropped")
            continue
        bbox = _bbox(annotation.get("bbox"))
        if bbox is None:
            raise DatasetError(
                f"{where} has bbox {annotation.get('bbox')!r}; expected [x, y, width, height] "
                "as 4 numbers in pixels"
            )
        x, y, w, h = bbox
        boxes[image_id].append(RawBox((x, y, x + w, y + h), labels[category_id], where))
    for image_id, image in images.items():
        width, height = number(image.get("width")), number(image.get("height"))
        known_size = width is not None and height is not None and width > 0 and height > 0
        declared = (int(width or 0), int(height or 0)) if known_size else None
        out.images.append(
            RawImage(
                path=resolve_image(image["file_name"], part.image_folders),
                split=part.split,
                source=name,
                boxes=tuple(boxes[image_id]),
                declared_size=declared,
            )
        )


def _is_key(value: object) -> bool:
    """Ids are integers (strings tolerated for images); lists or objects are no ids."""
    return isinstance(value, int | str) and not isinstance(value, bool)


def _bbox(value: object) -> tuple[float, float, float, float] | None:
    if not isinstance(value, list) or len(value) != 4:
        return None
    x, y, w, h = (number(v) for v in value)
    if x is None or y is None or w is None or h is None:
        return None
    return x, y, w, h
