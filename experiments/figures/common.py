"""What every figure family shares: the selected runs (``Data``), configs, bands over seeds.

A run is a ``RunInfo`` (id, name, params, tags as MLflow stores them) plus its ``History``
(``history.npz``).  A *config* is a run's values of the params that vary across the selected
runs, seeds excepted: runs of one config differ only in their seed and are averaged.

No MLflow here, and matplotlib only inside the two drawing helpers at the end: the data
functions are plain arrays, each tested alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from bpcore import ACTIVATIONS
from experiments.comparison import records
from experiments.comparison.records import ACTIVATION_KEY
from experiments.comparison.summary import CONFIDENCE, interval
from experiments.diagnostics.history import OUTPUT_TAG, FloatArray, History, IntArray

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from bpcore import MLP

Config = tuple[str, ...]
T = TypeVar("T")

LOSS_KEYS = ("train/loss", "val/loss")
EXAMPLES_KEY = "progress/examples_seen"
BATCH_LOSS_KEY = "train/batch_loss"
SECONDS_KEY = "progress/seconds"
DEPTH_KEY, WIDTH_KEY, DATA_KEY = "model.depth", "model.width", "data.name"
BATCH_KEY = "train.batch_size"

STEP, LAYER = "optimizer step", "layer l (1 = input)"  # axis labels
BIAS_GRAD = r"$\Vert\partial L/\partial b^l\Vert$"

# Finite values above it are drawn at it, marked (``band``): float32 overflows just past it
# (3.4e38), and a log axis that reaches towards float64's largest (1.8e308) overflows
# matplotlib's tick locator (OverflowError).
CEILING = 1e38


@dataclass(frozen=True)
class RunInfo:
    """One MLflow run as the figures need it."""

    run_id: str
    name: str
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    artifact_uri: str = ""

    @property
    def diverged(self) -> bool:
        return self.tags.get("diverged") == "true"

    @property
    def stopped_at(self) -> int | None:
        """The step a diverged run stopped at (its loss or gradient was not finite)."""
        step = self.tags.get("diverged_at_step")
        return int(step) if self.diverged and step is not None else None

    @property
    def seed(self) -> str:
        return self.params.get("seed", "")


@dataclass
class Data:
    """The selected runs, their histories, the config keys, one run per config for grids."""

    runs: list[RunInfo]
    histories: dict[str, History]
    keys: list[str]
    panels: list[tuple[Config, RunInfo]]
    models: dict[str, MLP] = field(default_factory=dict)  # 2-D classifiers of the panel runs
    target_loss: float | None = None  # steps-to-target figures; None: chosen from the runs
    tuning: list[RunInfo] = field(default_factory=list)  # a tuned sweep's stage-1 runs

    @classmethod
    def split(cls, runs: list[RunInfo]) -> tuple[list[RunInfo], list[RunInfo]]:
        """(the reported runs: stage final if the sweep tuned its lrs, else every run; the
        tuning runs).  Every figure but the lr's shows the reported runs."""
        stages = [r.params.get("stage", "single") for r in runs]
        reported = records.reported_stage(stages)
        tuning = [r for r, stage in zip(runs, stages, strict=True) if stage == "tune"]
        return [r for r, s in zip(runs, stages, strict=True) if s == reported], tuning


Built = tuple["Figure", list[RunInfo], list[str]]  # the figure, runs shown, metric keys used
Draw = Callable[[Data], Built]
CanShow = Callable[[Data], bool]  # whether the selected runs can show a figure


# ------------------------------------------------------------------------ what runs can show


def always(data: Data) -> bool:
    """Any selection can show the figure."""
    return True


def runs_with(data: Data, key: str) -> list[RunInfo]:
    """The selected runs that recorded ``key``."""
    return [r for r in data.runs if key in data.histories[r.run_id].keys]


def family_keys(data: Data, runs: Sequence[RunInfo], *families: str) -> list[str]:
    """The ``family/layer_XX`` and ``family/output`` keys of ``families`` that ``runs``
    recorded."""
    keys = {k for r in runs for k in data.histories[r.run_id].keys if _layer_of(k, families)}
    return sorted(keys)


def _layer_of(key: str, families: Sequence[str]) -> str | None:
    """``layer_XX`` or ``output`` if ``key`` is a per-layer key of one of ``families``."""
    family, _, tail = key.rpartition("/")
    layered = tail.startswith("layer_") or tail == OUTPUT_TAG
    return tail if family in families and layered else None


