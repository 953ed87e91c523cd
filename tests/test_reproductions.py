"""The papers' quantitative claims, measured at small size on the digits data at initialization.

Each test states where its tolerance comes from.  Widths are small (30 … 256), so finite-width
fluctuations are the main error: a layer's squared norm is a sum over n units, so the per-layer
ratio of two of them fluctuates by O(1/√n); tests average log-ratios over layers and seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import bpcore
from bpcore import theory
from bpcore.inits import NormalBias
from bpcore.noise_scale import noise_scale
from experiments.diagnostics.recorder import DiagnosticsRecorder
from experiments.diagnostics.theory import mean_field_inputs, slope_metrics, theory_callbacks

pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture(scope="module")
def digits() -> bpcore.Dataset:
    return bpcore.make_dataset("digits")


def _backprop(net: bpcore.MLP, data: bpcore.Dataset, n: int, loss: str) -> bpcore.Backprop:
    return net.loss_and_grads(data.x_train[:n], data.y_train[:n], loss)[1]


def _geo_mean_ratio(values: np.ndarray) -> float:
    """exp(mean ln(vₗ₊₁/vₗ)) over consecutive entries (the last axis), all rows together."""
    return math.exp(float(np.mean(np.diff(np.log(values), axis=-1))))


# ----------------------------------------------------------------- Nielsen, NNDL chapter 5

NIELSEN_BOOK = {2: [0.07, 0.31], 3: [0.012, 0.060, 0.283]}  # MNIST, ‖∂C/∂bˡ‖ per hidden layer


def _nielsen_norms(depth: int, digits: bpcore.Dataset, seeds: int = 8) -> np.ndarray:
    """‖∂C/∂bˡ‖ of the gradient averaged over 1000 images, per hidden layer, one row a seed."""
    rows = []
    for seed in range(seeds):
        sizes = [digits.n_features, *[30] * depth, 10]
        net = bpcore.MLP(
            sizes, "sigmoid", "sigmoid", "lecun_normal", seed, "float64", NormalBias(std=1.0)
        )
        bp = _backprop(net, digits, 1000, "bce")
        rows.append([np.linalg.norm(b) for b in bp.db[:-1]])
    return np.array(rows)


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_nielsen_ratio_per_hidden_layer(depth: int, digits: bpcore.Dataset) -> None:
    """Each hidden layer learns ≈ 5× slower than the one above (the book: 0.07/0.31 = 0.23,
    0.012/0.060 = 0.20, 0.060/0.283 = 0.21).  Mean field: √χ₁ = 0.205 for sigmoid at σ_w² = 1,
    σ_b² = 1.  Tolerance ±20%: width 30 makes one layer's ratio fluctuate by ~1/√30 ≈ 18%; the
    geometric mean over 8 seeds (and the layers) cuts that to ≲ 7%, and layer 1 sees inputs
    with q⁰ ≠ q* (seen: 0.19 … 0.21)."""
    ratio = _geo_mean_ratio(_nielsen_norms(depth, digits)[:, ::-1])  # top layer first
    assert theory.grad_norm_ratio("sigmoid", 1.0, 1.0) == pytest.approx(0.205, abs=0.001)
    assert ratio == pytest.approx(0.205, rel=0.2)


@pytest.mark.parametrize("depth", [2, 3])
def test_nielsen_magnitudes_next_to_the_book(depth: int, digits: bpcore.Dataset) -> None:
    """The seed-averaged norms are within a factor 1.4 of the book's MNIST numbers (seen:
    0.069, 0.347 and 0.012, 0.062, 0.328): the top hidden layer's δ is set by the 10 sigmoid
    outputs (≈ 0.5 − y each at init) on both data sets; 8×8 standardized digits vs 28×28 MNIST
    pixels in [0, 1] change the first layer's q and the book shows one seed."""
    measured = _nielsen_norms(depth, digits).mean(axis=0)
    np.testing.assert_array_less(np.abs(np.log(measured / NIELSEN_BOOK[depth])), math.log(1.4))


