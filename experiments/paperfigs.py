"""Figures of the paper reproductions: theory drawn next to what the runs measured.

Each figure function takes the selected runs (``experiments.plots.Data``) and returns (the
figure, the runs shown, the metric keys used), like the figures of ``experiments.plots``.  The
numbers they draw come from the data functions above them, which need neither matplotlib nor
MLflow and are tested on their own.

    theory_overlay   step-0 ‖∂L/∂bˡ‖ per hidden layer, with the mean-field line
                     ‖∂L/∂bˡ‖ ∝ (√χ₁)^(L−1−l) through the top hidden layer (theory/chi1)
    chi1_growth      the measured per-layer factor of ‖∂L/∂bˡ‖², exp(−2 · measured slope),
                     against χ₁ of the run's init (the edge_of_chaos sweep)
    trainability     final val/accuracy over (σ_w², depth), one panel per σ_b², with the
                     gradient depth scale 6|ξ_∇| (edge_of_chaos)
    layer_moments    step-0 E[(aˡ)²] and mean of aˡ per layer (he_depth30, selu_selfnorm)
    speed_of_learning  ‖∂C/∂bˡ‖ of the training-set gradient per layer over training
                     (nielsen_ch5, Nielsen's "speed of learning")
    activation_stats   mean (solid) and std (dashed) of aˡ per layer over training
                     (glorot_bengio: the top sigmoid layer sinking to 0, Glorot & Bengio Fig. 2)
    steps_vs_batch   steps to TARGET_LOSS of the training-set loss (train/full_loss, logged every
                     few steps: finer than the epoch losses) against batch size, the
                     best learning rate per batch size, with the fit S = S_min (1 + B_noise/B)
                     (McCandlish et al. 2018; the noise_scale preset)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from bpcore import theory
from bpcore.noise_scale import fit_steps_vs_batch
from experiments import figdata as fd
from experiments import style
from experiments.diagnostics import History, layer_tag

if TYPE_CHECKING:
    from experiments.plots import Built, Data, Spec

CHI1, SLOPE = "theory/chi1", "theory/measured_slope"
SIGMA_W2, SIGMA_B2 = "theory/sigma_w2", "theory/sigma_b2"
VAL_ACCURACY = "val/accuracy"
TRAINABLE_XI = 6  # Schoenholz et al.: trainable up to ≈ 6 ξ_c (correlation depth); drawn with ξ_∇
FULL_LOSS = "train/full_loss"
TARGET_LOSS = 0.2  # steps_vs_batch unless Data.target_loss: the noise_scale runs all reach it
BIAS_GRAD = r"$\Vert\partial L/\partial b^l\Vert$"


# ------------------------------------------------------------------------------------- data


def first(history: History, key: str) -> float:
    """The value of ``key`` at its first recorded step (step 0 for the theory family)."""
    return float(history.series(key)[1][0])


def overlay(history: History) -> tuple[fd.IntArray, fd.FloatArray, fd.FloatArray] | None:
    """(hidden layers 1 … L−1, measured step-0 ‖∂L/∂bˡ‖, the mean-field line through the top
    hidden layer: measured[L−1] · (√χ₁)^(L−1−l)); None for a run without theory metrics."""
    if CHI1 not in history.keys or history.n_layers is None:
        return None
    _, all_layers, norms = fd.per_layer_over_time(history, "bias_grad_norm")
    layers, measured = all_layers[:-1], norms[:-1, 0]  # hidden layers, at step 0
    ratio = math.sqrt(first(history, CHI1))
    with np.errstate(over="ignore"):
        predicted = measured[-1] * ratio ** (layers[-1] - layers).astype(np.float64)
    return layers, measured, predicted


def growth_points(histories: Mapping[str, History]) -> tuple[fd.FloatArray, fd.FloatArray]:
    """(χ₁, measured per-layer factor of ‖∂L/∂bˡ‖² = exp(−2 · slope)), one entry per run with
    theory metrics, in the mapping's order."""
    with_theory = [h for h in histories.values() if CHI1 in h.keys]
    chi = np.array([first(h, CHI1) for h in with_theory])
    measured = np.exp(-2 * np.array([first(h, SLOPE) for h in with_theory]))
    return chi, measured


