"""bpcore against an independent per-neuron implementation of the seed article's algorithm.

The reference below is written the way the article writes it: a network is a list of layers,
each a list of neurons with ``weights`` (bias last), ``output`` and ``delta``; plain Python floats,
one neuron at a time, no numpy.  Minibatch gradients are the mean of per-example gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

import bpcore

Transfer = tuple[Callable[[float], float], Callable[[float], float]]  # f(z), f'(output)
TRANSFERS: dict[str, Transfer] = {
    "sigmoid": (lambda z: 1 / (1 + math.exp(-z)), lambda out: out * (1 - out)),
    "tanh": (math.tanh, lambda out: 1 - out * out),
    "relu": (lambda z: max(z, 0.0), lambda out: 1.0 if out > 0 else 0.0),
}


def reference_network(net: bpcore.MLP) -> list[list[dict]]:
    """The article's layout: neuron j of layer l has weights W[:, j] then bias b[j]."""
    return [
        [{"weights": [*map(float, W[:, j]), float(b[j])]} for j in range(W.shape[1])]
        for W, b in zip(net.weights, net.biases, strict=True)
    ]


def forward_propagate(
    network: list[list[dict]], row: list[float], hidden: str, head: str
) -> list[float]:
    transfer = TRANSFERS[hidden][0]
    inputs = row
    for l, layer in enumerate(network):
        activations = [
            n["weights"][-1] + sum(w * i for w, i in zip(n["weights"], inputs)) for n in layer
        ]
        if l < len(network) - 1:
            outputs = [transfer(z) for z in activations]
        elif head == "sigmoid":
            outputs = [TRANSFERS["sigmoid"][0](z) for z in activations]
        else:  # softmax
            top = max(activations)
            exps = [math.exp(z - top) for z in activations]
            outputs = [e / sum(exps) for e in exps]
        for neuron, out in zip(layer, outputs):
            neuron["output"] = out
        inputs = outputs
    return inputs


def backward_propagate_error(
    network: list[list[dict]], expected: list[float], hidden: str, head: str
) -> None:
    derivative = TRANSFERS[hidden][1]
    for l in reversed(range(len(network))):
        layer = network[l]
        if l == len(network) - 1:
            errors = [n["output"] - e for n, e in zip(layer, expected)]  # output − expected
            for neuron, error in zip(layer, errors):
                # sigmoid + squared error: δ = error·σ′; softmax + cross-entropy: δ = error
                neuron["delta"] = error * (
                    TRANSFERS["sigmoid"][1](neuron["output"]) if head == "sigmoid" else 1.0
                )
        else:
            for j, neuron in enumerate(layer):
                error = sum(above["weights"][j] * above["delta"] for above in network[l + 1])
                neuron["delta"] = error * derivative(neuron["output"])


def example_gradients(network: list[list[dict]], row: list[float]) -> list[list[list[float]]]:
    """∂L/∂w for every neuron's weights (bias last): δ times the neuron's input (1 for the bias)."""
    grads = []
    inputs = row
    for layer in network:
        grads.append([[n["delta"] * i for i in inputs] + [n["delta"]] for n in layer])
        inputs = [n["output"] for n in layer]
    return grads


def reference_batch(
    network: list[list[dict]], x: np.ndarray, y: np.ndarray, hidden: str, head: str
):
    """Batch-mean gradients and per-example deltas of the reference network."""
    n_out = len(network[-1])
    mean_grads = None
    deltas = []
    for row, label in zip(x.tolist(), y.tolist()):
        expected = [1.0 if k == label else 0.0 for k in range(n_out)]
        forward_propagate(network, row, hidden, head)
        backward_propagate_error(network, expected, hidden, head)
        grads = example_gradients(network, row)
        deltas.append([[n["delta"] for n in layer] for layer in network])
        if mean_grads is None:
            mean_grads = grads
        else:
            mean_grads = [
                [[s + g for s, g in zip(sn, gn)] for sn, gn in zip(sl, gl)]
                for sl, gl in zip(mean_grads, grads)
            ]
    batch = len(x)
    return [[[g / batch for g in neuron] for neuron in layer] for layer in mean_grads], deltas


CASES = [
    ("sigmoid", "sigmoid", "mse"),
    ("tanh", "sigmoid", "mse"),
    ("relu", "sigmoid", "mse"),
    ("sigmoid", "softmax", "cross_entropy"),
    ("tanh", "softmax", "cross_entropy"),
]


@pytest.mark.parametrize(("hidden", "head", "loss"), CASES)
@pytest.mark.parametrize("batch", [1, 7])
def test_gradients_and_deltas_match_reference(
    hidden: str, head: str, loss: str, batch: int
) -> None:
    rng = np.random.default_rng(batch)
    net = bpcore.MLP(
        [3, 5, 4, 3],
        activation=hidden,
        output=head,
        seed=batch,
        bias_init=bpcore.get_bias_init("normal", std=0.5),
    )
    x = rng.normal(size=(batch, 3))
    y = rng.integers(0, 3, size=batch)
    _, bp = net.loss_and_grads(x, y, loss)
    ref_grads, ref_deltas = reference_batch(reference_network(net), x, y, hidden, head)
    for l in range(net.n_layers):
        ref = np.array(ref_grads[l])  # (fan_out, fan_in + 1): weights then bias
        np.testing.assert_allclose(bp.dW[l], ref[:, :-1].T, rtol=0, atol=1e-12)
        np.testing.assert_allclose(bp.db[l], ref[:, -1], rtol=0, atol=1e-12)
        per_example = np.array([d[l] for d in ref_deltas])
        np.testing.assert_allclose(bp.deltas[l] * batch, per_example, rtol=0, atol=1e-12)


def update_weights(
    network: list[list[dict]], mean_grads: list[list[list[float]]], lrate: float
) -> None:
    """The article's update: w −= lrate·δ·input, bias −= lrate·δ (with batch-mean gradients)."""
    for layer, layer_grads in zip(network, mean_grads):
        for neuron, grads in zip(layer, layer_grads):
            neuron["weights"] = [w - lrate * g for w, g in zip(neuron["weights"], grads)]


@pytest.mark.parametrize("batch", [1, 5])
def test_sgd_steps_match_reference(batch: int) -> None:
    rng = np.random.default_rng(42)
    net = bpcore.MLP([2, 4, 4, 2], activation="sigmoid", output="sigmoid", init="normal", seed=3)
    network = reference_network(net)
    sgd = bpcore.get_optimizer("sgd", lr=0.5)
    for _ in range(5):
        x = rng.normal(size=(batch, 2))
        y = rng.integers(0, 2, size=batch)
        _, bp = net.loss_and_grads(x, y, "mse")
        sgd.step(net.params, bp.grads)
        mean_grads, _ = reference_batch(network, x, y, "sigmoid", "sigmoid")
        update_weights(network, mean_grads, 0.5)
    for l, layer in enumerate(network):
        ref = np.array([n["weights"] for n in layer])
        np.testing.assert_allclose(net.weights[l], ref[:, :-1].T, rtol=0, atol=1e-12)
        np.testing.assert_allclose(net.biases[l], ref[:, -1], rtol=0, atol=1e-12)