# ------------------------------------------------------------------------------------ configs


def value_order(key: str, value: str) -> tuple[float, str]:
    """Sort values numerically when they are numbers, activations in registry order."""
    if key == ACTIVATION_KEY and value in ACTIVATIONS:
        return float(list(ACTIVATIONS).index(value)), value
    try:
        return float(value), value
    except ValueError:
        return math.inf, value


def config_keys(runs: Sequence[RunInfo]) -> list[str]:
    """The params that vary across ``runs``, seeds excepted (``comparison.records``)."""
    return records.config_keys([r.params for r in runs])


def group_runs(runs: Iterable[RunInfo], keys: Sequence[str]) -> dict[Config, list[RunInfo]]:
    """Runs by config, configs in a fixed order; within a config by seed, then run id."""
    groups: dict[Config, list[RunInfo]] = {}
    for run in runs:
        groups.setdefault(tuple(run.params.get(k, "") for k in keys), []).append(run)

    def config_order(config: Config) -> list[tuple[float, str]]:
        return [value_order(k, v) for k, v in zip(keys, config, strict=True)]

    return {
        c: sorted(groups[c], key=lambda r: (*value_order("seed", r.seed), r.run_id))
        for c in sorted(groups, key=config_order)
    }


def config_label(keys: Sequence[str], config: Config) -> str:
    """``relu, depth=8``: the activation by name, other keys by their last part."""
    parts = []
    for key, value in zip(keys, config, strict=True):
        head, _, tail = key.rpartition(".")
        short = head.rpartition(".")[2] if tail == "name" and head else tail
        parts.append(value if key == ACTIVATION_KEY else f"{short}={value}")
    return ", ".join(parts) or "all runs"


def pick_evenly(items: Sequence[T], n: int) -> list[T]:
    """At most ``n`` items, evenly spread over ``items`` (first and last included)."""
    if len(items) <= n:
        return list(items)
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def panel_runs(
    runs: Sequence[RunInfo], keys: Sequence[str], limit: int
) -> tuple[list[tuple[Config, RunInfo]], str]:
    """For one-panel-per-config figures: the lowest-seed run of each config, at most ``limit``.

    Too many configs: keep those with the last value of the keys after the first (every
    activation at the largest depth), else pick evenly.  Also returns a note ('' if all shown).
    """
    firsts = [(config, group[0]) for config, group in group_runs(runs, keys).items()]
    if len(firsts) <= limit:
        return firsts, ""
    last_rest = firsts[-1][0][1:]
    kept = [(c, r) for c, r in firsts if c[1:] == last_rest] if last_rest else []
    if 0 < len(kept) <= limit:
        return kept, f"showing {config_label(keys[1:], last_rest)} only"
    picked = pick_evenly(firsts, limit)
    return picked, f"showing {len(picked)} of {len(firsts)} configs"


# ------------------------------------------------------------------------------------- values


def finite_or_nan(values: NDArray[np.floating[Any]]) -> FloatArray:
    """Values with ±inf replaced by NaN (a gap in a plot)."""
    out = np.asarray(values, dtype=np.float64).copy()
    out[~np.isfinite(out)] = np.nan
    return out


def positive(values: NDArray[np.floating[Any]]) -> FloatArray:
    """Values for a log axis: non-finite and ≤ 0 become NaN (gaps)."""
    out = finite_or_nan(values)
    out[out <= 0] = np.nan
    return out


def spans_decades(arrays: Iterable[NDArray[np.floating[Any]]], decades: float = 2) -> bool:
    """Do the positive finite values span at least ``decades`` powers of ten (log axis)?"""
    values = np.concatenate([positive(a).ravel() for a in arrays] + [np.array([])])
    values = values[~np.isnan(values)]
    return values.size > 0 and math.log10(values.max()) - math.log10(values.min()) >= decades