# ---------------------------------------------------------------------- Glorot & Bengio 2010


def _delta_sq(net: bpcore.MLP, digits: bpcore.Dataset) -> np.ndarray:
    """Per hidden layer, the batch mean of ‖δˡ‖² per example (input side first)."""
    bp = _backprop(net, digits, 500, "cross_entropy")
    return np.array([np.mean(np.sum(d * d, axis=1)) for d in bp.deltas[:-1]])


def test_glorot_bengio_backpropagated_variance(digits: bpcore.Dataset) -> None:
    """Glorot & Bengio eq. 14: going down one layer, Var[∂C/∂s] changes by n Var(W) · E[f′²].
    tanh, 5 hidden layers of 256: the standard init U[±1/√n] (n Var W = 1/3) shrinks it by
    ≈ 1/3 per layer (E[tanh′²] < 1 pulls it below, to 0.27 … 0.30 seen); the normalized init
    (n Var W = 1 between the hidden layers) loses only E[tanh′²] ≈ 0.7 … 0.8 per layer (q
    drifts slowly to 0 from ≈ 0.5; seen 0.29 and 0.76).  Tolerances: those E[tanh′²] ranges
    plus ±5% for width 256 and 3 seeds."""
    ratios = {}
    for init in ("uniform", "xavier_uniform"):
        rows = [
            _delta_sq(bpcore.MLP([64, *[256] * 5, 10], "tanh", "softmax", init, s), digits)
            for s in range(3)
        ]
        ratios[init] = _geo_mean_ratio(np.array(rows)[:, ::-1])
    assert 0.22 < ratios["uniform"] < 1 / 3 * 1.05
    assert 0.65 < ratios["xavier_uniform"] < 1.05


# ------------------------------------------------------------------------- He et al. 2015


def _second_moments(init: str, activation: str, digits: bpcore.Dataset, depth: int) -> np.ndarray:
    """E[(aˡ)²] per hidden layer of a width-256 net on 256 digits."""
    net = bpcore.MLP([64, *[256] * depth, 10], activation, "softmax", init, 0)
    bp = _backprop(net, digits, 256, "cross_entropy")
    return np.array([np.mean(a * a) for a in bp.activations[:-1]])


def test_he_init_keeps_relu_second_moment_xavier_halves_it(digits: bpcore.Dataset) -> None:
    """He et al.: in a 30-layer ReLU net, xavier (σ_w² = 1 at equal widths) halves E[a²] per
    layer, he_normal (σ_w² = 2) keeps it.  Tolerance ±10% on the per-layer factor: a layer's
    factor fluctuates by ~√(5/256) ≈ 14% at width 256, the geometric mean over 29 layers by
    ~3%; finite width also biases ln(factor) by −Var/2 ≈ −1%."""
    xavier = _geo_mean_ratio(_second_moments("xavier_normal", "relu", digits, 30))
    he = _geo_mean_ratio(_second_moments("he_normal", "relu", digits, 30))
    assert xavier == pytest.approx(0.5, rel=0.1)
    assert he == pytest.approx(1.0, rel=0.1)


def test_he_net_trains_where_the_xavier_net_stalls_at_ln_10() -> None:
    """He et al. / docs/reproductions.md: the he_depth30 preset's net (30 ReLU layers of 64,
    SGD lr 0.01, batch 32) stays at the uniform guess's loss ln 10 with xavier (5 seeds, 20
    epochs: 2.30) and trains with he_normal.  After 5 epochs, seeds 0 and 1: xavier 2.3015 and
    2.3017, he 1.37 and 1.94; the bounds sit between."""
    data = bpcore.make_dataset("digits", test_fraction=0.2)
    for seed in (0, 1):
        losses = {}
        for init in ("xavier_normal", "he_normal"):
            net = bpcore.MLP([64, *[64] * 30, 10], "relu", "softmax", init, seed)
            sgd = bpcore.get_optimizer("sgd", 0.01)
            bpcore.fit(net, data, "cross_entropy", sgd, 32, epochs=5, seed=seed)
            losses[init] = bpcore.evaluate(net, data.x_train, data.y_train, "cross_entropy")[0]
        assert losses["xavier_normal"] == pytest.approx(math.log(10), abs=0.01)
        assert losses["he_normal"] < 2.1


