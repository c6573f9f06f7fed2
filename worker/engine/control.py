"""How a run ends early: interrupted (warm stop), cancelled, or diverged."""

from __future__ import annotations

import math
from collections.abc import Callable


class TrainingStopped(Exception):
    """Training ended early; epoch is the epoch it ended in."""

    def __init__(self, epoch: int, message: str):
        super().__init__(message)
        self.epoch = epoch


class TrainingInterrupted(TrainingStopped):
    """stop_after_epoch asked to stop; checkpoint_last.pt holds the finished epoch."""

    def __init__(self, epoch: int):
        super().__init__(epoch, f"training stopped after epoch {epoch}; resume from it")


class TrainingCancelled(TrainingStopped):
    """cancelled() returned True; the epoch in progress was abandoned."""

    def __init__(self, epoch: int):
        super().__init__(epoch, f"training cancelled during epoch {epoch}")


class TrainingDiverged(TrainingStopped, ValueError):
    """The loss became NaN or infinite: the learning rate is too high for this data."""

    def __init__(self, epoch: int, loss: float, learning_rate: float):
        super().__init__(
            epoch,
            f"training diverged in epoch {epoch} (the loss became {loss}); "
            f"try a smaller learning_rate than {learning_rate}",
        )


def check_finite(epoch: int, loss: float, learning_rate: float) -> None:
    """Raise TrainingDiverged when an epoch's loss is NaN or infinite."""
    if not math.isfinite(loss):
        raise TrainingDiverged(epoch, loss, learning_rate)


def cancel_poller(cancelled: Callable[[], bool] | None, epoch: int) -> Callable[[], None]:
    """A poll() for the steps of one epoch: raises TrainingCancelled once cancelled() says so."""

    def poll() -> None:
        if cancelled is not None and cancelled():
            raise TrainingCancelled(epoch)

    return poll
