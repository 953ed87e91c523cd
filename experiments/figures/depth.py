"""``depth_vs_width`` and ``depth_width_heatmap``: the final loss across depth (and width)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from experiments.diagnostics.history import FloatArray, History
from experiments.figures import style
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


def depth_vs_width(data: Data) -> Built:
    """Final validation loss (and accuracy) against depth, one line per config of the other
    keys, one column per dataset: at equal parameter budget when ``model.param_budget`` is set."""
    from matplotlib.ticker import FixedLocator, NullLocator

    line_keys = [k for k in data.keys if k not in (DEPTH_KEY, DATA_KEY)]
    datasets = sorted({r.params.get(DATA_KEY, "") for r in data.runs})
    logged = {k for h in data.histories.values() for k in h.keys}
    metrics: list[str] = [m for m in ("val/loss", "val/accuracy") if m in logged]
    configs = list(group_runs(data.runs, line_keys))
    look = style.looks(line_keys, configs)
    fig = style.figure(style.TWO_COLUMN, 1.8 * len(metrics) + 0.5)
    axes = fig.subplots(len(metrics), len(datasets), squeeze=False, sharex=True)
    depths = sorted({float(r.params[DEPTH_KEY]) for r in data.runs})
    budgets = {r.params.get("model.param_budget", "None") for r in data.runs} - {"None"}
    budget = f" (≈ {budgets.pop()} parameters)" if len(budgets) == 1 else ""
    for col, dataset in enumerate(datasets):
        runs = [r for r in data.runs if r.params.get(DATA_KEY, "") == dataset]
        axes[0, col].set_title(dataset + budget)
        for row, metric in enumerate(metrics):
            ax = axes[row, col]
            lines = across(data.histories, runs, DEPTH_KEY, metric, line_keys)
            for config, b in lines.items():
                with_band(ax, b, **look[config])
            if metric.endswith("loss"):
                log_if_decades(ax, list(lines.values()))
            if all(np.isnan(b.mean).all() for b in lines.values()):
                ax.text(0.5, 0.5, f"no {metric} logged", transform=ax.transAxes, ha="center")
                ax.set_yticks([])
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_locator(FixedLocator(depths))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_major_formatter("{x:g}")
            ax.set_ylabel(f"final {metric.replace('/', ' ')}" if col == 0 else "")
    fig.supxlabel("depth (hidden layers; the width follows from the budget when one is set)")
    style.legend(fig, style.legend_handles(line_keys, configs, config_label))
    return fig, data.runs, metrics


def depth_width_heatmap(data: Data) -> Built:
    """Mean final validation loss over a depth × width grid, one panel per config of the
    other keys; each cell annotated."""
    from matplotlib.colors import LogNorm, Normalize

    rest = [k for k in data.keys if k not in (DEPTH_KEY, WIDTH_KEY)]
    groups = group_runs(data.runs, rest)
    tables = [table(data.histories, g, DEPTH_KEY, WIDTH_KEY, "val/loss") for g in groups.values()]
    values = np.concatenate([m.ravel() for _, _, m in tables])
    values = values[np.isfinite(values)]
    log = spans_decades([values], 1)
    lo, hi = (values.min(), values.max()) if values.size else (1e-3, 1.0)
    norm = LogNorm(lo, hi) if log else Normalize(lo, hi)
    fig, axes = style.grid(len(tables), 1.8, ncols=3)
    for ax, config, (depths, widths, matrix) in zip(axes, groups, tables, strict=True):
        mesh = ax.pcolormesh(np.ma.masked_invalid(matrix), norm=norm, cmap=style.HEATMAP_CMAP)
        for (i, j), value in np.ndenumerate(matrix):
            dark = not np.isnan(value) and norm(value) < 0.5
            text = "–" if np.isnan(value) else f"{value:.2g}"
            ax.text(
                j + 0.5,
                i + 0.5,
                text,
                ha="center",
                va="center",
                fontsize=6,
                color="w" if dark else "k",
            )
        ax.set_xticks(np.arange(len(widths)) + 0.5, widths)
        ax.set_yticks(np.arange(len(depths)) + 0.5, depths)
        ax.set_title(config_label(rest, config))
    fig.supxlabel("width (units per hidden layer)")
    fig.supylabel("depth (hidden layers)")
    fig.colorbar(mesh, ax=axes, label="final val loss (mean over seeds)")
    return fig, data.runs, ["val/loss"]
