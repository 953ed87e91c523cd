"""Figures for write-ups, regenerated from MLflow in one command.

    python -m experiments.plots                           # the most recent sweep
    python -m experiments.plots --experiment activations  # that experiment's most recent sweep
    python -m experiments.plots --sweep RUN_ID --filter "params.model.depth = '10'"

Reads the FINISHED runs' params and tags (one search) and each run's ``history.npz`` (one
download per run); draws every figure of ``FIGURES`` in worker processes (the gallery, which
needs no runs, while MLflow is still loading); writes ``<out>/<name>.{png,pdf}`` and
``manifest.json`` (per file: runs and metric keys; the selection and git commit) and logs them
to the sweep's parent run under ``figures/``.  Same runs, same PDF and SVG bytes.
The figures' data: ``experiments.figdata``; their look: ``experiments.style``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from experiments import figdata as fd
from experiments import paperfigs, style
from experiments.diagnostics import HISTORY_FILE, SATURATION_THRESHOLD, History
from experiments.provenance import git_commit
from experiments.tracking import (
    TrackingError,
    default_tracking_uri,
    fetch_artifact,
    log_files,
    select_runs,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from bpcore import MLP

MAX_PANELS = 16  # one-panel-per-config figures: at most this many panels (4 × 4)
UPDATE_RATIO_GUIDE = 1e-3  # a healthy ‖ΔW‖/‖W‖ per step (Karpathy)
GRAD_NORM = r"$\Vert\partial L/\partial W^l\Vert_F$"
UPDATE_RATIO = r"$\Vert\Delta W^l\Vert_F \,/\, \Vert W^l\Vert_F$"
STEP, LAYER = "optimizer step", "layer l (1 = input)"
NO_RUNS = "activation_gallery"  # the figure that needs no runs
FLOW_PANELS: tuple[tuple[Literal["first", "last"], str], ...] = (
    ("first", "at initialization (step 0)"),
    ("last", "at the end (last logged step)"),
)


@dataclass
class Data:
    """The selected runs, their histories, the config keys, one run per config for grids."""

    runs: list[fd.RunInfo]
    histories: dict[str, History]
    keys: list[str]
    panels: list[tuple[fd.Config, fd.RunInfo]]
    models: dict[str, MLP] = field(default_factory=dict)  # 2-D classifiers of the panel runs
    target_loss: float | None = None  # steps-to-target figure; None: chosen from the runs


Built = tuple["Figure", list[fd.RunInfo], list[str]]  # the figure, runs shown, metric keys used


def _family_keys(data: Data, runs: Sequence[fd.RunInfo], *families: str) -> list[str]:
    prefixes = tuple(f"{f}/layer_" for f in families)
    keys = {k for r in runs for k in data.histories[r.run_id].keys if k.startswith(prefixes)}
    return sorted(keys)


def _log_if_decades(ax: Axes, bands: Sequence[fd.Band]) -> None:
    """A log y axis, labelled 0.1, 0.01 …, when the bands span two decades."""
    from matplotlib.ticker import NullFormatter

    if fd.spans_decades([a for b in bands for a in (b.lo, b.hi)]):
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter("{x:g}")
        ax.yaxis.set_minor_formatter(NullFormatter())


def _with_band(ax: Axes, b: fd.Band, **kw: Any) -> None:
    """Mean line over a min–max band (over seeds)."""
    ax.fill_between(b.x, b.lo, b.hi, color=kw["color"], alpha=0.15, lw=0)
    ax.plot(b.x, b.mean, **kw)


def activation_gallery(data: Data) -> Built:
    """Every activation f (solid) and f′ (dashed); where f′ < 5% of sup f′ shaded."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    z = np.linspace(-4.0, 4.0, 801)
    curves = fd.activation_curves(z)
    fig, axes = style.grid(len(curves) + 1, 1.25)  # the last panel holds the legend
    for ax, (name, (f, fp, sup)) in zip(axes, curves.items(), strict=False):
        colour = style.activation_style(name)[0]
        shade = fp < SATURATION_THRESHOLD * sup
        ax.fill_between(z, 0, 1, where=shade, transform=ax.get_xaxis_transform(), color="0.9")
        ax.axhline(0, color="0.6", lw=0.4)
        ax.axvline(0, color="0.6", lw=0.4)
        ax.plot(z, f, color=colour)
        ax.plot(z, fp, color=colour, linestyle="--", lw=0.9)
        ax.text(0.04, 0.96, f"sup f′ = {sup:.3g}", transform=ax.transAxes, va="top")
        ax.set(title=name, xlim=(-4, 4), ylim=(-2, 3))
    axes[-1].axis("off")
    handles = [
        Line2D([], [], color="0.2", label="f(z)"),
        Line2D([], [], color="0.2", linestyle="--", label="f′(z)"),
        Patch(color="0.9", label=f"f′ < {SATURATION_THRESHOLD:.0%} of sup f′"),
    ]
    axes[-1].legend(handles=handles, loc="center")
    fig.supxlabel("pre-activation z")
    fig.supylabel("f(z) and f′(z)")
    return fig, [], []


