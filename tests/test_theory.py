"""Mean-field theory: quadrature, q*, χ₁, the edge of chaos, and a Monte Carlo check."""

from __future__ import annotations

import math

import numpy as np
import pytest

import bpcore
from bpcore.activations import ACTIVATIONS, get_activation
from bpcore.inits import get_bias_init, get_initializer
from bpcore.theory import (
    chi1,
    critical_sigma_w2,
    gaussian_expectation,
    grad_norm_ratio,
    gradient_depth_scale,
    log_slope,
    predicted_grad_norms,
    predicted_log_slope,
    q_star,
    residual_second_moments,
)

# ----------------------------------------------------------------------------- quadrature


@pytest.mark.parametrize("q", [0.0, 1e-6, 0.3, 1.0, 2.5, 100.0, 1e6])
def test_gaussian_moments(q: float) -> None:
    assert gaussian_expectation(np.ones_like, q) == pytest.approx(1.0, abs=1e-14)
    assert gaussian_expectation(np.square, q) == pytest.approx(q, rel=1e-12, abs=1e-300)
    assert gaussian_expectation(lambda x: x**4, q) == pytest.approx(3 * q**2, rel=1e-12)
    assert gaussian_expectation(lambda x: x, q) == pytest.approx(0.0, abs=1e-12 * (1 + q))


@pytest.mark.parametrize("q", [0.2, 1.0, 7.0])
def test_gaussian_expectation_of_kinked_functions(q: float) -> None:
    """Closed forms: E[|x|] = √(2q/π); P(|x| < 1) = erf(1/√(2q)) (the kink must be passed)."""
    assert gaussian_expectation(np.abs, q) == pytest.approx(math.sqrt(2 * q / math.pi), rel=1e-12)
    inside = gaussian_expectation(lambda x: (np.abs(x) < 1).astype(float), q, kinks=(1.0,))
    assert inside == pytest.approx(math.erf(1 / math.sqrt(2 * q)), rel=1e-12)


def test_gaussian_expectation_rejects_bad_q() -> None:
    with pytest.raises(ValueError, match="q must be a finite number >= 0"):
        gaussian_expectation(np.square, -1.0)
    with pytest.raises(ValueError, match="NaN"):
        gaussian_expectation(lambda x: np.full_like(x, np.nan), 1.0)


# --------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("sigma_w2", [0.5, 1.0, 1.5, 2.0, 3.0])
@pytest.mark.parametrize("sigma_b2", [0.0, 0.3])
def test_relu_chi1_is_half_sigma_w2(sigma_w2: float, sigma_b2: float) -> None:
    """E[relu′(√q z)²] = 1/2 at every q > 0 (also at q* = 0 and q* = ∞, as limits)."""
    assert chi1("relu", sigma_w2, sigma_b2) == pytest.approx(sigma_w2 / 2, abs=1e-10)


@pytest.mark.parametrize("sigma_w2", [0.5, 1.0, 1.9])
def test_relu_q_star_closed_form(sigma_w2: float) -> None:
    """q = σ_w² q / 2 + σ_b²  ⇒  q* = σ_b² / (1 − σ_w²/2)."""
    assert q_star("relu", sigma_w2, 0.1) == pytest.approx(0.1 / (1 - sigma_w2 / 2), rel=1e-10)
    assert q_star("relu", sigma_w2, 0.0) == 0.0


def test_relu_divergence_and_marginal_case() -> None:
    assert q_star("relu", 2.5, 0.1) == math.inf
    assert q_star("relu", 2.5, 0.0) == math.inf  # q = 0 is fixed but unstable
    assert q_star("relu", 2.0, 0.1) == math.inf  # q grows by σ_b² per layer forever
    assert q_star("relu", 2.0, 0.0, q0=0.7) == pytest.approx(0.7, rel=1e-12)  # every q is fixed
    assert critical_sigma_w2("relu", 0.1) == pytest.approx(2.0, rel=1e-8)
    assert gradient_depth_scale("relu", 2.0, 0.1) == math.inf


