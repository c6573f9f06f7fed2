"""model_type → the Task that trains it; the only place the worker tells the tasks apart."""

from __future__ import annotations

from collections.abc import Callable

from worker.classification.task import ClassificationTask
from worker.detection.task import DetectionTask
from worker.engine.task import Task

TASKS: dict[str, Callable[[], Task]] = {
    "classification": ClassificationTask,
    "detection": DetectionTask,
}


def task_for(model_type: str) -> Task:
    """A fresh Task for one job of this model_type."""
    if model_type not in TASKS:
        raise ValueError(f"model_type must be one of {', '.join(TASKS)} (got {model_type!r})")
    return TASKS[model_type]()
