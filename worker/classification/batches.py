"""Where uint8 image batches come from: an in-memory cache, or files decoded by workers.

Both sources deliver the same pixels (the eval view from preprocessing.decode_image) in the
order they are asked for, so a run gives the same result whichever one it uses; except where
torchvision decoded the cache's plain JPEGs (TrainConfig.jpeg_decoder, device_decode.py),
whose views differ from Pillow's by under 1/255 per pixel on average.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal, Protocol

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms.v2 import functional as F

from shared.images import DecodedImage
from worker.classification.data import ImageFile
from worker.classification.preprocessing import decode_image

# A device cache may take this share of the GPU memory free at start; the rest is training's.
DEVICE_CACHE_SHARE = 0.5
STREAM_PREFETCH_BATCHES = 4

CachePlacement = Literal["device", "host", "streamed"]
BatchPair = tuple[torch.Tensor, torch.Tensor]


class BatchSource(Protocol):
    """Yields (uint8 images, int64 labels) on the training device, batch by batch."""

    placement: CachePlacement

    def batches(self, rows: torch.Tensor, sizes: Sequence[int]) -> Iterator[BatchPair]: ...


def cache_bytes_needed(rows: int, image_size: int) -> int:
    """Memory an in-memory cache of rows uint8 RGB eval views takes."""
    return rows * 3 * image_size * image_size


class ImageCache:
    """Decoded uint8 eval views, one row per layout file, filled once by a reader."""

    def __init__(self, rows: int, image_size: int):
        self.image_size = image_size
        self.pixels = torch.empty((rows, 3, image_size, image_size), dtype=torch.uint8)

    def store(self, row: int, _: DecodedImage, view: Image.Image | None) -> None:
        """One decoded file's eval view (the check's view) into its row: data.read_dataset's
        on_decoded."""
        assert view is not None and view.size == (self.image_size, self.image_size)
        self.pixels[row] = F.pil_to_tensor(view)


class CachedBatches:
    """Batches gathered from the cache; the cache lives on the GPU when it fits there."""

    def __init__(self, cache: ImageCache, labels: torch.Tensor, device: torch.device):
        self.device = device
        self.placement: CachePlacement = "host"
        pixels = cache.pixels
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if pixels.numel() <= DEVICE_CACHE_SHARE * free:
                pixels = pixels.to(device)
                self.placement = "device"
        self.pixels = pixels
        self.labels = labels.to(pixels.device)

    def batches(self, rows: torch.Tensor, sizes: Sequence[int]) -> Iterator[BatchPair]:
        """Gather rows in order, len(sizes) batches; indices go to the cache's device once."""
        rows = rows.to(self.pixels.device)
        for batch_rows in rows[: sum(sizes)].split(list(sizes)):
            images = self.pixels.index_select(0, batch_rows)
            labels = self.labels.index_select(0, batch_rows)
            if images.device != self.device:
                # Pinned staging lets the copy overlap with the previous step's compute.
                images = images.pin_memory().to(self.device, non_blocking=True)
                labels = labels.pin_memory().to(self.device, non_blocking=True)
            yield images, labels


class StreamedBatches:
    """Batches decoded by DataLoader workers each epoch, for datasets larger than the cache."""

    placement: CachePlacement = "streamed"

    def __init__(
        self,
        files: Sequence[ImageFile],
        rows: int,
        image_size: int,
        num_workers: int,
        device: torch.device,
    ):
        self.device = device
        self._sampler = _PlannedBatches()
        pin = device.type == "cuda"
        self._loader = DataLoader(
            _DecodedFiles(files, rows, image_size),
            batch_sampler=self._sampler,
            num_workers=num_workers,
            pin_memory=pin,
            persistent_workers=num_workers > 0,
            prefetch_factor=STREAM_PREFETCH_BATCHES if num_workers > 0 else None,
            # Its own generator: otherwise each epoch's worker seed is drawn from the global
            # torch stream, and dropout would differ from a cached run of the same seed.
            generator=torch.Generator(),
        )

    def batches(self, rows: torch.Tensor, sizes: Sequence[int]) -> Iterator[BatchPair]:
        """Decode rows in order, len(sizes) batches."""
        plan = rows[: sum(sizes)].split(list(sizes))
        self._sampler.plan = [batch.tolist() for batch in plan]
        for images, labels in self._loader:
            yield (
                images.to(self.device, non_blocking=True),
                labels.to(self.device, non_blocking=True),
            )


class _DecodedFiles(Dataset[tuple[torch.Tensor, int]]):
    """Layout rows → (eval view, label); rows of skipped files are never asked for."""

    def __init__(self, files: Sequence[ImageFile], rows: int, image_size: int):
        self.image_size = image_size
        self.by_row: list[ImageFile | None] = [None] * rows
        for image in files:
            self.by_row[image.row] = image

    def __len__(self) -> int:
        return len(self.by_row)

    def __getitem__(self, row: int) -> tuple[torch.Tensor, int]:
        image = self.by_row[row]
        if image is None:
            raise IndexError(f"row {row} is not a readable image of this dataset")
        return decode_image(image.path, self.image_size), image.label


class _PlannedBatches(Sampler[list[int]]):
    """A batch sampler replayed from a plan set before each pass (read in the main process)."""

    def __init__(self) -> None:
        self.plan: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.plan)

    def __len__(self) -> int:
        return len(self.plan)
