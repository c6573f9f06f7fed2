"""How pixels reach the model: decoding, the eval view and ImageNet normalisation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from shared import images

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def eval_geometry(image_size: int) -> v2.Compose:
    """Resize the short side to image_size, then center-crop image_size² (Vision's centerCrop)."""
    return v2.Compose([v2.Resize(image_size), v2.CenterCrop(image_size)])


def eval_transform(image_size: int) -> v2.Compose:
    """Upright RGB PIL image → normalised float tensor (3, image_size, image_size)."""
    return v2.Compose(
        [
            eval_geometry(image_size),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def preprocessing_description(image_size: int) -> dict[str, Any]:
    """What an exported model expects as input, for the manifest and the export checks."""
    return {
        **images.decoding_description(),
        "resize_short_side": image_size,
        "center_crop": [image_size, image_size],
        "interpolation": "bilinear, antialiased",
        "scale": 1 / 255,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "layout": "NCHW",
        "apple_vision_crop_and_scale": "centerCrop",
    }


def open_upright_rgb(path: Path, min_size: int) -> Image.Image:
    """Decode an image file as upright RGB, letting JPEGs decode at a reduced scale ≥ min_size."""
    return images.decode_image(path, min_size).image


def decode_image(path: Path, image_size: int) -> torch.Tensor:
    """The eval view of an image file as uint8 (3, image_size, image_size): what the cache holds."""
    return eval_view(open_upright_rgb(path, image_size), image_size)


def eval_view(image: Image.Image, image_size: int) -> torch.Tensor:
    """The eval view of a decoded upright RGB image as uint8 (3, image_size, image_size)."""
    return F.pil_to_tensor(images.centre_view(image, image_size))
