"""Figures of the paper reproductions: theory drawn next to what the runs measured.

Each figure function takes the selected runs (``experiments.plots.Data``) and returns (the
figure, the runs shown, the metric keys used), like the figures of ``experiments.plots``.  The
numbers they draw come from the data functions above them, which need neither matplotlib nor
MLflow and are tested on their own.

    theory_overlay   step-0 ‖∂L/∂bˡ‖ per hidden layer, with the mean-field line
                     ‖∂L/∂bˡ‖ ∝ (√χ₁)^(L−1−l) through the top hidden layer (theory/chi1)
    chi1_growth      the measured per-layer factor of ‖∂L/∂bˡ‖², exp(−2 · measured slope),
                     against χ₁ of the run's init (the edge_of_chaos sweep)
    steps_vs_batch   steps to TARGET_LOSS of the training-set loss against batch size, the
                     best learning rate per batch size, with the fit S = S_min (1 + B_noise/B)
                     (McCandlish et al. 2018; the noise_scale preset)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from bpcore.noise_scale import fit_steps_vs_batch
from experiments import figdata as fd
from experiments import style
from experiments.diagnostics import History

if TYPE_CHECKING:
    from experiments.plots import Built, Data

CHI1, SLOPE = "theory/chi1", "theory/measured_slope"
FULL_LOSS = "train/full_loss"
TARGET_LOSS = 0.2  # steps_vs_batch: reached by every batch size of the noise_scale preset
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
    layers = np.arange(1, history.n_layers, dtype=np.int64)
    measured = np.array([first(history, f"bias_grad_norm/layer_{l:02d}") for l in layers])
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


def steps_to_target(steps: Sequence[int], losses: Sequence[float], target: float) -> float:
    """The first step at which ``losses`` reaches ``target``, interpolated linearly in ln(loss)
    between the two logged steps around the crossing; NaN if it never does."""
    s, loss = np.asarray(steps, dtype=np.float64), np.asarray(losses, dtype=np.float64)
    hit = np.flatnonzero(loss <= target)
    if hit.size == 0:
        return math.nan
    i = int(hit[0])
    if i == 0:
        return float(s[0])
    y0, y1 = math.log(loss[i - 1]), math.log(loss[i])
    return float(s[i - 1] + (s[i] - s[i - 1]) * (y0 - math.log(target)) / (y0 - y1))


def batch_size(history: History) -> float:
    """The mean minibatch size: examples seen over steps taken at the first epoch's end."""
    steps, examples = history.series(fd.EXAMPLES_KEY)
    return float(examples[0] / steps[0])


def best_steps(
    histories: Mapping[str, History], target: float = TARGET_LOSS
) -> tuple[fd.FloatArray, fd.FloatArray]:
    """(batch sizes, fewest steps to ``target`` over the runs of each batch size), by batch
    size; runs that never reach it are left out."""
    best: dict[float, float] = {}
    for h in histories.values():
        s = steps_to_target(*h.series(FULL_LOSS), target)
        b = round(batch_size(h), 6)
        if not math.isnan(s):
            best[b] = min(best.get(b, math.inf), s)
    batches = np.array(sorted(best), dtype=np.float64)
    return batches, np.array([best[b] for b in batches], dtype=np.float64)


# ---------------------------------------------------------------------------------- figures


def _with(data: Data, key: str) -> list[fd.RunInfo]:
    return [r for r in data.runs if key in data.histories[r.run_id].keys]


def theory_overlay(data: Data) -> Built:
    """One panel per config: step-0 ‖∂L/∂bˡ‖ (markers) and the mean-field line (dashed)."""
    from matplotlib.ticker import MaxNLocator

    fig, axes = style.grid(len(data.panels), 1.3)
    shown = []
    for ax, (config, run) in zip(axes, data.panels, strict=True):
        lines = overlay(data.histories[run.run_id])
        ax.set_title(fd.config_label(data.keys, config))
        if lines is None:
            continue
        layers, measured, predicted = lines
        ax.plot(layers, fd.positive(measured), "o", color=style.BLUE, label="measured")
        ax.plot(
            layers,
            fd.positive(predicted),
            "--",
            color=style.BLACK,
            label=r"$(\sqrt{\chi_1})^{L-1-l}$",
        )
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        shown.append(run)
    axes[0].legend(loc="best")
    fig.supxlabel("hidden layer l (1 = input side)")
    fig.supylabel(f"{BIAS_GRAD} at step 0")
    depth = max((data.histories[r.run_id].n_layers or 1) for r in shown) if shown else 1
    keys = [f"bias_grad_norm/layer_{l:02d}" for l in range(1, depth)] + [CHI1]
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
    """Fewest steps to TARGET_LOSS per batch size and the fit S = S_min (1 + B_noise/B)."""
    runs = _with(data, FULL_LOSS)
    batches, steps = best_steps({r.run_id: data.histories[r.run_id] for r in runs})
    fig = style.figure(style.ONE_COLUMN, 2.8)
    ax = fig.subplots()
    ax.plot(batches, steps, "o", color=style.BLUE, label="best learning rate of the grid")
    if len(batches) >= 2:
        s_min, b_noise = fit_steps_vs_batch(batches, steps)
        b = np.geomspace(batches.min(), batches.max(), 200)
        fit = rf"$S_{{min}}(1 + B_{{noise}}/B)$, $B_{{noise}}$ = {b_noise:.3g}"
        ax.plot(b, s_min * (1 + b_noise / b), "--", color=style.BLACK, label=fit)
    ax.set(xscale="log", yscale="log", xlabel="batch size B")
    ax.set_ylabel(f"steps to training loss {TARGET_LOSS:g}")
    ax.legend(loc="upper right")
    return fig, runs, [FULL_LOSS, fd.EXAMPLES_KEY]


FIGURES = {
    "theory_overlay": theory_overlay,
    "chi1_growth": chi1_growth,
    "steps_vs_batch": steps_vs_batch,
}
