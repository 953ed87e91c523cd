"""``gradient_flow``: ‖δˡ‖ per hidden layer at initialization against the mean field's
(√χ₁)^(H−l) (Poole et al. 2016, Schoenholz et al. 2017), one panel per activation family;
``gradient_heatmaps``: ‖∂L/∂Wˡ‖ per layer over training."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from experiments.comparison.records import ACTIVATION_KEY
from experiments.diagnostics.history import OUTPUT_TAG, FloatArray, History, IntArray
from experiments.figures import style
from experiments.figures.common import (
    BIAS_GRAD,
    CEILING,
    STEP,
    Built,
    Data,
    RunInfo,
    config_label,
    family_keys,
    group_runs,
    per_layer_over_time,
    pick_evenly,
    positive,
    runs_with,
)
from experiments.figures.layers import (
    LOG_INTERVAL,
    geometric_mean,
    label_line_ends,
    log_colourbar_ticks,
    log_ticks,
    seed_lines,
)
from experiments.figures.signal import short_label
from experiments.figures.theory import CHI1, MEAN_FIELD_LOOK

if TYPE_CHECKING:
    import pandas as pd

GRAD_NORM = r"$\Vert\partial L/\partial W^l\Vert_F$"
QUANTITY_NAMES = {  # the y label of gradient_flow by what the runs logged
    "profile/delta_norm_init": r"$\Vert\delta^l\Vert_F$",
    "bias_grad_norm": f"{BIAS_GRAD} (batch mean of δˡ)",
    "grad_norm": r"$\Vert\partial L/\partial W^l\Vert_F$",
}
OUT_TICK_ROOM = 0.12  # the least distance of a hidden layer's tick from "out", × depth
DELTA_PROFILE = "profile/delta_norm_init"  # ‖δˡ‖_F per hidden layer at step 0, step = l
MEAN_FIELD = r"mean field $(\sqrt{\chi_1})^{H-l}$ (H: top hidden layer)"


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


def delta_profile(history: History) -> tuple[IntArray, FloatArray, str]:
    """(hidden layers 1 … L−1, their backward quantity at step 0, its name): ‖δˡ‖_F over the
    batch × units from the recorder's profile; for a run without it ‖∂L/∂bˡ‖ (the batch mean of
    δˡ), and without that ‖∂L/∂Wˡ‖."""
    if DELTA_PROFILE in history.keys:
        layers, values = history.series(DELTA_PROFILE)
        return layers, values, DELTA_PROFILE
    family = "bias_grad_norm" if "bias_grad_norm/layer_01" in history.keys else "grad_norm"
    _, layers, matrix = per_layer_over_time(history, family)
    hidden = layers < (history.n_layers or len(layers) + 1)
    return layers[hidden], matrix[hidden, 0], family


def flow_frame(data: Data) -> tuple[pd.DataFrame, list[str]]:
    """One row per (run, hidden layer): panel (activation family), line, seed, layer, delta and
    the run's χ₁ (NaN without theory metrics); the quantities drawn (``delta_profile``)."""
    import pandas as pd

    rows, drawn = [], []
    by_activation = bool(data.keys) and data.keys[0] == ACTIVATION_KEY
    for config, group in group_runs(data.runs, data.keys).items():
        panel = family_of(config[0]) if by_activation else ""
        for run in group:
            history = data.histories[run.run_id]
            layers, deltas, quantity = delta_profile(history)
            drawn.append(quantity)
            chi1 = first_value(history, CHI1)
            rows += [
                {"panel": panel, "line": config, "seed": run.seed, "layer": int(l), "delta": d}
                | {"chi1": chi1}
                for l, d in zip(layers, deltas, strict=True)
            ]
    columns = ["panel", "line", "seed", "layer", "delta", "chi1"]
    return pd.DataFrame(rows, columns=columns), list(dict.fromkeys(drawn))


def family_of(activation: str) -> str:
    """The activations drawn in one colour (``style.ACTIVATION_STYLES``), by their first name:
    relu and leaky_relu are ``relu``."""
    colour = style.activation_style(activation)[0]
    return next((a for a, (c, _) in style.ACTIVATION_STYLES.items() if c == colour), activation)


def first_value(history: History, key: str) -> float:
    return float(history.series(key)[1][0]) if key in history.keys else math.nan


