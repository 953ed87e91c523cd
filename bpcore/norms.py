"""Normalization of a hidden layer's pre-activations, between zˡ and f: BatchNorm and LayerNorm.

Notation: z has shape (batch, units); "mean" averages over the batch (BatchNorm, per unit: Ioffe
& Szegedy 2015) or over the units (LayerNorm, per example: Ba et al. 2016), n entries each.

    forward    μ = mean(z),   σ² = mean((z − μ)²)              (biased: the batch's own variance)
               σ = √(σ² + ε)
               x̂ = (z − μ) / σ
               y = γ ⊙ x̂ + β                                     (γ = 1, β = 0 at init)
    backward   ∂L/∂γ = Σ_batch ∂L/∂y ⊙ x̂,   ∂L/∂β = Σ_batch ∂L/∂y
               ∂L/∂x̂ = ∂L/∂y ⊙ γ
               ∂L/∂z = (1/σ)(∂L/∂x̂ − mean(∂L/∂x̂) − x̂ ⊙ mean(∂L/∂x̂ ⊙ x̂))

The last line is the chain rule through μ and σ, which depend on all n entries they average:
∂x̂ᵢ/∂zⱼ = (1[i = j] − 1/n − x̂ᵢ x̂ⱼ / n) / σ, summed against ∂L/∂x̂ᵢ.  So BatchNorm couples the
examples of a batch, and a batch of one has σ² = 0: training needs batches of ≥ 2.

Evaluation (BatchNorm): μ and σ² are the running statistics, updated after every training step
as r ← (1 − momentum)·r + momentum·s with s the batch mean and the unbiased batch variance
n/(n − 1)·σ² (the common frameworks' convention); they start at μ = 0, σ² = 1.  LayerNorm
normalizes each example by itself, in training and evaluation alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bpcore.activations import Array

NORMS = {"batch": 0, "layer": 1}  # name → the axis its statistics average over


@dataclass
class NormPass:
    """One normalization of a batch: what the backward pass and the diagnostics need."""

    mean: Array  # μ: shape (units,) for BatchNorm, (batch, 1) for LayerNorm
    var: Array  # σ², biased, shaped as μ
    std: Array  # σ = √(σ² + ε), shaped as μ
    x_hat: Array  # x̂ = (z − μ)/σ, shape (batch, units)


def batch_size_problem(norm: str | None, batch_size: int) -> str | None:
    """Why ``norm`` cannot train on batches of ``batch_size`` examples, or None if it can."""
    if norm == "batch" and batch_size < 2:
        return (
            "BatchNorm trains on batches of ≥ 2 examples (the variance of 1 example is 0); "
            "use a larger batch, or LayerNorm"
        )
    return None


def normalize(z: Array, axis: int, eps: float, mean: Array | None, var: Array | None) -> NormPass:
    """x̂ = (z − μ)/√(σ² + ε) with μ, σ² of ``z`` over ``axis``, or the given ``mean``, ``var``
    (BatchNorm's running statistics in evaluation)."""
    if mean is None or var is None:
        mean = z.mean(axis=axis, keepdims=axis == 1)  # μ
        var = z.var(axis=axis, keepdims=axis == 1)  # σ², biased
    std = np.sqrt(var + eps)  # σ
    return NormPass(mean, var, std, (z - mean) / std)


def normalize_backward(dL_dx_hat: Array, p: NormPass, axis: int) -> Array:
    """∂L/∂z = (1/σ)(∂L/∂x̂ − mean(∂L/∂x̂) − x̂ ⊙ mean(∂L/∂x̂ ⊙ x̂)), means over ``axis``."""
    keep = axis == 1
    mean_dx_hat = dL_dx_hat.mean(axis=axis, keepdims=keep)  # through μ
    mean_dx_hat_x_hat = (dL_dx_hat * p.x_hat).mean(axis=axis, keepdims=keep)  # through σ
    dL_dz: Array = (dL_dx_hat - mean_dx_hat - p.x_hat * mean_dx_hat_x_hat) / p.std
    return dL_dz


def track(running: Array, batch_statistic: Array, momentum: float) -> None:
    """r ← (1 − momentum)·r + momentum·s, in place."""
    running *= 1 - momentum
    running += momentum * batch_statistic
