"""The one image decoder: any file a phone or a scanner makes → upright 8-bit RGB.

Training (both tasks), the dataset checks and the export checks all decode through here, so
a file means the same pixels everywhere. Pillow does the work, with pillow-heif for
HEIC/HEIF; OpenCV reads only what Pillow truncates (16-bit colour PNG and TIFF). No torch:
the CLI decodes with this module too.

What a file becomes:
- EXIF orientation applied (Orientation 1–8), and reported, so boxes can follow it.
- 16-bit (and 32-bit integer) samples scaled to 8 bits by 255 / (2^b − 1), b the smallest of
  8, 10, 12, 14, 16 bits that holds the image's maximum: a 12-bit X-ray keeps its contrast
  instead of being clipped to white.
- Transparency (RGBA, LA, a palette's transparent index) composited on mid grey, which
  normalises to about zero for an ImageNet-normalised model: a transparent background
  reads as "nothing", not as black or white.
- CMYK and every other mode converted to RGB; a GIF's or multi-page TIFF's first frame.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile

# Lower-case suffixes the decoder reads; anything else in a class folder is not an image.
IMAGE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".png",
        ".bmp",
        ".gif",
        ".webp",
        ".tif",
        ".tiff",
        ".heic",
        ".heif",
        ".avif",
    }
)
HEIF_SUFFIXES = frozenset({".heic", ".heif"})  # read through pillow-heif, loaded on demand
TRANSPARENT_BACKGROUND = (128, 128, 128)
# The depths a sensor or scanner stores; the smallest that holds the maximum is the file's.
BIT_DEPTHS = (8, 10, 12, 14, 16)
# Pillow's own bomb limit (about 89 million pixels): twice a 48 MP phone photo. Above it a
# file is refused rather than decoded (Pillow only warns there).
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
EXIF_ORIENTATION_TAG = 0x0112
JPEG_END = b"\xff\xd9"  # the end-of-image marker: the last two bytes of a whole JPEG
ADOBE_RGB_TRANSFORM = 0  # an Adobe APP14 marker's transform: 0 RGB, 1 YCbCr, 2 YCCK
# EXIF orientation → the transpose that makes the stored pixels upright (as Pillow's
# ImageOps.exif_transpose does it).
UPRIGHT_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
SWAPS_SIDES = frozenset({5, 6, 7, 8})
# Plugins that turn the pixels upright themselves while loading (libheif; Pillow's TIFF
# plugin), reporting the upright size from the start: the orientation must not be applied
# twice.
SELF_ORIENTING_FORMATS = frozenset({"HEIF", "TIFF"})


def decoding_description() -> dict[str, object]:
    """What this decoder does before any resize, for the manifests: an app must do the same."""
    return {
        "color_space": "RGB",
        "exif_orientation_applied": True,
        "transparent_background": list(TRANSPARENT_BACKGROUND),
        "high_bit_depth": "scaled to 8 bits by 255 / (2^b - 1), b the smallest of 8, 10, 12, "
        "14, 16 bits that holds the image's maximum",
        # Pillow's draft(): several times faster for a phone photo, and not what an app's
        # full decode gives pixel for pixel (the raw-file check measures the difference).
        "jpeg_reduced_decode": "a JPEG decodes at the smallest libjpeg DCT scale (1, 1/2, "
        "1/4 or 1/8) that keeps both sides at least the resize target, then resizes",
    }


class UnreadableImage(ValueError):
    """The file is not an image we can decode; the message says why, for the dataset report."""


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says, without decoding its pixels."""

    stored_size: tuple[int, int]  # width, height of the pixels as stored (before EXIF)
    orientation: int  # EXIF orientation, 1 (as stored) to 8

    @property
    def upright_size(self) -> tuple[int, int]:
        width, height = self.stored_size
        return (height, width) if self.orientation in SWAPS_SIDES else (width, height)


@dataclass(frozen=True)
class DecodedImage:
    """A decoded file: upright 8-bit RGB pixels and what it took to get them."""

    image: Image.Image  # mode "RGB", EXIF orientation applied
    header: ImageHeader
    bit_depth: int  # the depth the samples were scaled from (8 for ordinary files)


def read_header(path: Path) -> ImageHeader:
    """Size and orientation from the header (structure checked, pixels not decoded)."""
    with _open(path) as image, _corrupt_is_unreadable():
        header = _header(image)
        if image.format not in ("HEIF", "AVIF"):  # their plugins verify nothing
            image.verify()  # PNG chunk CRCs and the like, without decoding pixels
    return header


