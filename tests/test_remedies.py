"""The remedies in bpcore: normalization (BatchNorm, LayerNorm), residual connections and
gradient clipping — exact gradients, the statistics they promise, and what they do to a deep
sigmoid net's gradient."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest

import bpcore
from bpcore.optim import SGD

pytestmark = pytest.mark.usefixtures("one_blas_thread")

HEADS = {"softmax": "cross_entropy", "sigmoid": "bce", "identity": "mse"}
REMEDIES = [
    (norm, residual)
    for norm, residual in itertools.product([None, "batch", "layer"], [False, True])
    if norm is not None or residual  # the plain MLP: tests/test_mlp.py
]


def batch(head: str, n: int, n_in: int = 3, n_out: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_in))
    y = 0.5 * rng.normal(size=(n, n_out)) if head == "identity" else rng.integers(0, n_out, n)
    return x, y


def remedied_net(norm: str | None, residual: bool, head: str = "softmax", **kwargs):
    """A tiny net [3, 4, 4, 4, 3] (two skips with ``residual``) whose γ, β are away from their
    init (γ = 1, β = 0 would hide a γ or β left out of a formula), α = 0.7 for the same reason."""
    net = bpcore.MLP(
        [3, 4, 4, 4, 3],
        output=head,
        seed=1,
        norm=norm,
        residual=residual,
        residual_scale=0.7,
        bias_init=bpcore.get_bias_init("normal", std=0.3),
        **kwargs,
    )
    rng = np.random.default_rng(2)
    for gamma, beta in zip(net.gammas, net.betas, strict=True):
        gamma[...] = rng.uniform(0.5, 1.5, gamma.shape)
        beta[...] = rng.normal(0.0, 0.3, beta.shape)
    return net


@pytest.mark.parametrize("activation", bpcore.ACTIVATIONS)
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize(("norm", "residual"), REMEDIES)
def test_gradcheck_every_remedy_head_and_activation(
    norm: str | None, residual: bool, head: str, activation: str
) -> None:
    """≤ 1e-7 on 20 random entries of each net (≈ a fifth; every entry type is drawn across the
    combinations).  Conditioning, not tolerance: a norm's x̂ = (z − μ)/σ makes the loss curved
    on the scale σ of a unit, so a unit with small σ puts the stencil's O(h⁴) error above 1e-7
    at h = 1e-3.  The norms do not see the scale of the weights before them (BatchNorm exactly,
    LayerNorm up to the bias), so those are tripled, which makes every σ three times larger
    relative to h; a batch of 16 keeps BatchNorm's σ from the luck of a few examples.  Where a
    relu-like kink forces a small h (round-off ∝ 1/h, e.g. on BatchNorm's ∂L/∂bˡ, exactly 0),
    the check is repeated at h = 3e-4 and the better of the two counts: a wrong gradient fails
    at both."""
    net = remedied_net(norm, residual, head, activation=activation)
    if norm is not None:
        for W in net.weights[:-1]:
            W *= 3.0
    x, y = batch(head, 16)
    check = lambda h: bpcore.gradcheck(net, x, y, HEADS[head], h=h, max_checks=20)  # noqa: E731
    error = check(1e-3)
    if error > 1e-7:
        error = min(error, check(3e-4))
    assert error <= 1e-7


def test_a_wrong_norm_gradient_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gradcheck above fails a backward that treats μ and σ as constants (dz = dx̂/σ)."""
    import bpcore.mlp

    monkeypatch.setattr(bpcore.mlp, "normalize_backward", lambda dx_hat, p, axis: dx_hat / p.std)
    for norm in ("batch", "layer"):
        net = remedied_net(norm, False)
        assert bpcore.gradcheck(net, *batch("softmax", 16), "cross_entropy") > 1e-2


@pytest.mark.parametrize("residual", [False, True])
def test_batchnorm_backward_is_the_per_example_derivative_of_the_batch_loss(
    residual: bool,
) -> None:
    """BatchNorm couples the examples of a batch: nudging example i's input moves μ and σ, so
    every example's loss.  ∂L/∂xᵢ from the backward pass (δ⁰ W⁰ᵀ, one more chain-rule step)
    must equal the finite difference of the whole batch's loss in xᵢ, entry by entry."""
    net = bpcore.MLP([4, 5, 5, 3], activation="tanh", seed=3, norm="batch", residual=residual)
    x, y = batch("softmax", 6, n_in=4)
    _, bp = net.loss_and_grads(x, y, "cross_entropy")
    dL_dx = bp.deltas[0] @ net.weights[0].T
    h = 1e-4
    for i, j in np.ndindex(x.shape):

        def loss_at(offset: float, i: int = i, j: int = j) -> float:
            nudged = x.copy()
            nudged[i, j] += offset
            return net.loss_and_grads(nudged, y, "cross_entropy")[0]

        numeric = (loss_at(-2 * h) - 8 * loss_at(-h) + 8 * loss_at(h) - loss_at(2 * h)) / (12 * h)
        assert dL_dx[i, j] == pytest.approx(numeric, rel=1e-7, abs=1e-11), (i, j)
    # the coupling is real: δ⁰ of the examples left alone changes when one example moves
    moved = x.copy()
    moved[0] += 1.0
    other = net.loss_and_grads(moved, y, "cross_entropy")[1].deltas[0]
    assert np.abs(other[1:] - bp.deltas[0][1:]).max() > 1e-3


@pytest.mark.parametrize(("norm", "axis"), [("batch", 0), ("layer", 1)])
def test_a_norm_at_init_gives_mean_0_and_variance_1(norm: str, axis: int) -> None:
    """At init (γ = 1, β = 0) yˡ = x̂ˡ: per unit over the batch (BatchNorm) or per example over
    the units (LayerNorm), mean 0 and variance 1 to 1e-6, in every hidden layer.  ε shifts the
    variance to σ²/(σ² + ε), so this net takes ε = 1e-12."""
    net = bpcore.MLP([5, 16, 16, 16, 2], activation="relu", seed=0, norm=norm, norm_eps=1e-12)
    x = np.random.default_rng(1).normal(2.0, 3.0, size=(64, 5))
    _, bp = net.loss_and_grads(x, np.zeros(64, dtype=int), "cross_entropy")
    for y in bp.ys[:-1]:
        np.testing.assert_allclose(y.mean(axis=axis), 0.0, atol=1e-6)
        np.testing.assert_allclose(y.var(axis=axis), 1.0, atol=1e-6)


def test_batchnorm_cancels_the_hidden_biases() -> None:
    """z − μ removes any per-unit constant, so ∂L/∂bˡ = Σ_batch δˡ = 0 on every hidden layer
    (round-off: 1e-15 of the weight gradient); the output layer's bias is not normalized."""
    net = bpcore.MLP([3, 8, 8, 3], seed=0, norm="batch", bias_init=0.5)
    _, bp = net.loss_and_grads(*batch("softmax", 16), "cross_entropy")
    for l in range(2):
        assert np.abs(bp.db[l]).max() <= 1e-15 * np.abs(bp.dW[l]).max()
    assert np.abs(bp.db[-1]).max() > 1e-3


def test_running_statistics_converge_to_the_data_statistics() -> None:
    """Training passes on batches of 64 from one distribution, parameters fixed: the running
    mean and variance of the first layer reach z⁰'s mean and variance over the whole data set.
    Tolerance: the running mean is an average of ≈ 2/momentum − 1 = 19 batch means, each with
    std σ/8, so its std is ≈ 0.23·σ/8 ≈ 0.03σ; 0.15σ is 5 of them (the variance likewise)."""
    rng = np.random.default_rng(0)
    x = rng.normal([1.0, -2.0, 0.5], [0.5, 2.0, 1.0], size=(20_000, 3))
    net = bpcore.MLP([3, 8, 8, 2], seed=0, norm="batch", bias_init=0.3)
    running_before = [a.copy() for a in (*net.running_means, *net.running_vars)]
    for start in range(0, 300 * 64, 64):
        _, bp = net.loss_and_grads(x[start : start + 64], np.zeros(64, dtype=int), "cross_entropy")
        assert all(  # loss_and_grads alone never moves them
            np.array_equal(a, b)
            for a, b in zip((*net.running_means, *net.running_vars), running_before, strict=True)
        )
        net.track_running_stats(bp)
        running_before = [a.copy() for a in (*net.running_means, *net.running_vars)]
    z = x @ net.weights[0] + net.biases[0]
    sigma = z.std(axis=0)
    assert np.all(np.abs(net.running_means[0] - z.mean(axis=0)) <= 0.15 * sigma)
    assert np.all(np.abs(net.running_vars[0] - z.var(axis=0)) <= 0.2 * sigma**2)
    # evaluation normalizes with them: the data's hidden units come out ≈ standardized
    fp = net._forward(x)
    np.testing.assert_allclose(fp.ys[0].mean(axis=0), 0.0, atol=0.15)
    np.testing.assert_allclose(fp.ys[0].std(axis=0), 1.0, atol=0.15)


def test_running_statistics_take_the_unbiased_batch_variance_and_evaluation_uses_them() -> None:
    """momentum = 1: one step's running statistics are the batch mean and the unbiased
    variance n/(n − 1)·σ²; ``forward`` then computes, for any batch (one example too),
    softmax(tanh(γ(z − μ_run)/√(σ²_run + ε) + β) W¹ + b¹)."""
    net = bpcore.MLP([3, 5, 2], seed=0, norm="batch", norm_momentum=1.0, norm_eps=1e-3)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(7, 3))
    net.gammas[0][...] = rng.uniform(0.5, 2.0, 5)
    net.betas[0][...] = rng.normal(size=5)
    _, bp = net.loss_and_grads(x, np.zeros(7, dtype=int), "cross_entropy")
    net.track_running_stats(bp)
    z = x @ net.weights[0] + net.biases[0]
    np.testing.assert_allclose(net.running_means[0], z.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(net.running_vars[0], z.var(axis=0, ddof=1), rtol=1e-12)
    x_new = rng.normal(size=(1, 3))
    z_new = x_new @ net.weights[0] + net.biases[0]
    y = net.gammas[0] * (z_new - z.mean(axis=0)) / np.sqrt(z.var(axis=0, ddof=1) + 1e-3)
    logits = np.tanh(y + net.betas[0]) @ net.weights[1] + net.biases[1]
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(net.forward(x_new), expected, rtol=1e-12)


def test_forward_is_the_definition_of_layernorm_and_residual() -> None:
    """[3, 4, 4, 2] with LayerNorm and skips (α = 0.5): a⁰ = tanh(LN(xW⁰ + b⁰)) (3 → 4: no skip),
    a¹ = a⁰ + 0.5·tanh(LN(a⁰W¹ + b¹)), out = softmax(a¹W² + b²), LN(z) = γ(z − mean)/√(var + ε)
    + β over each example's units; the same in training and evaluation."""
    net = bpcore.MLP([3, 4, 4, 2], seed=5, norm="layer", residual=True, residual_scale=0.5)
    rng = np.random.default_rng(6)
    for gamma, beta in zip(net.gammas, net.betas, strict=True):
        gamma[...], beta[...] = rng.uniform(0.5, 2.0, 4), rng.normal(size=4)
    x = rng.normal(size=(5, 3))

    def layer_norm(z: np.ndarray, l: int) -> np.ndarray:
        mean, var = z.mean(axis=1, keepdims=True), z.var(axis=1, keepdims=True)
        return net.gammas[l] * (z - mean) / np.sqrt(var + 1e-5) + net.betas[l]

    a0 = np.tanh(layer_norm(x @ net.weights[0] + net.biases[0], 0))
    a1 = a0 + 0.5 * np.tanh(layer_norm(a0 @ net.weights[1] + net.biases[1], 1))
    logits = a1 @ net.weights[2] + net.biases[2]
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert net.skips == [False, True, False]
    np.testing.assert_allclose(net.forward(x), expected, rtol=1e-12)
    _, bp = net.loss_and_grads(x, np.zeros(5, dtype=int), "cross_entropy")
    np.testing.assert_allclose(bp.activations[-1], expected, rtol=1e-12)


def test_norm_parameters_are_trained_and_in_params_order() -> None:
    net = bpcore.MLP([2, 6, 6, 2], seed=0, norm="layer")
    assert net.n_params == (2 * 6 + 6) + (6 * 6 + 6) + (6 * 2 + 2) + 2 * (6 + 6)
    assert net.params[-4:] == [*net.gammas, *net.betas]
    data = bpcore.make_dataset("moons", n_samples=200, seed=0)
    bpcore.fit(net, data, "cross_entropy", SGD(0.5), batch_size=20, epochs=2)
    assert not np.allclose(net.gammas[0], 1.0) and not np.allclose(net.betas[1], 0.0)
    doubled = [2 * p for p in net.params]
    net.params = doubled
    assert all(p is q for p, q in zip(net.params, doubled, strict=True))


def test_clip_norm_scales_the_whole_gradient_and_counts_clipped_steps() -> None:
    """‖(3, 4)‖ = 5 > 1: the update is −lr·(3, 4)/5; then ‖(0.3, 0.4)‖ = 0.5 ≤ 1: −lr·g."""
    params = [np.zeros(1), np.zeros(1)]
    sgd = SGD(0.1, clip_norm=1.0)
    big = [np.array([3.0]), np.array([4.0])]
    updates = sgd.step(params, big)
    np.testing.assert_allclose(np.concatenate(updates), [-0.06, -0.08], rtol=1e-15)
    assert [g[0] for g in big] == [3.0, 4.0]  # the caller's gradient is left as it was
    assert sgd.clipped_fraction == 1.0
    updates = sgd.step(params, [np.array([0.3]), np.array([0.4])])
    np.testing.assert_allclose(np.concatenate(updates), [-0.03, -0.04], rtol=1e-15)
    assert sgd.clipped_fraction == 0.5
    assert SGD(0.1).clipped_fraction is None


def test_clip_value_bounds_each_component_before_the_norm() -> None:
    sgd = SGD(1.0, clip_value=1.0)
    updates = sgd.step([np.zeros(4)], [np.array([-5.0, 0.2, 3.0, -1.0])])
    np.testing.assert_array_equal(updates[0], [1.0, -0.2, -1.0, 1.0])
    both = SGD(1.0, clip_value=1.0, clip_norm=0.5)  # (−1, 0.2, 1) by value, then to norm 0.5
    (update,) = both.step([np.zeros(3)], [np.array([-5.0, 0.2, 3.0])])
    np.testing.assert_allclose(update, -0.5 * np.array([-1.0, 0.2, 1.0]) / math.sqrt(2.04))


@pytest.mark.parametrize("name", bpcore.OPTIMIZERS)
def test_every_optimizer_takes_clipping(name: str) -> None:
    opt = bpcore.get_optimizer(name, 0.1, clip_norm=1.0, clip_value=2.0)
    opt.step([np.zeros(2)], [np.array([30.0, 40.0])])
    assert opt.clipped_fraction == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"clip_norm": 0.0}, "clip_norm: must be a positive finite number or None"),
        ({"clip_value": -1.0}, "clip_value: must be"),
        ({"clip_norm": math.inf}, "clip_norm: must be"),
    ],
)
def test_bad_clipping_is_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SGD(0.1, **kwargs)


