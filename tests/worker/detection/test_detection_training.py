"""Training a real detector on the CPU: it learns, reports mAP, resumes and stops like the
classification engine."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from dev.sample_detection import write_detection_dataset
from worker.classification.task import ClassificationTask
from worker.detection.annotations import load_detection_dataset
from worker.detection.data import DetectionImages
from worker.detection.metrics import DetectionEvaluator
from worker.detection.models import build_detector
from worker.detection.task import DetectionTask, load_best_detector
from worker.engine.checkpoint import load_checkpoint
from worker.engine.config import TrainConfig
from worker.engine.control import TrainingInterrupted
from worker.engine.loop import fit
from worker.engine.results import CHECKPOINT_LAST, EpochReport, TrainResult

# The smallest detector, one easy class, 64 px: about 15 s on two idle cores.
FAST_CONFIG = TrainConfig(
    task="detection",
    architecture="ssdlite320_mobilenet_v3_large",
    epochs=8,
    learning_rate=0.01,
    image_size=64,
    batch_size=4,
    step_size=100,
    gamma=0.1,
    pretrained="scratch",
    num_workers=1,
)
# An untrained SSDlite scores about 0.003 here; a trained one 0.2 or more.
LEARNED_MAP = 0.1


@pytest.fixture(scope="module")
def squares(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("squares")
    write_detection_dataset(root, "coco", images=64, size=64, class_names=("square",))
    return root


@pytest.fixture(scope="module")
def trained(
    squares: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainResult, list[EpochReport]]:
    reports: list[EpochReport] = []
    out = tmp_path_factory.mktemp("trained")
    return fit(DetectionTask(), squares, out, FAST_CONFIG, on_epoch=reports.append), reports


def untrained_map(dataset_dir: Path, config: TrainConfig) -> float:
    torch.manual_seed(config.seed)
    model, _ = build_detector(config.architecture, 1, config.image_size, "scratch", None)
    dataset = load_detection_dataset(dataset_dir)
    streamed = DetectionImages(dataset.val, config, torch.device("cpu"), [], pixels=None)
    images, targets = streamed.batch(list(range(len(dataset.val))))
    evaluator = DetectionEvaluator(1)
    with torch.inference_mode():
        predictions = model.eval()(list(images.float() / 255))
    evaluator.add(
        [{**p, "labels": p["labels"] - 1} for p in predictions],
        [{**t, "labels": t["labels"] - 1} for t in targets],
    )
    return evaluator.report().map_50


def test_the_detector_learns_the_boxes(
    trained: tuple[TrainResult, list[EpochReport]], squares: Path
) -> None:
    result, reports = trained
    baseline = untrained_map(squares, FAST_CONFIG)
    assert result.best_val_accuracy >= LEARNED_MAP, [r.val_accuracy for r in reports]
    assert result.best_val_accuracy > 10 * baseline
    assert [r.epoch for r in reports] == list(range(1, 9))
    best = max(reports, key=lambda r: (r.val_accuracy, -r.epoch))
    assert (result.best_epoch, result.best_val_accuracy) == (best.epoch, best.val_accuracy)
    assert result.report.map_50 == result.best_val_accuracy
    assert 0 <= result.report.map_50_95 <= result.report.map_50
    assert result.report.ground_truth["square"] > 0


def test_metrics_file_reports_map_per_class_and_the_dataset(
    trained: tuple[TrainResult, list[EpochReport]],
) -> None:
    result, reports = trained
    metrics = json.loads(result.metrics_path.read_text())
    assert metrics["task"] == "detection"
    assert metrics["class_names"] == ["square"]
    assert metrics["dataset"]["format"] == "coco"
    assert metrics["dataset"]["counts"]["background_images"] > 0
    assert [e["val_accuracy"] for e in metrics["epochs"]] == [r.val_accuracy for r in reports]
    assert metrics["final"]["per_class_ap_50"]["square"] == result.report.map_50
    assert metrics["preprocessing"]["keep_aspect_ratio"] is False
    assert result.plots["curves"].stat().st_size > 1000
    assert all(r.train_loss > 0 and r.val_loss > 0 for r in reports)


def test_the_best_checkpoint_detects_squares(
    trained: tuple[TrainResult, list[EpochReport]], squares: Path
) -> None:
    result, _ = trained
    model, class_names, config = load_best_detector(result.checkpoint_best, None)
    assert class_names == ("square",)
    assert config == FAST_CONFIG
    images, files = DetectionTask().export_images(squares, config, 4)
    assert files == []  # no raw-file check for detectors yet
    assert images.shape == (4, 3, 64, 64) and images.min() >= 0 and images.max() <= 1
    with torch.inference_mode():
        detections = model(list(images))
    confident = [d["scores"] > 0.3 for d in detections]
    assert sum(int(c.sum()) for c in confident) > 0
    assert all(set(d["labels"].tolist()) <= {1} for d in detections)  # 1 = "square"


def test_an_interrupted_run_resumes_to_the_same_weights(squares: Path, tmp_path: Path) -> None:
    config = replace(FAST_CONFIG, epochs=3)
    whole = fit(DetectionTask(), squares, tmp_path / "whole", config)

    with pytest.raises(TrainingInterrupted) as stopped:
        fit(DetectionTask(), squares, tmp_path / "first", config, stop_after_epoch=lambda: True)
    assert stopped.value.epoch == 1
    reports: list[EpochReport] = []
    resumed = fit(
        DetectionTask(),
        squares,
        tmp_path / "second",
        config,
        on_epoch=reports.append,
        resume_from=tmp_path / "first" / CHECKPOINT_LAST,
    )
    assert [r.epoch for r in reports] == [2, 3]
    assert [r.val_accuracy for r in resumed.history] == [r.val_accuracy for r in whole.history]
    expected = load_checkpoint(whole.checkpoint_last)["model"]
    actual = load_checkpoint(resumed.checkpoint_last)["model"]
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[name], actual[name]) for name in expected)


def test_a_resume_with_other_parameters_is_refused(squares: Path, tmp_path: Path) -> None:
    config = replace(FAST_CONFIG, epochs=2)
    with pytest.raises(TrainingInterrupted):
        fit(DetectionTask(), squares, tmp_path / "first", config, stop_after_epoch=lambda: True)
    with pytest.raises(ValueError, match=r"learning_rate 0\.01 → 0\.02"):
        fit(
            DetectionTask(),
            squares,
            tmp_path / "second",
            replace(config, learning_rate=0.02),
            resume_from=tmp_path / "first" / CHECKPOINT_LAST,
        )


def test_task_and_architecture_must_agree(squares: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be one of ssdlite320_mobilenet_v3_large"):
        TrainConfig(task="detection", architecture="resnet18")
    with pytest.raises(ValueError, match=r"mobilenet_v3_large, .* for classification"):
        TrainConfig(architecture="fcos_resnet50_fpn")
    with pytest.raises(
        ValueError, match=r"config\.task is 'detection' but the task trains 'classif"
    ):
        fit(ClassificationTask(), squares, tmp_path, FAST_CONFIG)
    with pytest.raises(ValueError, match="is 'classification' but the task trains 'detection'"):
        fit(
            DetectionTask(),
            squares,
            tmp_path,
            replace(FAST_CONFIG, task="classification", architecture="resnet18"),
        )
