"""Gradient-flow diagnostics on logged steps, and the run's history in one ``.npz`` file.

Layer tags count weight matrices from the input, ``layer_01`` … ``layer_LL`` (LL: the output
head).  For layer l on a recorded minibatch step (pure numpy, norms accumulated in float64):

    grad_norm       ‖∂L/∂Wˡ‖_F                    bias_grad_norm  ‖∂L/∂bˡ‖₂
    act_mean        mean of aˡ                    act_std         std of aˡ  (over batch × units)
    update_ratio    ‖ΔWˡ‖_F / ‖Wˡ − ΔWˡ‖_F  (the applied update over the weights BEFORE it)
    saturation      fraction of (example, unit) entries with f′(zˡ) < 0.05 · sup f′
    dead            fraction of units with f′(zˡ) = 0 on every example of the batch

saturation and dead exist for hidden layers only: the output head (softmax, sigmoid, identity)
is not an elementwise Activation with a sup f′, so those keys are skipped for layer LL.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bpcore import Callback, EpochReport, StepReport
from bpcore.activations import Array

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
Sink = Callable[[int, dict[str, float]], None]

SCHEMA_VERSION = 2  # 2: histogram edges per recorded step
SATURATION_THRESHOLD = 0.05  # relative to the activation's max_grad
LAYER_FAMILIES = ("grad_norm", "bias_grad_norm", "act_mean", "act_std", "update_ratio")
HIDDEN_FAMILIES = ("saturation", "dead")
BATCH_LOSS = "train/batch_loss"
DELTA_LOG10_RANGE = (-16.0, 2.0)  # |δ| histogram edges: 10⁻¹⁶ … 10², log-spaced


def layer_tag(l: int) -> str:
    """The metric-key suffix of layer index l (0-based): ``layer_01`` for the first."""
    return f"layer_{l + 1:02d}"


def metric_keys(n_layers: int) -> list[str]:
    """Keys of ``layer_diagnostics`` for a net of ``n_layers`` weight matrices, in its order."""
    keys = [f"{f}/{layer_tag(l)}" for f in LAYER_FAMILIES for l in range(n_layers)]
    return keys + [f"{f}/{layer_tag(l)}" for f in HIDDEN_FAMILIES for l in range(n_layers - 1)]


def norm(x: Array) -> float:
    """‖x‖₂ of the flattened array, accumulated in float64."""
    x64 = np.asarray(x, dtype=np.float64).ravel()
    return math.sqrt(float(np.dot(x64, x64)))


def _update_ratio(W_after: Array, updates: Sequence[Array], l: int) -> float:
    """‖ΔW‖/‖W_before‖ with W_before = W_after − ΔW (exact up to the update's rounding).

    Zero weights give inf (0 for a zero update); no update (diverged step) gives NaN.
    """
    if l >= len(updates):
        return math.nan
    dW = np.asarray(updates[l], dtype=np.float64)
    num, den = norm(dW), norm(np.asarray(W_after, dtype=np.float64) - dW)
    if den != 0:
        return num / den
    return 0.0 if num == 0 else num * math.inf


def layer_diagnostics(report: StepReport) -> dict[str, float]:
    """Per-layer metrics of one step, keyed and ordered as ``metric_keys(L)``."""
    bp, net = report.bp, report.net
    L = net.n_layers
    values: dict[str, float] = {}
    with np.errstate(over="ignore", invalid="ignore"):  # an exploding net: inf/NaN values
        for l in range(L):
            tag, a = layer_tag(l), bp.activations[l]
            values[f"grad_norm/{tag}"] = norm(bp.dW[l])
            values[f"bias_grad_norm/{tag}"] = norm(bp.db[l])
            values[f"act_mean/{tag}"] = float(a.mean(dtype=np.float64))
            values[f"act_std/{tag}"] = float(a.std(dtype=np.float64))
            values[f"update_ratio/{tag}"] = _update_ratio(net.weights[l], report.updates, l)
            if l < L - 1:
                f = net.hidden_activations[l]
                fp = f.grad(bp.zs[l], a)  # f′(zˡ), shape (batch, units)
                values[f"saturation/{tag}"] = float(np.mean(fp < SATURATION_THRESHOLD * f.max_grad))
                values[f"dead/{tag}"] = float(np.mean(~fp.any(axis=0)))
    return {key: values[key] for key in metric_keys(L)}


def _histograms(arrays: Sequence[Array], edges: FloatArray) -> IntArray:
    """Counts (L, bins); values outside the edges fall in the end bins, NaN is dropped."""
    pairs = zip(arrays, edges, strict=True)
    rows = [np.histogram(np.clip(x, e[0], e[-1]), bins=e)[0] for x, e in pairs]
    return np.stack(rows).astype(np.int64)


def _activation_edges(activations: Sequence[Array], bins: int) -> FloatArray:
    """Per layer, ``bins`` equal bins on [−r, r], r = max |aˡ| (finite; 1 if that is 0)."""
    rows = []
    for a in activations:
        finite = np.abs(a[np.isfinite(a)])
        r = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        rows.append(np.linspace(-r, r, bins + 1))
    return np.stack(rows)


HISTORY_FILE = "history.npz"  # the run artifact holding a History


class History:
    """Metrics by family ("step", "epoch"): each family has fixed keys and its own steps.

    Histograms (optional): per recorded step and layer, counts of aˡ (kind "activation") and
    of |δˡ| (kind "delta") on fixed edges.
    """

    def __init__(self, n_layers: int | None = None) -> None:
        self.n_layers = n_layers
        self._keys: dict[str, list[str]] = {}
        self._steps: dict[str, list[int]] = {}
        self._rows: dict[str, list[FloatArray]] = {}
        self._hist_steps: list[int] = []
        self._hist_edges: dict[str, list[FloatArray]] = {}
        self._hist_counts: dict[str, list[IntArray]] = {}

    @property
    def keys(self) -> list[str]:
        """Every metric key, family by family."""
        return [key for keys in self._keys.values() for key in keys]

    def add(self, family: str, step: int, metrics: Mapping[str, float]) -> None:
        keys = self._keys.setdefault(family, list(metrics))
        if set(metrics) != set(keys):
            raise ValueError(f"{family}: keys {sorted(metrics)} differ from {sorted(keys)}")
        self._steps.setdefault(family, []).append(int(step))
        row = np.array([metrics[k] for k in keys], dtype=np.float64)
        self._rows.setdefault(family, []).append(row)

    def add_histograms(
        self, step: int, edges: Mapping[str, FloatArray], counts: Mapping[str, IntArray]
    ) -> None:
        self._hist_steps.append(int(step))
        for kind, c in counts.items():
            self._hist_edges.setdefault(kind, []).append(edges[kind])
            self._hist_counts.setdefault(kind, []).append(c)

    def series(self, key: str) -> tuple[IntArray, FloatArray]:
        """(steps, values) of one metric key, exactly as recorded."""
        for family, keys in self._keys.items():
            if key in keys:
                matrix = np.stack(self._rows[family])
                return np.array(self._steps[family], dtype=np.int64), matrix[:, keys.index(key)]
        raise KeyError(f"no metric {key!r}; recorded: {', '.join(self.keys)}")

    @property
    def histogram_kinds(self) -> list[str]:
        """The kinds of histograms recorded ("activation", "delta"), if any."""
        return list(self._hist_counts)

    def histogram(self, kind: str) -> tuple[IntArray, FloatArray, IntArray]:
        """(steps, edges (n, L, bins + 1), counts (n, L, bins)) of kind "activation" or "delta":
        each recorded step has its own edges."""
        if kind not in self._hist_counts:
            raise KeyError(f"no {kind!r} histograms recorded")
        steps = np.array(self._hist_steps, dtype=np.int64)
        return steps, np.stack(self._hist_edges[kind]), np.stack(self._hist_counts[kind])

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write an ``.npz``: ``step``/``epoch_step`` int64 steps, one float64 array per metric
        family (``grad_norm``: (n, L), column j = layer j + 1; ``train/loss`` → ``train_loss``:
        (n,)), histograms as ``hist_step``, ``hist_<kind>_edges``, ``hist_<kind>_counts``, and
        a JSON ``meta`` (schema_version, n_layers, metric_keys, key → [array, column]).
        """
        arrays: dict[str, NDArray[Any]] = {}
        columns: dict[str, tuple[str, int | None]] = {}
        families: dict[str, dict[str, Any]] = {}
        for family, keys in self._keys.items():
            steps_name = "step" if family == "step" else f"{family}_step"
            arrays[steps_name] = np.array(self._steps[family], dtype=np.int64)
            families[family] = {"steps": steps_name, "keys": keys}
            matrix = np.stack(self._rows[family])
            groups: dict[str, list[int]] = {}
            for j, key in enumerate(keys):
                head, sep, _ = key.rpartition("/layer_")
                name = head if sep else key.replace("/", "_")
                cols = groups.setdefault(name, [])
                columns[key] = (name, len(cols) if sep else None)
                cols.append(j)
            for name, cols in groups.items():
                layered = columns[keys[cols[0]]][1] is not None
                if name in arrays or (not layered and len(cols) > 1):
                    raise ValueError(f"array name {name!r} used twice")
                arrays[name] = matrix[:, cols] if layered else matrix[:, cols[0]]
        if self._hist_steps:
            arrays["hist_step"] = np.array(self._hist_steps, dtype=np.int64)
            for kind, counts in self._hist_counts.items():
                arrays[f"hist_{kind}_edges"] = np.stack(self._hist_edges[kind])
                arrays[f"hist_{kind}_counts"] = np.stack(counts)
        meta = {
            "schema_version": SCHEMA_VERSION,
            "n_layers": self.n_layers,
            "metric_keys": self.keys,
            "families": families,
            "columns": columns,
            "histogram_kinds": list(self._hist_counts),
            "saturation_threshold": SATURATION_THRESHOLD,
        }
        arrays["meta"] = np.array(json.dumps(meta))
        np.savez_compressed(path, **arrays)  # type: ignore[arg-type]  # stubs: allow_pickle

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> History:
        """Read a file written by ``save`` (no pickles); schema 1 files (one set of histogram
        edges for all steps) still load."""
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        meta = json.loads(str(arrays["meta"]))
        if meta["schema_version"] not in (1, SCHEMA_VERSION):
            raise ValueError(f"{path}: schema {meta['schema_version']}, expected {SCHEMA_VERSION}")
        history = cls(meta["n_layers"])
        for family, info in meta["families"].items():
            steps, keys = arrays[info["steps"]], info["keys"]
            matrix = np.empty((len(steps), len(keys)), dtype=np.float64)
            for j, key in enumerate(keys):
                name, col = meta["columns"][key]
                matrix[:, j] = arrays[name] if col is None else arrays[name][:, col]
            history._keys[family], history._steps[family] = keys, steps.tolist()
            history._rows[family] = list(matrix)
        if meta["histogram_kinds"]:
            history._hist_steps = arrays["hist_step"].tolist()
            for kind in meta["histogram_kinds"]:
                edges = arrays[f"hist_{kind}_edges"]
                if edges.ndim == 2:  # schema 1: one set of edges for every recorded step
                    edges = np.broadcast_to(edges, (len(history._hist_steps), *edges.shape))
                history._hist_edges[kind] = list(edges)
                history._hist_counts[kind] = list(arrays[f"hist_{kind}_counts"])
        return history


class DiagnosticsRecorder(Callback):
    """Records ``layer_diagnostics`` + ``train/batch_loss`` at steps 0, k, 2k, … and the epoch
    metrics (``train/loss``, ``val/loss``, ``train/accuracy``, ``val/accuracy`` when defined,
    ``progress/epoch``, ``progress/examples_seen``, ``progress/seconds``) at ``report.step``.

    Every record goes to ``history`` and, as a fresh dict, to ``sink(step, metrics)``.
    ``histograms``: also keep per-layer histograms of aˡ (equal bins on [−r, r], r = max |aˡ| at
    that step, so no value falls outside) and |δˡ| (log-spaced on DELTA_LOG10_RANGE; the first
    bin holds zeros; out-of-range values count in the end bins).  Histograms never go to the
    sink.
    """

    def __init__(
        self,
        every_n_steps: int,
        sink: Sink | None = None,
        histograms: bool = False,
        histogram_bins: int = 50,
    ) -> None:
        if every_n_steps < 1 or histogram_bins < 1:
            raise ValueError(
                f"every_n_steps and histogram_bins must be ≥ 1, got {every_n_steps}, "
                f"{histogram_bins}"
            )
        self.every_n_steps = every_n_steps
        self.sink = sink
        self.histograms = histograms
        self.histogram_bins = histogram_bins
        self.history = History()
        self._delta_edges = np.logspace(*DELTA_LOG10_RANGE, histogram_bins + 1)

    def wants_step(self, step: int) -> bool:
        return step % self.every_n_steps == 0

    def on_step(self, report: StepReport) -> None:
        self.history.n_layers = report.net.n_layers
        self.record("step", report.step, {BATCH_LOSS: report.loss, **layer_diagnostics(report)})
        if not self.histograms:
            return
        bp = report.bp
        edges = {
            "activation": _activation_edges(bp.activations, self.histogram_bins),  # this step's
            "delta": np.tile(self._delta_edges, (report.net.n_layers, 1)),  # fixed log bins
        }
        counts = {
            "activation": _histograms(bp.activations, edges["activation"]),
            "delta": _histograms([np.abs(d) for d in bp.deltas], edges["delta"]),
        }
        self.history.add_histograms(report.step, edges, counts)

    def on_epoch_end(self, report: EpochReport) -> None:
        metrics = {"train/loss": report.train_loss, "val/loss": report.val_loss}
        if report.train_accuracy is not None:
            metrics["train/accuracy"] = report.train_accuracy
        if report.val_accuracy is not None:
            metrics["val/accuracy"] = report.val_accuracy
        metrics["progress/epoch"] = report.epoch
        metrics["progress/examples_seen"] = report.examples_seen
        metrics["progress/seconds"] = report.seconds
        self.record("epoch", report.step, metrics)

    def record(self, family: str, step: int, metrics: Mapping[str, float]) -> None:
        """Add ``metrics`` to the history under ``family`` and send a copy to the sink."""
        values = {key: float(v) for key, v in metrics.items()}
        self.history.add(family, step, values)
        if self.sink is not None:
            self.sink(step, dict(values))