def per_layer_over_time(history: History, family: str) -> tuple[IntArray, IntArray, FloatArray]:
    """(steps, layers (1-based), matrix (layers × steps)) of a ``family/layer_XX`` family; its
    ``family/output`` key, if recorded, is the last layer (number ``history.n_layers``)."""
    found = [k for k in history.keys if _layer_of(k, [family]) not in (None, OUTPUT_TAG)]
    hidden = sorted(found, key=lambda k: int(k.rpartition("_")[2]))  # layer_09 < layer_100
    numbers = [int(k.rpartition("_")[2]) for k in hidden]
    keys, output = hidden, f"{family}/{OUTPUT_TAG}"
    if output in history.keys:
        keys, numbers = [*hidden, output], [*numbers, history.n_layers or len(hidden) + 1]
    if not keys:
        raise KeyError(f"no {family!r} metrics recorded")
    layers = np.array(numbers, dtype=np.int64)
    steps = history.series(keys[0])[0]
    matrix = np.stack([history.series(k)[1] for k in keys])
    return steps, layers, matrix


def final_value(history: History, key: str) -> float:
    """The last recorded value of ``key``; NaN if not recorded or not finite (diverged)."""
    if key not in history.keys:
        return math.nan
    value = float(history.series(key)[1][-1])
    return value if math.isfinite(value) else math.nan


RECORDED = ("val/loss", "test/loss", "test/accuracy", "progress/seconds")


def record_of(run: RunInfo, history: History, keys: Sequence[str]) -> records.Record:
    """The run as a comparison sees it (``comparison.records``), from its history."""
    last = {key: final_value(history, key) for key in RECORDED}
    return records.record(run.params, run.tags, last, keys)


def examples_per_step(history: History) -> float:
    """Examples per optimizer step, from the last epoch record (NaN if there is none)."""
    if EXAMPLES_KEY not in history.keys:
        return math.nan
    steps, examples = history.series(EXAMPLES_KEY)
    return float(examples[-1] / steps[-1]) if steps.size and steps[-1] else math.nan


def against(history: History, key: str, x_key: str | None) -> tuple[NDArray[Any], FloatArray]:
    """(x, values) of an epoch metric: x the steps (``x_key`` None) or another epoch metric."""
    steps, values = history.series(key)
    return (steps if x_key is None else history.series(x_key)[1]), values


def t_interval(values: Sequence[float], min_n: int = 2) -> tuple[float, float]:
    """(low, high): the mean ∓ the half width of its 95% Student-t interval over the finite
    ``values`` (the summary table's rule, ``comparison.summary.interval``), as seaborn's
    ``errorbar`` callable returns it; no width from fewer than ``min_n`` values."""
    found = interval(values)
    width = found.half_width if found.n >= min_n and found.half_width else 0.0
    width = width if math.isfinite(width) else 0.0
    return found.mean - width, found.mean + width


BAND_LABEL = {  # the legend entry of a band over seeds, by whether its axis is log
    False: "mean, 95% t-interval over seeds",
    True: "geometric mean, 95% t-interval over seeds",
}


@dataclass
class Band:
    """Mean and a spread over runs at each x (NaN where no run has a finite value): min–max,
    or the 95% t-interval of the mean (``band(spread="t")``); ``over``: where the max was above
    the ceiling, so that mean, low and high were drawn at it."""

    x: FloatArray
    mean: FloatArray
    lo: FloatArray
    hi: FloatArray
    over: NDArray[np.bool_]


def band(
    series: Sequence[tuple[NDArray[np.generic], FloatArray]],
    ceiling: float = math.inf,
    spread: str = "range",
) -> Band:
    """Align (x, y) series on the union of their x; the mean of the finite y at each x and
    their min and max (``spread="range"``) or the 95% Student-t interval of the mean
    (``spread="t"``, as ``t_interval``), or for a log axis the geometric mean and the
    t-interval of ln y (``spread="log t"``, positive y only); each at most ``ceiling``."""
    xs = np.unique(np.concatenate([np.asarray(x, dtype=np.float64) for x, _ in series]))
    table = np.full((len(series), len(xs)), np.nan)
    for row, (x, y) in zip(table, series, strict=True):
        row[np.searchsorted(xs, np.asarray(x, dtype=np.float64))] = finite_or_nan(y)
    ok = ~np.isnan(table)
    count = ok.sum(axis=0)
    shares = np.where(ok, table, 0.0) / np.maximum(count, 1)  # their sum may overflow: 2e308
    mean = np.where(count > 0, shares.sum(axis=0), np.nan)
    lo = np.where(count > 0, np.where(ok, table, np.inf).min(axis=0), np.nan)
    hi = np.where(count > 0, np.where(ok, table, -np.inf).max(axis=0), np.nan)
    over = hi > ceiling
    if spread == "t":
        lo, hi = _t_limits(table, mean, count)
    elif spread == "log t":  # for a log axis: the geometric mean, the interval of ln y
        with np.errstate(all="ignore"):
            logs = np.log(np.where(table > 0, table, np.nan))
        n = (~np.isnan(logs)).sum(axis=0)
        mean_log = np.where(n > 0, np.where(np.isnan(logs), 0.0, logs).sum(axis=0), np.nan)
        mean_log /= np.maximum(n, 1)
        low, high = _t_limits(logs, mean_log, n)
        with np.errstate(over="ignore"):  # above float64's largest: at the ceiling below
            mean, lo, hi = np.exp(mean_log), np.exp(low), np.exp(high)
    return Band(
        xs, np.minimum(mean, ceiling), np.minimum(lo, ceiling), np.minimum(hi, ceiling), over
    )