@pytest.mark.parametrize("sigma_w2", [0.2, 0.5, 0.9, 0.99])
def test_linear_q_star_closed_form(sigma_w2: float) -> None:
    """Identity: q = σ_w² q + σ_b²  ⇒  q* = σ_b² / (1 − σ_w²), χ₁ = σ_w²."""
    assert q_star("identity", sigma_w2, 0.3) == pytest.approx(0.3 / (1 - sigma_w2), rel=1e-10)
    assert chi1("identity", sigma_w2, 0.3) == pytest.approx(sigma_w2, rel=1e-12)
    assert q_star("identity", 1.0 / sigma_w2, 0.3) == math.inf  # σ_w² > 1: explodes


@pytest.mark.parametrize("sigma_w2", [0.3, 0.8, 0.99, 1.0])
def test_tanh_ordered_phase_without_bias(sigma_w2: float) -> None:
    """σ_b² = 0, σ_w² ≤ 1: the signal dies, q* = 0, so χ₁ = σ_w² tanh′(0)² = σ_w²."""
    assert q_star("tanh", sigma_w2, 0.0) == pytest.approx(0.0, abs=1e-100)
    assert chi1("tanh", sigma_w2, 0.0) == pytest.approx(sigma_w2, rel=1e-12)


def test_tanh_chaotic_fixed_point_is_found_from_any_start() -> None:
    """σ_w² = 3, σ_b² = 0: q = 0 is unstable, q* > 0 is reached from below and above."""
    ref = q_star("tanh", 3.0, 0.0)
    assert ref > 1
    for q0 in (1e-10, 0.5, 50.0):
        assert q_star("tanh", 3.0, 0.0, q0=q0) == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize(
    ("name", "sigma_w2", "sigma_b2"),
    [
        *(
            (name, *params)
            for name in ("tanh", "sigmoid", "softsign", "hard_tanh")
            for params in ((0.7, 0.05), (1.5, 0.2), (3.0, 0.5))
        ),
        ("elu", 1.5, 0.2),
        ("selu", 0.8, 0.1),
    ],
)
def test_q_star_matches_plain_iteration(name: str, sigma_w2: float, sigma_b2: float) -> None:
    """The bracketing solver lands where iterating the length map from q0 = 1 goes."""
    act = get_activation(name)
    q, previous = 1.0, math.inf
    for _ in range(5000):
        if abs(q - previous) <= 1e-15 * q:
            break
        previous = q
        q = sigma_w2 * gaussian_expectation(lambda x: act(x) ** 2, q, act.kinks) + sigma_b2
    assert q_star(name, sigma_w2, sigma_b2) == pytest.approx(q, rel=1e-9)


def test_selu_is_self_normalizing() -> None:
    """Klambauer et al. (2017): with σ_w² = 1, σ_b² = 0, q = 1 is the fixed point."""
    assert q_star("selu", 1.0, 0.0, q0=0.3) == pytest.approx(1.0, rel=1e-6)


# ------------------------------------------------------------------------- edge of chaos


def test_tanh_edge_of_chaos() -> None:
    """Schoenholz et al. (2017), Fig. 1: σ_w² ≈ 1.76 at σ_b² = 0.05; σ_w² = 1 at σ_b² = 0."""
    assert critical_sigma_w2("tanh", 0.05) == pytest.approx(1.76, abs=0.02)
    assert critical_sigma_w2("tanh", 0.0) == pytest.approx(1.0, abs=1e-6)
    crit = critical_sigma_w2("tanh", 0.05)
    assert chi1("tanh", crit, 0.05) == pytest.approx(1.0, abs=1e-8)
    assert abs(gradient_depth_scale("tanh", crit, 0.05)) > 1e6


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_every_activation_has_an_edge_of_chaos(name: str) -> None:
    """Runs warning-free for every registered activation; χ₁ crosses 1 at the critical σ_w²."""
    crit = critical_sigma_w2(name, 0.05)
    assert 0.5 < crit < 200
    assert chi1(name, 0.98 * crit, 0.05) < 1 < chi1(name, 1.02 * crit, 0.05)


def test_no_critical_point_raises() -> None:
    with pytest.raises(ValueError, match="chi1 < 1 for all sigma_w2"):
        critical_sigma_w2("sigmoid", 0.05, sigma_w2_max=10.0)


# --------------------------------------------------------------------- gradient predictions


