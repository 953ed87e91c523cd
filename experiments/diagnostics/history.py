"""A run's history: every metric it recorded, and optional per-layer histograms, in one
``.npz`` file (``history.npz``, a run artifact; loads with ``allow_pickle=False``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

SCHEMA_VERSION = 3  # 2: histogram edges per recorded step; 3: the output layer's keys …/output
OUTPUT_TAG = "output"  # the last layer's key suffix (hidden layers: layer_01, layer_02, …)
HISTORY_FILE = "history.npz"  # the run artifact holding a History
# MLP attributes a run's model.npz holds beside W0, b0, …: "gammas0", "running_vars2", …
NORM_ARRAYS = ("gammas", "betas", "running_means", "running_vars")


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
        family (``grad_norm``: (n, L), column j = layer j + 1, the last ``grad_norm/output``;
        ``train/loss`` → ``train_loss``: (n,)), histograms as ``hist_step``,
        ``hist_<kind>_edges``, ``hist_<kind>_counts``, and a JSON ``meta`` (schema_version,
        n_layers, metric_keys, key → [array, column]).
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
                head, _, tail = key.rpartition("/")
                layered = tail.startswith("layer_") or tail == OUTPUT_TAG
                name = head if layered else key.replace("/", "_")
                cols = groups.setdefault(name, [])
                columns[key] = (name, len(cols) if layered else None)
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
        }
        arrays["meta"] = np.array(json.dumps(meta))
        np.savez_compressed(path, **arrays)  # type: ignore[arg-type]  # stubs: allow_pickle

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> History:
        """Read a file written by ``save`` (no pickles).  Older files still load: schema 1 (one
        set of histogram edges for all steps), schema ≤ 2 (the output layer's keys named by
        its number, ``grad_norm/layer_04`` of a depth-3 net: renamed ``grad_norm/output``)."""
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        meta = json.loads(str(arrays["meta"]))
        if meta["schema_version"] not in (1, 2, SCHEMA_VERSION):
            raise ValueError(f"{path}: schema {meta['schema_version']}, expected {SCHEMA_VERSION}")
        history = cls(meta["n_layers"])
        for family, info in meta["families"].items():
            steps, keys = arrays[info["steps"]], info["keys"]
            matrix = np.empty((len(steps), len(keys)), dtype=np.float64)
            for j, key in enumerate(keys):
                name, col = meta["columns"][key]
                matrix[:, j] = arrays[name] if col is None else arrays[name][:, col]
            if meta["schema_version"] < 3:
                keys = [_output_alias(key, meta["n_layers"]) for key in keys]
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


def _output_alias(key: str, n_layers: int | None) -> str:
    """A schema ≤ 2 key with the output layer's number (``grad_norm/layer_04`` of 4 layers) as
    it is named now (``grad_norm/output``); any other key unchanged."""
    head, _, tail = key.rpartition("/")
    return f"{head}/{OUTPUT_TAG}" if n_layers and tail == f"layer_{n_layers:02d}" else key