def gradient_flow(data: Data) -> Built:
    """Per-layer ‖∂L/∂W‖ at step 0 and at the end: mean and min–max over seeds per config."""
    from matplotlib.ticker import MaxNLocator

    groups = fd.group_runs(data.runs, data.keys)
    look = style.looks(data.keys, list(groups))
    fig = style.figure(style.TWO_COLUMN, 2.6)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (step, title) in zip(axes, FLOW_PANELS, strict=True):
        flow = fd.grad_flow(data.histories, data.runs, step)
        for config, group in groups.items():
            b = fd.band([flow[r.run_id] for r in group])
            kw = {**look[config], "markevery": max(1, len(b.x) // 8)}
            lo, hi = fd.positive(b.lo), fd.positive(b.hi)
            ax.fill_between(b.x, lo, hi, color=kw["color"], alpha=0.15, lw=0)
            ax.plot(b.x, fd.positive(b.mean), **kw)
        ax.set(yscale="log", title=title, xlabel="layer l (1 = input … L = output)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel(f"{GRAD_NORM} (mean over seeds)")
    style.legend(fig, style.legend_handles(data.keys, list(groups), fd.config_label))
    return fig, data.runs, _family_keys(data, data.runs, "grad_norm")


def gradient_heatmaps(data: Data) -> Built:
    """Layer × step ‖∂L/∂W‖ of one seed per config, on one shared log colour scale."""
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import MaxNLocator

    maps = [fd.heatmap(data.histories[run.run_id]) for _, run in data.panels]
    values = np.concatenate([fd.positive(m).ravel() for _, _, m in maps])
    values = values[~np.isnan(values)]
    norm = LogNorm(values.min(), values.max()) if values.size else LogNorm(1e-3, 1.0)
    fig, axes = style.grid(len(maps), 1.3)
    for ax, (config, _), (steps, layers, m) in zip(axes, data.panels, maps, strict=True):
        masked = np.ma.masked_invalid(fd.positive(m))
        kw = {"norm": norm, "cmap": style.HEATMAP_CMAP, "shading": "nearest", "rasterized": True}
        mesh = ax.pcolormesh(steps, layers, masked, **kw)
        ax.set_title(fd.config_label(data.keys, config))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.supxlabel(STEP)
    fig.supylabel(LAYER)
    fig.colorbar(mesh, ax=axes, label=f"{GRAD_NORM} (lowest seed)")
    shown = [run for _, run in data.panels]
    return fig, shown, _family_keys(data, shown, "grad_norm")


def loss_curves(data: Data) -> Built:
    """Train/val loss vs step and vs examples seen: mean, min–max over seeds.  An × marks
    where a diverged run stopped, at its last finite loss (on the edge if off the chart)."""
    from matplotlib.lines import Line2D

    curves = fd.loss_curves(data.histories, data.runs, data.keys)
    look = style.looks(data.keys, [c.config for c in curves])
    fig = style.figure(style.TWO_COLUMN, 4.0)
    axes = fig.subplots(2, 2, sharex="col", sharey="row")
    bands = [b for c in curves for by in (c.by_step, c.by_examples) for b in by.values()]
    scale = "log" if fd.spans_decades([a for b in bands for a in (b.lo, b.hi)]) else "linear"
    for row, key in zip(axes, fd.LOSS_KEYS, strict=True):
        row[0].set_yscale(scale)
        for ax, by_step in zip(row, (True, False), strict=True):
            for c in curves:
                kw, b = look[c.config], (c.by_step if by_step else c.by_examples).get(key)
                if b is not None:
                    _with_band(ax, b, markevery=max(1, len(b.x) // 8), **kw)
        lo, hi = -np.inf, np.inf
        if any(key in c.by_step for c in curves):
            lo, hi = row[0].get_ylim()
            row[0].set_ylim(lo, hi)  # frozen: the × marks do not stretch it
        for ax, by_step in zip(row, (True, False), strict=True):
            for c in curves:
                for s in c.stops:
                    x, y = (s.step if by_step else s.examples), np.clip(s.loss[key], lo, hi)
                    kw = {"color": look[c.config]["color"], "ms": 6, "mew": 1.5}
                    ax.plot(x, y, "x", **kw, clip_on=False, zorder=5)
    axes[0, 0].set_ylabel("train loss")
    axes[1, 0].set_ylabel("val loss")
    axes[1, 0].set_xlabel(STEP)
    axes[1, 1].set_xlabel("examples seen")
    handles = style.legend_handles(data.keys, [c.config for c in curves], fd.config_label)
    stopped = any(c.stops for c in curves)
    if stopped:
        handles.append(Line2D([], [], color="0.2", marker="x", ls="none", label="diverged"))
    style.legend(fig, handles)
    used = [*fd.LOSS_KEYS, fd.EXAMPLES_KEY] + ([fd.BATCH_LOSS_KEY] if stopped else [])
    return fig, data.runs, used


def layer_grid(data: Data, families: dict[str, str], log: bool, ylabel: str) -> Built:
    """One panel per config (lowest seed), one line per layer coloured by its index; each
    family (name → line style) in the same panel."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.collections import LineCollection
    from matplotlib.ticker import MaxNLocator

    norm, cmap = style.layer_colours(
        max(data.histories[r.run_id].n_layers or 1 for _, r in data.panels)
    )
    fig, axes = style.grid(len(data.panels), 1.3)
    for ax, (config, run) in zip(axes, data.panels, strict=True):
        ax.set(title=fd.config_label(data.keys, config), yscale="log" if log else "linear")
        for family, linestyle in families.items():
            steps, layers, m = fd.per_layer_over_time(data.histories[run.run_id], family)
            m = fd.positive(m) if log else fd.finite_or_nan(m)
            lines = [np.column_stack([steps, y]) for y in m]  # one artist for all layers: fast
            colours = cmap(norm(layers))
            ax.add_collection(LineCollection(lines, colors=colours, linestyles=linestyle, lw=0.9))
        ax.autoscale_view()
    fig.supxlabel(STEP)
    fig.supylabel(ylabel)
    bar = fig.colorbar(ScalarMappable(norm, cmap), ax=axes, label=LAYER)
    bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    shown = [r for _, r in data.panels]
    return fig, shown, _family_keys(data, shown, *families)


def saturation_dead(data: Data) -> Built:
    """Saturated fraction (solid) and dead units (dashed) per hidden layer over training."""
    from matplotlib.lines import Line2D

    fig, shown, used = layer_grid(data, {"saturation": "-", "dead": "--"}, False, "fraction")
    for ax in fig.axes[: len(data.panels)]:
        ax.set_ylim(-0.03, 1.03)
    handles = [
        Line2D([], [], color="0.2", label=f"saturated: f′ < {SATURATION_THRESHOLD:.0%} of sup f′"),
        Line2D([], [], color="0.2", linestyle="--", label="dead units: f′ = 0 on the batch"),
    ]
    fig.legend(handles=handles, loc="outside upper center", ncols=2)
    return fig, shown, used


def update_ratio(data: Data) -> Built:
    """‖ΔW‖/‖W‖ per layer over training, with the 1e-3 guide line."""
    from matplotlib.lines import Line2D

    fig, shown, used = layer_grid(data, {"update_ratio": "-"}, True, UPDATE_RATIO)
    for ax in fig.axes[: len(data.panels)]:
        ax.axhline(UPDATE_RATIO_GUIDE, color="0.4", linestyle=":", lw=0.8)
    handle = Line2D([], [], color="0.4", linestyle=":", lw=0.8)
    handle.set_label(f"guide: {UPDATE_RATIO_GUIDE:g} per step")
    fig.legend(handles=[handle], loc="outside upper center")
    return fig, shown, used


def depth_vs_width(data: Data) -> Built:
    """Final validation loss (and accuracy) against depth, one line per config of the other
    keys, one column per dataset: at equal parameter budget when ``model.param_budget`` is set."""
    from matplotlib.ticker import FixedLocator, NullLocator

    line_keys = [k for k in data.keys if k not in (fd.DEPTH_KEY, fd.DATA_KEY)]
    datasets = sorted({r.params.get(fd.DATA_KEY, "") for r in data.runs})
    metrics = [m for m in ("val/loss", "val/accuracy") if m in _all_keys(data)]
    configs = list(fd.group_runs(data.runs, line_keys))
    look = style.looks(line_keys, configs)
    fig = style.figure(style.TWO_COLUMN, 1.8 * len(metrics) + 0.5)
    axes = fig.subplots(len(metrics), len(datasets), squeeze=False, sharex=True)
    depths = sorted({float(r.params[fd.DEPTH_KEY]) for r in data.runs})
    budgets = {r.params.get("model.param_budget", "None") for r in data.runs} - {"None"}
    budget = f" (≈ {budgets.pop()} parameters)" if len(budgets) == 1 else ""
    for col, dataset in enumerate(datasets):
        runs = [r for r in data.runs if r.params.get(fd.DATA_KEY, "") == dataset]
        axes[0, col].set_title(dataset + budget)
        for row, metric in enumerate(metrics):
            ax = axes[row, col]
            lines = fd.across(data.histories, runs, fd.DEPTH_KEY, metric, line_keys)
            for config, b in lines.items():
                _with_band(ax, b, **look[config])
            if metric.endswith("loss"):
                _log_if_decades(ax, list(lines.values()))
            if all(np.isnan(b.mean).all() for b in lines.values()):
                ax.text(0.5, 0.5, f"no {metric} logged", transform=ax.transAxes, ha="center")
                ax.set_yticks([])
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_locator(FixedLocator(depths))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_major_formatter("{x:g}")
            ax.set_ylabel(f"final {metric.replace('/', ' ')}" if col == 0 else "")
    fig.supxlabel("depth (hidden layers; the width follows from the budget when one is set)")
    style.legend(fig, style.legend_handles(line_keys, configs, fd.config_label))
    return fig, data.runs, metrics


def depth_width_heatmap(data: Data) -> Built:
    """Mean final validation loss over a depth × width grid, one panel per config of the
    other keys; each cell annotated."""
    from matplotlib.colors import LogNorm, Normalize

    rest = [k for k in data.keys if k not in (fd.DEPTH_KEY, fd.WIDTH_KEY)]
    groups = fd.group_runs(data.runs, rest)
    tables = [
        fd.table(data.histories, g, fd.DEPTH_KEY, fd.WIDTH_KEY, "val/loss") for g in groups.values()
    ]
    values = np.concatenate([m.ravel() for _, _, m in tables])
    values = values[np.isfinite(values)]
    log = fd.spans_decades([values], 1)
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
        ax.set_title(fd.config_label(rest, config))
    fig.supxlabel("width (units per hidden layer)")
    fig.supylabel("depth (hidden layers)")
    fig.colorbar(mesh, ax=axes, label="final val loss (mean over seeds)")
    return fig, data.runs, ["val/loss"]


def batch_size(data: Data) -> Built:
    """Train loss against examples seen, steps and seconds, one line per batch size (colour)
    and rule (line style); steps to reach a target loss against batch size."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullFormatter

    batch_first = [fd.BATCH_KEY, *[k for k in data.keys if k != fd.BATCH_KEY]]
    groups = fd.group_runs(data.runs, batch_first)
    batches = list(dict.fromkeys(c[0] for c in groups))
    rests = list(dict.fromkeys(c[1:] for c in groups))
    colours = dict(zip(batches, style.ordered_colours(len(batches)), strict=True))

    def look(config: fd.Config) -> dict[str, Any]:
        linestyle = style.LINESTYLES[rests.index(config[1:]) % len(style.LINESTYLES)]
        return {"color": colours[config[0]], "linestyle": linestyle, "lw": 1.0}

    fig = style.figure(style.TWO_COLUMN, 4.2)
    axes = fig.subplots(2, 2)
    panels = ((axes[0, 0], fd.EXAMPLES_KEY, "examples seen"), (axes[0, 1], None, STEP))
    panels += ((axes[1, 0], fd.SECONDS_KEY, "wall time (s)"),)
    curves = {
        x_key: fd.loss_against(data.histories, data.runs, batch_first, x_key)
        for _, x_key, _ in panels
    }
    for ax, x_key, xlabel in panels:
        for config, b in curves[x_key].items():
            _with_band(ax, b, **look(config))
        _log_if_decades(ax, list(curves[x_key].values()))
        ax.set_ylim(
            top=fd.first_loss_ceiling(curves[x_key].values())
        )  # diverging runs leave the top
        ax.set(xlabel=xlabel, ylabel="train loss")
        ax.set_xscale("linear" if x_key == fd.EXAMPLES_KEY else "log")
    by_step = curves[None]
    target = (
        data.target_loss if data.target_loss is not None else fd.default_target(by_step.values())
    )
    ax = axes[1, 1]
    for i, rest in enumerate(rests):
        points = []
        for config, b in by_step.items():
            if config[1:] == rest:
                run = groups[config][0]
                size = fd.batch_size(run, data.histories[run.run_id])
                points.append((size, fd.steps_to_target(b.x, b.mean, target)))
        x, y = np.array(points).T
        kw = {"color": "0.2", "linestyle": style.LINESTYLES[i % len(style.LINESTYLES)]}
        ax.plot(x, y, marker=style.MARKERS[i % len(style.MARKERS)], **kw)
    ax.set(xscale="log", yscale="log", xlabel="batch size (examples per step)")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter("{x:g}")
        axis.set_minor_formatter(NullFormatter())
    ax.set(ylabel="steps to reach it", title=f"target: train loss ≤ {target:.3g}")

    handles = [Line2D([], [], color=colours[b], label=f"batch {b}") for b in batches]
    rest_keys = batch_first[1:]
    if rest_keys:
        handles += [
            Line2D(
                [],
                [],
                color="0.2",
                linestyle=look((batches[0], *r))["linestyle"],
                label=fd.config_label(rest_keys, r),
            )
            for r in rests
        ]
    style.legend(fig, handles)
    return fig, data.runs, [fd.LOSS_KEYS[0], fd.EXAMPLES_KEY, fd.SECONDS_KEY]


HISTOGRAM_PANELS: tuple[tuple[str, Literal["first", "last"]], ...] = (
    ("activation", "first"),
    ("activation", "last"),
    ("delta", "first"),
    ("delta", "last"),
)
HISTOGRAM_ROWS = 4  # configs shown


def histograms(data: Data) -> Built:
    """Per hidden layer, the distribution of activations aˡ and of back-propagated |δˡ| at
    the first and the last recorded step (Glorot & Bengio 2010, figs. 3–7): one row per config."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.ticker import MaxNLocator

    rows = [(c, r) for c, r in data.panels if data.histories[r.run_id].histogram_kinds]
    rows = fd.pick_evenly(rows, HISTOGRAM_ROWS)
    hidden = max(data.histories[r.run_id].n_layers or 2 for _, r in rows) - 1
    norm, cmap = style.layer_colours(hidden)
    fig = style.figure(style.TWO_COLUMN, 1.5 * len(rows) + 0.3)
    for sub, (config, run) in zip(fig.subfigures(len(rows), 1), rows, strict=True):
        history = data.histories[run.run_id]
        sub.suptitle(fd.config_label(data.keys, config), fontsize=8)
        axes = sub.subplots(1, len(HISTOGRAM_PANELS))
        for ax, (kind, at) in zip(axes, HISTOGRAM_PANELS, strict=True):
            step, centres, fractions = fd.layer_histograms(history, kind, at)
            for layer in range(len(centres) - 1):  # hidden layers: the output's is the head's
                ax.plot(centres[layer], fractions[layer], color=cmap(norm(layer + 1)), lw=0.9)
            value = "aˡ" if kind == "activation" else "|δˡ| = |∂L/∂zˡ|"
            ax.set_xlabel(f"{value} at step {step}")
            if kind == "delta":
                ax.set_xscale("log")
        axes[0].set_ylabel("fraction of values")
        bar = sub.colorbar(ScalarMappable(norm, cmap), ax=axes, label="hidden layer", aspect=10)
        bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return fig, [r for _, r in rows], []


def decision_boundaries(data: Data) -> Built:
    """Each 2-D classifier's class probabilities on the input plane (colour mixed by
    probability, lines where the predicted class changes) with its training points."""
    from matplotlib.colors import to_rgb

    panels = [(c, r) for c, r in data.panels if r.run_id in data.models]
    fig, axes = style.grid(len(panels), 1.55)
    for ax, (config, run) in zip(axes, panels, strict=True):
        surface = fd.decision_surface(data.models[run.run_id], fd.run_dataset(run.params))
        k = surface.proba.shape[-1]
        colours = np.array([to_rgb(style.PALETTE[i % len(style.PALETTE)]) for i in range(k)])
        light = 0.55 + 0.45 * colours  # the background: pale class colours
        extent = (surface.gx[0], surface.gx[-1], surface.gy[0], surface.gy[-1])
        ax.imshow(
            surface.proba @ light,
            origin="lower",
            extent=extent,
            aspect="auto",
            interpolation="bilinear",
        )
        predicted = surface.proba.argmax(axis=-1)
        ax.contour(
            surface.gx,
            surface.gy,
            predicted,
            levels=np.arange(k - 1) + 0.5,
            colors="0.2",
            linewidths=0.6,
        )
        ax.scatter(*surface.x.T, c=colours[surface.y], s=2.5, linewidths=0, rasterized=True)
        accuracy = fd.final_value(data.histories[run.run_id], "val/accuracy")
        ax.set_title(
            f"{fd.config_label(data.keys, config)}\nval accuracy {accuracy:.0%}", fontsize=7
        )
        ax.set(xticks=[], yticks=[])
    fig.supxlabel("input x₁")
    fig.supylabel("input x₂")
    shown = [r for _, r in panels]
    return fig, shown, ["val/accuracy"]


def _all_keys(data: Data) -> set[str]:
    return {k for h in data.histories.values() for k in h.keys}


Spec = tuple[Callable[[Data], Built], Callable[[Data], bool]]


def _varies(*keys: str) -> Callable[[Data], bool]:
    return lambda data: all(k in data.keys for k in keys)


FIGURES: dict[str, Spec] = {
    "activation_gallery": (activation_gallery, paperfigs.always),
    "gradient_flow": (gradient_flow, paperfigs.always),
    "gradient_heatmaps": (gradient_heatmaps, paperfigs.always),
    "loss_curves": (loss_curves, paperfigs.always),
    "saturation_dead": (saturation_dead, paperfigs.always),
    "update_ratio": (update_ratio, paperfigs.always),
    "depth_vs_width": (depth_vs_width, _varies(fd.DEPTH_KEY)),
    "depth_width_heatmap": (depth_width_heatmap, _varies(fd.DEPTH_KEY, fd.WIDTH_KEY)),
    "batch_size": (batch_size, _varies(fd.BATCH_KEY)),
    "histograms": (
        histograms,
        lambda d: any(d.histories[r.run_id].histogram_kinds for _, r in d.panels),
    ),
    "decision_boundaries": (decision_boundaries, lambda d: bool(d.models)),
    **paperfigs.FIGURES,  # theory next to measurement: the paper reproductions' figures
}


def chosen(data: Data) -> list[str]:
    """The figures that the selected runs can show (the axis they need varies, the files exist)."""
    return [name for name, (_, when) in FIGURES.items() if when(data)]


@dataclass
class Selection:
    """The runs to plot and where they came from."""

    experiment: str
    parent_run_id: str | None  # the sweep's parent run, if all runs share one
    runs: list[fd.RunInfo]


def select(uri: str, experiment: str | None, sweep: str | None, where: str) -> Selection:
    """Resolve --sweep / --experiment / --filter into FINISHED runs; exit with one line if none."""
    try:
        name, parent, found = select_runs(uri, experiment, sweep, where)
    except TrackingError as e:
        sys.exit(f"error: {e}")
    runs = [
        fd.RunInfo(r.info.run_id, r.info.run_name, r.data.params, r.data.tags, r.info.artifact_uri)
        for r in found
    ]
    return Selection(name, parent, runs)


def read_histories(uri: str, runs: Sequence[fd.RunInfo]) -> dict[str, History]:
    """One ``history.npz`` download per run; runs without one are left out with a note."""
    histories = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            try:
                path = fetch_artifact(uri, run.artifact_uri, HISTORY_FILE, Path(tmp, run.run_id))
                histories[run.run_id] = History.load(path)
            except Exception as e:  # missing or unreadable: plot the others
                print(f"note: run {run.name} ({run.run_id}) left out: {e}", file=sys.stderr)
    return histories


def read_classifiers(uri: str, runs: Sequence[fd.RunInfo]) -> dict[str, MLP]:
    """The trained nets of the runs that classify 2-D inputs (one ``model.npz`` download
    each); other nets, diverged runs and unreadable files are skipped."""
    models = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in (r for r in runs if not r.diverged):
            try:
                path = fetch_artifact(uri, run.artifact_uri, fd.MODEL_FILE, Path(tmp, run.run_id))
                net = fd.load_model(path, run.params)
            except Exception as e:  # an older run without weights: no panel
                print(f"note: no decision boundary for run {run.name}: {e}", file=sys.stderr)
                continue
            if net.layer_sizes[0] == 2 and net.head.name == "softmax":
                models[run.run_id] = net
    return models


Drawn = tuple[dict[str, bytes], list[fd.RunInfo], list[str]]  # files by format, runs, keys


def _draw(name: str, data: Data, formats: list[str]) -> Drawn:
    """One figure, drawn in a worker process."""
    style.apply()
    fig, shown, used = FIGURES[name][0](data)
    return style.render(fig, formats), shown, used


def _log_to_parent(uri: str, parent: str | None, paths: list[Path], where: str) -> None:
    """Log the files under ``figures/`` of the parent run; a --filter selection under
    ``figures/filter-<hash>/`` so that it does not replace the whole sweep's figures."""
    if parent is None:
        print("note: the runs share no parent run: files not logged to MLflow", file=sys.stderr)
        return
    folder = "figures"
    if where:
        folder += f"/filter-{hashlib.sha1(where.encode()).hexdigest()[:8]}"
    try:
        log_files(uri, parent, paths, folder)
    except TrackingError as e:
        sys.exit(f"error: {e}")
    print(f"logged {len(paths)} files to run {parent} (artifacts: {folder}/)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.plots",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--experiment", help="an MLflow experiment: its most recent sweep")
    which.add_argument("--sweep", metavar="RUN_ID", help="a sweep's parent run id")
    parser.add_argument("--filter", default="", help="an MLflow search filter on top")
    parser.add_argument("--out", help="output folder (default: figures/<experiment>/)")
    parser.add_argument("--formats", default="png,pdf", help="of png,pdf,svg (default png,pdf)")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else mlflow.db")
    parser.add_argument(
        "--target-loss",
        type=float,
        help="train loss for the steps-to-target panel (default: one half of the configs reach)",
    )
    args = parser.parse_args(argv)
    args.formats = list(dict.fromkeys(f.strip().lower() for f in args.formats.split(",")))
    if not set(args.formats) <= set(style.FORMATS):
        parser.error(f"--formats {','.join(args.formats)}: choose from {','.join(style.FORMATS)}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Select runs, draw every figure, write the manifest, log the files to the parent run."""
    args = parse_args(argv)
    # The workers fork now, before MLflow is imported; the gallery needs no runs: it starts now.
    with ProcessPoolExecutor(max(1, min(3, os.cpu_count() or 1))) as pool:
        no_runs = Data([], {}, [], [])
        futures = {NO_RUNS: pool.submit(_draw, NO_RUNS, no_runs, args.formats)}
        uri = default_tracking_uri(args.tracking_uri)
        selection = select(uri, args.experiment, args.sweep, args.filter)
        histories = read_histories(uri, selection.runs)
        runs = [r for r in selection.runs if r.run_id in histories]
        if not runs:
            sys.exit(f"error: none of the {len(selection.runs)} selected runs has a {HISTORY_FILE}")
        keys = fd.config_keys(runs)
        panels, note = fd.panel_runs(runs, keys, MAX_PANELS)
        if note:
            print(
                f"note: one-panel-per-config figures: {note} (narrow with --filter)",
                file=sys.stderr,
            )
        models = read_classifiers(uri, [run for _, run in panels])
        data = Data(runs, histories, keys, panels, models, args.target_loss)
        names = chosen(data)
        for name in names:
            futures.setdefault(name, pool.submit(_draw, name, data, args.formats))
        drawn = {name: futures[name].result() for name in names}
    folder = re.sub(r"[^\w.\-]+", "_", selection.experiment).strip("._") or "experiment"
    out = Path(args.out) if args.out else Path("figures", folder)
    out.mkdir(parents=True, exist_ok=True)
    figures, written = {}, []
    for name, (files, shown, used) in drawn.items():
        for fmt, content in files.items():
            written.append(out / f"{name}.{fmt}")
            written[-1].write_bytes(content)
            runs_shown = [{"id": r.run_id, "name": r.name} for r in shown]
            figures[written[-1].name] = {"runs": runs_shown, "metric_keys": used}
            print(written[-1])
    selected = {"tracking_uri": uri, "experiment": args.experiment, "sweep": args.sweep}
    resolved = {"experiment": selection.experiment, "sweep": selection.parent_run_id}
    selected |= {"filter": args.filter, "resolved": resolved, "config_keys": keys}
    selected |= {"target_loss": args.target_loss}
    manifest = {"git_commit": git_commit(), "selection": selected, "figures": figures}
    written.append(out / "manifest.json")
    written[-1].write_text(json.dumps(manifest, indent=2) + "\n")
    print(written[-1], flush=True)
    _log_to_parent(uri, selection.parent_run_id, written, args.filter)


if __name__ == "__main__":
    main()
