"""The image sets bench/quality.py measures recipes on, as class-folder PNGs, seeded.

- digits: scikit-learn's 1,797 handwritten 8×8 digits scaled to 32 px RGB (not flip
  invariant: a mirrored 2 is no 2).
- shapes: a class is a shape (disc, square, triangle, cross, ring, bar) drawn in a random
  colour at a random position, scale and rotation on a noisy background, so crops, zooms and
  flips show the network what does not matter.
- textures: a class is a pattern (dots, checks, horizontal stripes, vertical stripes, noise,
  gradient) in random colours and phases; every class looks the same mirrored left to right
  (the flip-invariant set).
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("disc", "square", "triangle", "cross", "ring", "bar")
TEXTURES = ("dots", "checks", "hstripes", "vstripes", "noise", "gradient")
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def digit_images(size: int = 32) -> list[tuple[str, Image.Image]]:
    """scikit-learn's digits as (class name, RGB image), in their order."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return [
        (
            DIGIT_NAMES[label],
            Image.fromarray((pixels * (255 / 16)).astype(np.uint8))
            .resize((size, size), Image.Resampling.BILINEAR)
            .convert("RGB"),
        )
        for pixels, label in zip(digits.images, digits.target, strict=True)
    ]


def _colour(rng: random.Random, low: int = 0, high: int = 255) -> tuple[int, int, int]:
    return (rng.randint(low, high), rng.randint(low, high), rng.randint(low, high))


def _noise_background(rng: random.Random, size: int) -> Image.Image:
    base = np.array(_colour(rng, 0, 90), dtype=np.int16)
    noise = np.random.default_rng(rng.randrange(2**32)).integers(-25, 26, (size, size, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def _polygon(points: list[tuple[float, float]], angle: float, cx: float, cy: float, r: float):
    cos, sin = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * cos - y * sin), cy + r * (x * sin + y * cos)) for x, y in points]


def shape_image(name: str, rng: random.Random, size: int) -> Image.Image:
    """One shape, 30–70 % of the side, anywhere it fits, at any rotation."""
    image = _noise_background(rng, size)
    draw = ImageDraw.Draw(image)
    radius = size * rng.uniform(0.15, 0.35)
    cx = rng.uniform(radius, size - radius)
    cy = rng.uniform(radius, size - radius)
    angle = rng.uniform(0, 2 * math.pi)
    fill = _colour(rng, 120, 255)
    box = [cx - radius, cy - radius, cx + radius, cy + radius]
    if name == "disc":
        draw.ellipse(box, fill=fill)
    elif name == "ring":
        draw.ellipse(box, outline=fill, width=max(2, round(radius / 3)))
    elif name == "square":
        corners = [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)]
        draw.polygon(_polygon(corners, angle, cx, cy, radius), fill=fill)
    elif name == "triangle":
        corners = [(0.0, -1.0), (0.87, 0.5), (-0.87, 0.5)]
        draw.polygon(_polygon(corners, angle, cx, cy, radius), fill=fill)
    elif name == "bar":
        corners = [(-1.0, -0.3), (1.0, -0.3), (1.0, 0.3), (-1.0, 0.3)]
        draw.polygon(_polygon(corners, angle, cx, cy, radius), fill=fill)
    else:  # cross: two bars at right angles
        for turn in (0.0, math.pi / 2):
            corners = [(-1.0, -0.25), (1.0, -0.25), (1.0, 0.25), (-1.0, 0.25)]
            draw.polygon(_polygon(corners, angle + turn, cx, cy, radius), fill=fill)
    return image


def texture_image(name: str, rng: random.Random, size: int) -> Image.Image:
    """One pattern over the whole image; mirrored left to right it is the same class."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    period = rng.uniform(4, 9)
    phase = rng.uniform(0, 2 * math.pi)
    if name == "hstripes":
        pattern = np.sin(2 * math.pi * y / period + phase) > 0
    elif name == "vstripes":
        pattern = np.sin(2 * math.pi * x / period + phase) > 0
    elif name == "checks":
        pattern = (np.sin(2 * math.pi * x / period + phase) > 0) ^ (
            np.sin(2 * math.pi * y / period + phase) > 0
        )
    elif name == "dots":
        pattern = (np.sin(2 * math.pi * x / period + phase) > 0.6) & (
            np.sin(2 * math.pi * y / period + phase) > 0.6
        )
    elif name == "noise":
        generator = np.random.default_rng(rng.randrange(2**32))
        pattern = generator.random((size, size)) > 0.5
    else:  # gradient: smooth, vertical so that a mirror keeps it
        pattern = y / size > rng.uniform(0.3, 0.7)
    # Overlapping colour ranges and noise: the pattern, not the palette, tells the class.
    low, high = np.array(_colour(rng, 0, 150)), np.array(_colour(rng, 90, 255))
    pixels = np.where(pattern[..., None], high, low).astype(np.int16)
    noise = np.random.default_rng(rng.randrange(2**32)).integers(-40, 41, pixels.shape)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))


def generated_images(
    draw: Callable[[str, random.Random, int], Image.Image],
    classes: tuple[str, ...],
    per_class: int,
    size: int,
    seed: int = 0,
) -> list[tuple[str, Image.Image]]:
    """per_class images of each class, deterministic for the seed."""
    rng = random.Random(seed)  # noqa: S311 - benchmark pictures, not secrets
    return [(name, draw(name, rng, size)) for _ in range(per_class) for name in classes]


def quality_set(name: str, size: int = 32, per_class: int = 250) -> list[tuple[str, Image.Image]]:
    """One of bench/quality.py's sets: "digits", "shapes" or "textures"."""
    if name == "digits":
        return digit_images(size)
    if name == "shapes":
        return generated_images(shape_image, SHAPES, per_class, size)
    if name == "textures":
        return generated_images(texture_image, TEXTURES, per_class, size)
    raise ValueError(f"set must be digits, shapes or textures (got {name!r})")