def test_edge_of_chaos_map_nets_train_below_six_xi_and_not_above() -> None:
    """Schoenholz et al. / docs/reproductions.md (``edge_of_chaos_map``): tanh at σ_b² = 0.05,
    SGD lr 0.01, batch 32, digits.  Depth 8 at σ_w² = 1.76 (6|ξ_∇| ≈ 29000) trains; depth 32 at
    σ_w² = 1 (6|ξ_∇| ≈ 22, below the depth) stays near chance (10%).  Width 32, 3 epochs,
    seed 0: seen 57% and 7.8%; the bounds sit between."""
    data = bpcore.make_dataset("digits", test_fraction=0.2)
    accuracy = {}
    for sigma_w2, depth in ((1.76, 8), (1.0, 32)):
        assert (depth < 6 * abs(theory.gradient_depth_scale("tanh", sigma_w2, 0.05))) == (
            sigma_w2 > 1.5
        )
        init = bpcore.get_initializer("lecun_normal", gain=math.sqrt(sigma_w2))
        sizes = [64, *[32] * depth, 10]
        net = bpcore.MLP(sizes, "tanh", "softmax", init, 0, bias_init=NormalBias(std=0.05**0.5))
        sgd = bpcore.get_optimizer("sgd", 0.01)
        bpcore.fit(net, data, "cross_entropy", sgd, 32, epochs=3, seed=0)
        accuracy[sigma_w2] = bpcore.evaluate(net, data.x_val, data.y_val, "cross_entropy")[1]
    assert accuracy[1.76] > 0.4 and accuracy[1.0] < 0.2, accuracy


# --------------------------------------------------------------------- Klambauer et al. 2017


def test_selu_self_normalizes_relu_and_tanh_do_not(digits: bpcore.Dataset) -> None:
    """SELU + lecun_normal: every layer of 32 keeps mean ≈ 0, variance ≈ 1 (the fixed point
    of the length map).  Tolerances: |mean| < 0.1, var in [0.8, 1.2] for every layer, since
    one layer's variance fluctuates by ~√(2/256) ≈ 9% and the first layers still converge
    (seen for seeds 0 … 2: |mean| ≤ 0.021, var 0.86 … 1.05);
    relu (χ₁ = 1/2) and tanh (q* = 0) at the same init have lost > 90% of it by layer 32."""
    net = bpcore.MLP([64, *[256] * 32, 10], "selu", "softmax", "lecun_normal", 0)
    acts = _backprop(net, digits, 256, "cross_entropy").activations[:-1]
    means = np.array([a.mean() for a in acts])
    variances = np.array([a.var() for a in acts])
    assert np.max(np.abs(means)) < 0.1
    assert variances.min() > 0.8 and variances.max() < 1.2
    for other in ("relu", "tanh"):
        assert _second_moments("lecun_normal", other, digits, 32)[-1] < 0.1


# ----------------------------------------------------------- Schoenholz et al. 2017: χ₁


@pytest.mark.parametrize("sigma_w2", [0.5, 1.5, 2.5, 4.0])
def test_edge_of_chaos_per_layer_gradient_growth(sigma_w2: float, digits: bpcore.Dataset) -> None:
    """tanh, σ_b² = 0.05, 24 hidden layers of 256: the per-layer factor of the per-example
    ‖δˡ‖ over layers 6 … 23 (after q has settled) is √χ₁ within 2%.  Seen: within 0.4% for
    seeds 0 … 2 at every σ_w² here; the bound allows 5× that for other seeds and BLAS builds
    (the product of 18 per-layer factors, each off by O(1/√(256 · 500)) plus the weights'
    own O(1/256) spread)."""
    init = bpcore.get_initializer("lecun_normal", gain=math.sqrt(sigma_w2))
    bias = NormalBias(std=math.sqrt(0.05))
    net = bpcore.MLP([64, *[256] * 24, 10], "tanh", "softmax", init, 0, "float64", bias)
    factor = math.sqrt(_geo_mean_ratio(_delta_sq(net, digits)[::-1][1:19]))
    assert factor == pytest.approx(theory.grad_norm_ratio("tanh", sigma_w2, 0.05), rel=0.02)


