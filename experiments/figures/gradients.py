"""``gradient_flow`` and ``gradient_heatmaps``: ‖∂L/∂Wˡ‖ per layer, at the ends and over time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from experiments.diagnostics.history import FloatArray, History, IntArray
from experiments.figures import style
from experiments.figures.common import (
    CEILING,
    LAYER,
    STEP,
    Built,
    Data,
    RunInfo,
    band,
    config_label,
    family_keys,
    group_runs,
    per_layer_over_time,
    positive,
)
from experiments.figures.signal import short_label

GRAD_NORM = r"$\Vert\partial L/\partial W^l\Vert_F$"
FLOW_PANELS: tuple[tuple[Literal["first", "last"], str], ...] = (
    ("first", "at initialization (step 0)"),
    ("last", "at the end (last logged step)"),
)


def grad_flow(
    histories: Mapping[str, History],
    runs: Sequence[RunInfo],
    step: Literal["first", "last"] = "first",
) -> dict[str, tuple[IntArray, FloatArray]]:
    """Per run id: (layer indices 1…L, ‖∂L/∂Wˡ‖_F) at the first or the last recorded step."""
    out = {}
    for run in runs:
        _, layers, matrix = per_layer_over_time(histories[run.run_id], "grad_norm")
        out[run.run_id] = (layers, matrix[:, 0 if step == "first" else -1])
    return out


def gradient_flow(data: Data) -> Built:
    """Per-layer ‖∂L/∂W‖ at step 0 and at the end: mean and min–max over seeds per config."""
    from matplotlib.ticker import MaxNLocator

    groups = group_runs(data.runs, data.keys)
    look = style.looks(data.keys, list(groups))
    fig = style.figure(style.TWO_COLUMN, 2.6)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (step, title) in zip(axes, FLOW_PANELS, strict=True):
        flow = grad_flow(data.histories, data.runs, step)
        for config, group in groups.items():
            b = band([flow[r.run_id] for r in group])
            kw = {**look[config], "markevery": max(1, len(b.x) // 8)}
            lo, hi = positive(b.lo), positive(b.hi)
            ax.fill_between(b.x, lo, hi, color=kw["color"], alpha=0.15, lw=0)
            ax.plot(b.x, positive(b.mean), **kw)
        ax.set(yscale="log", title=title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel(f"{GRAD_NORM} (mean over seeds)")
    fig.supxlabel("layer l (1 = input … L = output)")
    style.legend(fig, style.legend_handles(data.keys, list(groups), short_label))
    return fig, data.runs, family_keys(data, data.runs, "grad_norm")


def gradient_heatmaps(data: Data) -> Built:
    """Layer × step ‖∂L/∂W‖ of one seed per config, on one shared log colour scale that ends
    at ``CEILING`` (a colour bar with a ▲ end when some norm is above it)."""
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import MaxNLocator

    maps = [per_layer_over_time(data.histories[run.run_id], "grad_norm") for _, run in data.panels]
    values = np.concatenate([positive(m).ravel() for _, _, m in maps])
    values = values[~np.isnan(values)]
    over = values.size > 0 and values.max() > CEILING
    top = min(values.max(), CEILING) if values.size else 1.0
    norm = LogNorm(min(values.min(), top), top) if values.size else LogNorm(1e-3, 1.0)
    fig, axes = style.grid(len(maps), 1.3)
    for ax, (config, _), (steps, layers, m) in zip(axes, data.panels, maps, strict=True):
        masked = np.ma.masked_invalid(positive(m))
        kw = {"norm": norm, "cmap": style.HEATMAP_CMAP, "shading": "nearest", "rasterized": True}
        mesh = ax.pcolormesh(steps, layers, masked, **kw)
        ax.set_title(config_label(data.keys, config))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.supxlabel(STEP)
    fig.supylabel(LAYER)
    extend = "max" if over else "neither"
    fig.colorbar(mesh, ax=axes, label=f"{GRAD_NORM} (lowest seed)", extend=extend)
    shown = [run for _, run in data.panels]
    return fig, shown, family_keys(data, shown, "grad_norm")