def test_gradient_predictions_are_consistent() -> None:
    c = chi1("tanh", 1.2, 0.05)
    assert 0 < c < 1
    assert grad_norm_ratio("tanh", 1.2, 0.05) == pytest.approx(math.sqrt(c))
    assert gradient_depth_scale("tanh", 1.2, 0.05) == pytest.approx(-1 / math.log(c))
    norms = predicted_grad_norms("tanh", 1.2, 0.05, 6)
    assert norms.shape == (6,)
    np.testing.assert_allclose(norms, np.sqrt(c) ** np.arange(5, -1, -1), rtol=1e-12)
    assert gradient_depth_scale("tanh", 3.0, 0.05) < 0  # chaotic: gradients grow
    np.testing.assert_allclose(predicted_grad_norms("relu", 2.0, 0.0, 30), 1.0, rtol=1e-12)
    assert np.isinf(predicted_grad_norms("relu", 8.0, 0.1, 2000)[0])  # overflow, no warning


def test_argument_errors() -> None:
    with pytest.raises(ValueError, match="sigma_w2 must be a finite number >= 0"):
        q_star("tanh", -1.0, 0.0)
    with pytest.raises(ValueError, match="sigma_b2 must be a finite number >= 0"):
        chi1("tanh", 1.0, math.nan)
    with pytest.raises(ValueError, match="unknown activation 'tanhh'"):
        chi1("tanhh", 1.0, 0.0)
    with pytest.raises(ValueError, match="n_layers must be a positive integer"):
        predicted_grad_norms("tanh", 1.0, 0.0, 0)
    with pytest.raises(RuntimeError, match="no convergence in 3 evaluations"):
        q_star("tanh", 1.5, 0.05, max_iter=3)


# ---------------------------------------------------------------------------- Monte Carlo


def _simulate(
    name: str, sigma_w2: float, sigma_b2: float, width: int = 1000, depth: int = 20
) -> tuple[float, float]:
    """A wide random net (batch 8, q⁰ = 1): mean pre-activation second moment and geometric-mean
    per-layer ‖δˡ‖²/‖δˡ⁺¹‖², both over layers 8..20 (after q has settled)."""
    act, g = get_activation(name), np.random.default_rng(0)
    w_init = get_initializer("normal", std=math.sqrt(sigma_w2 / width))
    assert w_init.sigma_w2(width, width) == pytest.approx(sigma_w2)
    b_init = get_bias_init("normal", std=math.sqrt(sigma_b2))
    a: np.ndarray = g.standard_normal((8, width))
    hs, ws = [], []
    for _ in range(depth):
        ws.append(w_init(width, width, g))
        hs.append(a @ ws[-1] + b_init(width, g))
        a = act(hs[-1])
    delta, log_ratios = g.standard_normal((8, width)), []
    for layer in range(depth - 1, 8, -1):  # δ^{l−1} = (δˡ Wˡᵀ) ⊙ φ′(h^{l−1})
        h = hs[layer - 1]
        new = (delta @ ws[layer].T) * act.grad(h, act(h))
        log_ratios.append(math.log(np.sum(new**2) / np.sum(delta**2)))
        delta = new
    return float(np.mean([np.mean(h**2) for h in hs[8:]])), math.exp(np.mean(log_ratios))


@pytest.mark.parametrize(
    ("name", "sigma_w2", "sigma_b2"),
    [("tanh", 1.5, 0.05), ("tanh", 3.0, 0.1), ("hard_tanh", 1.5, 0.1)],
)
def test_monte_carlo_wide_net(name: str, sigma_w2: float, sigma_b2: float) -> None:
    q_mc, chi_mc = _simulate(name, sigma_w2, sigma_b2)
    assert q_mc == pytest.approx(q_star(name, sigma_w2, sigma_b2), rel=0.05)
    assert chi_mc == pytest.approx(chi1(name, sigma_w2, sigma_b2), rel=0.04)


# ------------------------------------------------------------------------ slopes of ln‖δˡ‖


def test_log_slope_of_a_geometric_sequence_is_exact() -> None:
    """ln(c·rˡ) is linear in l, so the least-squares slope is ln r to rounding."""
    assert log_slope(3.0 * 0.2 ** np.arange(6)) == pytest.approx(math.log(0.2), rel=1e-12)
    assert log_slope([2.0, 2.0]) == 0.0


