"""export_all: every format from one call, the folder's contents, failures that name the format."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tests.worker.export.conftest import (
    ARCHITECTURE,
    ATOL,
    IMAGE_SIZE,
    LABELS,
    METRICS,
    MODEL_VERSION,
    ExportRun,
)
from worker.export import FORMATS, ExportFailed, ExportInterrupted, Manifest, export_all


def export(
    model: nn.Module, images: torch.Tensor, out_dir: Path, formats: list[str], **options: Any
) -> Manifest:
    return export_all(
        model=model,
        class_names=LABELS,
        image_size=IMAGE_SIZE,
        architecture=ARCHITECTURE,
        formats=formats,
        check_images=images,
        out_dir=out_dir,
        metrics=METRICS,
        model_version=MODEL_VERSION,
        **options,
    )


def test_every_format_exports_and_passes_its_check(exported: ExportRun) -> None:
    manifest = exported.manifest
    assert manifest.succeeded
    assert list(manifest.formats) == list(FORMATS)
    for name, result in manifest.formats.items():
        assert result.status == "passed", (name, result.error)
        assert result.check is not None and result.check.passed, name
        assert result.files and (exported.out_dir / result.files[0]).is_file()
        assert manifest.model_file(name) == result.files[0]


def test_the_folder_holds_exactly_what_may_be_uploaded(exported: ExportRun) -> None:
    names = sorted(p.name for p in exported.out_dir.iterdir())
    assert names == sorted(exported.manifest.upload_names())


def test_runnable_formats_record_parity_within_the_stated_tolerance(exported: ExportRun) -> None:
    for name in ("onnx", "pytorchmobile", "torch", "executorch"):
        check = exported.manifest.formats[name].check
        assert check is not None and check.tolerance is not None
        assert check.tolerance.max_abs_diff == ATOL
        assert check.images == 12
        assert check.max_abs_diff is not None and check.max_abs_diff <= ATOL, name
        assert check.top1_agreement == 1.0, name


def test_an_unknown_format_fails_by_name_while_the_others_are_delivered(
    classifier: nn.Module, check_images: torch.Tensor, tmp_path: Path
) -> None:
    with pytest.raises(ExportFailed, match="'webp-model'") as failure:
        export(classifier, check_images, tmp_path, ["torch", "webp-model"])
    assert list(failure.value.failures) == ["webp-model"]
    again = pickle.loads(pickle.dumps(failure.value))  # noqa: S301 - bytes made just above
    assert again.failures == failure.value.failures
    manifest = Manifest.read(tmp_path / "manifest.json")
    assert manifest.formats["torch"].status == "passed"
    assert manifest.failed.keys() == {"webp-model"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(manifest.upload_names())
    assert {"model.pt", "model_state_dict.pt", "labels.txt"} <= set(manifest.upload_names())


class FrozenByTrace(nn.Module):
    """Reads the batch's brightness into Python: tracing freezes it, so exports differ."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, len(LABELS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        brightness = float(x.mean())
        return self.head(x.mean(dim=(2, 3))) * (1 + 20 * brightness)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_an_export_that_differs_from_pytorch_fails_its_check_and_is_removed(
    check_images: torch.Tensor, tmp_path: Path
) -> None:
    torch.manual_seed(1)
    with pytest.raises(ExportFailed) as failure:
        export(FrozenByTrace().eval(), check_images, tmp_path, ["torch", "pytorchmobile"])
    message = str(failure.value)
    assert "torch" in message and "pytorchmobile" in message and "max abs diff" in message
    manifest = failure.value.manifest
    assert manifest.failed.keys() == {"torch", "pytorchmobile"}
    check = manifest.formats["torch"].check
    assert check is not None and not check.passed and check.max_abs_diff is not None
    assert check.max_abs_diff > ATOL
    assert manifest.files == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.txt", "manifest.json"]
    assert Manifest.read(tmp_path / "manifest.json") == manifest


class BranchOnData(nn.Module):
    """Branches on a tensor's value: runs and traces fine, but torch.export refuses it."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, len(LABELS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3))
        if pooled.sum() > -1e9:  # always true, so the trace is faithful
            return self.head(pooled)
        return -self.head(pooled)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_an_exporter_error_fails_only_that_format(
    check_images: torch.Tensor, tmp_path: Path
) -> None:
    torch.manual_seed(2)
    with pytest.raises(ExportFailed, match=r"executorch: export failed: \w+") as failure:
        export(BranchOnData().eval(), check_images, tmp_path, ["executorch", "torch"])
    manifest = failure.value.manifest
    assert manifest.failed.keys() == {"executorch"}
    assert manifest.formats["torch"].status == "passed"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(manifest.upload_names())
    assert not (tmp_path / "model.pte").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"check_images": torch.rand(2, 3, 32, 32)}, "check_images must be N×3×48×48"),
        ({"check_images": torch.rand(2, 3, 48, 48) * 4 - 2}, r"in \[0, 1\], not normalised"),
        ({"check_images": torch.zeros(0, 3, 48, 48)}, "N ≥ 1"),
        ({"class_names": ["a", "b"]}, "model outputs 3 classes but class_names has 2"),
        ({"class_names": ["a", "b", "a"]}, "class_names must be unique"),
        ({"class_names": ["a", "b\nc", "d"]}, "non-blank single lines"),
        ({"formats": []}, "formats must name at least one of onnx, coreml"),
        ({"metrics": {"accuracy": torch.tensor(1.0)}}, "metrics must be JSON-serialisable"),
    ],
)
def test_arguments_that_make_every_export_meaningless_are_refused_up_front(
    classifier: nn.Module, tmp_path: Path, change: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {
        "model": classifier,
        "class_names": LABELS,
        "image_size": IMAGE_SIZE,
        "architecture": ARCHITECTURE,
        "formats": ["torch"],
        "check_images": torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE),
        "out_dir": tmp_path / "out",
        "metrics": METRICS,
        "model_version": MODEL_VERSION,
    }
    with pytest.raises(ValueError, match=message):
        export_all(**(arguments | change))  # type: ignore[arg-type]
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_an_interrupted_export_stops_between_formats_and_writes_no_manifest(
    classifier: nn.Module, check_images: torch.Tensor, tmp_path: Path
) -> None:
    """The job's cancel / wall-time / lost-claim flag is asked before each format: once it
    says stop, no further format starts and nothing claims to be delivered."""
    asked: list[int] = []

    def interrupted() -> bool:
        asked.append(len(asked))
        return len(asked) > 1  # stop once the first format is done

    with pytest.raises(ExportInterrupted) as stop:
        export(
            classifier,
            check_images,
            tmp_path,
            ["torch", "onnx", "executorch"],
            interrupted=interrupted,
        )
    assert stop.value.done == ["torch"]
    assert str(stop.value) == "export interrupted after torch"
    assert len(asked) == 2
    assert not (tmp_path / "manifest.json").exists()
    assert not (tmp_path / "model.onnx").exists() and not (tmp_path / "model.pte").exists()
