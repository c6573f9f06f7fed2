"""torchvision's JPEG decode into the cache against Pillow's, on the CPU (libjpeg-turbo; a
GPU runs the same code with nvJPEG, which bench/gpu_check.py compares there)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from shared.images import UPRIGHT_TRANSPOSE, centre_view, decode_image
from worker.classification import device_decode
from worker.classification.batches import ImageCache
from worker.classification.device_decode import decode_plain_jpegs, upright, view
from worker.classification.task import ClassificationTask
from worker.engine.config import TrainConfig

SIZE = 64
CPU = torch.device("cpu")
# The issue's bound on the mean difference per pixel between the two decoders' views.
MEAN_DIFFERENCE = 2.0


def photo(path: Path, size: tuple[int, int], seed: int, mode: str = "RGB") -> Path:
    """A photo-like JPEG: smooth colour fields with fine noise, and a bright block off centre
    (a view cropped or resized otherwise than Pillow's moves it)."""
    width, height = size
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(2, height // 16), max(2, width // 16), generator=generator)
    smooth = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic")
    noise = torch.randn(1, 3, height, width, generator=generator) * 0.04
    pixels = ((smooth + noise).clamp(0, 1) * 255).to(torch.uint8)[0]
    pixels[:, height // 3 : height // 2, width // 2 : 3 * width // 4] = 250
    image = F.to_pil_image(pixels)
    image.convert(mode).save(path, quality=90)
    return path


def pillow_view(path: Path, size: int) -> torch.Tensor:
    return F.pil_to_tensor(centre_view(decode_image(path, size).image, size))


def tagged(path: Path, orientation: int) -> Path:
    """The JPEG re-saved with an EXIF orientation (its stored pixels as they were)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.open(path).save(path, exif=exif.tobytes(), quality=90)
    return path


def test_torchvision_views_match_pillows_within_two_levels(tmp_path: Path) -> None:
    sizes = [(320, 240), (240, 320), (1000, 180), (96, 64), (40, 30)]  # the last: enlarged
    paths = [photo(tmp_path / f"p{i}.jpg", size, i) for i, size in enumerate(sizes)]
    paths.append(photo(tmp_path / "gray.jpg", (200, 150), 9, mode="L"))
    paths += [tagged(photo(tmp_path / f"o{o}.jpg", (200, 120), o), o) for o in (3, 6, 8)]
    first, second = Image.open(paths[0]), Image.open(paths[1]).resize((320, 240))
    first.save(tmp_path / "phone.mpo", "MPO", save_all=True, append_images=[second])
    paths.append(tmp_path / "phone.mpo")  # a multi-picture file: its first picture counts
    cache = ImageCache(len(paths), SIZE)
    decoded = decode_plain_jpegs(paths, cache, CPU, threads=2)
    assert sorted(decoded.headers) == list(range(len(paths)))
    for row, path in enumerate(paths):
        reference = pillow_view(path, SIZE).float()
        difference = (cache.pixels[row].float() - reference).abs().mean()
        assert difference <= MEAN_DIFFERENCE, (path.name, float(difference))
        header, view = decoded(row) or (None, None)
        assert header == decode_image(path).header
        assert view is not None and np.array_equal(
            np.asarray(view), cache.pixels[row].permute(1, 2, 0)
        )
    gray = cache.pixels[5]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    assert decoded.headers[7].orientation == 6


@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_orientations_turn_as_pillows_transposes(orientation: int) -> None:
    stored = torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8)
    transpose = UPRIGHT_TRANSPOSE.get(orientation)
    image = F.to_pil_image(stored)
    expected = F.pil_to_tensor(image if transpose is None else image.transpose(transpose))
    assert torch.equal(upright(stored, orientation), expected)


@pytest.mark.parametrize("size", [32, 63])
@pytest.mark.parametrize("width_height", [(320, 240), (67, 200), (65, 64), (41, 29)])
def test_the_view_is_centre_views_geometry_on_the_same_pixels(
    width_height: tuple[int, int], size: int
) -> None:
    # One decode, both resizes: what is left is rounding (at most one level), never a
    # crop a pixel off.
    width, height = width_height
    generator = torch.Generator().manual_seed(width * height + size)
    pixels = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
    expected = F.pil_to_tensor(centre_view(F.to_pil_image(pixels), size)).int()
    assert (view(pixels, size).int() - expected).abs().max() <= 1
    assert (view(pixels, size).roll(1, dims=2).int() - expected).abs().max() > 1


def test_a_batch_torchvision_refuses_is_retried_file_by_file_and_the_rest_left_to_pillow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = [photo(tmp_path / f"p{i}.jpg", (120, 90), i) for i in range(3)]
    refused = paths[1].read_bytes()
    real = device_decode.decode_jpeg

    def fussy(data: torch.Tensor | list[torch.Tensor], **options: object) -> object:
        files = data if isinstance(data, list) else [data]
        if any(bytes(one.numpy()) == refused for one in files):
            raise RuntimeError("nvjpeg: unsupported stream")
        return real(data, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(device_decode, "decode_jpeg", fussy)
    cache = ImageCache(len(paths), SIZE)
    decoded = decode_plain_jpegs(paths, cache, CPU, threads=1)
    assert sorted(decoded.headers) == [0, 2]
    assert decoded(1) is None  # the dataset check decodes it with Pillow


def test_a_view_cropped_off_centre_is_caught(tmp_path: Path) -> None:
    # The bound above is not loose: the same decode, its crop moved by 4 pixels, is outside it.
    path = photo(tmp_path / "wide.jpg", (320, 200), 3)
    cache = ImageCache(1, SIZE)
    decode_plain_jpegs([path], cache, CPU, threads=1)
    shifted = torch.roll(cache.pixels[0], shifts=4, dims=2)
    reference = pillow_view(path, SIZE).float()
    assert (shifted.float() - reference).abs().mean() > MEAN_DIFFERENCE
    assert (cache.pixels[0].float() - reference).abs().mean() <= MEAN_DIFFERENCE


def write_mixed_dataset(root: Path) -> dict[str, Path]:
    """Two classes of plain JPEGs, plus files torchvision must leave to Pillow."""
    files: dict[str, Path] = {}
    for label, name in enumerate(("cats", "dogs")):
        folder = root / name
        folder.mkdir(parents=True)
        for index in range(6):
            files[f"{name}/{index}"] = photo(folder / f"{index}.jpg", (120, 90), 10 * label + index)
    cats = root / "cats"
    Image.open(files["cats/0"]).save(cats / "copy.png")  # one picture: a duplicate pair
    (cats / "same.jpg").write_bytes(files["cats/1"].read_bytes())  # an exact duplicate
    rotated = Image.open(files["dogs/0"])
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated.save(root / "dogs" / "rotated.jpg", exif=exif.tobytes(), quality=90)
    data = files["dogs/1"].read_bytes()
    (root / "dogs" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    return files


@pytest.mark.timeout(120)
def test_the_dataset_check_gives_the_same_findings_with_either_decoder(tmp_path: Path) -> None:
    root = tmp_path / "dataset"
    write_mixed_dataset(root)
    config = TrainConfig(
        image_size=SIZE, num_workers=2, pretrained="scratch", jpeg_decoder="pillow"
    )
    by_pillow, by_torchvision = ClassificationTask(), ClassificationTask()
    report = by_pillow.check_dataset(root, config)
    again = by_torchvision.check_dataset(root, replace(config, jpeg_decoder="torchvision"))
    pillow, torchvision = by_pillow._checked, by_torchvision._checked
    assert pillow is not None and torchvision is not None
    assert pillow.decoded_by_torchvision == 0
    # 12 plain JPEGs, the exact copy and the rotated one; not the PNG or the truncated one.
    assert torchvision.decoded_by_torchvision == 14
    # The same groups; but cats/copy.png (Pillow's) and cats/0.jpg (torchvision's) are
    # exact copies only when one decoder reads both: across decoders they are near ones.
    found, found_again = report.as_json(), again.as_json()
    assert found["duplicates"]["exact_groups"] == 2 and found["duplicates"]["near_groups"] == 0
    assert found_again["duplicates"]["exact_groups"] == 1
    assert found_again["duplicates"]["near_groups"] == 1
    groups = [group["files"] for group in found["duplicates"]["groups"]]
    assert groups == [group["files"] for group in found_again["duplicates"]["groups"]]
    assert groups == [["cats/0.jpg", "cats/copy.png"], ["cats/1.jpg", "cats/same.jpg"]]
    assert {k: v for k, v in found_again.items() if k != "duplicates"} == {
        k: v for k, v in found.items() if k != "duplicates"
    }
    assert torchvision.split.train == pillow.split.train
    assert torchvision.split.val == pillow.split.val
    assert torchvision.split.skipped_files == ("dogs/truncated.jpg",)
    layout = by_pillow.layout(root)
    assert pillow.cache is not None and torchvision.cache is not None
    for image in layout.files:
        name = image.path.relative_to(root).as_posix()
        ours, theirs = torchvision.cache.pixels[image.row], pillow.cache.pixels[image.row]
        if name == "cats/copy.png":
            assert torch.equal(ours, theirs), name  # Pillow decoded it in both runs
        elif name != "dogs/truncated.jpg":
            assert (ours.float() - theirs.float()).abs().mean() <= MEAN_DIFFERENCE, name
