"""Pure logic of worker/job.py (the pipeline itself is tested end to end beside this)."""

from __future__ import annotations

import pytest

from worker.job import halved_batch_size


@pytest.mark.parametrize(
    ("batch_size", "task", "half"),
    [
        (36, "classification", 18),
        (3, "classification", 1),
        (1, "classification", None),  # nothing smaller to try
        (5, "detection", 2),
        (3, "detection", None),  # a detector's batch norm needs two images
    ],
)
def test_the_restart_batch_is_half_and_never_below_the_tasks_smallest(
    batch_size: int, task: str, half: int | None
) -> None:
    assert halved_batch_size(batch_size, task) == half