@pytest.mark.parametrize("bad", [[1.0], [1.0, 0.0, 2.0], [1.0, math.inf], [1.0, math.nan]])
def test_log_slope_is_nan_without_a_fit(bad: list[float]) -> None:
    assert math.isnan(log_slope(bad))


def test_predicted_log_slope() -> None:
    """−½ ln χ₁ = 1/(2ξ_∇): 0 at the edge of chaos, > 0 ordered, < 0 chaotic."""
    assert predicted_log_slope("relu", 2.0, 0.0) == pytest.approx(0.0, abs=1e-12)
    assert predicted_log_slope("relu", 1.0, 0.0) == pytest.approx(0.5 * math.log(2), rel=1e-10)
    xi = gradient_depth_scale("tanh", 1.2, 0.05)
    assert predicted_log_slope("tanh", 1.2, 0.05) == pytest.approx(1 / (2 * xi), rel=1e-12)
    assert predicted_log_slope("tanh", 3.0, 0.05) < 0


@pytest.fixture(scope="module")
def wide_residual_nets() -> list[bpcore.MLP]:
    """4 nets (seeds) of 10 residual layers of width 1000, skips on every hidden layer (the
    input as wide), Xavier weights (σ_w² = 1), biases N(0, 0.1²); tests set the activation."""
    nets = [
        bpcore.MLP(
            [1000] * 11 + [2], residual=True, seed=seed, bias_init=get_bias_init("normal", std=0.1)
        )
        for seed in range(4)
    ]
    assert all(nets[0].skips[:-1]) and nets[0].init.sigma_w2(1000, 1000) == pytest.approx(1.0)
    return nets


@pytest.mark.parametrize(("name", "alpha"), [("tanh", 1.0), ("relu", 0.5), ("sigmoid", 1.0)])
def test_residual_second_moments_match_wide_residual_nets(
    wide_residual_nets: list[bpcore.MLP], name: str, alpha: float
) -> None:
    """The mean of (zˡ)² over batch × units, averaged over the 4 nets, from inputs with entries
    ~ N(0.3, 1) (p⁰ = 1.09, m⁰ = 0.3), against the recursion, layer by layer.  Tolerance: a
    layer's units share its weights, so its q is off by ≈ √(2/width) ≈ 4.5% in one net
    (measured: up to 8% over 12 layers for relu, whose growth compounds it), ≈ 2.3% over 4; 8%
    is 3.5 of those.  The mean terms matter: without them (the recursion for odd φ) relu's q
    would be 4.0 instead of 45 after 12 layers, sigmoid's 4.7 instead of 36."""
    measured = []
    for seed, net in enumerate(wide_residual_nets):
        net.hidden_activations = [get_activation(name)] * 10
        net.residual_scale = alpha
        x = np.random.default_rng(10 + seed).normal(0.3, 1.0, size=(16, 1000))
        measured.append([np.mean(z**2) for z in net._forward(x).zs[:-1]])
    predicted = residual_second_moments(name, 1.0, 0.01, alpha, 10, p0=1.09, m0=0.3)
    np.testing.assert_allclose(np.mean(measured, axis=0), predicted, rtol=0.08)


def test_residual_second_moments_of_a_linear_net_are_geometric() -> None:
    """φ(z) = z: E[φ] = 0, E[φ²] = q, so qˡ⁺¹ = qˡ(1 + α²σ_w²) from q¹ = σ_w² p⁰ + σ_b²."""
    qs = residual_second_moments("identity", 2.0, 0.0, 0.5, 6, p0=1.5, m0=0.7)
    np.testing.assert_allclose(qs, 3.0 * 1.5 ** np.arange(6), rtol=1e-12)
    for kwargs, message in [
        ({"residual_scale": 0.0}, "residual_scale must be a positive finite number"),
        ({"n_layers": 0}, "n_layers must be a positive integer"),
        ({"sigma_w2": -1.0}, "sigma_w2 must be a finite number >= 0"),
    ]:
        args = {"sigma_w2": 1.0, "residual_scale": 1.0, "n_layers": 3} | kwargs
        with pytest.raises(ValueError, match=message):
            residual_second_moments("tanh", sigma_b2=0.0, **args)
