r"""The gradient noise scale (McCandlish et al. 2018, "An Empirical Model of Large-Batch Training").

A minibatch gradient G_B, the mean of B per-example gradients drawn i.i.d. around the true
gradient G with covariance Σ, has E[G_B] = G and Cov(G_B) = Σ/B, so

.. math:: \mathbb{E}\,|G_B|^2 = |G|^2 + \frac{\mathrm{tr}\,\Sigma}{B}.

Squared norms at two batch sizes B_small < B_big then give unbiased estimates (their App. A.1)

.. math:: |\mathcal{G}|^2 = \frac{B_\text{big}|G_\text{big}|^2 - B_\text{small}|G_\text{small}|^2}
                                 {B_\text{big} - B_\text{small}},
          \qquad
          \mathcal{S} = \frac{|G_\text{small}|^2 - |G_\text{big}|^2}
                             {1/B_\text{small} - 1/B_\text{big}},

and the simple noise scale B_simple = tr(Σ)/|G|² ≈ 𝒮/|𝒢|².  A ratio of two noisy estimates is
biased (one step's |𝒢|² can even be ≤ 0), so 𝒮 and |𝒢|² are averaged over steps first and the
ratio is taken last.  The noise scale predicts the trade-off between steps S and examples E
to reach a given loss (their eq. 2.11): S = S_min (1 + B_noise/B), E = E_min (1 + B/B_noise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["NoiseScale", "fit_steps_vs_batch", "noise_scale"]


@dataclass(frozen=True)
class NoiseScale:
    """Step-averaged estimates of |G|² and tr(Σ), and their ratio."""

    grad_sq: float  # |𝒢|², the squared norm of the true gradient
    trace_sigma: float  # 𝒮, the trace of the per-example gradient covariance

    @property
    def b_simple(self) -> float:
        """tr(Σ)/|G|²; NaN when the |G|² estimate is not positive (noise swamps the signal)."""
        return self.trace_sigma / self.grad_sq if self.grad_sq > 0 else math.nan


def noise_scale(
    sq_small: ArrayLike, sq_big: ArrayLike, b_small: ArrayLike, b_big: ArrayLike
) -> NoiseScale:
    """Estimates from per-step squared gradient norms |G_small|², |G_big|² (both taken at the
    same parameters within a step) at batch sizes ``b_small`` < ``b_big`` (numbers, or one per
    step): each step's unbiased |𝒢|² and 𝒮, averaged over the steps.
    """
    arrays = (np.asarray(v, dtype=np.float64) for v in (sq_small, sq_big, b_small, b_big))
    small, big, bs, bb = np.broadcast_arrays(*arrays)
    if small.ndim != 1 or len(small) == 0:
        raise ValueError(f"need 1-D series of squared norms, got shape {small.shape}")
    if not np.all((bs > 0) & (bs < bb)):
        raise ValueError(f"need 0 < b_small < b_big, got {b_small!r}, {b_big!r}")
    grad_sq = (bb * big - bs * small) / (bb - bs)
    trace_sigma = (small - big) / (1 / bs - 1 / bb)
    return NoiseScale(float(grad_sq.mean()), float(trace_sigma.mean()))


def fit_steps_vs_batch(batch_sizes: ArrayLike, steps: ArrayLike) -> tuple[float, float]:
    r"""(S_min, B_noise) of S = S_min (1 + B_noise/B) = a + c/B, fitted to measured steps.

    Linear least squares in (a, c) on *relative* residuals, min Σ ((S_i − a − c/B_i)/S_i)²,
    so a run needing 5000 steps does not outweigh one needing 20; then S_min = a, B_noise = c/a.
    Needs at least two distinct batch sizes.
    """
    b = np.asarray(batch_sizes, dtype=np.float64)
    s = np.asarray(steps, dtype=np.float64)
    if b.shape != s.shape or b.ndim != 1 or len(np.unique(b)) < 2:
        raise ValueError("need steps for at least two distinct batch sizes")
    design = np.stack([np.ones_like(b), 1 / b], axis=1) / s[:, None]
    (a, c), *_ = np.linalg.lstsq(design, np.ones_like(s), rcond=None)
    return float(a), float(c / a)