def best_steps(
    runs: Sequence[fd.RunInfo], histories: Mapping[str, History], target: float = TARGET_LOSS
) -> tuple[fd.FloatArray, fd.FloatArray]:
    """(batch sizes, fewest steps to ``target`` of the training-set loss over the runs of each
    batch size), by batch size; runs that never reach it are left out."""
    best: dict[float, float] = {}
    for run in runs:
        h = histories[run.run_id]
        s = fd.steps_to_target(*h.series(FULL_LOSS), target)
        b = fd.batch_size(run, h)
        if not math.isnan(s):
            best[b] = min(best.get(b, math.inf), s)
    batches = np.array(sorted(best), dtype=np.float64)
    return batches, np.array([best[b] for b in batches], dtype=np.float64)


def layer_moments_of(history: History) -> tuple[fd.IntArray, fd.FloatArray, fd.FloatArray]:
    """(layers 1 … L−1, E[(aˡ)²] = std² + mean², mean of aˡ) of the hidden layers at step 0."""
    _, layers, means = fd.per_layer_over_time(history, "act_mean")
    _, _, stds = fd.per_layer_over_time(history, "act_std")
    m, sd = means[:-1, 0], stds[:-1, 0]
    return layers[:-1], sd * sd + m * m, m


def trainability_points(
    histories: Mapping[str, History],
) -> dict[float, tuple[fd.FloatArray, fd.FloatArray, fd.FloatArray]]:
    """Per σ_b²: (σ_w², depth L − 1, last val/accuracy) of each run with theory metrics."""
    points: dict[float, list[tuple[float, float, float]]] = {}
    for h in histories.values():
        if CHI1 not in h.keys or VAL_ACCURACY not in h.keys or h.n_layers is None:
            continue
        accuracy = float(h.series(VAL_ACCURACY)[1][-1])
        row = (first(h, SIGMA_W2), float(h.n_layers - 1), accuracy)
        points.setdefault(round(first(h, SIGMA_B2), 6), []).append(row)
    return {
        b: tuple(np.array(c) for c in zip(*sorted(rows), strict=True))
        for b, rows in sorted(points.items())
    }  # type: ignore[misc]


# ---------------------------------------------------------------------------------- figures


def _with(data: Data, key: str) -> list[fd.RunInfo]:
    return [r for r in data.runs if key in data.histories[r.run_id].keys]


def theory_overlay(data: Data) -> Built:
    """One panel per config: step-0 ‖∂L/∂bˡ‖ (markers) and the mean-field line (dashed)."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig, axes = style.grid(len(data.panels), 1.3)
    shown = []
    for ax, (config, run) in zip(axes, data.panels, strict=True):
        lines = overlay(data.histories[run.run_id])
        ax.set_title(fd.config_label(data.keys, config))
        if lines is None:
            note = "no prediction:\nneeds ≥ 2 equal\nhidden layers"
            ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center")
            ax.set(xticks=[], yticks=[])
            continue
        layers, measured, predicted = lines
        ax.plot(layers, fd.positive(measured), "o", color=style.BLUE)
        ax.plot(layers, fd.positive(predicted), "--", color=style.BLACK)
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
    keys = [f"bias_grad_norm/{layer_tag(l)}" for l in range(depth - 1)] + [CHI1]
    return fig, shown, keys


def chi1_growth(data: Data) -> Built:
    """Measured per-layer factor of ‖∂L/∂bˡ‖² against χ₁, with the identity line."""
    runs = _with(data, CHI1)
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


def steps_vs_batch(data: Data) -> Built:
    """Fewest steps to the target loss per batch size and the fit S = S_min (1 + B_noise/B)."""
    runs = _with(data, FULL_LOSS)
    target = TARGET_LOSS if data.target_loss is None else data.target_loss
    batches, steps = best_steps(runs, data.histories, target)
    fig = style.figure(style.ONE_COLUMN, 2.8)
    ax = fig.subplots()
    ax.plot(batches, steps, "o", color=style.BLUE, label="best learning rate of the grid")
    if len(batches) >= 2:
        s_min, b_noise = fit_steps_vs_batch(batches, steps)
        b = np.geomspace(batches.min(), batches.max(), 200)
        fit = rf"$S_{{min}}(1 + B_{{noise}}/B)$, $B_{{noise}}$ = {b_noise:.3g}"
        ax.plot(b, s_min * (1 + b_noise / b), "--", color=style.BLACK, label=fit)
    if len(batches):
        ax.set(xscale="log", yscale="log")
    else:
        ax.text(0.5, 0.5, "no run reached the target", transform=ax.transAxes, ha="center")
    ax.set(xlabel="batch size B", ylabel=f"steps to training loss {target:g}")
    ax.legend(loc="upper right")
    return fig, runs, [FULL_LOSS, fd.EXAMPLES_KEY]


def trainability(data: Data) -> Built:
    """Final val/accuracy (colour) over σ_w² and depth, a panel per σ_b², with 6|ξ_∇|."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    runs = _with(data, CHI1)
    points = trainability_points({r.run_id: data.histories[r.run_id] for r in runs})
    fig, axes = style.grid(max(1, len(points)), 2.4, ncols=2)
    norm, cmap = Normalize(0, 1), "viridis"
    activation = data.runs[0].params.get(fd.ACTIVATION_KEY, "tanh") if data.runs else "tanh"
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


