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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from experiments import figdata as fd
from experiments import style
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
    from matplotlib.figure import Figure

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


Built = tuple["Figure", list[fd.RunInfo], list[str]]  # the figure, runs shown, metric keys used


def _family_keys(data: Data, runs: Sequence[fd.RunInfo], *families: str) -> list[str]:
    prefixes = tuple(f"{f}/layer_" for f in families)
    keys = {k for r in runs for k in data.histories[r.run_id].keys if k.startswith(prefixes)}
    return sorted(keys)


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
                    ax.fill_between(b.x, b.lo, b.hi, color=kw["color"], alpha=0.15, lw=0)
                    ax.plot(b.x, b.mean, markevery=max(1, len(b.x) // 8), **kw)
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


def _layer_grid(data: Data, families: dict[str, str], log: bool, ylabel: str) -> Built:
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

    fig, shown, used = _layer_grid(data, {"saturation": "-", "dead": "--"}, False, "fraction")
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

    fig, shown, used = _layer_grid(data, {"update_ratio": "-"}, True, UPDATE_RATIO)
    for ax in fig.axes[: len(data.panels)]:
        ax.axhline(UPDATE_RATIO_GUIDE, color="0.4", linestyle=":", lw=0.8)
    handle = Line2D([], [], color="0.4", linestyle=":", lw=0.8)
    handle.set_label(f"guide: {UPDATE_RATIO_GUIDE:g} per step")
    fig.legend(handles=[handle], loc="outside upper center")
    return fig, shown, used


FIGURES: dict[str, Callable[[Data], Built]] = {
    "activation_gallery": activation_gallery,
    "gradient_flow": gradient_flow,
    "gradient_heatmaps": gradient_heatmaps,
    "loss_curves": loss_curves,
    "saturation_dead": saturation_dead,
    "update_ratio": update_ratio,
}


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


Drawn = tuple[dict[str, bytes], list[fd.RunInfo], list[str]]  # files by format, runs, keys


def _draw(name: str, data: Data, formats: list[str]) -> Drawn:
    """One figure, drawn in a worker process."""
    style.apply()
    fig, shown, used = FIGURES[name](data)
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
        uri = args.tracking_uri or default_tracking_uri()
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
        data = Data(runs, histories, keys, panels)
        for name in FIGURES:
            futures.setdefault(name, pool.submit(_draw, name, data, args.formats))
        drawn = {name: futures[name].result() for name in FIGURES}
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
    manifest = {"git_commit": git_commit(), "selection": selected, "figures": figures}
    written.append(out / "manifest.json")
    written[-1].write_text(json.dumps(manifest, indent=2) + "\n")
    print(written[-1], flush=True)
    _log_to_parent(uri, selection.parent_run_id, written, args.filter)


if __name__ == "__main__":
    main()
