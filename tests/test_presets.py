"""What the README says the presets show, checked at small size (bpcore only, no tracking).

Each test names its README claim and where its tolerance comes from.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import bpcore
from bpcore import theory

SEEDS = range(5)


@pytest.fixture(autouse=True)
def _one_blas_thread() -> Iterator[None]:
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def spirals() -> bpcore.Dataset:
    """The quickstart's data: spirals, 1000 points, 20% validation, 20% test."""
    return bpcore.make_dataset("spirals", test_fraction=0.2)


def first_to_last(activation: str, data: bpcore.Dataset, seed: int) -> float:
    """log10 of ‖∂L/∂W‖ of the first layer over the last hidden layer's, at initialization,
    on a minibatch of 32, in a depth-10, width-32 net (the quickstart's)."""
    net = bpcore.MLP([2, *[32] * 10, 2], activation, "softmax", "xavier_normal", seed)
    _, bp = net.loss_and_grads(data.x_train[:32], data.y_train[:32], "cross_entropy")
    return math.log10(np.linalg.norm(bp.dW[0]) / np.linalg.norm(bp.dW[9]))


def test_quickstart_sigmoids_first_layer_gradient_is_a_millionth_of_its_last(
    spirals: bpcore.Dataset,
) -> None:
    """README: at depth 10, sigmoid's ‖∂L/∂W‖ at the first layer is ≈ 10⁻⁶ of the last hidden
    layer's, tanh's and relu's within a decade.  Mean field (xavier, σ_w² = 1): each sigmoid
    layer shrinks δ by √χ₁ = 0.236, nine layers 10^−5.6; ‖aˡ⁻¹‖ adds less than a decade.
    Tolerance: the preset's 5 seeds gave −6.2 ± 0.4 (sigmoid), −0.05 and +0.09 (tanh, relu)."""
    chi1 = theory.chi1("sigmoid", 1.0, 0.0)
    assert 9 * math.log10(math.sqrt(chi1)) == pytest.approx(-5.6, abs=0.1)
    ratios = {
        a: np.mean([first_to_last(a, spirals, s) for s in SEEDS])
        for a in ("sigmoid", "tanh", "relu")
    }
    assert -7.5 < ratios["sigmoid"] < -4.5
    assert abs(ratios["tanh"]) < 1 and abs(ratios["relu"]) < 1


def test_quickstart_relu_learns_at_depth_10_where_sigmoid_stays_at_chance(
    spirals: bpcore.Dataset,
) -> None:
    """README: at each config's chosen lr (relu 0.003, sigmoid 0.001; Adam, 20 epochs, batch
    32, float32), relu at depth 10 reaches 97% test accuracy, sigmoid stays at chance (50%).
    Two seeds here; margins of 10 points either side of what 5 seeds gave."""
    accuracies = {}
    for activation, lr in (("relu", 0.003), ("sigmoid", 0.001)):
        runs = []
        for seed in (0, 1):
            net = bpcore.MLP(
                [2, *[32] * 10, 2], activation, "softmax", "xavier_normal", seed, "float32"
            )
            adam = bpcore.get_optimizer("adam", lr)
            bpcore.fit(net, spirals, "cross_entropy", adam, 32, epochs=20, seed=seed)
            runs.append(bpcore.evaluate(net, spirals.x_test, spirals.y_test, "cross_entropy")[1])
        accuracies[activation] = np.mean(runs)
    assert accuracies["relu"] > 0.87
    assert accuracies["sigmoid"] < 0.6


def sawtooth_loss(depth: int, width: int, lr: float, seed: int) -> float:
    """Test loss of a ReLU net on the sawtooth (k = 3) after the depth_vs_width preset's 30
    epochs of Adam at the lr its tuning chose."""
    data = bpcore.make_dataset("sawtooth", test_fraction=0.2)
    net = bpcore.MLP([1, *[width] * depth, 1], "relu", "identity", "xavier_normal", seed)
    adam = bpcore.get_optimizer("adam", lr)
    bpcore.fit(net, data, "mse", adam, 32, epochs=30, seed=seed)
    return bpcore.evaluate(net, data.x_test, data.y_test, "mse")[0]


def test_depth_vs_width_a_deeper_relu_net_of_the_same_size_fits_the_sawtooth() -> None:
    """README: at ≈ 2500 parameters, relu at depth 4 (width 28) reaches a test loss of
    ≈ 2·10⁻⁴ on the sawtooth, depth 1 (width 833) ≈ 0.035, barely below the constant
    predictor's 0.0385.  Two seeds here; the preset's 5 gave (1.7 ± 2)·10⁻⁴ and 0.035 ± 0.002,
    so a factor of 20 between them leaves room for seed-to-seed spread."""
    data = bpcore.make_dataset("sawtooth", test_fraction=0.2)
    constant = 0.5 * float(np.mean((data.y_test - data.y_train.mean()) ** 2))
    assert constant == pytest.approx(0.0385, abs=5e-4)
    deep = np.mean([sawtooth_loss(4, 28, 0.01, seed) for seed in (0, 1)])
    shallow = np.mean([sawtooth_loss(1, 833, 0.001, seed) for seed in (0, 1)])
    assert shallow < constant and deep < shallow / 20