def layer_moments(data: Data) -> Built:
    """Step-0 E[(aˡ)²] (log) and mean of aˡ per hidden layer, per config (lowest seed)."""
    from matplotlib.ticker import MaxNLocator

    fig = style.figure(style.TWO_COLUMN, 2.6)
    axes = fig.subplots(1, 2)
    look = style.looks(data.keys, [c for c, _ in data.panels])
    for config, run in data.panels:
        layers, second, mean = layer_moments_of(data.histories[run.run_id])
        kw = {**look[config], "markevery": max(1, len(layers) // 8)}
        axes[0].plot(layers, fd.positive(second), **kw)
        axes[1].plot(layers, mean, **kw)
    axes[0].set(yscale="log", ylabel=r"$E[(a^l)^2]$ at step 0")
    axes[1].set(ylabel=r"mean of $a^l$ at step 0")
    for ax in axes:
        ax.set_xlabel("hidden layer l")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    configs = [c for c, _ in data.panels]
    style.legend(fig, style.legend_handles(data.keys, configs, fd.config_label))
    shown = [r for _, r in data.panels]
    return fig, shown, ["act_mean", "act_std"]


def speed_of_learning(data: Data) -> Built:
    """Nielsen's speed of learning: training-set ‖∂C/∂bˡ‖ per layer over training."""
    from experiments.plots import layer_grid

    return layer_grid(data, {"full_bias_grad_norm": "-"}, True, f"{BIAS_GRAD} (training set)")


def activation_stats(data: Data) -> Built:
    """Glorot & Bengio Fig. 2: mean (solid) and std (dashed) of aˡ per layer over training."""
    from experiments.plots import layer_grid

    return layer_grid(data, {"act_mean": "-", "act_std": "--"}, False, "mean (—), std (--) of aˡ")


def _has(key: str) -> Callable[[Data], bool]:
    return lambda data: bool(_with(data, key))


def always(data: Data) -> bool:
    """A figure any selection can show (also for ``experiments.plots.FIGURES``)."""
    return True


def _several_chi1(data: Data) -> bool:
    """At least three distinct χ₁ among the runs: a growth-vs-χ₁ plot has something to show."""
    values = {round(first(data.histories[r.run_id], CHI1), 6) for r in _with(data, CHI1)}
    return len(values) >= 3


def _init_and_depth_vary(data: Data) -> bool:
    init_varies = any(k.startswith("init.") for k in data.keys)
    return init_varies and fd.DEPTH_KEY in data.keys and bool(_with(data, CHI1))


FIGURES: dict[str, Spec] = {  # name → (figure, whether the selected runs can show it)
    "theory_overlay": (theory_overlay, _has(CHI1)),
    "chi1_growth": (chi1_growth, _several_chi1),
    "trainability": (trainability, _init_and_depth_vary),
    "layer_moments": (layer_moments, always),
    "speed_of_learning": (speed_of_learning, _has("full_bias_grad_norm/layer_01")),
    "activation_stats": (activation_stats, always),
    "steps_vs_batch": (steps_vs_batch, _has(FULL_LOSS)),
}
