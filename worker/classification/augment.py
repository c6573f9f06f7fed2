"""Batch-wise augmentation and normalisation on the training device.

Images arrive as uint8 eval views (3, S, S). Training crops a random box from each one and
resizes it back to S² with one roi_align call (bilinear, per-sample boxes), flips about half
of them, and normalises; all randomness comes from one generator on the same device, so
there is no host round-trip per step.
"""

from __future__ import annotations

import math

import torch
from torchvision.ops import roi_align

from worker.classification.preprocessing import IMAGENET_MEAN, IMAGENET_STD

# torchvision's RandomResizedCrop defaults: fraction of the area, and width/height ratio.
CROP_SCALE = (0.08, 1.0)
# The smallest crop (share of the area) of each augmentation strength; None: no crop.
CROP_SCALES: dict[str, tuple[float, float] | None] = {
    "none": None,
    "light": (0.5, 1.0),
    "standard": CROP_SCALE,
}
CROP_RATIO = (3 / 4, 4 / 3)
CROP_ATTEMPTS = 10
FLIP_PROBABILITY = 0.5
PIXEL_MAX = 255.0


class BatchTransforms:
    """Turns uint8 batches into model inputs: augmented for training, plain for evaluation."""

    def __init__(
        self,
        image_size: int,
        device: torch.device,
        generator: torch.Generator,
        crop_scale: tuple[float, float] | None = CROP_SCALE,
        flip: bool = True,
    ):
        self.image_size = image_size
        self.generator = generator
        self.crop_scale = crop_scale
        self.flip = flip
        # Folding /255 into mean and std makes normalisation one subtract and one multiply.
        self._shift = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1) * PIXEL_MAX
        self._scale = 1 / (torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1) * PIXEL_MAX)
        self._memory_format = (
            torch.channels_last if device.type == "cuda" else torch.contiguous_format
        )

    def train(self, images: torch.Tensor) -> torch.Tensor:
        """Random resized crop + horizontal flip + normalisation of a uint8 batch."""
        if self.crop_scale is None and not self.flip:
            return self.eval(images)
        boxes, flip = random_crop_boxes_and_flips(
            images.shape[0], self.image_size, self.generator, self.crop_scale or (1.0, 1.0)
        )
        if not self.flip:
            flip = torch.zeros_like(flip)
        crops = roi_align(
            images.float(),
            boxes,
            output_size=self.image_size,
            spatial_scale=1.0,
            sampling_ratio=-1,  # adaptive: averages enough points when a box is larger than S
            aligned=True,  # pixel centres at +0.5, so a full-image box is the identity
        )
        crops = torch.where(flip.view(-1, 1, 1, 1), crops.flip(3), crops)
        return self._normalise(crops)

    def eval(self, images: torch.Tensor) -> torch.Tensor:
        """Normalisation only: cached images already are the eval view."""
        return self._normalise(images.float())

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        normalised = (images - self._shift) * self._scale
        return normalised.contiguous(memory_format=self._memory_format)


def random_crop_boxes_and_flips(
    batch_size: int,
    image_size: int,
    generator: torch.Generator,
    scale: tuple[float, float] = CROP_SCALE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """RandomResizedCrop boxes for square S² images as roi_align rows, and flip decisions.

    Like torchvision: try CROP_ATTEMPTS (area, ratio) draws and keep the first that fits,
    else the whole image; boxes are continuous rather than rounded to whole pixels.
    """
    device = generator.device
    draws = torch.rand(batch_size, 2 * CROP_ATTEMPTS + 3, generator=generator, device=device)
    area_draw, ratio_draw = draws[:, :CROP_ATTEMPTS], draws[:, CROP_ATTEMPTS : 2 * CROP_ATTEMPTS]
    x_draw, y_draw, flip_draw = draws[:, -3], draws[:, -2], draws[:, -1]

    area = scale[0] + (scale[1] - scale[0]) * area_draw
    log_low, log_high = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    ratio = torch.exp(log_low + (log_high - log_low) * ratio_draw)
    widths = image_size * torch.sqrt(area * ratio)
    heights = image_size * torch.sqrt(area / ratio)
    fits = (widths <= image_size) & (heights <= image_size)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # first True, or 0 if none
    found = fits.any(dim=1)
    width = torch.where(found, widths.gather(1, first).squeeze(1), image_size)
    height = torch.where(found, heights.gather(1, first).squeeze(1), image_size)
    left = x_draw * (image_size - width)
    top = y_draw * (image_size - height)
    index = torch.arange(batch_size, device=device, dtype=left.dtype)
    boxes = torch.stack([index, left, top, left + width, top + height], dim=1)
    return boxes, flip_draw < FLIP_PROBABILITY