def _t_limits(
    table: FloatArray, mean: FloatArray, count: IntArray
) -> tuple[FloatArray, FloatArray]:
    """Per column of ``table`` (runs × x, NaN where missing): mean ∓ t · s/√n, the mean alone
    where n < 2 or the spread is not finite."""
    from scipy import stats  # type: ignore[import-untyped]

    with np.errstate(all="ignore"):
        deviations = np.where(np.isnan(table), 0.0, table - mean)
        sd = np.sqrt((deviations**2).sum(axis=0) / np.maximum(count - 1, 1))
        half = stats.t.ppf((1 + CONFIDENCE) / 2, np.maximum(count - 1, 1)) * sd / np.sqrt(count)
    half = np.where((count >= 2) & np.isfinite(half), half, 0.0)
    return mean - half, mean + half


# ---------------------------------------------------------------------------- drawing helpers


def batch_axis(ax: Axes, sizes: Iterable[float], min_gap: float = 0.4) -> None:
    """A log x axis ticked at exactly the batch sizes drawn (8, 32, 120 …), labelled where
    the labels stay ``min_gap`` decades apart (the largest size always: often the full batch)."""
    from matplotlib.ticker import FixedLocator, NullLocator

    ticks = sorted(set(sizes))
    labelled: list[float] = []
    for size in reversed(ticks):
        if not labelled or math.log10(labelled[-1] / size) >= min_gap:
            labelled.append(size)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(lambda x, _: f"{x:g}" if x in labelled else "")
    ax.xaxis.set_minor_locator(NullLocator())


def with_band(ax: Axes, b: Band, **kw: Any) -> None:
    """Mean line over a min–max band (over seeds); a ▲ where the band was capped."""
    ax.fill_between(b.x, b.lo, b.hi, color=kw["color"], alpha=0.15, lw=0)
    ax.plot(b.x, b.mean, **kw)
    if b.over.any():
        ax.plot(b.x[b.over], b.hi[b.over], "^", color=kw["color"], ms=5, clip_on=False)


def log_if_decades(ax: Axes, bands: Sequence[Band]) -> None:
    """A log y axis, labelled 0.1, 0.01 …, when the bands span two decades."""
    if spans_decades([a for b in bands for a in (b.lo, b.mean, b.hi)]):
        log_axis(ax)


def log_axis(ax: Axes, which: str = "y", subs: Sequence[float] | None = None) -> None:
    """A log scale on ``ax``'s ``which`` axis, labelled at powers of ten (0.01, 0.1, 1 …;
    1e-05 below 1e-4) and, with ``subs=(1, 2, 5)``, at 2 and 5 × them too; by default those
    only when the data drawn span less than two decades.  No minor labels: clean ticks at
    print size."""
    from matplotlib.ticker import LogLocator, NullFormatter

    axis = ax.yaxis if which == "y" else ax.xaxis
    if subs is None:  # the view: on shared axes it holds every sibling's data
        low, high = ax.get_ylim() if which == "y" else ax.get_xlim()
        narrow = 0 < low < high and math.log10(high / low) < 2
        subs = (1.0, 2.0, 5.0) if narrow else (1.0,)
    ax.set(**{f"{which}scale": "log"})
    axis.set_major_locator(LogLocator(subs=subs, numticks=6))
    axis.set_major_formatter("{x:g}")
    axis.set_minor_formatter(NullFormatter())