def gradient_flow(data: Data) -> Built:
    """‖δˡ‖ per hidden layer at step 0, one panel per activation family (a line per config,
    named at its input end; mean and 95% t-interval over seeds), with the mean-field line
    ‖δˡ‖ ∝ (√χ₁)^(H−l) through the top hidden layer H dashed."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    frame, drawn = flow_frame(data)
    frame["delta"] = positive(frame["delta"].to_numpy())
    panels = list(dict.fromkeys(frame["panel"]))
    look = style.looks(data.keys, list(dict.fromkeys(frame["line"])))
    names = {c: short_label(data.keys, c) for c in look}
    ncols = min(4, len(panels)) or 1
    fig, axes = style.grid(max(1, len(panels)), 1.55 if len(panels) > 1 else 2.4, ncols=ncols)
    for ax in axes[1:]:
        ax.sharey(axes[0])
    labels = []
    for ax, panel in zip(axes, panels, strict=True):
        mine = frame[frame["panel"] == panel].assign(line=lambda f: f["line"].map(names))
        lines = {names[c]: look[c] for c in dict.fromkeys(frame[frame["panel"] == panel]["line"])}
        seed_lines(ax, mine, "layer", "delta", lines, log=True, lw=1.0)
        ends: list[tuple[float, float, str, str]] = []
        for line, rows in mine.groupby("line", sort=False):
            mean = rows.groupby("layer")["delta"].agg(geometric_mean)
            top, chi1 = mean.index.max(), rows["chi1"].iloc[0]
            if math.isfinite(chi1):
                layers = np.arange(mean.index.min(), top + 1)
                predicted = mean[top] * math.sqrt(chi1) ** (top - layers)
                ax.plot(layers, positive(predicted), **MEAN_FIELD_LOOK)
            end = (float(mean.index.min()), float(mean.iloc[0]), str(line))
            ends += [(*end, lines[str(line)]["color"])] if math.isfinite(end[1]) else []
        ax.set(yscale="log", title=panel, xlabel="", ylabel="")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
        left, right = ax.get_xlim()
        room = 0.45 if len(panels) > 1 else 0.2  # for the names, in widths of the data
        ax.set_xlim(left - room * (right - left), right)
        first_layer = int(mine["layer"].min())  # no tick on the names' margin (no layer 0)
        ax.set_xticks([first_layer, *[t for t in ax.get_xticks() if first_layer < t <= right]])
        labels.append((ax, ends))
    log_ticks(axes)
    what = " or ".join(QUANTITY_NAMES[q] for q in drawn) or QUANTITY_NAMES[DELTA_PROFILE]
    fig.supylabel(f"{what} at step 0")
    fig.supxlabel("hidden layer l (1 = input side; the output layer left out)")
    handles = [
        Line2D([], [], **MEAN_FIELD_LOOK, label=MEAN_FIELD),
        Line2D([], [], color="0.5", lw=6, alpha=0.3, label=LOG_INTERVAL),
    ]
    fig.legend(handles=handles, loc="outside upper center", ncols=2)
    for ax, ends in labels:  # once the layout and the shared y limits are final
        label_line_ends(ax, ends, "left")
    per_layer = family_keys(data, data.runs, *(q for q in drawn if q != DELTA_PROFILE))
    keys = [DELTA_PROFILE] if DELTA_PROFILE in drawn else []
    keys += [k for k in per_layer if "/layer_" in k]
    return fig, data.runs, [*keys, *([CHI1] if runs_with(data, CHI1) else [])]


def gradient_heatmaps(data: Data) -> Built:
    """Layer × step ‖∂L/∂W‖ of one seed per config, on one shared log colour scale that ends
    at ``CEILING`` (a colour bar with a ▲ end when some norm is above it); the output layer's
    row on top, set apart by a white line and labelled "out"."""
    from matplotlib.colors import LogNorm

    maps = [per_layer_over_time(data.histories[r.run_id], "grad_norm") for _, r in data.panels]
    values = np.concatenate([positive(m).ravel() for _, _, m in maps])
    values = values[~np.isnan(values)]
    over = values.size > 0 and values.max() > CEILING
    top = min(values.max(), CEILING) if values.size else 1.0
    norm = LogNorm(min(values.min(), top), top) if values.size else LogNorm(1e-3, 1.0)
    fig, axes = style.grid(len(maps), 1.3)
    for ax, (config, run), (steps, layers, m) in zip(axes, data.panels, maps, strict=True):
        masked = np.ma.masked_invalid(positive(m))
        kw = {"norm": norm, "cmap": style.HEATMAP_CMAP, "shading": "nearest", "rasterized": True}
        mesh = ax.pcolormesh(steps, layers, masked, **kw)
        ax.set_title(config_label(data.keys, config))
        has_output = f"grad_norm/{OUTPUT_TAG}" in data.histories[run.run_id].keys
        hidden = layers[:-1] if has_output else layers
        ticks = [int(l) for l in pick_evenly(list(hidden), 4)]
        if has_output:  # no hidden tick label crowding the output's
            ticks = [t for t in ticks if layers[-1] - t >= OUT_TICK_ROOM * layers[-1]]
        labels = [str(l) for l in ticks]
        if has_output:
            ax.axhline(layers[-1] - 0.5, color="white", lw=1.5)
            ticks, labels = [*ticks, int(layers[-1])], [*labels, "out"]
        ax.set_yticks(ticks, labels)
    fig.supxlabel(STEP)
    fig.supylabel("layer l")
    extend = "max" if over else "neither"
    bar = fig.colorbar(mesh, ax=axes, label=GRAD_NORM, extend=extend)
    log_colourbar_ticks(bar)
    shown = [run for _, run in data.panels]
    return fig, shown, family_keys(data, shown, "grad_norm")
