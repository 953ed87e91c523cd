"""``batch_size`` (loss against examples, steps and seconds per batch size; steps to a target),
``lr_vs_batch`` (a tuned sweep's chosen lr per batch size against the linear and square-root
scaling rules) and ``steps_vs_batch`` (McCandlish et al. 2018: the fewest steps to a
training-set loss per batch size, with the fit S = S_min (1 + B_noise/B); the noise_scale
preset)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from bpcore.noise_scale import fit_steps_vs_batch
from bpcore.optim import scaled_lr
from experiments.comparison.records import LR_KEY
from experiments.comparison.selection import chosen_lrs
from experiments.diagnostics.history import FloatArray, History
from experiments.figures import style
from experiments.figures.common import (
    BAND_LABEL,
    BATCH_KEY,
    EXAMPLES_KEY,
    LOSS_KEYS,
    SECONDS_KEY,
    STEP,
    Band,
    Built,
    Config,
    Data,
    RunInfo,
    against,
    band,
    batch_axis,
    config_keys,
    config_label,
    examples_per_step,
    finite_or_nan,
    group_runs,
    log_axis,
    record_of,
    runs_with,
    spans_decades,
    with_band,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

FULL_LOSS = "train/full_loss"  # the training-set loss, recorded with log.full_gradient
TARGET_LOSS = 0.2  # steps_vs_batch unless Data.target_loss: the noise_scale runs all reach it


def batch_size_of(run: RunInfo, history: History) -> float:
    """The run's batch size; for ``full``, the examples per step of its epoch records."""
    value = run.params.get(BATCH_KEY, "")
    return float(value) if value.isdigit() else examples_per_step(history)


def loss_against(
    histories: Mapping[str, History],
    runs: Sequence[RunInfo],
    group_by: Sequence[str],
    x_key: str | None,
    key: str = LOSS_KEYS[0],
    spread: str = "range",
) -> dict[Config, Band]:
    """Per config: ``key`` (epoch records) against the step (``x_key`` None) or another epoch
    metric such as examples seen or seconds; the mean and the ``band``'s spread over the seeds
    at each step, drawn at the seeds' mean of ``x_key`` there (seeds' wall times differ)."""
    out = {}
    for config, group in group_runs(runs, group_by).items():
        hs = [histories[r.run_id] for r in group]
        by_step = band([against(h, key, None) for h in hs], spread=spread)
        if x_key is not None:
            by_step.x = band([against(h, x_key, None) for h in hs]).mean
        out[config] = by_step
    return out


def first_loss_ceiling(curves: Iterable[Band], margin: float = 1.1) -> float | None:
    """A y-axis top for loss curves: ``margin`` × the largest first mean loss of the configs,
    so every curve starts inside the chart and only runs that blow up later leave it; None if
    no config has a finite first value."""
    firsts = [float(b.mean[0]) for b in curves if b.mean.size and np.isfinite(b.mean[0])]
    return margin * max(firsts) if firsts else None


def steps_to_target(steps: NDArray[np.generic], loss: FloatArray, target: float) -> float:
    """The first step where ``loss`` ≤ ``target``, linearly interpolated between the two
    records around the crossing; NaN if never reached."""
    x, y = np.asarray(steps, dtype=np.float64), finite_or_nan(loss)
    below = np.flatnonzero(y <= target)
    if not below.size:
        return math.nan
    i = int(below[0])
    if i == 0 or np.isnan(y[i - 1]):
        return float(x[i])
    return float(x[i - 1] + (y[i - 1] - target) / (y[i - 1] - y[i]) * (x[i] - x[i - 1]))


def default_target(curves: Iterable[Band], reached_by: float = 1.0) -> float:
    """A target loss that about ``reached_by`` of the configs reach (by default all: the
    worst config's best): that quantile of the configs' best mean loss (configs that never had
    a finite loss left out)."""
    best = [np.nanmin(b.mean) for b in curves if not np.isnan(b.mean).all()]
    return float(np.quantile(best, reached_by)) if best else math.nan


def best_steps(
    runs: Sequence[RunInfo], histories: Mapping[str, History], target: float = TARGET_LOSS
) -> tuple[FloatArray, FloatArray]:
    """(batch sizes, fewest steps to ``target`` of the training-set loss), by batch size: per
    learning rate the mean over its seeds, then the lr with the fewest; an lr counts only if
    every seed of it reached the target (the minimum over seeds would reward luck)."""
    steps: dict[tuple[float, str], list[float]] = {}
    for run in runs:
        h = histories[run.run_id]
        key = (batch_size_of(run, h), run.params.get(LR_KEY, ""))
        steps.setdefault(key, []).append(steps_to_target(*h.series(FULL_LOSS), target))
    best: dict[float, float] = {}
    for (b, _), per_seed in steps.items():
        mean = float(np.mean(per_seed))  # NaN if a seed never reached the target
        if not math.isnan(mean):
            best[b] = min(best.get(b, math.inf), mean)
    batches = np.array(sorted(best), dtype=np.float64)
    return batches, np.array([best[b] for b in batches], dtype=np.float64)