@pytest.mark.parametrize("sigma_w2", [1.5, 3.0])
def test_logged_slope_matches_mean_field(sigma_w2: float, digits: bpcore.Dataset) -> None:
    """The logged theory/measured_slope (least squares of ln‖∂L/∂bˡ‖ of a 32-example
    minibatch) against theory/predicted_slope = −½ ln χ₁, wide tanh net (20 × 256), σ_b² =
    0.05.  Tolerance 0.03 in slope (3% per layer): the edge_of_chaos sweep at width 128 lands
    within 0.02 away from σ_w² ≈ 1 with σ_b² = 0 (where q* = 0 is approached like 1/l); at
    width 256, seeds 0 … 2 are off by 0.006 … 0.022 (the minibatch mean of δ adds noise)."""
    init = bpcore.get_initializer("lecun_normal", gain=math.sqrt(sigma_w2))
    bias = NormalBias(std=math.sqrt(0.05))
    net = bpcore.MLP([64, *[256] * 20, 10], "tanh", "softmax", init, 0, "float64", bias)
    inputs = mean_field_inputs(net)
    assert inputs is not None
    norms = [float(np.linalg.norm(b)) for b in _backprop(net, digits, 32, "cross_entropy").db]
    metrics = slope_metrics(*inputs, norms[:-1])
    assert metrics["theory/measured_slope"] == pytest.approx(
        metrics["theory/predicted_slope"], abs=0.03
    )


# ------------------------------------------------------------------ McCandlish et al. 2018


def test_noise_scale_of_a_real_net_matches_per_example_gradients() -> None:
    """The logged |G_B|², |G_n|² at a frozen init (lr 1e-12), through bpcore.noise_scale, give
    tr(Σ)/|G|² of the per-example gradients computed one by one.  Minibatches are drawn
    without replacement from n examples, so the two-batch estimator's tr(Σ) is the covariance
    with the 1/(n − 1) normalization.  Tolerance: 4 standard errors of the step average."""
    data = bpcore.make_dataset("spirals", n_samples=200)
    net = bpcore.MLP([2, 16, 16, 2], "tanh", "softmax", "xavier_normal", 0)
    per_example = np.array(
        [
            np.concatenate([g.ravel() for g in bp.grads])
            for bp in (
                net.loss_and_grads(x[None], y[None], "cross_entropy")[1]
                for x, y in zip(data.x_train, data.y_train)
            )
        ]
    )
    g = per_example.mean(axis=0)
    trace = np.sum((per_example - g) ** 2) / (len(per_example) - 1)
    recorder = DiagnosticsRecorder(1)
    theory = theory_callbacks(net, data, "cross_entropy", recorder.record, full_gradient_every=1)
    sgd = bpcore.get_optimizer("sgd", 1e-12)
    bpcore.fit(net, data, "cross_entropy", sgd, 8, epochs=30, callbacks=[recorder, *theory])
    small = recorder.history.series("noise/grad_sq_small")[1]
    big = recorder.history.series("noise/grad_sq_big")[1]
    est = noise_scale(small, big, 8, len(data.x_train))
    se_trace = np.std((small - big) / (1 / 8 - 1 / len(data.x_train))) / math.sqrt(len(small))
    assert big[0] == pytest.approx(g @ g, rel=1e-6)
    assert abs(est.trace_sigma - trace) < 4 * se_trace
    assert est.b_simple == pytest.approx(trace / (g @ g), rel=4 * se_trace / trace)
