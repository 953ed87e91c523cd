"""Every figure the suite draws, in the order it draws them: one line per figure.

The CLI draws the figures of ``chosen(data)``; the tests, the figure table of docs/figures.md and
the gallery read ``FIGURES``.  A new figure is a function ``(Data) -> Built`` in a family
module plus one line here.
"""

from __future__ import annotations

from dataclasses import dataclass

from experiments.figures import (
    activations,
    batch,
    boundaries,
    depth,
    gradients,
    histograms,
    layers,
    losses,
    lr,
    moments,
    outcomes,
    signal,
    theory,
)
from experiments.figures.common import CanShow, Data, Draw, always


@dataclass(frozen=True)
class FigureKind:
    """One figure: its file name, how to draw it, when the selected runs can show it."""

    name: str  # the file name (``<name>.png``) and its name in the docs
    draw: Draw
    can_show: CanShow
    what: str  # one line, as in the figure table of docs/figures.md
    needs_runs: bool = True  # False: drawn while the runs are still being read


FIGURES: tuple[FigureKind, ...] = (
    FigureKind(
        "activation_gallery",
        activations.activation_gallery,
        always,
        "every activation f and f′; where |f′| < 5% of its maximum shaded (the saturation rule)",
        needs_runs=False,
    ),
    FigureKind(
        "gradient_flow",
        gradients.gradient_flow,
        always,
        "‖∂L/∂Wˡ‖ per layer (log) at step 0 and at the end per config, min–max over seeds",
    ),
    FigureKind(
        "gradient_heatmaps",
        gradients.gradient_heatmaps,
        always,
        "layer × step ‖∂L/∂Wˡ‖ on one log colour scale, one panel per config",
    ),
    FigureKind(
        "loss_curves",
        losses.loss_curves,
        always,
        "train/val loss vs step (examples when batch sizes differ), mean and 95% t-band over "
        "seeds, a panel per activation; × where diverged, ▲ above 1e38",
    ),
    FigureKind(
        "saturation_dead",
        layers.saturation_dead,
        always,
        "saturated fraction and dead units per hidden layer over training",
    ),
    FigureKind(
        "update_ratio",
        layers.update_ratio,
        always,
        "‖ΔW‖/‖W‖ per layer over training, with the 1e-3 guide line",
    ),
    FigureKind(
        "depth_vs_width",
        depth.depth_vs_width,
        depth.depth_varies,
        "final val loss and accuracy vs depth, one column per dataset",
    ),
    FigureKind(
        "depth_width_heatmap",
        depth.depth_width_heatmap,
        depth.depth_and_width_vary,
        "mean final val loss on the depth × width grid, cells annotated",
    ),
    FigureKind(
        "batch_size",
        batch.batch_size,
        batch.batch_varies,
        "train loss vs examples, steps and wall time; steps to a target loss vs batch size",
    ),
    FigureKind(
        "histograms",
        histograms.histograms,
        histograms.has_histograms,
        "per hidden layer, aˡ and |δˡ| at the first and last logged step",
    ),
    FigureKind(
        "decision_boundaries",
        boundaries.decision_boundaries,
        boundaries.has_models,
        "each run's class probabilities over the input plane, with its training points",
    ),
    FigureKind(
        "theory_overlay",
        theory.theory_overlay,
        theory.has_chi1,
        "step-0 ‖∂L/∂bˡ‖ per hidden layer with the mean-field line (√χ₁)^(L−1−l)",
    ),
    FigureKind(
        "chi1_growth",
        theory.chi1_growth,
        theory.several_chi1,
        "measured per-layer factor of ‖∂L/∂bˡ‖² against χ₁",
    ),
    FigureKind(
        "trainability",
        theory.trainability,
        theory.init_and_depth_vary,
        "final val accuracy over σ_w² × depth with 6|ξ_∇|",
    ),
    FigureKind(
        "layer_moments",
        moments.layer_moments,
        always,
        "E[(aˡ)²] and the mean of aˡ per hidden layer at step 0",
    ),
    FigureKind(
        "signal_propagation",
        signal.signal_propagation,
        signal.has_signal,
        "step-0 E[(aˡ)²], avg. channel squared mean and variance, residual-branch variance per "
        "hidden layer (min–max over seeds); mean field dashed for residual nets without a norm",
    ),
    FigureKind(
        "final_accuracy",
        outcomes.final_accuracy,
        outcomes.has_test_accuracy,
        "test accuracy per config at the end: mean and 95% t-interval over seeds, seeds as dots",
    ),
    FigureKind(
        "speed_of_learning",
        layers.speed_of_learning,
        layers.has_full_gradient,
        "training-set ‖∂C/∂bˡ‖ per layer over training",
    ),
    FigureKind(
        "activation_stats",
        layers.activation_stats,
        always,
        "mean and std of aˡ per layer over training",
    ),
    FigureKind(
        "lr_vs_batch",
        batch.lr_vs_batch,
        batch.tuned_batch_sizes,
        "each batch size's chosen lr, with lr ∝ B and lr ∝ √B through the smallest batch's",
    ),
    FigureKind(
        "lr_sensitivity",
        lr.lr_sensitivity,
        lr.has_tuning,
        "final val loss vs lr per config, tuning seeds (mean; 95% t-band from 3 seeds); best ★",
    ),
    FigureKind(
        "steps_vs_batch",
        batch.steps_vs_batch,
        batch.has_full_loss,
        "steps to a training loss per batch size (best lr, seed mean), with S_min(1 + B_noise/B)",
    ),
)

_BY_NAME = {kind.name: kind for kind in FIGURES}
assert len(_BY_NAME) == len(FIGURES), "two figures of one name"


def figure(name: str) -> FigureKind:
    """The figure called ``name``; KeyError naming the known ones otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no figure {name!r}; known: {', '.join(_BY_NAME)}") from None


def chosen(data: Data) -> list[str]:
    """The figures that the selected runs can show (the axis they need varies, the files exist)."""
    return [kind.name for kind in FIGURES if kind.can_show(data)]
