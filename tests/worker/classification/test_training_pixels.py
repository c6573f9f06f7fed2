"""Preprocessing, on-device augmentation and metrics arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import Tensor

from worker.classification import augment
from worker.classification.augment import BatchTransforms, random_crop_boxes_and_flips
from worker.classification.metrics import classification_report
from worker.classification.preprocessing import decode_image, eval_transform
from worker.engine.data import batch_sizes

SIZE = 32


def test_decode_image_is_the_eval_transform_in_uint8(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (50, 80, 3), dtype=torch.uint8, generator=generator)
    Image.fromarray(pixels.numpy()).save(tmp_path / "wide.png")
    decoded = decode_image(tmp_path / "wide.png", SIZE)
    assert decoded.shape == (3, SIZE, SIZE)
    assert decoded.dtype == torch.uint8
    reference = eval_transform(SIZE)(Image.open(tmp_path / "wide.png").convert("RGB"))
    transforms = BatchTransforms(SIZE, torch.device("cpu"), torch.Generator())
    assert torch.allclose(transforms.eval(decoded[None])[0], reference, atol=1e-5)


def test_decode_image_applies_exif_orientation(tmp_path: Path) -> None:
    image = Image.new("RGB", (60, 40), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 30, 40))  # left half blue
    exif = image.getexif()
    exif[0x0112] = 6  # stored rotated: viewers turn it 90° clockwise
    image.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    decoded = decode_image(tmp_path / "rotated.jpg", SIZE)
    top_row, bottom_row = decoded[:, 0, SIZE // 2], decoded[:, -1, SIZE // 2]
    assert top_row[2] > 200  # the blue half is on top once upright
    assert bottom_row[0] > 200


def test_a_full_image_box_without_flip_leaves_the_pixels_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def whole_images(
        batch: int, size: int, _generator: torch.Generator, _scale: tuple[float, float]
    ) -> tuple[Tensor, Tensor]:
        boxes = torch.tensor([[i, 0, 0, size, size] for i in range(batch)], dtype=torch.float32)
        return boxes, torch.zeros(batch, dtype=torch.bool)

    monkeypatch.setattr(augment, "random_crop_boxes_and_flips", whole_images)
    images = torch.randint(0, 256, (4, 3, SIZE, SIZE), dtype=torch.uint8)
    transforms = BatchTransforms(SIZE, torch.device("cpu"), torch.Generator())
    assert torch.allclose(transforms.train(images), transforms.eval(images), atol=1e-4)


def test_crop_boxes_stay_inside_the_image_and_follow_the_scale_range() -> None:
    generator = torch.Generator().manual_seed(0)
    boxes, flips = random_crop_boxes_and_flips(4096, SIZE, generator)
    left, top, right, bottom = boxes[:, 1], boxes[:, 2], boxes[:, 3], boxes[:, 4]
    assert torch.equal(boxes[:, 0], torch.arange(4096, dtype=torch.float32))
    assert (left >= 0).all() and (top >= 0).all()
    assert (right <= SIZE + 1e-4).all() and (bottom <= SIZE + 1e-4).all()
    area = (right - left) * (bottom - top) / SIZE**2
    assert area.min() >= 0.08 - 1e-4
    assert 0.4 < flips.float().mean() < 0.6


def test_training_batches_are_augmented_and_reproducible() -> None:
    images = torch.randint(0, 256, (8, 3, SIZE, SIZE), dtype=torch.uint8)
    first = BatchTransforms(SIZE, torch.device("cpu"), torch.Generator().manual_seed(5))
    again = BatchTransforms(SIZE, torch.device("cpu"), torch.Generator().manual_seed(5))
    augmented = first.train(images)
    assert augmented.shape == (8, 3, SIZE, SIZE)
    assert torch.equal(augmented, again.train(images))
    assert not torch.allclose(augmented, first.eval(images))


@pytest.mark.parametrize(
    ("count", "batch", "expected"),
    [(10, 4, [4, 4, 2]), (9, 4, [4, 4]), (8, 4, [4, 4]), (1, 4, []), (3, 1, [1, 1, 1])],
)
def test_a_last_batch_of_one_image_is_dropped_for_batchnorm(
    count: int, batch: int, expected: list[int]
) -> None:
    assert batch_sizes(count, batch, drop_single_last=True) == expected


def test_classification_report_from_a_confusion_matrix() -> None:
    confusion = torch.tensor([[3, 1, 0], [0, 2, 0], [1, 0, 0]])
    report = classification_report(confusion, ["a", "b", "c"])
    a, b, c = report.per_class
    assert report.accuracy == pytest.approx(5 / 7)
    assert (a.precision, a.recall, a.support) == (pytest.approx(3 / 4), pytest.approx(3 / 4), 4)
    assert b.precision == pytest.approx(2 / 3)
    assert b.f1 == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert (c.precision, c.recall, c.f1) == (0.0, 0.0, 0.0)  # never predicted, never right
    assert report.confusion_matrix == ((3, 1, 0), (0, 2, 0), (1, 0, 0))