class Steps(bpcore.Callback):
    """Every step's pre-clip gradient, update and clipped fraction."""

    def __init__(self) -> None:
        self.reports: list[bpcore.StepReport] = []

    def wants_step(self, step: int) -> bool:
        return True

    def on_step(self, report: bpcore.StepReport) -> None:
        self.reports.append(report)


def test_the_applied_sgd_update_never_exceeds_lr_times_clip_norm() -> None:
    """A relu net whose minibatch gradients lie on both sides of clip_norm = 1 (‖g‖ from 0.3
    to 4.6): every applied update has ‖ΔW‖ ≤ lr·clip_norm; a step below it is the plain −lr·g;
    the reported clipped fraction counts the steps above it."""
    lr, clip = 0.05, 1.0
    net = bpcore.MLP([2, 32, 32, 32, 2], activation="relu", seed=0, init="he_normal")
    data = bpcore.make_dataset("spirals", n_samples=300, seed=0)
    steps = Steps()
    bpcore.fit(net, data, "cross_entropy", SGD(lr, clip_norm=clip), 16, 3, callbacks=[steps])
    flat = [np.concatenate([g.ravel() for g in r.bp.grads]) for r in steps.reports]
    grad_norms = [np.linalg.norm(g) for g in flat]
    clipped = [g > clip for g in grad_norms]
    assert 0 < sum(clipped) < len(clipped)  # both kinds of step happened
    for report, gradient, was_clipped in zip(steps.reports, flat, clipped, strict=True):
        update = np.concatenate([u.ravel() for u in report.updates])
        assert np.linalg.norm(update) <= lr * clip * (1 + 1e-12)
        if not was_clipped:
            np.testing.assert_allclose(update, -lr * gradient, rtol=1e-12)
        fraction = sum(clipped[: report.step + 1]) / (report.step + 1)
        assert report.clipped_fraction == pytest.approx(fraction)


