"""`python -m worker.weights DIR`: fill a weights cache with every ImageNet file the worker uses.

The worker never downloads weights while training (`AITRAINER_PRETRAINED=fail` ends a job
whose weights are missing); the worker image runs this at build time into
`AITRAINER_WEIGHTS_DIR`. The file names are the ones the model builders look for
(`weights_file_name`, `backbone_weights_file_name`): the basenames of torchvision's URLs,
whose `-<hex>` part is a prefix of the file's SHA-256, checked on download and on reuse.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from torch.hub import HASH_REGEX, download_url_to_file
from torchvision.models import get_model_weights

from shared.contract import CLASSIFICATION_ARCHITECTURES, DETECTION_ARCHITECTURES
from worker.classification.models import weights_file_name
from worker.detection.models import BACKBONE_WEIGHTS, backbone_weights_file_name

log = logging.getLogger("aitrainer.weights")


@dataclass(frozen=True)
class WeightsFile:
    """One file of the cache: where it comes from and which architectures need it."""

    url: str
    file_name: str
    architectures: tuple[str, ...] = field(default=())

    @property
    def sha256_prefix(self) -> str:
        found = HASH_REGEX.search(self.file_name)
        if not found or not found.group(1):
            raise ValueError(f"{self.file_name} carries no hash prefix")
        return found.group(1)


def required_weights() -> list[WeightsFile]:
    """Every file the classifiers and the detectors' backbones load, one entry per file."""
    wanted: dict[str, tuple[str, list[str]]] = {}  # file name -> (url, architectures)
    for architecture in CLASSIFICATION_ARCHITECTURES:
        url = get_model_weights(architecture).DEFAULT.url
        wanted.setdefault(weights_file_name(architecture), (url, []))[1].append(architecture)
    for architecture in DETECTION_ARCHITECTURES:
        url = BACKBONE_WEIGHTS[architecture].url
        name = backbone_weights_file_name(architecture)
        wanted.setdefault(name, (url, []))[1].append(architecture)
    return [WeightsFile(url, name, tuple(archs)) for name, (url, archs) in wanted.items()]


def is_valid(path: Path, sha256_prefix: str) -> bool:
    """The file exists and its SHA-256 starts with the prefix its name carries."""
    if not path.is_file():
        return False
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest().startswith(sha256_prefix)


def download_all(directory: Path, *, progress: bool = False) -> list[Path]:
    """Download what `directory` lacks (or holds corrupted); return every file's path."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for weights in required_weights():
        path = directory / weights.file_name
        if is_valid(path, weights.sha256_prefix):
            log.info("%s: present (%s)", weights.file_name, ", ".join(weights.architectures))
        else:
            log.info("%s: downloading for %s", weights.file_name, ", ".join(weights.architectures))
            # Downloads to a temporary name, checks the hash prefix, then renames.
            download_url_to_file(weights.url, str(path), weights.sha256_prefix, progress=progress)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.weights", description=__doc__)
    parser.add_argument("directory", type=Path, help="the weights cache (AITRAINER_WEIGHTS_DIR)")
    parser.add_argument("--list", action="store_true", help="print url and file name; no download")
    args = parser.parse_args(argv)
    if args.list:
        for weights in required_weights():
            print(weights.url, weights.file_name, ",".join(weights.architectures))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    paths = download_all(args.directory, progress=sys.stderr.isatty())
    total = sum(path.stat().st_size for path in paths)
    log.info("%d files, %.0f MB in %s", len(paths), total / 1e6, args.directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
