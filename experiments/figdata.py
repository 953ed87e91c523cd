"""What the figures show, as plain arrays: no plotting, no MLflow (each function tested alone).

A run is a ``RunInfo`` (id, name, params, tags as MLflow stores them) plus its ``History``
(``history.npz``).  A *config* is a run's values of the params that vary across the selected
runs, seeds excepted: runs of one config differ only in their seed and are averaged.
"""

from __future__ import annotations

import ast
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np
from numpy.typing import NDArray

from bpcore import ACTIVATIONS, MLP, Dataset, get_activation, make_dataset
from experiments.diagnostics import History

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
Config = tuple[str, ...]
T = TypeVar("T")

REPLICATE_KEYS = ("seed",)  # varying these gives repeats of one config, averaged over
ACTIVATION_KEY = "activation.name"
LOSS_KEYS = ("train/loss", "val/loss")
EXAMPLES_KEY = "progress/examples_seen"
BATCH_LOSS_KEY = "train/batch_loss"
SECONDS_KEY = "progress/seconds"
DEPTH_KEY, WIDTH_KEY, DATA_KEY = "model.depth", "model.width", "data.name"
BATCH_KEY, LR_RULE_KEY = "train.batch_size", "train.lr_scaling"
MODEL_FILE = "model.npz"  # the run artifact holding the trained weights


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


def _order(key: str, value: str) -> tuple[float, str]:
    """Sort values numerically when they are numbers, activations in registry order."""
    if key == ACTIVATION_KEY and value in ACTIVATIONS:
        return float(list(ACTIVATIONS).index(value)), value
    try:
        return float(value), value
    except ValueError:
        return math.inf, value


def config_keys(runs: Sequence[RunInfo]) -> list[str]:
    """Params that vary across ``runs`` (seeds excepted), activation first, leaving out keys
    determined by the keys before them (``activation.alpha`` follows from the activation)."""
    keys = sorted({k for r in runs for k in r.params} - set(REPLICATE_KEYS))
    varying = [k for k in keys if len({r.params.get(k, "") for r in runs}) > 1]
    varying.sort(key=lambda k: (k != ACTIVATION_KEY, k))
    kept: list[str] = []
    for key in varying:
        seen: dict[Config, str] = {}
        for r in runs:
            before = tuple(r.params.get(k, "") for k in kept)
            if seen.setdefault(before, r.params.get(key, "")) != r.params.get(key, ""):
                kept.append(key)
                break
    return kept


