"""Per-layer metrics over training, one panel per config: ``saturation_dead``, ``update_ratio``
(``layer_grid``: a discrete colour per hidden layer, the output layer black),
``activation_stats`` (Glorot & Bengio, Fig. 2: hidden layers, mean with ±std bars against
epochs) and ``speed_of_learning`` (Nielsen, ch. 5: seeds aggregated, the book's values).

Also the helpers the other per-layer figures share: ``seed_lines`` (mean and 95% Student-t
interval over seeds, seaborn) and ``label_line_ends`` (names on the lines)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from experiments.comparison.records import ACTIVATION_KEY
from experiments.diagnostics.history import OUTPUT_TAG, FloatArray, History, IntArray
from experiments.diagnostics.recorder import SATURATION_THRESHOLD
from experiments.figures import style
from experiments.figures.common import (
    BIAS_GRAD,
    STEP,
    WIDTH_KEY,
    Built,
    Data,
    config_label,
    family_keys,
    finite_or_nan,
    group_runs,
    per_layer_over_time,
    positive,
    runs_with,
    t_interval,
)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

UPDATE_RATIO_GUIDE = 1e-3  # a healthy ‖ΔW‖/‖W‖ per step (Karpathy)
UPDATE_RATIO = r"$\Vert\Delta W^l\Vert_F \,/\, \Vert W^l\Vert_F$"
FULL_BIAS_GRAD = "full_bias_grad_norm"  # recorded with log.full_gradient
INTERVAL = "mean, 95% t-interval over seeds"
LOG_INTERVAL = "geometric mean, 95% t-interval over seeds"
EPOCH_KEY = "progress/epoch"
STAT_BARS = 8  # std bars per line in activation_stats
STAT_STAGGER = 0.012  # their sideways offset between layers, a fraction of the epochs shown
# Nielsen, NNDL ch. 5: ‖∂C/∂bˡ‖ per hidden layer at initialization (1000 MNIST images), by the
# number of hidden layers (../shared/FACTS.md)
BOOK_SPEEDS = {2: (0.07, 0.31), 3: (0.012, 0.060, 0.283)}
LABEL_GAP_PT = 10  # the least vertical distance between two line labels


# ---------------------------------------------------------------- shared by the per-layer figures


def seed_lines(
    ax: Axes,
    frame: pd.DataFrame,
    x: str,
    y: str,
    looks: dict[str, dict[str, Any]],
    log: bool = False,
    **kw: Any,
) -> None:
    """One line per ``frame["line"]``: the mean of ``y`` over seeds at each ``x`` with its 95%
    Student-t interval as a band (seaborn; the summary table's rule, ``outcomes.t_interval``).
    ``log``: a log y axis first, on which seaborn takes both of log y (the geometric mean)."""
    if log:
        ax.set_yscale("log")
    for line, rows in frame.groupby("line", sort=False):
        look = looks[str(line)]
        with warnings.catch_warnings():  # one point per line (one hidden layer): harmless
            warnings.filterwarnings("ignore", "Attempting to set identical low and high ylims")
            _lineplot(ax, rows, x, y, look, kw)


def _lineplot(
    ax: Axes, rows: pd.DataFrame, x: str, y: str, look: dict[str, Any], kw: dict[str, Any]
) -> None:
    """seaborn's mean and 95% t-interval of ``rows`` in one look."""
    import seaborn as sns

    sns.lineplot(
        rows,
        x=x,
        y=y,
        estimator="mean",
        errorbar=t_interval,
        color=look["color"],
        linestyle=look.get("linestyle", "-"),
        err_kws={"alpha": 0.18, "linewidth": 0},
        ax=ax,
        legend=False,
        **kw,
    )


def geometric_mean(values: Sequence[float]) -> float:
    """exp of the mean of ln v over the positive finite values (NaN if there is none): what
    ``seed_lines`` draws on a log axis."""
    logs = np.log([v for v in values if v > 0 and math.isfinite(v)])
    return float(np.exp(logs.mean())) if logs.size else math.nan


def label_line_ends(
    ax: Axes, ends: Sequence[tuple[float, float, str, str]], side: str, tries: int = 3
) -> None:
    """Name each line next to its end point (x, y, text, colour), on the ``side`` ("left" or
    "right") of it, labels pushed apart vertically to ``LABEL_GAP_PT`` so that none overlap;
    the x limits widen until every name is inside the panel (``tries``: how often to place
    them again), and the x axis line stops at the line ends."""
    if not ends:
        return
    fig = ax.get_figure(root=True)
    assert fig is not None
    fig.draw_without_rendering()  # the axes' final size, for points → data
    to_px, from_px = ax.transData, ax.transData.inverted()
    gap = LABEL_GAP_PT * fig.dpi / 72
    placed = sorted(((to_px.transform((x, y))[1], x, y, t, c) for x, y, t, c in ends))
    ys = [p[0] for p in placed]
    for i in range(1, len(ys)):
        ys[i] = max(ys[i], ys[i - 1] + gap)
    shift = max(0.0, ys[-1] - ax.bbox.y1 + gap / 2)  # keep the top label inside the panel
    texts = []
    for y_px, (_, x, _, text, colour) in zip(ys, placed, strict=True):
        x_px = to_px.transform((x, 0))[0] + (-3 if side == "left" else 3)
        x_data, y_data = from_px.transform((x_px, y_px - shift))
        ha = "right" if side == "left" else "left"
        texts.append(ax.text(x_data, y_data, text, color=colour, ha=ha, va="center", fontsize=7))
    left, right = ax.get_xlim()
    scale = ax.bbox.width / (right - left)  # pixels per data unit
    fits = []  # each name's room in pixels beside its line end, as a fraction of the width
    for t, (_, x, _, _, _) in zip(texts, placed, strict=True):
        box, end_px = t.get_window_extent(), ax.bbox.x0 + (x - left) * scale
        room = end_px - box.x0 if side == "left" else box.x1 - end_px
        fits.append((x, (room + 6) / ax.bbox.width))
    # the limit at which every name fits: (x − left′)/(right − left′) ≥ its fraction (left)
    if side == "left":
        wanted = min((x - f * right) / (1 - f) for x, f in fits)
        limits, widen = (wanted, right), wanted < left
        spine = (min(x for x, _ in fits), right)  # no axis line under the names
    else:
        wanted = max((x - f * left) / (1 - f) for x, f in fits)
        limits, widen = (left, wanted), wanted > right
        spine = (left, max(x for x, _ in fits))
    if widen and tries > 1:
        for t in texts:
            t.remove()
        ax.set_xlim(*limits)
        label_line_ends(ax, ends, side, tries - 1)
    ax.spines["bottom"].set_bounds(*spine)


def hidden_colours(depth: int) -> tuple[Any, Any]:
    """(norm, colour map): one discrete colour per hidden layer 1 … ``depth`` along viridis
    (its light yellow end left out), darker towards the input, so that greyscale keeps the
    order."""
    from matplotlib import colormaps
    from matplotlib.colors import BoundaryNorm, ListedColormap

    depth = max(depth, 1)
    colours = colormaps[style.LAYER_CMAP](np.linspace(0, 0.85, depth))
    return BoundaryNorm(np.arange(0.5, depth + 1), depth), ListedColormap(colours)


def split_output(history: History, family: str) -> tuple[IntArray, IntArray, FloatArray, Any]:
    """(steps, hidden layers 1 … H, their matrix (H × steps), the output layer's row or None)."""
    steps, layers, matrix = per_layer_over_time(history, family)
    if f"{family}/{OUTPUT_TAG}" in history.keys:
        return steps, layers[:-1], matrix[:-1], matrix[-1]
    return steps, layers, matrix, None


def epochs_of(history: History, steps: IntArray) -> FloatArray:
    """The epoch (fractional) of each optimizer step, from the epoch records; the steps
    themselves for a run without them (``has_epochs``)."""
    if not has_epochs(history):
        return steps.astype(np.float64)
    epoch_steps, epochs = history.series(EPOCH_KEY)
    return np.interp(steps, np.r_[0, epoch_steps], np.r_[0.0, epochs])


def has_epochs(history: History) -> bool:
    return EPOCH_KEY in history.keys


def panel_grid(n: int, row_height: float) -> tuple[Figure, list[Any]]:
    """``style.grid`` with three columns where that fills the rows better than four."""
    return style.grid(n, row_height, ncols=3 if n in (3, 5, 6, 9) else 4)


def hidden_colourbar(fig: Figure, axes: list[Any], depth: int) -> None:
    """The colour bar of ``hidden_colours(depth)``: hidden layers 1 … depth only."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.ticker import MaxNLocator

    norm, cmap = hidden_colours(depth)
    bar = fig.colorbar(ScalarMappable(norm, cmap), ax=axes, label="hidden layer l")
    bar.ax.yaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    bar.ax.minorticks_off()


def layer_grid(data: Data, families: dict[str, str], log: bool, ylabel: str) -> Built:
    """One panel per config (lowest seed), one line per hidden layer in a discrete colour of
    its index, the output layer (where the family has one) black; each family (name → line
    style) in the same panel."""
    from matplotlib.collections import LineCollection

    depth = (
        max(
            len(split_output(data.histories[r.run_id], next(iter(families)))[1])
            for _, r in data.panels
        )
        if data.panels
        else 1
    )
    norm, cmap = hidden_colours(depth)
    fig, axes = panel_grid(len(data.panels), 1.35)
    for ax, (config, run) in zip(axes, data.panels, strict=True):
        ax.set(yscale="log" if log else "linear")
        ax.set_title(config_label(data.keys, config), fontsize="medium")
        for family, linestyle in families.items():
            steps, layers, m, output = split_output(data.histories[run.run_id], family)
            clean = positive if log else finite_or_nan
            lines = [np.column_stack([steps, y]) for y in clean(m)]  # one artist: fast
            colours = cmap(norm(layers))
            ax.add_collection(LineCollection(lines, colors=colours, linestyles=linestyle, lw=0.9))
            single = len(steps) < 2  # one logged step (e.g. a full-batch run): dots, not lines
            if single:
                ax.scatter(np.repeat(steps, len(layers)), clean(m)[:, 0], c=colours, s=9)
            if output is not None:
                marker = "o" if single else None
                ax.plot(
                    steps, clean(output), color=style.BLACK, ls=linestyle, lw=1.1, marker=marker
                )
        ax.autoscale_view()
    if log:
        log_ticks(axes)
    fig.supxlabel(STEP)
    fig.supylabel(ylabel)
    hidden_colourbar(fig, axes, depth)
    shown = [r for _, r in data.panels]
    return fig, shown, family_keys(data, shown, *families)


def saturation_dead(data: Data) -> Built:
    """Saturated fraction (solid) and dead units (dashed) per hidden layer over training."""
    from matplotlib.lines import Line2D

    fig, shown, used = layer_grid(data, {"saturation": "-", "dead": "--"}, False, "fraction")
    for ax in fig.axes[: len(data.panels)]:
        ax.set_ylim(-0.03, 1.03)
    handles = [
        Line2D(
            [], [], color="0.2", label=f"saturated: |f′| < {SATURATION_THRESHOLD:.0%} of sup |f′|"
        ),
        Line2D([], [], color="0.2", linestyle="--", label="dead units: f′ = 0 on the batch"),
    ]
    fig.legend(handles=handles, loc="outside upper center", ncols=2)
    return fig, shown, used


def update_ratio(data: Data) -> Built:
    """‖ΔW‖/‖W‖ per layer over training (output layer black), with the 1e-3 guide line."""
    from matplotlib.lines import Line2D

    fig, shown, used = layer_grid(data, {"update_ratio": "-"}, True, UPDATE_RATIO)
    panels = fig.axes[: len(data.panels)]
    for ax in panels:
        ax.axhline(UPDATE_RATIO_GUIDE, color="0.4", linestyle=":", lw=0.8)
    log_ticks(panels)  # again: the guide line widened the limits
    guide = Line2D([], [], color="0.4", linestyle=":", lw=0.8)
    guide.set_label(f"guide: {UPDATE_RATIO_GUIDE:g} per step")
    output = Line2D([], [], color=style.BLACK, lw=1.1, label="output layer")
    fig.legend(handles=[output, guide], loc="outside upper center", ncols=2)
    return fig, shown, used


def activation_stats(data: Data) -> Built:
    """Glorot & Bengio (2010), Fig. 2: per hidden layer, the mean of aˡ against epochs with
    bars of ±1 std (over the batch × units) at ``STAT_BARS`` points; the output layer left out.
    One panel per config, its lowest seed."""
    from matplotlib.ticker import MaxNLocator

    depth = (
        max((data.histories[r.run_id].n_layers or 2) - 1 for _, r in data.panels)
        if data.panels
        else 1
    )
    norm, cmap = hidden_colours(depth)
    fig, axes = panel_grid(len(data.panels), 1.45)
    for ax in axes[1:]:
        ax.sharey(axes[0])
    for ax, (config, run) in zip(axes, data.panels, strict=True):
        history = data.histories[run.run_id]
        steps, layers, means, _ = split_output(history, "act_mean")
        _, _, stds, _ = split_output(history, "act_std")
        epochs = epochs_of(history, steps)
        at = slice(None, None, max(1, len(steps) // STAT_BARS))
        nudge = STAT_STAGGER * (epochs[-1] - epochs[0])  # bars of neighbouring layers side by side
        for i, (layer, mean, std) in enumerate(zip(layers, means, stds, strict=True)):
            colour = cmap(norm(layer))
            ax.plot(epochs, finite_or_nan(mean), color=colour, lw=0.9)
            x = epochs[at] + (i - (len(layers) - 1) / 2) * nudge
            bars = {"fmt": "none", "ecolor": colour, "elinewidth": 0.8, "capsize": 1.2}
            ax.errorbar(x, finite_or_nan(mean)[at], yerr=finite_or_nan(std)[at], **bars)
        ax.set_title(config_label(data.keys, config), fontsize="medium")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    fig.supxlabel(
        "epoch" if all(has_epochs(data.histories[r.run_id]) for _, r in data.panels) else STEP
    )
    fig.supylabel("mean of aˡ, bars ±1 std")
    hidden_colourbar(fig, axes, depth)
    shown = [r for _, r in data.panels]
    hidden = [k for k in family_keys(data, shown, "act_mean", "act_std") if "/layer_" in k]
    return fig, shown, [*hidden, EPOCH_KEY]


def speed_of_learning(data: Data) -> Built:
    """Nielsen ch. 5: training-set ‖∂C/∂bˡ‖ per hidden layer against epochs, mean and 95%
    t-interval over seeds, one panel per config on a shared log axis, each layer named at its
    end; the output layer black; the book's values at initialization as ◇ where the net is
    the book's."""
    from matplotlib.lines import Line2D

    frame = speed_frame(data)
    configs = list(dict.fromkeys(frame["config"]))
    fig, axes = panel_grid(max(1, len(configs)), 1.9)
    for ax in axes[1:]:
        ax.sharey(axes[0])
    book_drawn = False
    labels = []
    for ax, config in zip(axes, configs, strict=True):
        mine = frame[frame["config"] == config]
        names = list(dict.fromkeys(mine["line"]))
        looks = {n: speed_look(n) for n in names}
        seed_lines(ax, mine, "epoch", "value", looks, log=True, lw=1.0)
        ax.set_yscale("log")
        ends = []
        for name, rows in mine.groupby("line", sort=False):
            last = rows[rows["epoch"] == rows["epoch"].max()]["value"].mean()
            ends.append(
                (float(rows["epoch"].max()), float(last), str(name), looks[str(name)]["color"])
            )
        book = BOOK_SPEEDS.get(int(mine["depth"].iloc[0])) if mine["book"].iloc[0] else None
        if book is not None:
            for layer, value in enumerate(book, start=1):
                colour = looks[f"l = {layer}"]["color"]
                ax.plot(
                    [0], [value], ls="none", **style.BOOK_LOOK, mec=colour, clip_on=False, zorder=5
                )
            book_drawn = True
        ax.set_title(str(config), fontsize="medium")
        ax.set(xlabel="", ylabel="")
        right = ax.get_xlim()[1]
        ax.set_xlim(right=right + 0.25 * right)  # room for the names
        labels.append((ax, ends))
    log_ticks(axes)
    fig.supxlabel("epoch" if all(has_epochs(data.histories[r.run_id]) for r in data.runs) else STEP)
    fig.supylabel(f"{BIAS_GRAD}, training set")
    handles = [Line2D([], [], color="0.5", lw=6, alpha=0.3, label=LOG_INTERVAL)]
    if book_drawn:
        look = style.BOOK_LOOK | {"mec": "0.3"}
        label = "Nielsen's book at init (MNIST, 784 inputs)"
        handles.append(Line2D([], [], ls="none", **look, label=label))
    fig.legend(handles=handles, loc="outside upper center", ncols=2)
    for ax, ends in labels:  # once the layout and the shared y limits are final
        label_line_ends(ax, ends, "right")
    runs = runs_with(data, f"{FULL_BIAS_GRAD}/layer_01")
    return fig, runs, [*family_keys(data, runs, FULL_BIAS_GRAD), EPOCH_KEY]


def speed_frame(data: Data) -> pd.DataFrame:
    """One row per (run, layer, logged step): config (its label), depth (hidden layers), book
    (the net is Nielsen's: sigmoid, width 30), line (``l = 1`` … or ``output``), seed, epoch,
    value."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    runs = runs_with(data, f"{FULL_BIAS_GRAD}/layer_01")
    for config, group in group_runs(runs, data.keys).items():
        for run in group:
            history = data.histories[run.run_id]
            steps, layers, matrix, output = split_output(history, FULL_BIAS_GRAD)
            epochs = epochs_of(history, steps)
            named = [(f"l = {l}", row) for l, row in zip(layers, matrix, strict=True)]
            named += [("output", output)] if output is not None else []
            book = is_nielsens(run.params)
            for name, values in named:
                rows += [
                    {"config": config_label(data.keys, config), "depth": len(layers)}
                    | {"book": book, "line": name, "seed": run.seed, "epoch": e, "value": v}
                    for e, v in zip(epochs, positive(values), strict=True)
                ]
    columns = ["config", "depth", "book", "line", "seed", "epoch", "value"]
    return pd.DataFrame(rows, columns=columns)


def is_nielsens(params: Mapping[str, str]) -> bool:
    """The run's net is the book's: sigmoid hidden layers of 30 (MNIST there, digits here)."""
    return params.get(ACTIVATION_KEY) == "sigmoid" and params.get(WIDTH_KEY) == "30"


def speed_look(line: str) -> dict[str, Any]:
    """Hidden layer l in the l-th Okabe–Ito colour and line style; the output layer black."""
    if line == "output":
        return {"color": style.BLACK, "linestyle": ":"}
    colour, linestyle = style.config_style(int(line.split("=")[1]) - 1)
    return {"color": colour, "linestyle": linestyle}


def powers_of_ten(low: float, high: float) -> int:
    """How many powers of ten lie in [low, high] (0 < low ≤ high)."""
    return max(0, math.floor(math.log10(high) + 1e-9) - math.ceil(math.log10(low) - 1e-9) + 1)


def one_two_five(low: float, high: float) -> list[float]:
    """1, 2, 5 × powers of ten in [low, high]; finer steps (1, 1.5, 2, 3, 5, 7) when that
    gives fewer than two; the two ends if even those give fewer than two."""
    decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    for mantissas in ((1, 2, 5), (1, 1.5, 2, 3, 5, 7)):
        ticks = [m * 10.0**k for k in decades for m in mantissas if low <= m * 10.0**k <= high]
        if len(ticks) >= 2:
            return ticks
    return ticks if len(ticks) >= 2 else [low, high]


def log_colourbar_ticks(bar: Any) -> None:
    """A log colour bar's ticks: powers of ten when two or more are in range, else 1, 2, 5 ×
    powers of ten as plain numbers; never fewer than two labels."""
    from matplotlib.ticker import NullFormatter

    bar.ax.yaxis.set_minor_formatter(NullFormatter())
    low, high = bar.norm.vmin, bar.norm.vmax
    if powers_of_ten(low, high) >= 2:
        return
    ticks = one_two_five(low, high)
    bar.set_ticks(ticks, labels=[f"{t:.2g}" for t in ticks])


def log_ticks(axes: Sequence[Axes], which: str = "y") -> None:
    """One tick format on (shared) log axes, set after their limits: powers of ten when two or
    more are in view, else 1, 2, 5 × powers of ten as plain numbers; no minor labels."""
    from matplotlib.ticker import FixedLocator, LogFormatterSciNotation, LogLocator, NullFormatter

    for ax in axes:
        axis = ax.yaxis if which == "y" else ax.xaxis
        low, high = sorted(axis.get_view_interval())
        if low > 0 and powers_of_ten(low, high) >= 2:
            axis.set_major_locator(LogLocator(numticks=7))
            axis.set_major_formatter(LogFormatterSciNotation())
        else:
            axis.set_major_locator(FixedLocator(one_two_five(low, high)))
            axis.set_major_formatter("{x:.3g}")
        axis.set_minor_formatter(NullFormatter())


def has_full_gradient(data: Data) -> bool:
    """Some run recorded the training-set gradient per layer (``log.full_gradient``)."""
    return bool(runs_with(data, f"{FULL_BIAS_GRAD}/layer_01"))
