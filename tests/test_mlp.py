"""The network, losses and gradcheck: exact gradients, stable numerics, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

import bpcore

HEAD_LOSSES = [
    ("softmax", "cross_entropy"),
    ("softmax", "mse"),
    ("sigmoid", "bce"),
    ("sigmoid", "mse"),
    ("identity", "mse"),
]


def random_batch(head: str, batch: int = 6, n_in: int = 3, n_out: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, n_in))
    y = rng.normal(size=(batch, n_out)) if head == "identity" else rng.integers(0, n_out, batch)
    return x, y


@pytest.mark.parametrize("activation", bpcore.ACTIVATIONS)
@pytest.mark.parametrize(("head", "loss"), HEAD_LOSSES)
def test_gradcheck_every_activation_and_head(activation: str, head: str, loss: str) -> None:
    net = bpcore.MLP(
        [3, 6, 5, 4, 3],  # depth 3 (hidden layers), 4 weight matrices
        activation=activation,
        output=head,
        seed=1,
        bias_init=bpcore.get_bias_init("normal", std=0.3),
    )
    x, y = random_batch(head)
    assert bpcore.gradcheck(net, x, y, loss) <= 1e-7


def test_gradcheck_mixed_activations_and_subset() -> None:
    net = bpcore.MLP([4, 40, 30, 20, 2], activation=["tanh", "relu", "gelu"], seed=2)
    x, y = random_batch("softmax", n_in=4, n_out=2)
    assert net.n_params > 2000  # so only a random subset is checked
    assert bpcore.gradcheck(net, x, y, "cross_entropy", max_checks=300) <= 1e-7


def test_gradcheck_detects_a_wrong_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deliberately broken derivative (tanh′ = 1 − a instead of 1 − a²) must be caught."""
    net = bpcore.MLP([3, 5, 5, 3], activation="tanh", seed=0)
    monkeypatch.setattr(type(net.hidden_activations[0]), "grad", lambda self, z, a: 1 - a)
    assert bpcore.gradcheck(net, *random_batch("softmax"), "cross_entropy") > 1e-2


def test_shapes_and_public_attributes() -> None:
    net = bpcore.MLP([4, 7, 5, 3], activation="relu", output="softmax")
    assert [w.shape for w in net.weights] == [(4, 7), (7, 5), (5, 3)]
    assert [b.shape for b in net.biases] == [(7,), (5,), (3,)]
    x, y = random_batch("softmax", batch=9, n_in=4)
    assert net.forward(x).shape == (9, 3)
    np.testing.assert_allclose(net.forward(x).sum(axis=1), 1.0)
    _, bp = net.loss_and_grads(x, y, "cross_entropy")
    for l, (W, b) in enumerate(zip(net.weights, net.biases, strict=True)):
        assert bp.dW[l].shape == W.shape and bp.db[l].shape == b.shape
        assert bp.deltas[l].shape == bp.zs[l].shape == bp.activations[l].shape == (9, W.shape[1])
    np.testing.assert_array_equal(bp.activations[-1], net.forward(x))
    np.testing.assert_array_equal(bp.activations[0], np.maximum(bp.zs[0], 0))


def test_deltas_are_the_loss_gradient_with_respect_to_z() -> None:
    """δˡ = ∂L/∂zˡ for every layer, against central differences of the batch-mean loss
    recomputed from zˡ upwards with plain numpy (tanh hidden layers, softmax cross-entropy)."""
    net = bpcore.MLP([3, 5, 4, 3], activation="tanh", seed=3)
    x, y = random_batch("softmax", batch=8)
    _, bp = net.loss_and_grads(x, y, "cross_entropy")

    def loss_from(l: int, z: np.ndarray) -> float:
        for W, b in zip(net.weights[l + 1 :], net.biases[l + 1 :], strict=True):
            z = np.tanh(z) @ W + b
        log_softmax = z - z.max(axis=1, keepdims=True)
        log_softmax -= np.log(np.exp(log_softmax).sum(axis=1, keepdims=True))
        return float(-log_softmax[np.arange(len(y)), y].mean())

    h = 1e-6
    for l, z in enumerate(bp.zs):
        numeric = np.zeros_like(z)
        for index in np.ndindex(z.shape):
            step = np.zeros_like(z)
            step[index] = h
            numeric[index] = (loss_from(l, z + step) - loss_from(l, z - step)) / (2 * h)
        np.testing.assert_allclose(bp.deltas[l], numeric, rtol=0, atol=1e-9)


