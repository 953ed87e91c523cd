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
    reading: str = ""  # one sentence: how to read it (the caption's second half)
    needs_runs: bool = True  # False: drawn while the runs are still being read

    @property
    def caption(self) -> str:
        """What is drawn, then how to read it: the caption of the manifest."""
        return f"{self.what[0].upper()}{self.what[1:]}. {self.reading}"


FIGURES: tuple[FigureKind, ...] = (
    FigureKind(
        "activation_gallery",
        activations.activation_gallery,
        always,
        "every activation f and f′; where |f′| < 5% of its maximum shaded (the saturation rule)",
        reading=(
            "Shaded inputs are where a unit passes back less than 5% of its largest gradient: the"
            " wider the shading around 0, the sooner a deep net of that activation saturates."
        ),
        needs_runs=False,
    ),
    FigureKind(
        "gradient_flow",
        gradients.gradient_flow,
        always,
        "‖δˡ‖ per hidden layer at step 0 with the mean field (√χ₁)^(H−l), a panel per activation "
        "family, geometric mean and 95% t-interval over seeds",
        reading=(
            "A line falling towards layer 1 is the vanishing gradient (rising: exploding), and "
            "where it follows its dashed line the mean field's χ₁ per layer explains the fall."
        ),
    ),
    FigureKind(
        "gradient_heatmaps",
        gradients.gradient_heatmaps,
        always,
        "layer × step ‖∂L/∂Wˡ‖ on one log colour scale, one panel per config",
        reading=(
            "Read each panel along its layers: low values at the input layers that persist over "
            "the steps are a gradient that vanishes and does not recover."
        ),
    ),
    FigureKind(
        "loss_curves",
        losses.loss_curves,
        always,
        "train/val loss vs step (examples when batch sizes differ), mean and 95% t-band over "
        "seeds, a panel per activation; × where diverged, ▲ above 1e38",
        reading=(
            "Lower is better; curves that separate only after many steps differ in speed, curves "
            "that end at different heights in what they reach, and a wide band means seeds "
            "disagree."
        ),
    ),
    FigureKind(
        "saturation_dead",
        layers.saturation_dead,
        always,
        "saturated fraction and dead units per hidden layer over training",
        reading=(
            "A layer near 1 passes back almost no gradient: saturated units (sigmoid, tanh) or "
            "dead ones (ReLU family) that no update revives."
        ),
    ),
    FigureKind(
        "update_ratio",
        layers.update_ratio,
        always,
        "‖ΔW‖/‖W‖ per layer over training, with the 1e-3 guide line",
        reading=(
            "Around 1e-3 each step changes a layer’s weights by about a thousandth, a common "
            "healthy rate; far below it the layer hardly learns, far above it training is "
            "unstable."
        ),
    ),
    FigureKind(
        "depth_vs_width",
        depth.depth_vs_width,
        depth.depth_varies,
        "final val loss and accuracy vs depth, one column per dataset, with the best constant "
        "output",
        reading=(
            "The dotted line is what predicting a constant scores: a point near it learned "
            "nothing, and a line that rises with depth shows deeper nets training worse."
        ),
    ),
    FigureKind(
        "depth_width_heatmap",
        depth.depth_width_heatmap,
        depth.depth_and_width_vary,
        "mean final val loss on the depth × width grid, cells annotated, a colour scale per "
        "dataset",
        reading=(
            "Compare cells along a row (wider at one depth) and along a column (deeper at one "
            "width); darker cells have the lower loss."
        ),
    ),
    FigureKind(
        "batch_size",
        batch.batch_size,
        batch.batch_varies,
        "train loss vs examples, steps and wall time (95% t-band); steps to a loss all reach vs "
        "batch size",
        reading=(
            "Against examples seen the small batches usually lead, against steps the large ones; "
            "the last panel shows how many steps fewer a larger batch needs to reach the same "
            "loss."
        ),
    ),
    FigureKind(
        "histograms",
        histograms.histograms,
        histograms.has_histograms,
        "per hidden layer, aˡ and |δˡ| at the first and last logged step; the share of |δ| = 0 "
        "in titles",
        reading=(
            "Activations piling up at ±1 (tanh) or 0/1 (sigmoid) are saturated; |δ| distributions"
            " moving left from the last layer to the first are the gradient vanishing on its way "
            "back."
        ),
    ),
    FigureKind(
        "decision_boundaries",
        boundaries.decision_boundaries,
        boundaries.has_models,
        "each run's class probabilities over the input plane, with its training points",
        reading=(
            "A boundary that follows the training points’ classes learned the task; a blank or "
            "straight boundary on curved data means the net did not train."
        ),
    ),
    FigureKind(
        "theory_overlay",
        theory.theory_overlay,
        theory.has_chi1,
        "step-0 ‖∂L/∂bˡ‖ per hidden layer with the mean-field line (√χ₁)^(L−1−l), seed mean and "
        "interval, the book's values",
        reading=(
            "Points on the dashed line mean the untrained net back-propagates as mean-field "
            "theory predicts; towards the input the line falls with χ₁ < 1 (ordered) and "
            "rises with χ₁ > 1 (chaotic)."
        ),
    ),
    FigureKind(
        "chi1_growth",
        theory.chi1_growth,
        theory.several_chi1,
        "measured per-layer factor of ‖∂L/∂bˡ‖² against χ₁",
        reading=(
            "Points on the diagonal mean the measured growth per layer equals χ₁: below 1 "
            "gradients vanish with depth, above 1 they explode."
        ),
    ),
    FigureKind(
        "trainability",
        theory.trainability,
        theory.init_and_depth_vary,
        "final val accuracy on the σ_w² × depth grid (heatmap) with 6|ξ_∇|",
        reading=(
            "The 6|ξ_∇| curve is the depth beyond which theory expects training to fail; it "
            "peaks at the σ_w² where χ₁ = 1, so the deepest trainable nets sit there."
        ),
    ),
    FigureKind(
        "layer_moments",
        moments.layer_moments,
        always,
        "squared mean and variance of aˡ per hidden layer at step 0 with the mean field, 95% "
        "t-interval over seeds",
        reading=(
            "A variance that stays flat across layers is a signal that neither dies out nor blows "
            "up on its way forward, and a squared mean that grows is a signal collapsing to one "
            "direction."
        ),
    ),
    FigureKind(
        "signal_propagation",
        signal.signal_propagation,
        signal.has_signal,
        "step-0 E[(aˡ)²], avg. channel squared mean and variance, residual-branch variance per "
        "hidden layer (min–max over seeds); mean field dashed for residual nets without a norm",
        reading=(
            "Flat lines mean the forward signal keeps its scale with depth; a falling variance "
            "with a rising squared mean is the signal collapsing to one direction."
        ),
    ),
    FigureKind(
        "final_accuracy",
        outcomes.final_accuracy,
        outcomes.has_test_accuracy,
        "test accuracy per config at the end: mean and 95% t-interval over seeds, seeds as dots",
        reading=(
            "Non-overlapping intervals are differences the seeds support; overlapping ones are "
            "not shown to differ by these runs."
        ),
    ),
    FigureKind(
        "speed_of_learning",
        layers.speed_of_learning,
        layers.has_full_gradient,
        "training-set ‖∂C/∂bˡ‖ per hidden layer over epochs, seed mean, the book's values",
        reading=(
            "Earlier layers learning slower (a smaller ‖∂C/∂bˡ‖) than later ones is the "
            "vanishing gradient of Nielsen’s chapter 5."
        ),
    ),
    FigureKind(
        "activation_stats",
        layers.activation_stats,
        always,
        "mean of aˡ per hidden layer against epochs, ±1 std bars",
        reading=(
            "A mean drifting away from 0 or a std shrinking towards 0 in a layer is that layer "
            "saturating or dying during training."
        ),
    ),
    FigureKind(
        "lr_vs_batch",
        batch.lr_vs_batch,
        batch.tuned_batch_sizes,
        "each batch size's chosen lr, with lr ∝ B and lr ∝ √B through the smallest batch's",
        reading=(
            "Points along the dashed line follow the linear scaling rule, along the dotted line "
            "the square-root rule."
        ),
    ),
    FigureKind(
        "lr_sensitivity",
        lr.lr_sensitivity,
        lr.has_tuning,
        "final val loss vs lr per config, tuning seeds (mean; 95% t-band from 3 seeds); best ★",
        reading=(
            "A flat curve around the star means the result does not hinge on the exact learning "
            "rate; a sharp minimum means it does."
        ),
    ),
    FigureKind(
        "steps_vs_batch",
        batch.steps_vs_batch,
        batch.has_full_loss,
        "steps to a training loss per batch size (best lr, seed mean), with S_min(1 + B_noise/B)",
        reading=(
            "Where the dashed fit flattens, a larger batch no longer saves steps: B_noise is the "
            "batch size at that bend."
        ),
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
