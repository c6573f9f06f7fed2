"""A detection dataset's pixels and targets: every image stretched to image_size² (no crop,
so no box is lost), boxes scaled with it, labels shifted past the background class (0).
The detector normalises its own input, so batches reach it as uint8 RGB."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from shared import images
from worker.classification.batches import DEVICE_CACHE_SHARE
from worker.detection.annotations import AnnotatedImage
from worker.detection.augment import MIN_BOX_SIDE, Target
from worker.engine.config import TrainConfig
from worker.engine.data import DatasetError

DetectionBatch = tuple[torch.Tensor, list[Target]]


class DetectionImages:
    """The dataset's images as uint8 (3, S, S) and their targets in those pixels.

    pixels: the dataset check's decode of every image (DetectionTask.check_dataset), when they
    fit config.cache_bytes; kept on the GPU when half its free memory holds them. Without
    it, images are decoded batch by batch by a thread pool. unreadable: rows the check could
    not decode, which no batch asks for.
    """

    def __init__(
        self,
        images: Sequence[AnnotatedImage],
        config: TrainConfig,
        device: torch.device,
        unreadable: Sequence[int],
        pixels: torch.Tensor | None,
    ):
        self.images = list(images)
        self.size = config.image_size
        self.device = device
        self.threads = config.threads
        self.targets = [scaled_target(image, self.size, device) for image in self.images]
        self.unreadable = list(unreadable)
        self.placement = "streamed" if pixels is None else "host"
        if (
            pixels is not None
            and device.type == "cuda"
            and pixels.numel() <= DEVICE_CACHE_SHARE * torch.cuda.mem_get_info(device)[0]
        ):
            pixels, self.placement = pixels.to(device), "device"
        self.pixels = pixels

    def batch(self, rows: list[int]) -> DetectionBatch:
        """uint8 images on the device and their targets, in the order of rows."""
        if self.pixels is not None:
            index = torch.tensor(rows, device=self.pixels.device)
            images = self.pixels.index_select(0, index)
        else:
            decoded = self._decode_all(rows)
            unreadable = [
                self.images[row].path
                for row, image in zip(rows, decoded, strict=True)
                if image is None
            ]
            if unreadable:
                # Checked readable at the start: the file changed under the job.
                raise DatasetError(f"'{unreadable[0]}' could not be decoded any more")
            images = torch.stack([image for image in decoded if image is not None])
        return images.to(self.device, non_blocking=True), [self.targets[row] for row in rows]

    def batches(self, rows: list[int], sizes: Sequence[int]) -> Iterator[DetectionBatch]:
        """Batches of rows, in order, of these sizes."""
        start = 0
        for size in sizes:
            yield self.batch(rows[start : start + size])
            start += size

    def _decode_all(self, rows: Sequence[int]) -> list[torch.Tensor | None]:
        with ThreadPoolExecutor(self.threads) as pool:
            return list(pool.map(lambda row: decode(self.images[row].path, self.size), rows))


def scaled_target(image: AnnotatedImage, size: int, device: torch.device) -> Target:
    """Boxes scaled from the upright image to size², labels shifted past the background (0)."""
    scale = torch.tensor(
        [size / image.width, size / image.height, size / image.width, size / image.height]
    )
    boxes = torch.tensor(image.boxes, dtype=torch.float32).reshape(-1, 4) * scale
    labels = torch.tensor(image.labels, dtype=torch.int64) + 1
    # A box that shrinks below MIN_BOX_SIDE at this size is no object the detector can see
    # (and one that rounds to zero width makes torchvision refuse the whole batch).
    keep = (boxes[:, 2] - boxes[:, 0] >= MIN_BOX_SIDE) & (boxes[:, 3] - boxes[:, 1] >= MIN_BOX_SIDE)
    return {"boxes": boxes[keep].to(device), "labels": labels[keep].to(device)}


def decode(path: Path, size: int) -> torch.Tensor | None:
    """The whole upright image stretched to size² as uint8 (3, size, size); None when
    unreadable. The annotations already turned its boxes upright (annotations.common)."""
    try:
        return stretched(images.decode_image(path, size).image, size)
    except images.UnreadableImage:
        return None


def stretched(image: Image.Image, size: int) -> torch.Tensor:
    """A decoded upright RGB image stretched to size² as uint8 (3, size, size)."""
    return F.resize(F.pil_to_tensor(image), [size, size], antialias=True)


def preprocessing_description(image_size: int) -> dict[str, Any]:
    """What an exported detector expects as input, for metrics.json and the manifest."""
    return {
        **images.decoding_description(),
        "resize": [image_size, image_size],
        "keep_aspect_ratio": False,
        "interpolation": "bilinear, antialiased",
        "scale": 1 / 255,
        "normalisation": "inside the model",
        "layout": "NCHW",
        "boxes": "x1, y1, x2, y2 in pixels of the resized input",
        "apple_vision_crop_and_scale": "scaleFill",
    }