def test_the_clip_value_bound_holds_in_training() -> None:
    lr, clip = 0.05, 0.01
    net = bpcore.MLP([2, 16, 16, 2], seed=0)
    data = bpcore.make_dataset("moons", n_samples=200, seed=0)
    steps = Steps()
    bpcore.fit(net, data, "cross_entropy", SGD(lr, clip_value=clip), 16, 1, callbacks=[steps])
    assert any(max(np.abs(g).max() for g in r.bp.grads) > clip for r in steps.reports)
    for report in steps.reports:
        assert max(np.abs(u).max() for u in report.updates) <= lr * clip * (1 + 1e-12)


def test_residual_connections_keep_a_deep_sigmoid_net_s_gradient() -> None:
    """50 sigmoid layers of width 8 (Xavier), step 0 on a spirals batch: ‖∂L/∂W‖ of the first
    hidden layer over the last.  Plain, each layer multiplies δ by f′ ≤ 1/4 and ‖W‖ ≈ 1, so
    the ratio is ≈ 4⁻⁴⁹ ≈ 1e-30 (measured 1e-31 … 1e-32 over seeds 0-2); the skips give δ an
    identity path, ∂aˡ/∂aˡ⁻¹ = I + αWf′, and the ratio stays within a few orders of 1
    (measured 0.05 … 200).  Bounds: < 1e-20 and > 1e-4, at least 16 orders of magnitude apart."""
    data = bpcore.make_dataset("spirals", seed=0)
    x, y = data.x_train[:64], data.y_train[:64]
    ratios = {}
    for residual in (False, True):
        net = bpcore.MLP([2, *[8] * 50, 2], activation="sigmoid", seed=0, residual=residual)
        _, bp = net.loss_and_grads(x, y, "cross_entropy")
        ratios[residual] = np.linalg.norm(bp.dW[0]) / np.linalg.norm(bp.dW[-2])
    assert ratios[False] < 1e-20 and ratios[True] > 1e-4


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_float32_trains_without_warnings(norm: str) -> None:
    """Every array stays float32 (γ, β, the running statistics, every gradient) and numpy
    raises nothing — forward, backward, clipped updates, evaluation."""
    net = bpcore.MLP([2, 16, 16, 16, 2], seed=0, dtype="float32", norm=norm, residual=True)
    data = bpcore.make_dataset("spirals", n_samples=300, seed=0)
    optimizer = bpcore.get_optimizer("adam", 0.01, clip_norm=1.0, clip_value=0.5)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        _, bp = net.loss_and_grads(data.x_train[:32], data.y_train[:32], "cross_entropy")
        assert {g.dtype for g in bp.grads} == {np.dtype("float32")}
        result = bpcore.fit(net, data, "cross_entropy", optimizer, 32, 3)
        net.forward(data.x_val)
        bpcore.evaluate(net, data.x_val, data.y_val, "cross_entropy")
    assert result.diverged_at_step is None
    arrays = [*net.params, *net.running_means, *net.running_vars]
    assert {a.dtype for a in arrays} == {np.dtype("float32")}


