"""Charts of a pipeline's results, for the notebook (read-only, torch-free; tables: `launch.report`).

Built on matplotlib's object API with the Agg canvas, never `pyplot`: no GUI backend is selected,
in a notebook kernel, a test or a terminal alike. A notebook shows a `Chart` as a PNG image.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from launch.report import LEARNING_RATE
from ner_lightning.contract import PRIMARY_METRIC


@dataclass(frozen=True)
class Chart:
    """A matplotlib figure that a notebook displays as a PNG image (`_repr_png_`).

    Attributes:
        figure: The figure, for further styling or `savefig`.
    """

    figure: Figure

    def png(self) -> bytes:
        """The figure as PNG bytes."""
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()

    def _repr_png_(self) -> bytes:
        return self.png()

    def save(self, path: str | Path) -> Path:
        """Write the figure as PNG to `path` and return it."""
        path = Path(path)
        path.write_bytes(self.png())
        return path


def _figure(width: float = 6.4, height: float = 4.0) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)  # the figure draws with Agg, whatever backend the process has
    return figure


def sweep_chart(trials: pd.DataFrame, metric: str = PRIMARY_METRIC) -> Chart:
    """`metric` against the learning rate, one marker per head, the selected trial circled.

    Without a learning-rate column the x axis is the rank. Trials without a score (failed,
    pruned) are counted in the title.

    Args:
        trials: `ranked_trials(...)`.
        metric: The column on the y axis.
    """
    figure = _figure()
    axes = figure.add_subplot()
    scored = trials[trials[metric].notna()]
    by_rate = LEARNING_RATE in scored and scored[LEARNING_RATE].notna().all() and len(scored)
    x_column = LEARNING_RATE if by_rate else "rank"
    markers = {"crf": "s", "softmax": "o"}
    heads = scored["head"].fillna("unknown head")
    for head in sorted(heads.unique()):
        group = scored[heads == head]
        axes.scatter(
            group[x_column].astype(float),
            group[metric],
            marker=markers.get(head, "^"),
            s=60,
            alpha=0.85,
            label=head,
        )
    best = scored[scored["selected"]]
    if len(best):
        axes.scatter(
            best[x_column].astype(float),
            best[metric],
            s=260,
            facecolors="none",
            edgecolors="black",
            linewidths=1.5,
            label="selected",
        )
    if by_rate:
        axes.set_xscale("log")
    axes.set_xlabel("learning rate" if by_rate else "rank")
    axes.set_ylabel(metric)
    unscored = len(trials) - len(scored)
    axes.set_title(f"sweep: {len(trials)} trials" + (f" ({unscored} without {metric})" if unscored else ""))
    axes.grid(alpha=0.3)
    axes.legend(title="head", fontsize="small")
    return Chart(figure)


def training_curve_chart(history: pd.DataFrame, title: str = "final training") -> Chart:
    """The training curve: losses on the left axis, F1 on the right, against the optimizer step.

    Args:
        history: `metric_history(...)`.
        title: Chart title.
    """
    figure = _figure()
    loss_axes = figure.add_subplot()
    score_axes = loss_axes.twinx()
    colors = iter(("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"))
    lines = []
    for name, points in history.groupby("metric", sort=True):
        axes = loss_axes if "loss" in str(name) else score_axes
        lines += axes.plot(points["step"], points["value"], marker="o", label=str(name), color=next(colors))
    loss_axes.set_xlabel("step")
    loss_axes.set_ylabel("loss")
    score_axes.set_ylabel("F1")
    loss_axes.set_title(title)
    loss_axes.grid(alpha=0.3)
    if lines:
        loss_axes.legend(lines, [line.get_label() for line in lines], fontsize="small")
    return Chart(figure)