def plain_jpeg_header(path: Path) -> ImageHeader | None:
    """The header of a JPEG that any JPEG decoder turns into decode_image's pixels once its
    EXIF orientation (in the header) is applied, else None.

    Plain: 8-bit YCbCr or grayscale samples (not CMYK, whose inversion and profiles decoders
    treat differently, nor an Adobe file whose three channels are RGB, which a decoder
    without Adobe's marker would convert as YCbCr), within MAX_PIXELS, ending in the
    end-of-image marker (a truncated file is Pillow's to report). A phone's multi-picture
    JPEG (MPO) is its first picture's JPEG. The training GPU decodes these itself
    (worker/classification/device_decode.py); every other file comes here.
    """
    try:
        with _open(path) as image, _corrupt_is_unreadable():
            if image.format not in ("JPEG", "MPO") or image.mode not in ("RGB", "L"):
                return None
            if image.info.get("adobe_transform") == ADOBE_RGB_TRANSFORM:
                return None
            header = _header(image)
    except UnreadableImage:
        return None
    with path.open("rb") as file:
        file.seek(-len(JPEG_END), 2)
        if file.read() != JPEG_END:
            return None
    return header


def decode_image(path: Path, min_size: int | None = None) -> DecodedImage:
    """Decode a file to upright 8-bit RGB; a JPEG may decode at a reduced DCT scale (a power of
    two) as long as both sides stay ≥ min_size. Raises UnreadableImage naming the reason."""
    with _open(path) as image, _corrupt_is_unreadable():
        sixteen_bit_colour = _packs_16_bit_colour(image)  # from the tile: before any decode
        header = _header(image)
        if min_size is not None:
            # draft() picks the smallest JPEG DCT scale whose sides stay ≥ min_size: a 12 MP
            # photo decodes several times faster and the later resize still downsamples.
            image.draft("RGB", (min_size, min_size))
        pixels, bit_depth = _opencv_eight_bit(path) if sixteen_bit_colour else _eight_bit(image)
        rgb = _rgb(pixels)
        if image.format not in SELF_ORIENTING_FORMATS:
            transpose = UPRIGHT_TRANSPOSE.get(header.orientation)
            if transpose is not None:
                rgb = rgb.transpose(transpose)
    return DecodedImage(rgb, header, bit_depth)


@contextlib.contextmanager
def _corrupt_is_unreadable() -> Iterator[None]:
    """Plugins raise many kinds of errors on truncated or hostile data (OSError, SyntaxError
    from a PNG's checksums, struct.error, …); all of them mean the file cannot be used."""
    try:
        yield
    except UnreadableImage:
        raise
    except Exception as error:
        raise UnreadableImage(f"truncated or corrupt ({type(error).__name__}: {error})") from error


def centre_view(image: Image.Image, size: int) -> Image.Image:
    """The short side resized to size (bilinear, antialiased), then the centre size²: the
    classifier's eval view, pixel for pixel what torchvision's Resize + CenterCrop give."""
    width, height = image.size
    if width <= height:
        resized_size = (size, int(size * height / width))
    else:
        resized_size = (int(size * width / height), size)
    resized = image.resize(resized_size, Image.Resampling.BILINEAR)
    left = round((resized_size[0] - size) / 2.0)
    top = round((resized_size[1] - size) / 2.0)
    return resized.crop((left, top, left + size, top + size))


def upright_box(
    box: tuple[float, float, float, float], header: ImageHeader
) -> tuple[float, float, float, float]:
    """A box (x1, y1, x2, y2) in stored pixels → the same region in the upright image."""
    x1, y1, x2, y2 = box
    width, height = header.stored_size
    match header.orientation:
        case 2:
            return (width - x2, y1, width - x1, y2)
        case 3:
            return (width - x2, height - y2, width - x1, height - y1)
        case 4:
            return (x1, height - y2, x2, height - y1)
        case 5:
            return (y1, x1, y2, x2)
        case 6:
            return (height - y2, x1, height - y1, x2)
        case 7:
            return (height - y2, width - x2, height - y1, width - x1)
        case 8:
            return (y1, width - x2, y2, width - x1)
        case _:
            return box


@functools.cache
def _register_heif() -> None:
    """Teach Pillow HEIC/HEIF (pillow-heif), once, when a file needs it: the engine's
    benchmarks run on GPU hosts that have only torch and torchvision (and their Pillow)."""
    import pillow_heif

    pillow_heif.register_heif_opener()


