"""``depth_vs_width`` and ``depth_width_heatmap``: the final loss across depth (and width)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from experiments.diagnostics.history import FloatArray, History
from experiments.figures import style
from experiments.figures.boundaries import run_dataset
from experiments.figures.common import (
    DATA_KEY,
    DEPTH_KEY,
    WIDTH_KEY,
    Band,
    Built,
    Config,
    Data,
    RunInfo,
    band,
    config_label,
    final_value,
    group_runs,
    log_if_decades,
    spans_decades,
    value_order,
    with_band,
)


def across(
    histories: Mapping[str, History],
    runs: Sequence[RunInfo],
    axis_key: str,
    metric: str,
    line_keys: Sequence[str],
) -> dict[Config, Band]:
    """Per config of ``line_keys``: the final ``metric`` against the (numeric) value of
    ``axis_key``, mean and min–max over the runs that share both (the seeds)."""
    out = {}
    for config, group in group_runs(runs, line_keys).items():
        points = [
            (
                np.array([float(r.params[axis_key])]),
                np.array([final_value(histories[r.run_id], metric)]),
            )
            for r in group
        ]
        out[config] = band(points)
    return out


def table(
    histories: Mapping[str, History],
    runs: Sequence[RunInfo],
    row_key: str,
    col_key: str,
    metric: str,
) -> tuple[list[str], list[str], FloatArray]:
    """(row values, column values, mean final ``metric`` per cell); NaN where no run is finite."""
    rows = sorted({r.params[row_key] for r in runs}, key=lambda v: value_order(row_key, v))
    cols = sorted({r.params[col_key] for r in runs}, key=lambda v: value_order(col_key, v))
    cells: dict[tuple[int, int], list[float]] = {}
    for r in runs:
        cell = (rows.index(r.params[row_key]), cols.index(r.params[col_key]))
        cells.setdefault(cell, []).append(final_value(histories[r.run_id], metric))
    matrix = np.full((len(rows), len(cols)), np.nan)
    for (i, j), values in cells.items():
        finite = [v for v in values if not math.isnan(v)]
        matrix[i, j] = np.mean(finite) if finite else np.nan
    return rows, cols, matrix


def depth_varies(data: Data) -> bool:
    return DEPTH_KEY in data.keys


def depth_and_width_vary(data: Data) -> bool:
    return DEPTH_KEY in data.keys and WIDTH_KEY in data.keys


def width_of(run: RunInfo) -> str:
    """The hidden width a run trained with, as its name records it (``relu-d8-w64-…``: 64;
    ``?`` if the name has none): with a parameter budget it is not a param."""
    found = re.search(r"(?:^|[-· ])w(\d+)(?=-|$| )", run.name)
    return found.group(1) if found else "?"


def constant_predictor(params: Mapping[str, str]) -> dict[str, float]:
    """What the best constant output scores on the run's validation set: for a classifier,
    the loss of predicting the class frequencies (their entropy, cross-entropy in nats) and
    the accuracy of always the majority class; for regression, ½ Σ Var(y) (mse of the mean)."""
    dataset = run_dataset(params)
    y = dataset.y_val
    if dataset.task == "regression":
        return {"val/loss": 0.5 * float(np.sum(np.var(y, axis=0)))}
    frequencies = np.bincount(y, minlength=dataset.n_classes) / len(y)
    seen = frequencies[frequencies > 0]
    entropy = float(-np.sum(seen * np.log(seen)))
    return {"val/loss": entropy, "val/accuracy": float(frequencies.max())}


def depth_vs_width(data: Data) -> Built:
    """Final validation loss (and accuracy, for classifiers) against depth, one line per
    config of the other keys, one column per dataset: at equal parameter budget when
    ``model.param_budget`` is set.  Grey dotted: the best constant predictor."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FixedLocator, NullLocator

    line_keys = [k for k in data.keys if k not in (DEPTH_KEY, DATA_KEY)]
    datasets = sorted({r.params.get(DATA_KEY, "") for r in data.runs})
    metrics = ("val/loss", "val/accuracy")
    configs = list(group_runs(data.runs, line_keys))
    look = style.looks(line_keys, configs)
    fig = style.figure(style.TWO_COLUMN, 1.9 * len(metrics) + 0.6)
    axes = fig.subplots(len(metrics), len(datasets), squeeze=False)
    depths = sorted({float(r.params[DEPTH_KEY]) for r in data.runs})
    budgets = {r.params.get("model.param_budget", "None") for r in data.runs} - {"None"}
    budget = f" (≈ {budgets.pop()} parameters)" if len(budgets) == 1 else ""
    for col, dataset in enumerate(datasets):
        runs = [r for r in data.runs if r.params.get(DATA_KEY, "") == dataset]
        reference = constant_predictor(runs[0].params)
        axes[0, col].set_title(dataset + budget)
        for row, metric in enumerate(metrics):
            ax = axes[row, col]
            lines = across(data.histories, runs, DEPTH_KEY, metric, line_keys)
            if all(np.isnan(b.mean).all() for b in lines.values()):
                ax.set_visible(False)  # a regression set has no accuracy
                continue
            for config, b in lines.items():
                with_band(ax, b, **look[config])
            if metric in reference:
                ax.axhline(reference[metric], color="0.5", lw=0.8, linestyle=":")
            if metric.endswith("loss"):
                log_if_decades(ax, list(lines.values()))
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_locator(FixedLocator(depths))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_major_formatter("{x:g}")
            if budget:  # the width each depth gets from the budget, under its depth
                widths = {float(r.params[DEPTH_KEY]): width_of(r) for r in runs}
                ax.set_xticks(depths, [f"{d:g}\nw {widths.get(d, '?')}" for d in depths])
            ax.set_ylabel(f"final {metric.replace('/', ' ')}")
            ax.set_xlabel("depth (hidden layers)")
    handles = style.legend_handles(line_keys, configs, config_label)
    handles.append(Line2D([], [], color="0.5", lw=0.8, linestyle=":", label="best constant output"))
    style.legend(fig, handles)
    if budget:
        fig.suptitle("at equal parameter budget: the width follows from the depth", fontsize=8)
    return fig, data.runs, list(metrics)