def test_batchnorm_refuses_a_batch_of_one_with_a_clear_message() -> None:
    net = bpcore.MLP([2, 4, 2], norm="batch")
    x, y = batch("softmax", 5, n_in=2, n_out=2)
    message = r"BatchNorm trains on batches of ≥ 2 examples \(the variance of 1 example is 0\)"
    with pytest.raises(ValueError, match=f"^x: {message}"):
        net.loss_and_grads(x[:1], y[:1], "cross_entropy")
    data = bpcore.make_dataset("moons", n_samples=100, seed=0)  # 80 training examples
    with pytest.raises(ValueError, match=f"^batch_size: {message}"):
        bpcore.fit(net, data, "cross_entropy", SGD(0.1), batch_size=1)
    with pytest.raises(ValueError, match=r"^batch_size: 80 examples leave a last batch of 1: "):
        bpcore.fit(net, data, "cross_entropy", SGD(0.1), batch_size=79)
    bpcore.fit(net, data, "cross_entropy", SGD(0.1), batch_size=78)  # last batch of 2
    assert net.forward(x[:1]).shape == (1, 2)  # evaluation: the running statistics
    layer = bpcore.MLP([2, 4, 2], norm="layer")
    layer.loss_and_grads(x[:1], y[:1], "cross_entropy")  # LayerNorm: one example is fine


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"norm": "group"}, "norm: must be None or one of batch, layer, got 'group'"),
        ({"residual_scale": 0.0}, "residual_scale: must be a positive finite number"),
        ({"norm_eps": -1e-5}, "norm_eps: must be a positive finite number"),
        ({"norm_momentum": 0.0}, r"norm_momentum: must be in \(0, 1\]"),
        ({"norm_momentum": 1.5}, r"norm_momentum: must be in \(0, 1\]"),
    ],
)
def test_bad_remedy_arguments_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bpcore.MLP([2, 4, 4, 2], **kwargs)


