"""A run's own small figures, logged under ``figures/`` of the run: ``profile.png`` (the
gradient-vs-layer profile at initialization and at the end), ``loss.png`` (loss curves) and,
for a 2-D classifier, ``boundary.png`` (its decision boundary).

They are drawn off the training path: the training app asks the run's MLflow writer process
to call ``draw`` (by name, ``experiments.app.train.RUN_FIGURES``) once the run has ended,
while the training process goes on with its next run; the tuning runs of a tuned sweep
(``stage=tune``, which only choose the lr) get none.  Small PNGs at 100 dpi, drawn cheaply
(≈ 0.12 s of CPU for the three once the writer has drawn its first; ``docs/benchmarks.md``):
fixed margins and title positions, no minor ticks, no mathtext (legends, log tick labels),
a coarse grid for the boundary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from experiments.diagnostics.history import HISTORY_FILE, History
from experiments.figures import style
from experiments.figures.boundaries import (
    MODEL_FILE,
    decision_surface,
    draw_surface,
    load_model,
    run_dataset,
)
from experiments.figures.common import BATCH_LOSS_KEY, LOSS_KEYS, STEP, positive, spans_decades

DPI = 100
BOUNDARY_RESOLUTION = 60  # grid points per axis: ≈ 4 pixels each at this size
SIZE = (4.6, 2.4)  # inches: a 2.8 in panel and its legend beside it
PANEL_RIGHT = 0.66  # the panel's right edge (figure fraction) where a legend sits beside it
PROFILES = {"grad_norm": "‖∂L/∂Wˡ‖", "delta_norm": "‖δˡ‖"}  # plain text: mathtext costs
WHEN = {"init": "--", "final": "-"}  # profile → line style
SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def draw(folder: Path, params: Mapping[str, str], out: Path) -> list[Path]:
    """Write the run's figures into ``out``, from its artifact ``folder`` (``history.npz``,
    ``model.npz``) and its MLflow ``params``; return their paths."""
    style.apply()
    history = History.load(folder / HISTORY_FILE)
    figures = {"profile": profile_figure(history), "loss": loss_figure(history)}
    if (folder / MODEL_FILE).is_file():
        # one BLAS thread: the decision surface's small matmuls would keep a second thread
        # spinning on the core the next run trains on
        with threadpool_limits(1):
            boundary = boundary_figure(folder / MODEL_FILE, params)
        if boundary is not None:
            figures["boundary"] = boundary
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures.items():
        paths.append(out / f"{name}.png")
        fig.savefig(paths[-1], dpi=DPI)
    return paths


def small_figure(
    width: float, height: float, left: float = 0.2, right: float = 0.96
) -> tuple[Any, Any]:
    """A figure of one panel with fixed margins (``left``, ``right``: the panel's edges as
    fractions of the width): constrained layout would double the drawing time of such a
    small figure."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=left, right=right, bottom=0.18, top=0.88)
    return fig, fig.subplots()


def legend_beside(ax: Any) -> None:
    """The legend right of the panel, where it covers no data."""
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)


def log_scale(ax: Any) -> None:
    """A log y axis labelled 10⁻³, 10⁻² … in plain text: matplotlib's default labels are
    mathtext, a parse per label that costs more than the rest of the figure."""
    from matplotlib.ticker import FuncFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(decade))


def decade(value: float, _position: int = 0) -> str:
    """``10⁻³`` for 0.001, no label between powers of ten."""
    exponent = round(math.log10(value)) if value > 0 else None
    if exponent is None or not math.isclose(value, 10.0**exponent, rel_tol=1e-6):
        return ""
    return "10" + str(exponent).translate(SUPERSCRIPTS)


def finish(ax: Any, title: str, **labels: str) -> None:
    """Title (at a fixed height: placing it above the tick labels measures every one of
    them again) and axis labels; no minor ticks (a log axis's cost most to draw)."""
    ax.set_title(title, y=1.01)
    ax.set(**labels)
    ax.minorticks_off()


def profile_figure(history: History) -> Any:
    """‖∂L/∂Wˡ‖ and ‖δˡ‖ against the hidden layer, at initialization (--) and at the end (—)."""
    from matplotlib.ticker import MaxNLocator

    fig, ax = small_figure(*SIZE, left=0.15, right=PANEL_RIGHT)
    drawn = []
    for (family, label), colour in zip(PROFILES.items(), style.PALETTE, strict=False):
        for when, linestyle in WHEN.items():
            key = f"profile/{family}_{when}"
            if key in history.keys:
                layers, values = history.series(key)
                drawn.append(positive(values))
                ax.plot(layers, drawn[-1], linestyle, color=colour, marker="o", ms=3)
                ax.plot([], [], linestyle, color=colour, label=f"{label} ({when})")
    if spans_decades(drawn):
        log_scale(ax)
    finish(ax, "gradient flow", xlabel="hidden layer l (1 = input side)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    legend_beside(ax)
    return fig


def loss_figure(history: History) -> Any:
    """The epoch losses (train, val) and the minibatch loss on the recorded steps."""
    fig, ax = small_figure(*SIZE, left=0.15, right=PANEL_RIGHT)
    curves = [key for key in (BATCH_LOSS_KEY, *LOSS_KEYS) if key in history.keys]
    series = {key: history.series(key) for key in curves}
    for key, (steps, values) in series.items():
        faint = key == BATCH_LOSS_KEY
        ax.plot(steps, values, label=key, alpha=0.4 if faint else 1.0, lw=0.8 if faint else 1.2)
    if spans_decades([values for _, values in series.values()]):
        log_scale(ax)
    finish(ax, "loss", xlabel=STEP, ylabel="loss")
    legend_beside(ax)
    return fig


def boundary_figure(model: Path, params: Mapping[str, str]) -> Any | None:
    """The trained net's decision boundary on its data set; None unless 2-D classification."""
    data = run_dataset(params)
    if data.n_features != 2 or data.task != "classification":
        return None
    fig, ax = small_figure(SIZE[1], SIZE[1])
    net = load_model(model, params)
    draw_surface(ax, decision_surface(net, data, resolution=BOUNDARY_RESOLUTION))
    finish(ax, "decision boundary", xlabel="input x₁", ylabel="input x₂")
    return fig
