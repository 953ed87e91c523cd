"""The mean-field theory next to what the runs measured (the ``theory/*`` metrics of
``experiments.diagnostics.theory``; Poole et al. 2016, Schoenholz et al. 2017):

    theory_overlay   step-0 ‖∂L/∂bˡ‖ per hidden layer, with the mean-field line
                     ‖∂L/∂bˡ‖ ∝ (√χ₁)^(L−1−l) through the top hidden layer (nielsen_ch5)
    chi1_growth      the measured per-layer factor of ‖∂L/∂bˡ‖², exp(−2 · measured slope),
                     against χ₁ of the run's init (the edge_of_chaos sweep)
    trainability     final val/accuracy over (σ_w², depth), one panel per σ_b², with the
                     gradient depth scale 6|ξ_∇| (edge_of_chaos)
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from bpcore import theory
from experiments.comparison.records import ACTIVATION_KEY
from experiments.diagnostics.history import FloatArray, History, IntArray
from experiments.diagnostics.recorder import layer_tag
from experiments.figures import style
from experiments.figures.common import (
    BIAS_GRAD,
    DEPTH_KEY,
    Built,
    Data,
    config_label,
    per_layer_over_time,
    positive,
    runs_with,
)

CHI1, SLOPE = "theory/chi1", "theory/measured_slope"
SIGMA_W2, SIGMA_B2 = "theory/sigma_w2", "theory/sigma_b2"
VAL_ACCURACY = "val/accuracy"
TRAINABLE_XI = 6  # Schoenholz et al.: trainable up to ≈ 6 ξ_c (correlation depth); drawn with ξ_∇


# ------------------------------------------------------------------------------------- data


def first(history: History, key: str) -> float:
    """The value of ``key`` at its first recorded step (step 0 for the theory family)."""
    return float(history.series(key)[1][0])


def overlay(history: History) -> tuple[IntArray, FloatArray, FloatArray] | None:
    """(hidden layers 1 … L−1, measured step-0 ‖∂L/∂bˡ‖, the mean-field line through the top
    hidden layer: measured[L−1] · (√χ₁)^(L−1−l)); None for a run without theory metrics."""
    if CHI1 not in history.keys or history.n_layers is None:
        return None
    _, all_layers, norms = per_layer_over_time(history, "bias_grad_norm")
    layers, measured = all_layers[:-1], norms[:-1, 0]  # hidden layers, at step 0
    ratio = math.sqrt(first(history, CHI1))
    with np.errstate(over="ignore"):
        predicted = measured[-1] * ratio ** (layers[-1] - layers).astype(np.float64)
    return layers, measured, predicted


def growth_points(histories: Mapping[str, History]) -> tuple[FloatArray, FloatArray]:
    """(χ₁, measured per-layer factor of ‖∂L/∂bˡ‖² = exp(−2 · slope)), one entry per run with
    theory metrics, in the mapping's order."""
    with_theory = [h for h in histories.values() if CHI1 in h.keys]
    chi = np.array([first(h, CHI1) for h in with_theory])
    measured = np.exp(-2 * np.array([first(h, SLOPE) for h in with_theory]))
    return chi, measured


def trainability_points(
    histories: Mapping[str, History],
) -> dict[float, tuple[FloatArray, FloatArray, FloatArray]]:
    """Per σ_b²: (σ_w², depth L − 1, last val/accuracy) of each run with theory metrics."""
    points: dict[float, list[tuple[float, float, float]]] = {}
    for h in histories.values():
        if CHI1 not in h.keys or VAL_ACCURACY not in h.keys or h.n_layers is None:
            continue
        accuracy = float(h.series(VAL_ACCURACY)[1][-1])
        row = (first(h, SIGMA_W2), float(h.n_layers - 1), accuracy)
        points.setdefault(round(first(h, SIGMA_B2), 6), []).append(row)
    out = {}
    for b, rows in sorted(points.items()):
        w2s, depths, accuracies = (np.array(c, np.float64) for c in zip(*sorted(rows), strict=True))
        out[b] = (w2s, depths, accuracies)
    return out


# ------------------------------------------------------------------------ what runs can show


def has_chi1(data: Data) -> bool:
    """Some run recorded the mean-field χ₁ (≥ 2 equal hidden layers of one activation)."""
    return bool(runs_with(data, CHI1))


def several_chi1(data: Data) -> bool:
    """At least three distinct χ₁ among the runs: a growth-vs-χ₁ plot has something to show."""
    values = {round(first(data.histories[r.run_id], CHI1), 6) for r in runs_with(data, CHI1)}
    return len(values) >= 3


def init_and_depth_vary(data: Data) -> bool:
    init_varies = any(k.startswith("init.") for k in data.keys)
    return init_varies and DEPTH_KEY in data.keys and bool(runs_with(data, CHI1))


