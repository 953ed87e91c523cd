"""McCandlish et al.'s gradient noise scale on gradients whose G and Σ are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bpcore.noise_scale import fit_steps_vs_batch, noise_scale

B_SMALL, B_BIG = 8, 128


def _problem(d: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """A true gradient G and a diagonal per-example covariance Σ (its variances)."""
    rng = np.random.default_rng(1)
    return rng.normal(0.0, 0.3, d), rng.uniform(0.5, 2.0, d)


def _var_sq_norm(g: np.ndarray, var: np.ndarray, b: int) -> float:
    """Var |G_B|² for G_B ~ N(G, Σ/B) with diagonal Σ: 2 tr((Σ/B)²) + 4 Gᵀ(Σ/B)G."""
    return float(2 * np.sum((var / b) ** 2) + 4 * np.sum(g * g * var / b))


def test_expected_norms_give_the_exact_answer() -> None:
    """E|G_B|² = |G|² + tr(Σ)/B is inverted exactly (to rounding)."""
    g, var = _problem()
    expected = [float(g @ g + var.sum() / b) for b in (B_SMALL, B_BIG)]
    est = noise_scale([expected[0]], [expected[1]], B_SMALL, B_BIG)
    assert est.grad_sq == pytest.approx(g @ g, rel=1e-12)
    assert est.trace_sigma == pytest.approx(var.sum(), rel=1e-12)
    assert est.b_simple == pytest.approx(var.sum() / (g @ g), rel=1e-12)


def test_unbiased_on_sampled_minibatch_gradients() -> None:
    """Sampled G_B ~ N(G, Σ/B) at two batch sizes over 2000 steps: the step-averaged estimates
    land within 5 standard errors (the exact Var of the Gaussian |G_B|², see _var_sq_norm)."""
    g, var = _problem()
    rng, steps = np.random.default_rng(0), 2000
    sq = {
        b: np.sum((g + rng.normal(size=(steps, len(g))) * np.sqrt(var / b)) ** 2, axis=1)
        for b in (B_SMALL, B_BIG)
    }
    est = noise_scale(sq[B_SMALL], sq[B_BIG], B_SMALL, B_BIG)
    v_small, v_big = (_var_sq_norm(g, var, b) for b in (B_SMALL, B_BIG))
    se_trace = math.sqrt((v_small + v_big) / steps) / (1 / B_SMALL - 1 / B_BIG)
    se_grad = math.sqrt((B_BIG**2 * v_big + B_SMALL**2 * v_small) / steps) / (B_BIG - B_SMALL)
    assert abs(est.trace_sigma - var.sum()) < 5 * se_trace
    assert abs(est.grad_sq - g @ g) < 5 * se_grad


def test_per_step_batch_sizes_and_errors() -> None:
    """Batch sizes may vary per step (an epoch's remainder batch); bad input is refused."""
    g2, tr = 2.0, 30.0
    b_small = np.array([8.0, 8.0, 5.0])
    est = noise_scale(g2 + tr / b_small, np.full(3, g2 + tr / 100), b_small, 100)
    assert (est.grad_sq, est.trace_sigma) == (pytest.approx(g2), pytest.approx(tr))
    assert math.isnan(noise_scale([100.0], [1.0], 8, 128).b_simple)  # |G|² estimate < 0
    with pytest.raises(ValueError, match="b_small < b_big"):
        noise_scale([1.0], [1.0], 128, 128)
    with pytest.raises(ValueError, match="1-D"):
        noise_scale([], [], 8, 128)


def test_fit_steps_vs_batch() -> None:
    """S = S_min(1 + B_noise/B) is recovered exactly; with ±5% noise per point to ~10%."""
    b = np.array([1, 4, 16, 64, 256, 1024], dtype=float)
    steps = 40.0 * (1 + 50.0 / b)
    assert fit_steps_vs_batch(b, steps) == (pytest.approx(40.0), pytest.approx(50.0))
    noisy = steps * np.random.default_rng(0).uniform(0.95, 1.05, len(b))
    s_min, b_noise = fit_steps_vs_batch(b, noisy)
    assert s_min == pytest.approx(40.0, rel=0.1)
    assert b_noise == pytest.approx(50.0, rel=0.1)
    with pytest.raises(ValueError, match="two distinct"):
        fit_steps_vs_batch([4, 4], [10, 11])
