"""PNG plots of a run: loss/accuracy curves and the confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Past this many classes the cell counts no longer fit; the colours still tell the story.
MAX_ANNOTATED_CLASSES = 25
DPI = 120


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


def plot_confusion(matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: Path) -> None:
    """Confusion matrix coloured by row share (recall), annotated with counts when it fits."""
    classes = len(class_names)
    side = min(4 + 0.45 * classes, 30)
    figure = Figure(figsize=(side + 1.5, side), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    row_share = [[count / max(1, sum(row)) for count in row] for row in matrix]
    image = axes.imshow(row_share, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, label="share of the true class")
    axes.set(
        title="Confusion matrix (validation, best epoch)",
        xlabel="predicted",
        ylabel="true",
        xticks=range(classes),
        yticks=range(classes),
    )
    axes.set_xticklabels(class_names, rotation=45, ha="right")
    axes.set_yticklabels(class_names)
    if classes <= MAX_ANNOTATED_CLASSES:
        for true, row in enumerate(matrix):
            for predicted, count in enumerate(row):
                dark = row_share[true][predicted] > 0.5
                axes.text(
                    predicted,
                    true,
                    str(count),
                    ha="center",
                    va="center",
                    color="white" if dark else "black",
                )
    figure.savefig(path)
