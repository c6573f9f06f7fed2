"""PNG plots of a run: loss and score curves (a task adds its own plots)."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

DPI = 120


def matplotlib_missing() -> bool:
    """True on a host without matplotlib (a bare GPU host running the benchmarks, which has
    only torch and torchvision): such a run writes no plots and says so. The worker image
    has it (requirements/worker.txt)."""
    return importlib.util.find_spec("matplotlib") is None


def plot_curves(
    epochs: Sequence[int],
    train_loss: Sequence[float],
    val_loss: Sequence[float],
    val_accuracy: Sequence[float],
    path: Path,
    loss_label: str = "cross-entropy",
    accuracy_title: str = "Validation accuracy",
) -> None:
    """Loss (train and val) and validation accuracy (or mAP) per epoch, side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Figure + Agg canvas instead of pyplot: no global backend state, safe in any thread.
    figure = Figure(figsize=(10, 4), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    loss_axes.plot(epochs, train_loss, marker="o", label="train")
    loss_axes.plot(epochs, val_loss, marker="o", label="validation")
    loss_axes.set(title="Loss", xlabel="epoch", ylabel=loss_label)
    loss_axes.legend()
    accuracy_axes.plot(epochs, [100 * a for a in val_accuracy], marker="o", color="tab:green")
    accuracy_axes.set(title=accuracy_title, xlabel="epoch", ylabel="%", ylim=(0, 100))
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    figure.savefig(path)
