"""``loss_curves``: train and val loss against steps and examples seen, and where runs diverged."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from experiments.comparison.records import ACTIVATION_KEY
from experiments.diagnostics.history import History
from experiments.figures import style
from experiments.figures.common import (
    BAND_LABEL,
    BATCH_KEY,
    BATCH_LOSS_KEY,
    CEILING,
    EXAMPLES_KEY,
    LOSS_KEYS,
    STEP,
    Band,
    Built,
    Config,
    Data,
    RunInfo,
    against,
    band,
    config_label,
    examples_per_step,
    group_runs,
    log_axis,
    spans_decades,
    with_band,
)


@dataclass
class Stop:
    """Where a diverged run stopped: step, ≈ examples seen, last finite loss per key."""

    run: RunInfo
    step: int
    examples: float
    loss: dict[str, float]


@dataclass
class LossCurves:
    """One config's loss curves over seeds, by step and by examples seen."""

    config: Config
    label: str
    runs: list[RunInfo]
    by_step: dict[str, Band]
    by_examples: dict[str, Band]
    stops: list[Stop]


def _last_finite(history: History, key: str) -> float:
    """The last finite value of ``key`` (NaN if none, or not recorded)."""
    if key not in history.keys:
        return math.nan
    values = history.series(key)[1]
    finite = values[np.isfinite(values)]
    return float(finite[-1]) if finite.size else math.nan


def _stop(run: RunInfo, history: History) -> Stop | None:
    """The × of a diverged run, at its last finite loss (else its last finite batch loss);
    examples ≈ step × examples per step of its last epoch (else × the batch size)."""
    step = run.stopped_at
    if step is None:
        return None
    per_step = examples_per_step(history)
    batch = run.params.get(BATCH_KEY, "")
    if math.isnan(per_step) and batch.isdigit():
        per_step = float(batch)
    fallback = _last_finite(history, BATCH_LOSS_KEY)
    loss = {key: _last_finite(history, key) for key in LOSS_KEYS}
    loss = {key: fallback if math.isnan(v) else v for key, v in loss.items()}
    return Stop(run, step, step * per_step, loss)


def loss_curves_of(
    histories: Mapping[str, History],
    runs: Sequence[RunInfo],
    group_by: Sequence[str],
    spread: str = "t",
) -> list[LossCurves]:
    """Per config: mean and 95% t-band over seeds (``band``'s ``spread``) of train/val loss vs
    step and vs examples seen (from the epoch records), capped at ``CEILING``, and where its
    diverged runs stopped."""
    curves = []
    for config, group in group_runs(runs, group_by).items():
        hs = [histories[r.run_id] for r in group]
        by_step, by_examples = {}, {}
        for key in LOSS_KEYS:
            logged = [h for h in hs if key in h.keys]
            if logged:
                by_step[key] = band([against(h, key, None) for h in logged], CEILING, spread)
                by_examples[key] = band(
                    [against(h, key, EXAMPLES_KEY) for h in logged], CEILING, spread
                )
        stops = [s for r, h in zip(group, hs, strict=True) if (s := _stop(r, h)) is not None]
        label = config_label(group_by, config)
        curves.append(LossCurves(config, label, group, by_step, by_examples, stops))
    return curves


def loss_curves(data: Data) -> Built:
    """Train and val loss (rows) against the step, or the examples seen when batch sizes
    differ: mean and 95% t-band over seeds (on a log axis the geometric mean).  With the
    activation and another key varying, one column per activation, the other keys by line
    style.  An × marks where a diverged run stopped, at its last finite loss (on the edge if
    off the chart); a ▲ where a finite loss above ``CEILING`` is drawn at it."""
    from matplotlib.lines import Line2D

    curves = loss_curves_of(data.histories, data.runs, data.keys)
    look = style.looks(data.keys, [c.config for c in curves], rest="linestyle")
    by_examples = len({examples_per_step(data.histories[r.run_id]) for r in data.runs}) > 1
    columns = _columns(data.keys, curves)
    fig = style.figure(style.TWO_COLUMN, 3.6)
    axes = fig.subplots(2, len(columns), sharex=True, sharey="row", squeeze=False)
    bands = [b for c in curves for b in (c.by_examples if by_examples else c.by_step).values()]
    log = spans_decades([b.mean for b in bands])
    if log:  # geometric means: an arithmetic t-band of a few seeds reaches below zero
        curves = loss_curves_of(data.histories, data.runs, data.keys, "log t")
        bands = [b for c in curves for b in (c.by_examples if by_examples else c.by_step).values()]
    for row, key in zip(axes, LOSS_KEYS, strict=True):
        for ax, (title, members) in zip(row, columns.items(), strict=True):
            for c in members:
                b = (c.by_examples if by_examples else c.by_step).get(key)
                if b is not None:
                    with_band(ax, b, **look[c.config])
            ax.set_title(title if key == LOSS_KEYS[0] else "")
        if log:
            log_axis(row[0])
        lo, hi = row[0].get_ylim()
        row[0].set_ylim(lo, hi)  # frozen: the × marks do not stretch it
        for ax, members in zip(row, columns.values(), strict=True):
            for c in members:
                for stop in c.stops:
                    x = stop.examples if by_examples else stop.step
                    kw = {"color": look[c.config]["color"], "ms": 6, "mew": 1.5}
                    y = np.clip(stop.loss[key], lo, hi)
                    ax.plot(x, y, "x", **kw, clip_on=False, zorder=5)
    axes[0, 0].set_ylabel("train loss")
    axes[1, 0].set_ylabel("val loss")
    fig.supxlabel("examples seen" if by_examples else STEP)
    configs = [c.config for c in curves]
    handles = style.legend_handles(data.keys, configs, config_label, rest="linestyle")
    stopped = any(c.stops for c in curves)
    if stopped:
        handles.append(Line2D([], [], color="0.2", marker="x", ls="none", label="diverged"))
    if any(b.over.any() for b in bands):
        label = f"above {CEILING:.0e}, drawn at it"
        handles.append(Line2D([], [], color="0.2", marker="^", ls="none", label=label))
    handles.append(Line2D([], [], color="0.6", lw=4, alpha=0.4, label=BAND_LABEL[log]))
    style.legend(fig, handles)
    used = [*LOSS_KEYS, EXAMPLES_KEY] + ([BATCH_LOSS_KEY] if stopped else [])
    return fig, data.runs, used


MAX_COLUMNS = 4  # activations drawn side by side; more share one panel


def _columns(keys: Sequence[str], curves: Sequence[LossCurves]) -> dict[str, list[LossCurves]]:
    """Panel title → its curves: one per activation when another key varies too (at most
    ``MAX_COLUMNS``), else one panel of all."""
    if len(keys) > 1 and keys[0] == ACTIVATION_KEY:
        columns: dict[str, list[LossCurves]] = {}
        for c in curves:
            columns.setdefault(c.config[0], []).append(c)
        if len(columns) <= MAX_COLUMNS:
            return columns
    return {"": list(curves)}
