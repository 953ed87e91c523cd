"""``histograms``: per hidden layer, the distribution of aˡ and of |δˡ| at the first and the
last recorded step (Glorot & Bengio 2010, figs. 3–7; runs logged with ``log.histograms``)."""

from __future__ import annotations

from typing import Literal

import numpy as np

from experiments.diagnostics.history import FloatArray, History
from experiments.figures import style
from experiments.figures.common import Built, Data, config_label, pick_evenly

HISTOGRAM_PANELS: tuple[tuple[str, Literal["first", "last"]], ...] = (
    ("activation", "first"),
    ("activation", "last"),
    ("delta", "first"),
    ("delta", "last"),
)
HISTOGRAM_ROWS = 4  # configs shown


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


def has_histograms(data: Data) -> bool:
    """Some panel run was logged with ``log.histograms=true``."""
    return any(data.histories[r.run_id].histogram_kinds for _, r in data.panels)


def histograms(data: Data) -> Built:
    """Per hidden layer, the distribution of activations aˡ and of back-propagated |δˡ| at
    the first and the last recorded step (Glorot & Bengio 2010, figs. 3–7): one row per config."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.ticker import MaxNLocator

    rows = [(c, r) for c, r in data.panels if data.histories[r.run_id].histogram_kinds]
    rows = pick_evenly(rows, HISTOGRAM_ROWS)
    hidden = max(data.histories[r.run_id].n_layers or 2 for _, r in rows) - 1
    norm, cmap = style.layer_colours(hidden)
    fig = style.figure(style.TWO_COLUMN, 1.5 * len(rows) + 0.3)
    for sub, (config, run) in zip(
        fig.subfigures(len(rows), 1, squeeze=False)[:, 0], rows, strict=True
    ):
        history = data.histories[run.run_id]
        sub.suptitle(config_label(data.keys, config), fontsize=8)
        axes = sub.subplots(1, len(HISTOGRAM_PANELS))
        for ax, (kind, at) in zip(axes, HISTOGRAM_PANELS, strict=True):
            step, centres, fractions = layer_histograms(history, kind, at)
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