def group_runs(runs: Iterable[RunInfo], keys: Sequence[str]) -> dict[Config, list[RunInfo]]:
    """Runs by config, configs in a fixed order; within a config by seed, then run id."""
    groups: dict[Config, list[RunInfo]] = {}
    for run in runs:
        groups.setdefault(tuple(run.params.get(k, "") for k in keys), []).append(run)

    def config_order(config: Config) -> list[tuple[float, str]]:
        return [_order(k, v) for k, v in zip(keys, config, strict=True)]

    return {
        c: sorted(groups[c], key=lambda r: (*_order("seed", r.seed), r.run_id))
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
    return values.size > 0 and math.log10(values.max() / values.min()) >= decades


def per_layer_over_time(history: History, family: str) -> tuple[IntArray, IntArray, FloatArray]:
    """(steps, layers (1-based), matrix (layers × steps)) of a ``family/layer_XX`` family."""
    prefix = f"{family}/layer_"
    keys = sorted(k for k in history.keys if k.startswith(prefix))
    if not keys:
        raise KeyError(f"no {family!r} metrics recorded")
    layers = np.array([int(k.removeprefix(prefix)) for k in keys], dtype=np.int64)
    steps = history.series(keys[0])[0]
    matrix = np.stack([history.series(k)[1] for k in keys])
    return steps, layers, matrix


def heatmap(
    history: History, key_family: str = "grad_norm"
) -> tuple[IntArray, IntArray, FloatArray]:
    """(steps, layers, matrix layers × steps) for a layer × step heatmap."""
    return per_layer_over_time(history, key_family)


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


@dataclass
class Band:
    """Mean and min–max over runs at each x (NaN where no run has a finite value)."""

    x: FloatArray
    mean: FloatArray
    lo: FloatArray
    hi: FloatArray


def band(series: Sequence[tuple[NDArray[np.generic], FloatArray]]) -> Band:
    """Align (x, y) series on the union of their x; mean, min, max of the finite y at each x."""
    xs = np.unique(np.concatenate([np.asarray(x, dtype=np.float64) for x, _ in series]))
    table = np.full((len(series), len(xs)), np.nan)
    for row, (x, y) in zip(table, series, strict=True):
        row[np.searchsorted(xs, np.asarray(x, dtype=np.float64))] = finite_or_nan(y)
    ok = ~np.isnan(table)
    count = ok.sum(axis=0)
    total = np.where(ok, table, 0.0).sum(axis=0)
    mean = np.divide(total, count, out=np.full(len(xs), np.nan), where=count > 0)
    lo = np.where(count > 0, np.where(ok, table, np.inf).min(axis=0), np.nan)
    hi = np.where(count > 0, np.where(ok, table, -np.inf).max(axis=0), np.nan)
    return Band(xs, mean, lo, hi)


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


def examples_per_step(history: History) -> float:
    """Examples per optimizer step, from the last epoch record (NaN if there is none)."""
    if EXAMPLES_KEY not in history.keys:
        return math.nan
    steps, examples = history.series(EXAMPLES_KEY)
    return float(examples[-1] / steps[-1]) if steps.size and steps[-1] else math.nan


def _against(history: History, key: str, x_key: str | None) -> tuple[NDArray[Any], FloatArray]:
    """(x, values) of an epoch metric: x the steps (``x_key`` None) or another epoch metric."""
    steps, values = history.series(key)
    return (steps if x_key is None else history.series(x_key)[1]), values


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


def loss_curves(
    histories: Mapping[str, History], runs: Sequence[RunInfo], group_by: Sequence[str]
) -> list[LossCurves]:
    """Per config: mean and min–max band over seeds of train/val loss vs step and vs examples
    seen (from the epoch records), and where its diverged runs stopped."""
    curves = []
    for config, group in group_runs(runs, group_by).items():
        hs = [histories[r.run_id] for r in group]
        by_step, by_examples = {}, {}
        for key in LOSS_KEYS:
            logged = [h for h in hs if key in h.keys]
            if logged:
                by_step[key] = band([_against(h, key, None) for h in logged])
                by_examples[key] = band([_against(h, key, EXAMPLES_KEY) for h in logged])
        stops = [s for r, h in zip(group, hs, strict=True) if (s := _stop(r, h)) is not None]
        label = config_label(group_by, config)
        curves.append(LossCurves(config, label, group, by_step, by_examples, stops))
    return curves


def activation_curves(z: FloatArray) -> dict[str, tuple[FloatArray, FloatArray, float]]:
    """Every registered activation at default parameters: name → (f(z), f′(z), sup f′)."""
    out = {}
    for name in ACTIVATIONS:
        f = get_activation(name)
        a = np.asarray(f(z), dtype=np.float64)
        out[name] = (a, np.asarray(f.grad(z, a), dtype=np.float64), float(f.max_grad))
    return out


# --- depth vs width: a final metric across a swept axis ---


def final_value(history: History, key: str) -> float:
    """The last recorded value of ``key``; NaN if not recorded or not finite (diverged)."""
    if key not in history.keys:
        return math.nan
    value = float(history.series(key)[1][-1])
    return value if math.isfinite(value) else math.nan


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
    rows = sorted({r.params[row_key] for r in runs}, key=lambda v: _order(row_key, v))
    cols = sorted({r.params[col_key] for r in runs}, key=lambda v: _order(col_key, v))
    cells: dict[tuple[int, int], list[float]] = {}
    for r in runs:
        cell = (rows.index(r.params[row_key]), cols.index(r.params[col_key]))
        cells.setdefault(cell, []).append(final_value(histories[r.run_id], metric))
    matrix = np.full((len(rows), len(cols)), np.nan)
    for (i, j), values in cells.items():
        finite = [v for v in values if not math.isnan(v)]
        matrix[i, j] = np.mean(finite) if finite else np.nan
    return rows, cols, matrix


# --- batch size: loss against examples, steps and seconds; steps to a target loss ---


def batch_size(run: RunInfo, history: History) -> float:
    """The run's batch size; for ``full``, the examples per step of its epoch records."""
    value = run.params.get(BATCH_KEY, "")
    return float(value) if value.isdigit() else examples_per_step(history)


def loss_against(
    histories: Mapping[str, History],
    runs: Sequence[RunInfo],
    group_by: Sequence[str],
    x_key: str | None,
    key: str = LOSS_KEYS[0],
) -> dict[Config, Band]:
    """Per config: ``key`` (epoch records) against the step (``x_key`` None) or another epoch
    metric such as examples seen or seconds; mean and min–max over seeds."""
    return {
        config: band([_against(histories[r.run_id], key, x_key) for r in group])
        for config, group in group_runs(runs, group_by).items()
    }


def first_loss_ceiling(curves: Iterable[Band], margin: float = 1.5) -> float | None:
    """A y-axis top for loss curves: ``margin`` × the median over configs of their first mean
    loss, so runs that blow up leave the chart instead of flattening the others; None if no
    config has a finite first value."""
    firsts = [float(b.mean[0]) for b in curves if b.mean.size and np.isfinite(b.mean[0])]
    return margin * float(np.median(firsts)) if firsts else None


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


def default_target(curves: Iterable[Band], reached_by: float = 0.5) -> float:
    """A target loss that about ``reached_by`` of the configs reach: that quantile of the
    configs' best mean loss (configs that never had a finite loss left out)."""
    best = [np.nanmin(b.mean) for b in curves if not np.isnan(b.mean).all()]
    return float(np.quantile(best, reached_by)) if best else math.nan


# --- histograms (Glorot & Bengio): per layer, at a recorded step ---


def layer_histograms(
    history: History, kind: str, at: Literal["first", "last"]
) -> tuple[int, FloatArray, FloatArray]:
    """(step, bin centres (L, bins), fraction of values per bin (L, bins)) of kind
    "activation" (aˡ) or "delta" (|δˡ|, log-spaced bins: geometric centres)."""
    steps, all_edges, counts = history.histogram(kind)
    i = 0 if at == "first" else -1
    edges = all_edges[i]
    centres = (
        np.sqrt(edges[:, :-1] * edges[:, 1:])
        if kind == "delta"
        else (edges[:, :-1] + edges[:, 1:]) / 2
    )
    total = counts[i].sum(axis=1, keepdims=True)
    fractions = np.divide(counts[i], total, out=np.zeros(counts[i].shape), where=total > 0)
    return int(steps[i]), centres, fractions


# --- decision boundaries from a run's saved model ---


def _param(value: str) -> Any:
    """A param as MLflow stores it (a string) back to a Python value: '0.2' → 0.2, 'None'."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def run_dataset(params: Mapping[str, str]) -> Dataset:
    """The run's dataset, rebuilt from its ``data.*`` params (datasets are seeded)."""
    names = ("n_samples", "noise", "seed", "val_fraction", "k")
    kwargs = {n: _param(params[f"data.{n}"]) for n in names if f"data.{n}" in params}
    return make_dataset(params[DATA_KEY], **{n: v for n, v in kwargs.items() if v is not None})


def load_model(path: str | os.PathLike[str], params: Mapping[str, str]) -> MLP:
    """The trained net of a run's ``model.npz`` (read with ``allow_pickle=False``); activation
    parameters such as ``alpha`` come from the run's params."""
    with np.load(path, allow_pickle=False) as saved:
        arrays = {name: saved[name] for name in saved.files}
    alpha = _param(params.get("activation.alpha", "None"))
    kwargs = {} if alpha is None else {"alpha": float(alpha)}
    activations = [get_activation(str(name), **kwargs) for name in arrays["activations"]]
    sizes = [int(n) for n in arrays["layer_sizes"]]
    dtype = str(arrays["W0"].dtype)
    net = MLP(sizes, activations, output=str(arrays["output"]), dtype=dtype)
    for l in range(len(sizes) - 1):
        net.weights[l][...] = arrays[f"W{l}"]
        net.biases[l][...] = arrays[f"b{l}"]
    return net


@dataclass
class Surface:
    """Class probabilities of a 2-D classifier on a grid, and the training points (raw units)."""

    gx: FloatArray  # (nx,)
    gy: FloatArray  # (ny,)
    proba: FloatArray  # (ny, nx, classes)
    x: FloatArray  # (n, 2)
    y: IntArray  # (n,)


def decision_surface(net: MLP, data: Dataset, resolution: int = 120) -> Surface:
    """The net's class probabilities on a ``resolution``² grid spanning the training points
    (plus 10%), in raw input units (the net sees them standardized as in training)."""
    if data.n_features != 2 or data.task != "classification":
        raise ValueError(f"{data.name}: needs 2-D inputs and classes for a decision boundary")
    x = data.unstandardize(data.x_train)
    lo, hi = x.min(axis=0), x.max(axis=0)
    pad = 0.1 * (hi - lo)
    gx, gy = (np.linspace(lo[i] - pad[i], hi[i] + pad[i], resolution) for i in range(2))
    grid = np.stack(np.meshgrid(gx, gy), axis=-1).reshape(-1, 2)
    proba = np.asarray(net.forward((grid - data.x_mean) / data.x_std), dtype=np.float64)
    return Surface(gx, gy, proba.reshape(resolution, resolution, -1), x, data.y_train)