def _identified(path: Path) -> ImageFile.ImageFile:
    if path.suffix.lower() in HEIF_SUFFIXES:
        _register_heif()
    # Read before the attempt: another decode thread may register HEIF meanwhile.
    heif_known = "HEIF" in Image.OPEN
    try:
        return Image.open(path)
    except Image.UnidentifiedImageError:
        if heif_known:  # HEIF was tried: not an image we read
            raise
        _register_heif()  # perhaps a HEIC photo under another name
        return Image.open(path)


def _open(path: Path) -> ImageFile.ImageFile:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = _identified(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise UnreadableImage(f"decompression bomb ({error})") from error
    except Image.UnidentifiedImageError as error:
        raise UnreadableImage("not an image format we read") from error
    # Image plugins raise many kinds of errors on hostile or broken files (OSError,
    # SyntaxError, struct.error, …); all of them mean the file cannot be used.
    except Exception as error:
        raise UnreadableImage(f"cannot be opened ({type(error).__name__}: {error})") from error
    width, height = image.size
    if width * height > MAX_PIXELS:  # plugins that skip Pillow's own check (HEIF, AVIF)
        image.close()
        raise UnreadableImage(
            f"decompression bomb ({width}×{height} pixels is more than {MAX_PIXELS})"
        )
    return image


def _header(image: Image.Image) -> ImageHeader:
    if image.format == "HEIF":  # libheif resets the EXIF tag and keeps the original here
        orientation = int(image.info.get("original_orientation") or 1)
    else:
        orientation = _exif_orientation(image)
    orientation = orientation if orientation in range(1, 9) else 1
    width, height = image.size
    if image.format in SELF_ORIENTING_FORMATS and orientation in SWAPS_SIDES:
        width, height = height, width  # reported upright already; stored is the other way
    return ImageHeader((width, height), orientation)


def _exif_orientation(image: Image.Image) -> int:
    if image.format == "PNG":
        # Pillow's getexif() on a PNG decodes the whole file looking for an eXIf chunk after
        # the pixels; the PNG spec puts it before them, where open() has already read it.
        exif = Image.Exif()
        if "exif" in image.info:
            exif.load(image.info["exif"])
    else:
        exif = image.getexif()
    return int(exif.get(EXIF_ORIENTATION_TAG, 1) or 1)


def _eight_bit(image: Image.Image) -> tuple[Image.Image, int]:
    """The first frame with 8-bit samples (transparency kept), and the depth scaled from."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        samples = np.asarray(image, dtype=np.float64)
        depth = _depth(float(samples.max(initial=0)))
        scaled = np.clip(samples, 0, None) * (255 / (2**depth - 1))
        return Image.fromarray(np.rint(np.clip(scaled, 0, 255)).astype(np.uint8), "L"), depth
    image.load()
    return image, 8


def _packs_16_bit_colour(image: ImageFile.ImageFile) -> bool:
    """Pillow reads 16-bit colour PNG/TIFF by keeping each sample's high byte (a 12-bit image
    turns almost black); the raw mode of its tile says so before anything is decoded."""
    if image.mode not in ("RGB", "RGBA", "LA") or not image.tile:
        return False
    args: Any = image.tile[0].args
    raw_mode = args[0] if isinstance(args, tuple) else args
    return isinstance(raw_mode, str) and ";16" in raw_mode


def _opencv_eight_bit(path: Path) -> tuple[Image.Image, int]:
    import cv2

    # IMREAD_UNCHANGED keeps all 16 bits and the alpha channel; orientation is ours to apply.
    samples = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if samples is None or samples.dtype != np.uint16:
        raise UnreadableImage("a 16-bit colour image OpenCV cannot decode")
    if samples.ndim == 2:
        samples = samples[:, :, None]
    channels = samples.shape[2]
    colour = samples[:, :, :3][:, :, ::-1] if channels >= 3 else samples[:, :, :1]
    depth = _depth(float(colour.max(initial=0)))
    planes = np.rint(colour * (255 / (2**depth - 1))).clip(0, 255).astype(np.uint8)
    if channels in (2, 4):  # alpha: always the full 16-bit range
        alpha = np.rint(samples[:, :, -1:] / 257).astype(np.uint8)
        planes = np.concatenate([planes, alpha], axis=2)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[planes.shape[2]]
    return Image.fromarray(planes if planes.shape[2] > 1 else planes[:, :, 0], mode), depth


def _depth(maximum: float) -> int:
    return next((bits for bits in BIT_DEPTHS if maximum <= 2**bits - 1), BIT_DEPTHS[-1])


def _rgb(image: Image.Image) -> Image.Image:
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    if not has_alpha:
        return image.convert("RGB")
    background = Image.new("RGBA", image.size, (*TRANSPARENT_BACKGROUND, 255))
    return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
