"""``loss_curves``: train and val loss against steps and examples seen, and where runs diverged."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from experiments.diagnostics.history import History
from experiments.figures import style
from experiments.figures.common import (
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
    histories: Mapping[str, History], runs: Sequence[RunInfo], group_by: Sequence[str]
) -> list[LossCurves]:
    """Per config: mean and min–max band over seeds of train/val loss vs step and vs examples
    seen (from the epoch records), capped at ``CEILING``, and where its diverged runs stopped."""
    curves = []
    for config, group in group_runs(runs, group_by).items():
        hs = [histories[r.run_id] for r in group]
        by_step, by_examples = {}, {}
        for key in LOSS_KEYS:
            logged = [h for h in hs if key in h.keys]
            if logged:
                by_step[key] = band([against(h, key, None) for h in logged], CEILING)
                by_examples[key] = band([against(h, key, EXAMPLES_KEY) for h in logged], CEILING)
        stops = [s for r, h in zip(group, hs, strict=True) if (s := _stop(r, h)) is not None]
        label = config_label(group_by, config)
        curves.append(LossCurves(config, label, group, by_step, by_examples, stops))
    return curves


def loss_curves(data: Data) -> Built:
    """Train/val loss vs step and vs examples seen: mean, min–max over seeds.  An × marks
    where a diverged run stopped, at its last finite loss (on the edge if off the chart); a ▲
    where a finite loss above ``CEILING`` is drawn at it."""
    from matplotlib.lines import Line2D

    curves = loss_curves_of(data.histories, data.runs, data.keys)
    look = style.looks(data.keys, [c.config for c in curves])
    fig = style.figure(style.TWO_COLUMN, 4.0)
    axes = fig.subplots(2, 2, sharex="col", sharey="row")
    bands = [b for c in curves for by in (c.by_step, c.by_examples) for b in by.values()]
    scale = "log" if spans_decades([a for b in bands for a in (b.lo, b.hi)]) else "linear"
    for row, key in zip(axes, LOSS_KEYS, strict=True):
        row[0].set_yscale(scale)
        for ax, by_step in zip(row, (True, False), strict=True):
            for c in curves:
                kw, b = look[c.config], (c.by_step if by_step else c.by_examples).get(key)
                if b is not None:
                    with_band(ax, b, markevery=max(1, len(b.x) // 8), **kw)
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
    handles = style.legend_handles(data.keys, [c.config for c in curves], config_label)
    stopped = any(c.stops for c in curves)
    if stopped:
        handles.append(Line2D([], [], color="0.2", marker="x", ls="none", label="diverged"))
    if any(b.over.any() for b in bands):
        label = f"above {CEILING:.0e}, drawn at it"
        handles.append(Line2D([], [], color="0.2", marker="^", ls="none", label=label))
    style.legend(fig, handles)
    used = [*LOSS_KEYS, EXAMPLES_KEY] + ([BATCH_LOSS_KEY] if stopped else [])
    return fig, data.runs, used