def test_residual_needs_a_hidden_layer_of_equal_widths() -> None:
    with pytest.raises(ValueError, match=r"residual: no hidden layer .* in \[2, 8, 4, 2\]"):
        bpcore.MLP([2, 8, 4, 2], residual=True)
    assert bpcore.MLP([2, 8, 8, 4, 4, 2], residual=True).skips == [False, True, False, True, False]


def test_the_plain_net_has_no_remedy() -> None:
    net = bpcore.MLP([2, 8, 8, 2])
    assert (net.gammas, net.betas, net.running_means, net.skips) == ([], [], [], [False] * 3)
    _, bp = net.loss_and_grads(*batch("softmax", 4, n_in=2, n_out=2), "cross_entropy")
    assert bp.ys == bp.zs and bp.hs == bp.activations and bp.norms == []


def test_same_seed_same_training_with_every_remedy() -> None:
    data = bpcore.make_dataset("spirals", n_samples=300, seed=0)

    def trained() -> bpcore.MLP:
        net = bpcore.MLP([2, 16, 16, 2], seed=3, norm="batch", residual=True)
        optimizer = bpcore.get_optimizer("momentum", 0.1, clip_norm=0.5)
        bpcore.fit(net, data, "cross_entropy", optimizer, 32, 2, seed=1)
        return net

    first, second = trained(), trained()
    for a, b in zip(
        [*first.params, *first.running_vars], [*second.params, *second.running_vars], strict=True
    ):
        np.testing.assert_array_equal(a, b)
