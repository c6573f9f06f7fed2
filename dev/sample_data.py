"""Small real image datasets (coloured squares on noise) that a tiny CNN separates in seconds.

Used by the tests and by `python -m dev.sample_data`, which uploads one to the local Azurite.
"""

from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path

from PIL import Image

# Each class is a colour family; noise and position vary so the images are not identical.
CLASS_COLOURS = {"bad": (200, 40, 40), "good": (40, 60, 210), "okay": (40, 190, 60)}


def image_bytes(colour: tuple[int, int, int], size: int, seed: str, fmt: str = "PNG") -> bytes:
    rng = random.Random(seed)  # noqa: S311 - test pictures, not secrets
    image = Image.new("RGB", (size, size), tuple(rng.randint(0, 60) for _ in range(3)))
    pixels = image.load()
    assert pixels is not None
    side = size // 2
    left, top = rng.randint(0, size - side), rng.randint(0, size - side)
    for x in range(left, left + side):
        for y in range(top, top + side):
            pixels[x, y] = tuple(max(0, min(255, c + rng.randint(-30, 30))) for c in colour)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def dataset_files(
    classes: tuple[str, ...] = ("bad", "good"), per_class: int = 16, size: int = 32
) -> dict[str, bytes]:
    """Relative path → bytes of a class-folder dataset."""
    return {
        f"{name}/{name}_{index:03d}.png": image_bytes(CLASS_COLOURS[name], size, f"{name}-{index}")
        for name in classes
        for index in range(per_class)
    }


def write_dataset(root: Path, files: dict[str, bytes]) -> Path:
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def zip_bytes(files: dict[str, bytes], top: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for relative, data in files.items():
            bundle.writestr(f"{top}{relative}", data)
    return buffer.getvalue()


def main() -> None:
    """Upload a sample dataset to the Azurite that `make dev` runs (container `samples`)."""
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    from shared.settings import AZURITE_CONNECTION_STRING

    service = BlobServiceClient.from_connection_string(AZURITE_CONNECTION_STRING)
    try:
        container = service.create_container("samples")
    except ResourceExistsError:
        container = service.get_container_client("samples")
    files = dataset_files(("bad", "good", "okay"), per_class=40, size=64)
    for relative, data in files.items():
        container.upload_blob(f"shapes/{relative}", data, overwrite=True)
    print(f"uploaded {len(files)} images to container 'samples', folder 'shapes'")


if __name__ == "__main__":
    main()
