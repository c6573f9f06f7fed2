"""JPEG decode by torchvision on the training device: nvJPEG on a GPU, in batches, with the
classifier's eval view made there too, into the image cache.

At 224 px Pillow's decode caps a GPU run before it starts (bench/gpu_check.py measures the
two side by side). Only plain JPEGs come here (shared.images.plain_jpeg_header: 8-bit YCbCr
or grayscale, whole; their EXIF orientation is applied here as shared.images applies it);
every other file (PNG, HEIC, CMYK, a truncated file) goes through
shared.images.decode_image, the one decoder for formats, and so does a batch torchvision
refuses or the GPU has no memory for, so a file's reason reaches the report.

The view is centre_view's (short side resized bilinearly with antialiasing, the centre
square, the same rounding), computed by torch from the full-size decode; Pillow decodes at
a reduced DCT scale first, so the two differ by about 0.5/255 per pixel on average at 224 px
(at most 2/255: tests/worker/classification/test_device_decode.py). The views come back to
the host cache, because the dataset check's SHA-256 and perceptual hash read them there;
CachedBatches then uploads the cache to the GPU as it does for Pillow's views.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as F

from shared.images import ImageHeader, plain_jpeg_header
from worker.classification.batches import ImageCache

# Decoded at once: at most this many files and pixels (2^27 RGB pixels: 400 MB on the device).
DECODE_BATCH_FILES = 256
DECODE_BATCH_PIXELS = 2**27


class DeviceDecoded:
    """The rows torchvision decoded into a cache, as the dataset check's Predecoded."""

    def __init__(self, cache: ImageCache, headers: dict[int, ImageHeader]):
        self.cache = cache
        self.headers = headers

    def __call__(self, row: int) -> tuple[ImageHeader, Image.Image] | None:
        header = self.headers.get(row)
        if header is None:
            return None
        return header, F.to_pil_image(self.cache.pixels[row])


def decode_plain_jpegs(
    paths: Sequence[Path], cache: ImageCache, device: torch.device, threads: int
) -> DeviceDecoded:
    """Decode the plain JPEGs among paths (row = index) on device into their cache rows;
    the other rows are left for decode_image."""
    headers: dict[int, ImageHeader] = {}
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        found = list(pool.map(plain_jpeg_header, paths))
        plain = [(row, header) for row, header in enumerate(found) if header is not None]
        for batch in _batches(plain):
            data = list(pool.map(_file_bytes, (paths[row] for row, _ in batch)))
            try:
                views = _views(batch, data, device, cache.image_size)
                stacked = torch.stack(list(views.values())).cpu() if views else None
            except torch.OutOfMemoryError:
                continue  # the batch's files go to Pillow, which needs no GPU memory
            if stacked is not None:
                cache.pixels[torch.tensor(list(views))] = stacked
                headers.update((row, header) for row, header in batch if row in views)
    if device.type == "cuda":
        # PyTorch's cached blocks go back to the driver: CachedBatches sizes the GPU cache by
        # what the driver says is free (nvJPEG's own buffers are not PyTorch's to free).
        torch.cuda.empty_cache()
    return DeviceDecoded(cache, headers)


def _views(
    batch: list[tuple[int, ImageHeader]], data: list[torch.Tensor], device: torch.device, size: int
) -> dict[int, torch.Tensor]:
    """Each decodable file's upright centre view, by row."""
    views: dict[int, torch.Tensor] = {}
    for (row, header), image in zip(batch, _decoded(data, device), strict=True):
        if image is not None:
            views[row] = view(upright(image, header.orientation), size)
    return views


def _batches(
    plain: list[tuple[int, ImageHeader]],
) -> Iterator[list[tuple[int, ImageHeader]]]:
    """Consecutive runs of at most DECODE_BATCH_FILES files and DECODE_BATCH_PIXELS pixels
    (a file larger than that alone)."""
    batch: list[tuple[int, ImageHeader]] = []
    pixels = 0
    for row, header in plain:
        width, height = header.stored_size
        if batch and (
            len(batch) == DECODE_BATCH_FILES or pixels + width * height > DECODE_BATCH_PIXELS
        ):
            yield batch
            batch, pixels = [], 0
        batch.append((row, header))
        pixels += width * height
    if batch:
        yield batch


def _file_bytes(path: Path) -> torch.Tensor:
    """A file as a uint8 tensor (writable, as decode_jpeg wants it)."""
    return torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)


def _decoded(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | None]:
    """decode_jpeg of the batch (nvJPEG's batched decode on a GPU); when the batch fails,
    file by file, None for a file torchvision cannot decode."""
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its image codecs for TorchCodec 0.16's, a binary wheel
        # more that the bare GPU hosts the bench runs on lack; torchvision's still work:
        # move when it drops them. Called from one thread only: the filters are global.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torchvision")
        try:
            return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:
            decoded: list[torch.Tensor | None] = []
            for one in data:
                try:
                    decoded.append(decode_jpeg(one, mode=ImageReadMode.RGB, device=device))
                except RuntimeError:
                    decoded.append(None)
            return decoded


def upright(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """A C×H×W image as stored → upright for its EXIF orientation: Pillow's transposes of
    shared.images.UPRIGHT_TRANSPOSE, on the device (a test holds them equal)."""
    match orientation:
        case 2:  # FLIP_LEFT_RIGHT
            return image.flip(2)
        case 3:  # ROTATE_180
            return image.flip(1, 2)
        case 4:  # FLIP_TOP_BOTTOM
            return image.flip(1)
        case 5:  # TRANSPOSE
            return image.transpose(1, 2)
        case 6:  # ROTATE_270: a quarter turn clockwise
            return torch.rot90(image, -1, (1, 2))
        case 7:  # TRANSVERSE
            return image.transpose(1, 2).flip(1, 2)
        case 8:  # ROTATE_90: a quarter turn anticlockwise
            return torch.rot90(image, 1, (1, 2))
        case _:
            return image


def view(image: torch.Tensor, size: int) -> torch.Tensor:
    """shared.images.centre_view in torch: torchvision's Resize(size) + CenterCrop(size)
    round the long side and the offsets as it does."""
    return F.center_crop(F.resize(image, [size], antialias=True), [size, size])