def test_batch_gradient_is_mean_of_example_gradients() -> None:
    net = bpcore.MLP([3, 6, 3], activation="sigmoid", output="sigmoid", seed=4)
    x, y = random_batch("sigmoid", batch=5)
    _, batch_bp = net.loss_and_grads(x, y, "bce")
    singles = [net.loss_and_grads(x[i : i + 1], y[i : i + 1], "bce")[1] for i in range(5)]
    for l in range(net.n_layers):
        mean = np.mean([s.dW[l] for s in singles], axis=0)
        np.testing.assert_allclose(batch_bp.dW[l], mean, atol=1e-15)


def test_weights_are_writable_in_place() -> None:
    net = bpcore.MLP([2, 3, 2], output="identity")
    x = np.ones((1, 2))
    for W, b in zip(net.weights, net.biases, strict=True):
        W[...] = 0.0
        b[...] = 0.0
    net.biases[-1][:] = [1.5, -2.0]
    np.testing.assert_array_equal(net.forward(x), [[1.5, -2.0]])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_losses_stable_for_huge_logits(dtype: str) -> None:
    """Log-sum-exp and logits-form BCE: finite losses and deltas, no overflow warnings."""
    for head, loss in [("softmax", "cross_entropy"), ("sigmoid", "bce"), ("softmax", "mse")]:
        net = bpcore.MLP([2, 3], output=head, dtype=dtype)
        net.weights[0][...] = [[1e4, -1e4, 0.0], [-1e4, 1e4, 5e3]]
        value, bp = net.loss_and_grads([[1.0, -1.0], [-1.0, 1.0]], [1, 0], loss)
        assert np.isfinite(value) and (value > 1e3 or loss == "mse")
        assert all(np.isfinite(d).all() and d.dtype == np.dtype(dtype) for d in bp.deltas)


def test_known_loss_values() -> None:
    net = bpcore.MLP([2, 4], output="softmax")
    net.weights[0][...] = 0.0
    x = np.ones((3, 2))
    assert net.loss_and_grads(x, [0, 1, 3], "cross_entropy")[0] == pytest.approx(np.log(4))
    assert net.loss_and_grads(x, [0, 1, 3], "mse")[0] == pytest.approx(
        0.5 * (0.75**2 + 3 * 0.25**2)
    )
    sig = bpcore.MLP([2, 1], output="sigmoid")
    sig.weights[0][...] = 0.0
    assert sig.loss_and_grads(x, [0, 1, 1], "bce")[0] == pytest.approx(np.log(2))
    one_hot = np.eye(4)[[0, 1, 3]]
    assert net.loss_and_grads(x, one_hot, "cross_entropy")[0] == pytest.approx(np.log(4))


def test_float32_net_stays_float32() -> None:
    net = bpcore.MLP([3, 8, 8, 3], activation="gelu", dtype="float32")
    x, y = random_batch("softmax")
    value, bp = net.loss_and_grads(x, y, "cross_entropy")
    arrays = [*net.weights, *net.biases, *bp.dW, *bp.db, *bp.deltas, *bp.zs]
    assert all(a.dtype == np.float32 for a in arrays)
    net64 = bpcore.MLP([3, 8, 8, 3], activation="gelu", dtype="float64")
    assert value == pytest.approx(net64.loss_and_grads(x, y, "cross_entropy")[0], rel=1e-5)


def test_selu_self_normalises_through_30_layers() -> None:
    """Klambauer et al. 2017: with lecun_normal, activations keep mean ≈ 0 and variance ≈ 1."""
    net = bpcore.MLP([256] * 31 + [10], activation="selu", init="lecun_normal", seed=0)
    x = np.random.default_rng(0).standard_normal((512, 256))
    _, bp = net.loss_and_grads(x, np.zeros(512, dtype=int), "cross_entropy")
    hidden = bp.activations[:-1]
    assert len(hidden) == 30
    assert max(abs(a.mean()) for a in hidden) < 0.1
    assert all(0.85 < a.var() < 1.15 for a in hidden)


