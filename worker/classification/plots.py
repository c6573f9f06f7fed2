"""The classifier's own plot: the confusion matrix of the best epoch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from worker.engine.plots import DPI

# Past this many classes the cell counts no longer fit; the colours still tell the story.
MAX_ANNOTATED_CLASSES = 25


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