# ---------------------------------------------------------------------------------- figures


def theory_overlay(data: Data) -> Built:
    """One panel per config: step-0 ‖∂L/∂bˡ‖ (markers) and the mean-field line (dashed)."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig, axes = style.grid(len(data.panels), 1.3)
    shown = []
    for ax, (config, run) in zip(axes, data.panels, strict=True):
        lines = overlay(data.histories[run.run_id])
        ax.set_title(config_label(data.keys, config))
        if lines is None:
            note = "no prediction:\nneeds ≥ 2 equal\nhidden layers"
            ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center")
            ax.set(xticks=[], yticks=[])
            continue
        layers, measured, predicted = lines
        ax.plot(layers, positive(measured), "o", color=style.BLUE)
        ax.plot(layers, positive(predicted), "--", color=style.BLACK)
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        shown.append(run)
    handles = [
        Line2D([], [], marker="o", ls="none", color=style.BLUE, label="measured"),
        Line2D([], [], ls="--", color=style.BLACK, label=r"mean field $(\sqrt{\chi_1})^{L-1-l}$"),
    ]
    fig.legend(handles=handles, loc="outside upper center", ncols=2)
    fig.supxlabel("hidden layer l (1 = input side)")
    fig.supylabel(f"{BIAS_GRAD} at step 0")
    depth = max((data.histories[r.run_id].n_layers or 1) for r in shown) if shown else 1
    keys = [f"bias_grad_norm/{layer_tag(l, depth)}" for l in range(depth - 1)] + [CHI1]
    return fig, shown, keys


def chi1_growth(data: Data) -> Built:
    """Measured per-layer factor of ‖∂L/∂bˡ‖² against χ₁, with the identity line."""
    runs = runs_with(data, CHI1)
    chi, measured = growth_points({r.run_id: data.histories[r.run_id] for r in runs})
    fig = style.figure(style.ONE_COLUMN, 2.8)
    ax = fig.subplots()
    ax.axhline(1, color="0.7", lw=0.5)
    ax.axvline(1, color="0.7", lw=0.5)
    span = (
        np.array([min(chi.min(), measured.min()), max(chi.max(), measured.max())])
        if runs
        else np.array([0.3, 3.0])
    )
    ax.plot(span, span, "--", color=style.BLACK, label="mean field: factor = χ₁")
    ax.plot(chi, measured, "o", color=style.BLUE, label="measured (step 0, one run each)")
    ax.set(xscale="log", yscale="log", xlabel=r"$\chi_1 = \sigma_w^2\,E[\phi'(\sqrt{q^*}z)^2]$")
    ax.set_ylabel(f"per-layer factor of {BIAS_GRAD}$^2$")
    at_top = ax.get_xaxis_transform()  # x in data, y in axes coordinates
    ax.text(0.97, 0.98, "ordered ←", transform=at_top, ha="right", va="top")
    ax.text(1.03, 0.98, "→ chaotic", transform=at_top, ha="left", va="top")
    ax.legend(loc="lower right")
    return fig, runs, [CHI1, SLOPE]


def trainability(data: Data) -> Built:
    """Final val/accuracy (colour) over σ_w² and depth, a panel per σ_b², with 6|ξ_∇|."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    runs = runs_with(data, CHI1)
    points = trainability_points({r.run_id: data.histories[r.run_id] for r in runs})
    fig, axes = style.grid(max(1, len(points)), 2.4, ncols=2)
    norm, cmap = Normalize(0, 1), "viridis"
    activation = data.runs[0].params.get(ACTIVATION_KEY, "tanh") if data.runs else "tanh"
    for ax, (sigma_b2, (sigma_w2, depth, accuracy)) in zip(axes, points.items(), strict=False):
        grid_w2 = np.geomspace(sigma_w2.min(), sigma_w2.max(), 200)
        xi = [abs(theory.gradient_depth_scale(activation, w, sigma_b2)) for w in grid_w2]
        ax.plot(grid_w2, TRAINABLE_XI * np.array(xi), "--", color=style.BLACK, label="6|ξ_∇|")
        ax.scatter(sigma_w2, depth, c=accuracy, cmap=cmap, norm=norm, s=40, edgecolors="0.3")
        ax.set(xscale="log", yscale="log", title=f"σ_b² = {sigma_b2:.3g}", ylim=(5, 2000))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks([0.5, 1, 2, 4])
        ax.set_xlabel("σ_w²")
    axes[0].set_ylabel("hidden layers")
    axes[0].legend(loc="upper right")
    fig.colorbar(ScalarMappable(norm, cmap), ax=axes, label="val accuracy at the end")
    return fig, runs, [SIGMA_W2, SIGMA_B2, VAL_ACCURACY]