def batch_varies(data: Data) -> bool:
    return BATCH_KEY in data.keys


def has_full_loss(data: Data) -> bool:
    """Some run recorded the training-set loss (``log.full_gradient``)."""
    return bool(runs_with(data, FULL_LOSS))


def batch_size(data: Data) -> Built:
    """Train loss (mean, 95% t-band over seeds) against examples seen, steps and seconds, one
    line per batch size (colour) and rule (line style); steps to reach a target loss that
    every config reaches against batch size."""
    from matplotlib.lines import Line2D

    batch_first = [BATCH_KEY, *[k for k in data.keys if k != BATCH_KEY]]
    groups = group_runs(data.runs, batch_first)
    batches = list(dict.fromkeys(c[0] for c in groups))
    rests = list(dict.fromkeys(c[1:] for c in groups))
    colours = dict(zip(batches, style.ordered_colours(len(batches)), strict=True))

    def linestyle(rest: Config) -> str:
        return style.LINESTYLES[rests.index(rest) % len(style.LINESTYLES)]

    def marker(rest: Config) -> str:
        return style.MARKERS[rests.index(rest) % len(style.MARKERS)]

    fig = style.figure(style.TWO_COLUMN, 4.4)
    axes = fig.subplots(2, 2)
    panels: list[tuple[Axes, str | None, str]] = [
        (axes[0, 0], EXAMPLES_KEY, "examples seen"),
        (axes[0, 1], None, STEP),
        (axes[1, 0], SECONDS_KEY, "wall time (s)"),
    ]
    curves = {
        x_key: loss_against(data.histories, data.runs, batch_first, x_key, spread="t")
        for _, x_key, _ in panels
    }
    log = spans_decades([b.mean for b in curves[None].values()])
    for (ax, x_key, xlabel), letter in zip(panels, "abc", strict=False):
        drawn = curves[x_key]
        if log:  # geometric means: an arithmetic t-band of a few seeds reaches below zero
            drawn = loss_against(data.histories, data.runs, batch_first, x_key, spread="log t")
        for config, b in drawn.items():
            with_band(ax, b, color=colours[config[0]], linestyle=linestyle(config[1:]), lw=1.0)
        if log:
            log_axis(ax)
        bottom = None if log else 0.0  # a t-band of a few seeds may reach below zero loss
        ax.set_ylim(bottom, first_loss_ceiling(drawn.values()))  # diverging runs leave the top
        xs = [b.x for b in curves[x_key].values()]
        if x_key != EXAMPLES_KEY and spans_decades(xs, 1.5):  # else few labelled log ticks
            log_axis(ax, "x")
        ax.set(xlabel=xlabel, ylabel="train loss", title=f"({letter}) loss vs {xlabel}")
    by_step = curves[None]
    target = data.target_loss if data.target_loss is not None else default_target(by_step.values())
    ax = axes[1, 1]
    reached: list[float] = []
    for rest in rests:
        points = []
        for config, b in by_step.items():
            if config[1:] == rest:
                run = groups[config][0]
                size = batch_size_of(run, data.histories[run.run_id])
                points.append((size, steps_to_target(b.x, b.mean, target)))
        x, y = np.array(points).T
        reached += list(y[np.isfinite(y)])
        ax.plot(x, y, color="0.2", linestyle=linestyle(rest), marker=marker(rest))
    batch_axis(ax, _sizes(data, groups))
    if spans_decades([np.array(reached)], 1.5):
        log_axis(ax)
    ax.set(xlabel="batch size (examples per step)", ylabel="steps to reach the target")
    ax.set_title(f"(d) steps to train loss ≤ {target:.3g}")

    handles = [Line2D([], [], color=colours[b], label=f"batch {b}") for b in batches]
    rest_keys = batch_first[1:]
    for r in rests:
        label = config_label(rest_keys, r) if rest_keys else "steps to target (d)"
        look: dict[str, Any] = {"color": "0.2", "linestyle": linestyle(r), "marker": marker(r)}
        handles.append(Line2D([], [], **look, label=label))
    handles.append(Line2D([], [], color="0.6", lw=4, alpha=0.4, label=BAND_LABEL[log]))
    style.legend(fig, handles)
    return fig, data.runs, [LOSS_KEYS[0], EXAMPLES_KEY, SECONDS_KEY]


