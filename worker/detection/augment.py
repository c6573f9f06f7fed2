"""Detection augmentation on the training device: the boxes move with the pixels.

Images arrive as uint8 (3, S, S) views of whole images (stretched to S², nothing cropped)
and boxes in those pixels. Scale jitter zooms each image by a random factor: in, by cropping
a window and resizing it to S² (one roi_align call per batch, like classification's crops);
out, by sampling a window larger than the image, which roi_align fills with black. Then about
half of the images are flipped. The detector normalises its own input: this returns [0, 1].
"""

from __future__ import annotations

import torch
from torchvision.ops import roi_align

# Zoom factors drawn log-uniformly: 0.6 shows the image at 60 % on black, 1.5 crops to 2/3.
SCALE_RANGE = (0.6, 1.5)
# The zoom range of each augmentation strength; None: the image as it is.
ZOOM_RANGES: dict[str, tuple[float, float] | None] = {
    "none": None,
    "light": (0.8, 1.25),
    "standard": SCALE_RANGE,
}
FLIP_PROBABILITY = 0.5
# A box cut by the crop is kept while this share of it stays visible; a sliver of an object
# would teach the detector to fire on fragments.
MIN_VISIBLE_FRACTION = 0.4
MIN_BOX_SIDE = 1.0  # pixels
PIXEL_MAX = 255.0

Target = dict[str, torch.Tensor]


class DetectionAugment:
    """Random zoom and horizontal flip for (uint8 batch, targets); targets are rewritten."""

    def __init__(
        self,
        image_size: int,
        generator: torch.Generator,
        zoom: tuple[float, float] | None = SCALE_RANGE,
        flip: bool = True,
    ):
        self.image_size = image_size
        self.generator = generator
        self.zoom = zoom or (1.0, 1.0)
        self.flip = flip

    def __call__(
        self, images: torch.Tensor, targets: list[Target]
    ) -> tuple[torch.Tensor, list[Target]]:
        size = self.image_size
        if self.zoom == (1.0, 1.0) and not self.flip:
            return images.float() / PIXEL_MAX, targets
        batch = images.shape[0]
        device = images.device
        draws = torch.rand(batch, 4, generator=self.generator, device=device)
        low, high = torch.log(torch.tensor(self.zoom, device=device))
        zoom = torch.exp(low + (high - low) * draws[:, 0])
        side = size / zoom  # the window of the source shown as the whole output
        left = draws[:, 1] * (size - side)  # negative when zooming out: the window overhangs
        top = draws[:, 2] * (size - side)
        flip = (draws[:, 3] < FLIP_PROBABILITY) & self.flip
        index = torch.arange(batch, device=device, dtype=left.dtype)
        windows = torch.stack([index, left, top, left + side, top + side], dim=1)
        out = roi_align(
            images.float(),
            windows,
            output_size=size,
            spatial_scale=1.0,
            sampling_ratio=-1,
            aligned=True,
        )
        out = torch.where(flip.view(-1, 1, 1, 1), out.flip(3), out)
        moved = [
            _move_boxes(target, left[i], top[i], zoom[i], bool(flip[i]), size)
            for i, target in enumerate(targets)
        ]
        return out / PIXEL_MAX, moved


def _move_boxes(
    target: Target,
    left: torch.Tensor,
    top: torch.Tensor,
    zoom: torch.Tensor,
    flip: bool,
    size: int,
) -> Target:
    boxes = target["boxes"]
    offset = torch.stack([left, top, left, top])
    shown = (boxes - offset) * zoom
    clipped = shown.clamp(0, size)
    area = (shown[:, 2] - shown[:, 0]) * (shown[:, 3] - shown[:, 1])
    width = clipped[:, 2] - clipped[:, 0]
    height = clipped[:, 3] - clipped[:, 1]
    keep = (
        (width >= MIN_BOX_SIDE)
        & (height >= MIN_BOX_SIDE)
        & (width * height >= MIN_VISIBLE_FRACTION * area)
    )
    clipped = clipped[keep]
    if flip:
        clipped = torch.stack(
            [size - clipped[:, 2], clipped[:, 1], size - clipped[:, 0], clipped[:, 3]], dim=1
        )
    return {"boxes": clipped, "labels": target["labels"][keep]}
