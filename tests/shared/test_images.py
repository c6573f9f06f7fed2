"""The one decoder: every file a phone or scanner makes reads as the upright 8-bit RGB it shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pillow_heif
import pytest
from PIL import Image

from dev.stack import REPO
from shared.images import (
    TRANSPARENT_BACKGROUND,
    ImageHeader,
    UnreadableImage,
    decode_image,
    plain_jpeg_header,
    read_header,
    upright_box,
)

# To write HEIC fixtures: the decoder registers pillow-heif itself, on the first HEIC it reads.
pillow_heif.register_heif_opener()

COLOUR = (30, 160, 220)
# Stored 48×32 with a red block at x 4–15, y 2–9: every orientation moves it somewhere else.
STORED_SIZE = (48, 32)
RED_BOX = (4.0, 2.0, 16.0, 10.0)


def solid(path: Path, fmt: str, **options: object) -> Path:
    Image.new("RGB", (40, 24), COLOUR).save(path, fmt, **options)
    return path


@pytest.mark.parametrize(
    ("name", "fmt", "options", "tolerance"),
    [
        ("a.jpg", "JPEG", {"quality": 95}, 4),
        ("progressive.jpg", "JPEG", {"progressive": True, "quality": 95}, 4),
        ("a.png", "PNG", {}, 0),
        ("a.webp", "WEBP", {"lossless": True}, 0),
        ("a.tif", "TIFF", {}, 0),
        ("a.bmp", "BMP", {}, 0),
        ("a.heic", "HEIF", {"quality": -1}, 4),  # pillow-heif's lossless setting
        ("a.avif", "AVIF", {"quality": 100}, 6),
    ],
)
def test_every_format_decodes_to_its_colours(
    tmp_path: Path, name: str, fmt: str, options: dict[str, object], tolerance: int
) -> None:
    decoded = decode_image(solid(tmp_path / name, fmt, **options))
    pixels = np.asarray(decoded.image, dtype=np.int16)
    assert decoded.image.mode == "RGB" and decoded.image.size == (40, 24)
    assert np.abs(pixels - COLOUR).max() <= tolerance
    assert decoded.bit_depth == 8 and decoded.header.orientation == 1


def test_heic_is_read_without_registering_anything_first_even_under_another_name(
    tmp_path: Path,
) -> None:
    """A fresh interpreter, as a worker starts: pillow-heif loads when a HEIC file needs it."""
    solid(tmp_path / "a.heic", "HEIF", quality=-1)
    solid(tmp_path / "named_like_a.jpg", "HEIF", quality=-1)
    read = (
        "import sys; from pathlib import Path; from shared.images import decode_image\n"
        "for name in sys.argv[1:]: print(decode_image(Path(name)).image.getpixel((0, 0)))"
    )
    names = [str(tmp_path / "named_like_a.jpg"), str(tmp_path / "a.heic")]
    done = subprocess.run(
        [sys.executable, "-c", read, *names], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    for line in done.stdout.splitlines():
        pixel = tuple(int(value) for value in line.strip("()").split(","))
        assert max(abs(a - b) for a, b in zip(pixel, COLOUR, strict=True)) <= 4
    assert len(done.stdout.splitlines()) == 2


def test_cmyk_jpeg_reads_as_its_rgb(tmp_path: Path) -> None:
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)
    pixels = np.asarray(decode_image(tmp_path / "cmyk.jpg").image, dtype=np.int16)
    assert np.abs(pixels - (255, 0, 0)).max() <= 4


def test_gif_reads_its_first_frame_with_transparency_on_grey(tmp_path: Path) -> None:
    first = Image.new("P", (8, 8), 1)
    first.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * 759)
    first.paste(0, (0, 0, 4, 8))  # left half: index 0, the transparent one
    second = first.copy()
    second.paste(2, (0, 0, 8, 8))  # blue: must never be seen
    first.save(tmp_path / "a.gif", save_all=True, append_images=[second], transparency=0)
    pixels = np.asarray(decode_image(tmp_path / "a.gif").image)
    assert tuple(pixels[0, 0]) == TRANSPARENT_BACKGROUND
    assert tuple(pixels[0, 7]) == (255, 0, 0)


def test_rgba_and_la_composite_on_grey(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    rgba.paste((0, 200, 0, 255), (4, 0, 8, 8))
    rgba.save(tmp_path / "rgba.png")
    la = Image.new("LA", (8, 8), (0, 0))
    la.paste((255, 255), (4, 0, 8, 8))
    la.save(tmp_path / "la.png")
    rgba_pixels = np.asarray(decode_image(tmp_path / "rgba.png").image)
    la_pixels = np.asarray(decode_image(tmp_path / "la.png").image)
    assert tuple(rgba_pixels[0, 0]) == tuple(la_pixels[0, 0]) == TRANSPARENT_BACKGROUND
    assert tuple(rgba_pixels[0, 7]) == (0, 200, 0)
    assert tuple(la_pixels[0, 7]) == (255, 255, 255)


def twelve_bit_ramp() -> np.ndarray:
    """64×64 values 0–4095, as a 12-bit X-ray stored in 16-bit samples holds them."""
    return np.linspace(0, 4095, 64 * 64).round().astype(np.uint16).reshape(64, 64)


@pytest.mark.parametrize("name", ["xray.png", "xray.tif"])
def test_a_12_bit_grayscale_keeps_its_contrast(tmp_path: Path, name: str) -> None:
    ramp = twelve_bit_ramp()
    Image.fromarray(ramp).save(tmp_path / name)
    decoded = decode_image(tmp_path / name)
    pixels = np.asarray(decoded.image)
    assert decoded.bit_depth == 12
    expected = np.rint(ramp * (255 / 4095))
    assert np.abs(pixels[:, :, 0] - expected).max() <= 0.5
    # Clipping to 8 bits would leave 99.6 % of these pixels white; scaled, about 1/256 are.
    assert (pixels == 255).all(axis=2).mean() < 0.01


@pytest.mark.parametrize("name", ["colour16.png", "colour16.tif"])
def test_16_bit_colour_keeps_every_bit_and_channel_order(tmp_path: Path, name: str) -> None:
    ramp = twelve_bit_ramp()
    rgb = np.stack([ramp, ramp // 2, np.zeros_like(ramp)], axis=2)
    cv2.imwrite(str(tmp_path / name), rgb[:, :, ::-1])  # OpenCV writes BGR
    decoded = decode_image(tmp_path / name)
    pixels = np.asarray(decoded.image, dtype=np.float64)
    scale = 255 / 4095
    assert decoded.bit_depth == 12
    assert np.abs(pixels[:, :, 0] - ramp * scale).max() <= 0.5
    assert np.abs(pixels[:, :, 1] - (ramp // 2) * scale).max() <= 0.5
    assert pixels[:, :, 2].max() == 0


def test_a_full_16_bit_image_scales_by_its_full_range(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 65535]], dtype=np.uint16)).save(tmp_path / "full.png")
    decoded = decode_image(tmp_path / "full.png")
    assert decoded.bit_depth == 16
    assert np.asarray(decoded.image)[0, :, 0].tolist() == [0, 255]


def oriented(path: Path, orientation: int, fmt: str = "JPEG") -> Path:
    """A stored 48×32 photo with a red block at RED_BOX, tagged with this EXIF orientation."""
    image = Image.new("RGB", STORED_SIZE, (0, 0, 0))
    image.paste((255, 0, 0), (4, 2, 16, 10))  # RED_BOX
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(path, fmt, exif=exif.tobytes(), quality=95)
    return path


def red_bbox(image: Image.Image) -> tuple[float, float, float, float]:
    red = np.asarray(image)[:, :, 0] > 128
    rows, cols = np.nonzero(red)
    return (float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1))


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize(("suffix", "fmt"), [(".jpg", "JPEG"), (".tif", "TIFF")])
def test_exif_orientation_turns_the_photo_and_its_boxes_alike(
    tmp_path: Path, orientation: int, suffix: str, fmt: str
) -> None:
    # Pillow turns a TIFF itself while loading; a JPEG is turned by the decoder.
    path = oriented(tmp_path / f"o{orientation}{suffix}", orientation, fmt=fmt)
    header = read_header(path)
    decoded = decode_image(path)
    assert header == decoded.header == ImageHeader(STORED_SIZE, orientation)
    assert decoded.image.size == header.upright_size
    assert red_bbox(decoded.image) == upright_box(RED_BOX, header)


@pytest.mark.parametrize(
    ("name", "fmt"), [("o6.png", "PNG"), ("o6.webp", "WEBP"), ("o6.tif", "TIFF")]
)
def test_other_formats_exif_orientation_is_applied(tmp_path: Path, name: str, fmt: str) -> None:
    path = oriented(tmp_path / name, 6, fmt=fmt)
    decoded = decode_image(path)
    assert decoded.header == read_header(path) == ImageHeader(STORED_SIZE, 6)
    assert red_bbox(decoded.image) == upright_box(RED_BOX, decoded.header)


def test_heic_orientation_is_reported_and_applied_once(tmp_path: Path) -> None:
    path = oriented(tmp_path / "o6.heic", 6, fmt="HEIF")
    decoded = decode_image(path)
    assert decoded.header == read_header(path) == ImageHeader(STORED_SIZE, 6)
    assert decoded.image.size == (32, 48)
    box = upright_box(RED_BOX, decoded.header)
    assert np.abs(np.array(red_bbox(decoded.image)) - box).max() <= 1  # lossy edges


def test_a_jpeg_decodes_at_a_reduced_scale_no_smaller_than_asked(tmp_path: Path) -> None:
    Image.new("RGB", (640, 480), COLOUR).save(tmp_path / "big.jpg")
    assert decode_image(tmp_path / "big.jpg", min_size=100).image.size == (160, 120)
    assert decode_image(tmp_path / "big.jpg").image.size == (640, 480)


def test_broken_files_are_refused_with_the_reason(tmp_path: Path) -> None:
    Image.new("RGB", (256, 256), COLOUR).save(tmp_path / "whole.jpg", quality=95)
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.png").write_bytes(b"not an image at all")
    Image.new("1", (10_000, 9_000)).save(tmp_path / "bomb.png")  # 90 MP of zeros: 12 kB
    with pytest.raises(UnreadableImage, match="truncated"):
        decode_image(tmp_path / "truncated.jpg")
    with pytest.raises(UnreadableImage, match="not an image format"):
        read_header(tmp_path / "text.png")
    with pytest.raises(UnreadableImage, match="decompression bomb"):
        read_header(tmp_path / "bomb.png")


def test_only_plain_jpegs_are_left_to_another_decoder(tmp_path: Path) -> None:
    plain = solid(tmp_path / "plain.jpg", "JPEG", quality=95)
    progressive = solid(tmp_path / "progressive.jpg", "JPEG", progressive=True)
    gray = tmp_path / "gray.jpg"
    Image.new("L", (40, 24), 90).save(gray)
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (40, 24), (10, 200, 30, 0)).save(cmyk)
    data = plain.read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) - 40])
    assert plain_jpeg_header(plain) == ImageHeader((40, 24), 1)
    assert plain_jpeg_header(progressive) == ImageHeader((40, 24), 1)
    assert plain_jpeg_header(gray) == ImageHeader((40, 24), 1)
    # The orientation is the caller's to apply, as decode_image applies it.
    assert plain_jpeg_header(oriented(tmp_path / "o6.jpg", 6)) == ImageHeader(STORED_SIZE, 6)
    # Decode_image's to read: another decoder would invert or convert them otherwise.
    assert plain_jpeg_header(cmyk) is None
    adobe_rgb = tmp_path / "adobe_rgb.jpg"  # an APP14 marker: transform 0, channels are RGB
    app14 = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"
    adobe_rgb.write_bytes(data[:2] + app14 + data[2:])
    assert Image.open(adobe_rgb).info["adobe_transform"] == 0
    assert plain_jpeg_header(adobe_rgb) is None
    assert plain_jpeg_header(tmp_path / "truncated.jpg") is None
    assert plain_jpeg_header(solid(tmp_path / "a.png", "PNG")) is None
    assert plain_jpeg_header(solid(tmp_path / "png.jpg", "PNG")) is None  # named otherwise
