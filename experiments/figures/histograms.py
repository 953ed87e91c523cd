"""``histograms``: per hidden layer, the distribution of aˡ and of |δˡ| at the first and the
last recorded step (Glorot & Bengio 2010, figs. 3–7; runs logged with ``log.histograms``)."""

from __future__ import annotations

import math
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
HISTOGRAM_ROWS = 6  # configs shown (glorot_bengio: 3 activations × 2 inits)


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


def decade_ticks(low: float, high: float, most: int = 3) -> list[float]:
    """At most ``most`` powers of ten inside [low, high], evenly spaced in exponent, so that the
    labels of a narrow log axis do not collide."""
    exponents = list(range(math.ceil(math.log10(low)), math.floor(math.log10(high)) + 1))
    every = max(1, math.ceil(len(exponents) / most))
    return [10.0**e for e in exponents[::every]]


def zero_fraction(history: History, at: Literal["first", "last"]) -> float:
    """The fraction of the hidden layers' δ in the first |δ| bin (below 1e-16: exactly 0 for a
    ReLU unit that is off), which a log axis cannot draw."""
    _, _, counts = history.histogram("delta")
    hidden = counts[0 if at == "first" else -1][:-1]
    return float(hidden[:, 0].sum() / max(hidden.sum(), 1))


def histograms(data: Data) -> Built:
    """Per hidden layer, the distribution of activations aˡ and of back-propagated |δˡ| at
    the first and the last recorded step (Glorot & Bengio 2010, figs. 3–7): one row per config,
    its layers coloured on its own scale; x ranges fitted to the values; the |δ| = 0 share
    (ReLU's off units) in the panel title rather than as a spike at 1e-16."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.ticker import FixedLocator, MaxNLocator, NullFormatter

    rows = [(c, r) for c, r in data.panels if data.histories[r.run_id].histogram_kinds]
    rows = pick_evenly(rows, HISTOGRAM_ROWS)
    fig = style.figure(style.TWO_COLUMN, 1.6 * len(rows) + 0.3)
    for sub, (config, run) in zip(
        fig.subfigures(len(rows), 1, squeeze=False)[:, 0], rows, strict=True
    ):
        history = data.histories[run.run_id]
        hidden = (history.n_layers or 2) - 1
        norm, cmap = style.layer_colours(hidden)
        sub.suptitle(config_label(data.keys, config) or "all runs", fontsize=8)
        axes = sub.subplots(1, len(HISTOGRAM_PANELS))
        for ax, (kind, at) in zip(axes, HISTOGRAM_PANELS, strict=True):
            step, centres, fractions = layer_histograms(history, kind, at)
            first = 1 if kind == "delta" else 0  # the first |δ| bin holds the zeros
            for layer in range(hidden):  # hidden layers: the output's is the head's
                x, y = centres[layer, first:], fractions[layer, first:]
                ax.plot(x, y, color=cmap(norm(layer + 1)), lw=0.9)
            shown = centres[:hidden, first:][fractions[:hidden, first:] > 0]
            if shown.size:
                pad = 1.5 if kind == "delta" else 0.05 * (shown.max() - shown.min() or 1)
                low, high = (
                    (shown.min() / pad, shown.max() * pad)
                    if kind == "delta"
                    else (
                        shown.min() - pad,
                        shown.max() + pad,
                    )
                )
                ax.set_xlim(low, high)
            if kind == "delta":
                ax.set_xscale("log")
                ax.xaxis.set_major_locator(FixedLocator(decade_ticks(*ax.get_xlim())))
                ax.xaxis.set_minor_formatter(NullFormatter())
                ax.set_title(f"|δ| = 0: {zero_fraction(history, at):.0%}", fontsize=7)
                ax.set_xlabel(f"|δˡ| at step {step}")
            else:
                ax.xaxis.set_major_locator(MaxNLocator(4))
                ax.set_xlabel(f"aˡ at step {step}")
        axes[0].set_ylabel("fraction")
        bar = sub.colorbar(ScalarMappable(norm, cmap), ax=axes, label="hidden\nlayer", aspect=8)
        bar.ax.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
    return fig, [r for _, r in rows], []
