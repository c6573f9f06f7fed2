"""What an app does before a classifier, written from the manifest's description alone.

`input.host_preprocessing` says how an image file becomes the model's input; this module
follows it step by step, computing sizes and crop offsets itself, as an app would. The
raw-file check feeds stored files through it into each export, against the worker's own
training decode into the PyTorch model: a description that does not say what training did,
or an export that does not take what the description promises, fails before delivery.

It resizes with Pillow, as training does. Another library's "bilinear, antialiased" is not
Pillow's to the level: torchvision's uint8 resize differs by one level on about 2% of a noisy
photo's pixels, which moved the export tests' classifier's probabilities by up to 6.8e-3 on
their photos (measured while writing this); an app's own resize should expect as much.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from shared import images

# The inverse of each upright transpose: the two rotations swap, the rest undo themselves.
AS_STORED = {
    Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270,
    Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90,
}
# Pillow's filters; its bilinear and bicubic downscaling widen the filter with the scale
# (antialiased), its nearest does not.
INTERPOLATIONS = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}
ANTIALIASED = frozenset({"bilinear", "bicubic"})


@dataclass(frozen=True)
class HostSteps:
    """The steps the description names, in order: decode, resize, crop, scale."""

    resize_short_side: int
    center_crop: tuple[int, int]  # height, width
    interpolation: str  # a key of INTERPOLATIONS
    antialias: bool
    exif_orientation: bool
    jpeg_reduced_decode: bool

    @classmethod
    def described(cls, host: Mapping[str, Any]) -> HostSteps:
        """The steps of a manifest's input.host_preprocessing (a classifier's)."""
        interpolation, *qualifiers = (part.strip() for part in host["interpolation"].split(","))
        height, width = host["center_crop"]
        return cls(
            resize_short_side=int(host["resize_short_side"]),
            center_crop=(int(height), int(width)),
            interpolation=interpolation,
            antialias="antialiased" in qualifiers,
            exif_orientation=bool(host["exif_orientation_applied"]),
            jpeg_reduced_decode="jpeg_reduced_decode" in host,
        )


def host_input(path: Path, steps: HostSteps) -> np.ndarray:
    """One image file as the model's input: 1×3×H×W float32 RGB in [0, 1]."""
    # The dataset check's decoder: formats, bit depth and transparency as the manifest says.
    reduced = steps.resize_short_side if steps.jpeg_reduced_decode else None
    decoded = images.decode_image(path, reduced)
    picture = decoded.image
    if not steps.exif_orientation:  # the pixels as stored: undo the decoder's transpose
        upright = images.UPRIGHT_TRANSPOSE.get(decoded.header.orientation)
        if upright is not None:
            picture = picture.transpose(AS_STORED.get(upright, upright))
    if steps.antialias != (steps.interpolation in ANTIALIASED):
        raise ValueError(
            f"Pillow's {steps.interpolation} is "
            f"{'' if steps.interpolation in ANTIALIASED else 'not '}antialiased"
        )
    # The short side to resize_short_side, the long one in proportion (rounded down).
    width, height = picture.size
    short = steps.resize_short_side
    size = (short, short * height // width) if width <= height else (short * width // height, short)
    resized = picture.resize(size, INTERPOLATIONS[steps.interpolation])
    crop_height, crop_width = steps.center_crop
    left = round((size[0] - crop_width) / 2)
    top = round((size[1] - crop_height) / 2)
    cropped = resized.crop((left, top, left + crop_width, top + crop_height))
    pixels = np.asarray(cropped, dtype=np.float32).transpose(2, 0, 1)  # HWC → CHW
    return (pixels / 255)[None]