def depth_width_heatmap(data: Data) -> Built:
    """Mean final validation loss over a depth × width grid (seaborn heatmap), one panel per
    config of the other keys, each cell annotated (– where no run is finite); one colour scale
    shared by the panels, or one per panel when the data set varies (losses of different sets
    do not compare)."""
    rest = [k for k in data.keys if k not in (DEPTH_KEY, WIDTH_KEY)]
    groups = group_runs(data.runs, rest)
    tables = [table(data.histories, g, DEPTH_KEY, WIDTH_KEY, "val/loss") for g in groups.values()]
    fig, axes = style.grid(len(tables), 1.9, ncols=3 if DATA_KEY in rest else 4)
    label = "final val loss\n(mean over seeds)"
    shared = None if DATA_KEY in rest else _loss_norm([m for _, _, m in tables])
    for ax, config, (depths, widths, matrix) in zip(axes, groups, tables, strict=True):
        norm = shared or _loss_norm([matrix])
        _heatmap(ax, depths, widths, matrix, norm, label if shared is None else None)
        ax.set_title(config_label(rest, config))
    fig.supxlabel("width (units per hidden layer)")
    fig.supylabel("depth (hidden layers)")
    if shared is not None:
        from matplotlib.cm import ScalarMappable

        bar = fig.colorbar(ScalarMappable(shared, style.HEATMAP_CMAP), ax=axes, label=label)
        bar.ax.yaxis.set_major_formatter("{x:g}")
    return fig, data.runs, ["val/loss"]


def _loss_norm(matrices: Sequence[FloatArray]) -> Any:
    """A colour norm over the finite values: logarithmic when they span a decade."""
    from matplotlib.colors import LogNorm, Normalize

    values = np.concatenate([m.ravel() for m in matrices])
    values = values[np.isfinite(values)]
    lo, hi = (values.min(), values.max()) if values.size else (1e-3, 1.0)
    return LogNorm(lo, hi) if spans_decades([values], 1) else Normalize(lo, hi)


def _heatmap(
    ax: Any,
    depths: list[str],
    widths: list[str],
    matrix: FloatArray,
    norm: Any,
    bar_label: str | None,
) -> None:
    """One annotated depth × width heatmap (depth growing upwards); a colourbar if labelled."""
    import pandas as pd
    import seaborn as sns

    sns.heatmap(
        pd.DataFrame(matrix, index=depths, columns=widths),
        ax=ax,
        norm=norm,
        cmap=style.HEATMAP_CMAP,
        annot=True,
        fmt=".2g",
        annot_kws={"fontsize": 7},
        cbar=bar_label is not None,
        cbar_kws={"label": bar_label, "format": "{x:g}"} if bar_label else None,
        linewidths=0.5,
        linecolor="white",
    )
    for (i, j), value in np.ndenumerate(matrix):
        if np.isnan(value):
            ax.text(j + 0.5, i + 0.5, "–", ha="center", va="center", fontsize=7)
    ax.invert_yaxis()
    ax.tick_params(length=0, labelrotation=0)
    ax.set(xlabel="", ylabel="")