def test_determinism_of_training() -> None:
    def train(seed: int) -> list[np.ndarray]:
        data = bpcore.make_dataset("moons", n_samples=200, seed=1)
        net = bpcore.MLP([2, 16, 16, 2], activation="relu", seed=seed)
        opt = bpcore.get_optimizer("adam", lr=0.01)
        bpcore.fit(net, data, "cross_entropy", opt, batch_size=16, epochs=3, seed=seed)
        return net.params

    first, again, other = train(0), train(0), train(1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


BAD_CONSTRUCTORS = [
    (dict(layer_sizes=[3]), "layer_sizes"),
    (dict(layer_sizes=[3, 0, 2]), "layer_sizes"),
    (dict(layer_sizes=[3, -4, 2]), "layer_sizes"),
    (dict(layer_sizes=[3, 2.5, 2]), "layer_sizes"),
    (
        dict(layer_sizes=[3, 4, 2], activation="swishy"),
        "unknown activation 'swishy'; known: identity",
    ),
    (dict(layer_sizes=[3, 4, 4, 2], activation=["relu"]), "activation"),
    (dict(layer_sizes=[3, 4, 2], output="tanh"), "unknown output head 'tanh'; known: softmax"),
    (dict(layer_sizes=[3, 4, 2], init="glorot"), "unknown init"),
    (dict(layer_sizes=[3, 4, 2], dtype="float16"), "dtype"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_CONSTRUCTORS)
def test_bad_constructor_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bpcore.MLP(**kwargs)


def test_bad_call_arguments() -> None:
    net = bpcore.MLP([3, 4, 3], output="softmax")
    x, y = random_batch("softmax", batch=4)
    cases = [
        (lambda: net.forward(np.ones((4, 2))), "x: expected shape"),
        (lambda: net.forward(np.ones(3)), "x: expected shape"),
        (lambda: net.forward(np.full((2, 3), np.nan)), "x: must be finite"),
        (lambda: net.forward(np.full((2, 3), np.inf)), "x: must be finite"),
        (lambda: net.loss_and_grads(x, y, "hinge"), "unknown loss 'hinge'; known: mse, bce"),
        (lambda: net.loss_and_grads(x, y, "bce"), "loss 'bce' needs output head sigmoid"),
        (lambda: net.loss_and_grads(x, y[:3], "cross_entropy"), "y: has 3 rows"),
        (
            lambda: net.loss_and_grads(x, y + 5, "cross_entropy"),
            r"y: integer labels must lie in \[0, 3\)",
        ),
        (lambda: net.loss_and_grads(x, np.ones((4, 2)), "mse"), "y: expected"),
        (lambda: net.loss_and_grads(x, np.full((4, 3), np.nan), "mse"), "y: must be finite"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    bce_net = bpcore.MLP([3, 4, 1], output="sigmoid")
    with pytest.raises(ValueError, match="loss 'cross_entropy' needs output head softmax"):
        bce_net.loss_and_grads(x, y % 2, "cross_entropy")


def test_the_readme_backward_pass_table_shows_the_code_of_mlp_py() -> None:
    """Every code span in the README's backward-pass table is a line (part) of bpcore/mlp.py."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    section = readme.split("## The backward pass", 1)[1].split("\n## ", 1)[0]
    table = section.split("|---", 1)[1].split("\n\n", 1)[0]  # the rows below the header
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    spans = [span for row in rows for span in re.findall(r"`([^`]+)`", row.rsplit(" | ", 1)[1])]
    source = (root / "bpcore" / "mlp.py").read_text()
    assert len(spans) >= 8
    assert [span for span in spans if span not in source] == []


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"norm": "layer", "residual": True}, {"norm": "batch"}],
    ids=["plain", "layer-norm-residual", "batch-norm"],
)
def test_evaluation_keeps_the_output_layer_only_and_computes_it_row_by_row(kwargs: dict) -> None:
    """``forward`` and ``evaluate`` free the hidden layers' arrays as they go: the output is
    the full pass's, and each row's is what the row alone gives (evaluation is per example:
    BatchNorm uses its running statistics)."""
    rng = np.random.default_rng(0)
    net = bpcore.MLP([3, 16, 16, 16, 4], activation="tanh", seed=1, **kwargs)
    x, y = rng.normal(size=(50, 3)), rng.integers(0, 4, 50)
    lean, full = net._forward(x, keep=False), net._forward(x)
    kept = [lean.zs, lean.ys, lean.hs, lean.activations]
    assert [len(arrays) for arrays in kept] == [1, 1, 1, 1] and not lean.norms
    np.testing.assert_array_equal(lean.activations[-1], full.activations[-1])
    rows = np.concatenate([net.forward(x[i : i + 1]) for i in range(len(x))])
    np.testing.assert_allclose(net.forward(x), rows, rtol=1e-12, atol=1e-15)
    loss, accuracy = bpcore.evaluate(net, x, y, "cross_entropy")
    p = rows[np.arange(len(y)), y]
    assert loss == pytest.approx(-np.mean(np.log(p)), rel=1e-12)
    assert accuracy == np.mean(rows.argmax(axis=1) == y)