def _sizes(data: Data, groups: Mapping[Config, Sequence[RunInfo]]) -> list[float]:
    """The batch size of each config (``full``: its examples per step)."""
    return [batch_size_of(g[0], data.histories[g[0].run_id]) for g in groups.values()]


def chosen_per_batch(data: Data) -> tuple[FloatArray, FloatArray]:
    """(batch sizes, the lr the protocol chose for each: the effective lr, after the sweep's
    lr_scaling rule), from the tuning runs; sorted by batch size."""
    keys = [k for k in config_keys(data.tuning) if k != LR_KEY]
    if BATCH_KEY not in keys:
        keys.append(BATCH_KEY)
    chosen = chosen_lrs([record_of(r, data.histories[r.run_id], keys) for r in data.tuning])
    points = {}
    for run in data.tuning:
        config = tuple((key, run.params.get(key, "")) for key in keys)
        size = batch_size_of(run, data.histories[run.run_id])
        rule = run.params.get("train.lr_scaling", "none")
        reference = int(run.params.get("train.reference_batch_size", "1"))
        points[size] = scaled_lr(chosen[config], round(size), rule, reference)
    sizes = np.array(sorted(points), dtype=np.float64)
    return sizes, np.array([points[b] for b in sizes], dtype=np.float64)


def tuned_batch_sizes(data: Data) -> bool:
    """A tuned sweep whose configs differ in batch size."""
    return len({r.params.get(BATCH_KEY) for r in data.tuning}) > 1


def lr_vs_batch(data: Data) -> Built:
    """Each batch size's chosen (effective) lr, with lr ∝ B and lr ∝ √B through the smallest
    batch's: which scaling rule the tuned learning rates follow."""

    sizes, lrs = chosen_per_batch(data)
    fig = style.figure(style.ONE_COLUMN, 2.6)
    ax = fig.subplots()
    b = np.geomspace(sizes.min(), sizes.max(), 100)
    ax.plot(b, lrs[0] * b / sizes[0], "--", color=style.BLACK, lw=0.8, label="lr ∝ B (linear)")
    ax.plot(b, lrs[0] * np.sqrt(b / sizes[0]), ":", color=style.BLACK, lw=0.8, label="lr ∝ √B")
    ax.plot(sizes, lrs, "o-", color=style.BLUE, label="chosen on validation loss")
    batch_axis(ax, sizes)
    log_axis(ax)
    ax.set(xlabel="batch size B", ylabel="learning rate")
    grid = sorted({float(r.params["optim.lr"]) for r in data.tuning})
    ax.set_title(f"grid: {', '.join(f'{lr:g}' for lr in grid)}", fontsize=7)
    ax.legend(loc="upper left")
    return fig, data.tuning, ["val/loss"]


def reached_by_all(runs: Sequence[RunInfo], histories: Mapping[str, History]) -> float:
    """The lowest training-set loss that every run reaches after its first record (the
    largest of their best losses from step 1 on)."""
    best = []
    for run in runs:
        steps, loss = histories[run.run_id].series(FULL_LOSS)
        later = finite_or_nan(loss[steps > 0])
        if not np.isnan(later).all():
            best.append(float(np.nanmin(later)))
    return max(best, default=math.nan)


def steps_vs_batch(data: Data) -> Built:
    """Fewest steps to the target loss per batch size and the fit S = S_min (1 + B_noise/B)."""
    runs = runs_with(data, FULL_LOSS)
    target = TARGET_LOSS if data.target_loss is None else data.target_loss
    batches, steps = best_steps(runs, data.histories, target)
    if data.target_loss is None and len(batches) < 2:  # too few reach it: one every run does
        target = reached_by_all(runs, data.histories)
        batches, steps = best_steps(runs, data.histories, target)
    fig = style.figure(style.ONE_COLUMN, 2.8)
    ax = fig.subplots()
    later = steps > 0  # a target met at step 0 says nothing about the batch size
    batches, steps = batches[later], steps[later]
    ax.plot(batches, steps, "o", color=style.BLUE, label="best lr of the grid, mean over seeds")
    if len(batches) >= 2:
        s_min, b_noise = fit_steps_vs_batch(batches, steps)
        b = np.geomspace(batches.min(), batches.max(), 200)
        fit = rf"$S_{{min}}(1 + B_{{noise}}/B)$, $B_{{noise}}$ = {b_noise:.3g}"
        ax.plot(b, s_min * (1 + b_noise / b), "--", color=style.BLACK, label=fit)
    batch_axis(ax, batches)
    if spans_decades([steps], 1):  # else a linear axis: a log one would label one tick
        log_axis(ax)
    ax.set(xlabel="batch size B", ylabel=f"steps to training loss {target:.3g}")
    ax.legend(loc="best")
    return fig, runs, [FULL_LOSS, EXAMPLES_KEY]
