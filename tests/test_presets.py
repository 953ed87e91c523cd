"""What the README says the presets show, checked at small size (bpcore only, no tracking).

Each test names its README claim and where its tolerance comes from.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import bpcore
from bpcore import theory

SEEDS = range(5)


pytestmark = pytest.mark.usefixtures("one_blas_thread")


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


def circles_accuracy(activation: str, lr: float, seed: int) -> float:
    """Test accuracy on circles of a depth-20, width-32 net after the activations preset's
    training: xavier_normal, SGD on minibatches of 32, 10 epochs."""
    data = bpcore.make_dataset("circles", test_fraction=0.2)
    net = bpcore.MLP([2, *[32] * 20, 2], activation, "softmax", "xavier_normal", seed)
    bpcore.fit(net, data, "cross_entropy", bpcore.get_optimizer("sgd", lr), 32, 10, seed=seed)
    return bpcore.evaluate(net, data.x_test, data.y_test, "cross_entropy")[1]


def test_activations_at_depth_20_relu_stays_at_chance_at_every_lr_where_tanh_learns() -> None:
    """README: at depth 20 with xavier_normal (σ_w² = 1) relu stays at chance at every lr of
    the preset's grid (5 seeds at its chosen lr: 50.1 ± 0.7%), tanh learns circles (93 ± 10%
    at lr 0.03).  Mean field: relu's χ₁ = σ_w²/2 = ½ shrinks δ by 2^−19/2 ≈ 1e-3 over the 19
    hidden layers; tanh's χ₁ = 1.  One seed per lr for relu, whose accuracy at chance does not
    vary by more than the test split's class balance; two seeds for tanh, 10 points below."""
    assert theory.chi1("relu", 1.0, 0.0) == pytest.approx(0.5)
    for lr in (0.01, 0.03, 0.1, 0.3, 1.0):
        assert circles_accuracy("relu", lr, seed=100) < 0.6, lr
    assert np.mean([circles_accuracy("tanh", 0.03, seed) for seed in (0, 1)]) > 0.83


def circles_run(batch_size: int | None, lr: float, seed: int) -> tuple[float, float]:
    """(val loss, test accuracy) of the batch_size preset's net (tanh, depth 3, width 32,
    xavier_normal) on circles after 8 epochs of SGD; ``None`` is the full batch."""
    data = bpcore.make_dataset("circles", test_fraction=0.2)
    net = bpcore.MLP([2, 32, 32, 32, 2], "tanh", "softmax", "xavier_normal", seed)
    batch = batch_size or len(data.x_train)
    bpcore.fit(net, data, "cross_entropy", bpcore.get_optimizer("sgd", lr), batch, 8, seed=seed)
    val_loss = bpcore.evaluate(net, data.x_val, data.y_val, "cross_entropy")[0]
    return val_loss, bpcore.evaluate(net, data.x_test, data.y_test, "cross_entropy")[1]


def test_batch_size_small_batches_learn_in_8_epochs_at_a_smaller_lr_the_full_batch_never() -> None:
    """README: in 8 epochs batches of 1–64 reach 96–99% at their own lr, which grows with the
    batch (batch 1 chose 0.01, batch 64 0.3); the full batch (8 steps) stays near chance at
    every lr of the grid (62 ± 7% at its chosen 0.3).  One tuning seed here: the val losses
    compared differ by far more than the spread between the preset's tuning seeds."""
    one = {lr: circles_run(1, lr, seed=100)[0] for lr in (0.01, 0.3)}
    sixty_four = {lr: circles_run(64, lr, seed=100)[0] for lr in (0.01, 0.3)}
    assert one[0.01] < one[0.3] and sixty_four[0.3] < sixty_four[0.01]
    assert circles_run(64, 0.3, seed=0)[1] > 0.9
    for lr in (0.01, 0.03, 0.1, 0.3, 1.0, 3.0):
        assert circles_run(None, lr, seed=100)[1] < 0.75, lr


REMEDIES = {  # conf/remedy/: (norm, residual, clip_norm)
    "plain": (None, False, None),
    "residual": (None, True, None),
    "batch": ("batch", False, None),
    "layer": ("layer", False, None),
    "residual_layer": ("layer", True, None),
    "clip": (None, False, 1.0),
}


def remedy_net(activation: str, remedy: str, seed: int) -> bpcore.MLP:
    """The remedies preset's net: 30 hidden layers of 32, xavier_normal, under ``remedy``."""
    norm, residual, _ = REMEDIES[remedy]
    sizes = [2, *[32] * 30, 2]
    return bpcore.MLP(
        sizes, activation, "softmax", "xavier_normal", seed, norm=norm, residual=residual
    )


def remedy_run(activation: str, remedy: str, lr: float, seed: int) -> tuple[float, int]:
    """(test accuracy, NaN if it diverged; steps whose gradient was clipped) after the
    preset's training: SGD on minibatches of 32 of circles, 8 epochs."""
    data = bpcore.make_dataset("circles", test_fraction=0.2)
    net = remedy_net(activation, remedy, seed)
    sgd = bpcore.get_optimizer("sgd", lr, clip_norm=REMEDIES[remedy][2])
    with np.errstate(all="ignore"):  # the diverging configs
        result = bpcore.fit(net, data, "cross_entropy", sgd, 32, 8, seed=seed)
        accuracy = bpcore.evaluate(net, data.x_test, data.y_test, "cross_entropy")[1]
    return math.nan if result.diverged_at_step is not None else accuracy, sgd.clipped_steps


def test_remedies_residual_connections_carry_a_sigmoid_nets_gradient_to_the_first_layer() -> None:
    """README: at init the plain 30-layer sigmoid net's first-layer ‖∂L/∂W‖ is 10^(−18.4 ± 1.1)
    of its 30th layer's, 10^(−1.5 ± 0.7) with residual connections; BatchNorm turns the slope
    (10^(+1.4 ± 0.6): gradients grow towards the input).  Mean field (σ_w² = 1): plain sigmoid
    shrinks δ by √χ₁ = 0.24 per layer, 29 layers 10^−18.  Bounds: 3 decades around the plain
    net's, half the gap to it for the others."""
    data = bpcore.make_dataset("circles", test_fraction=0.2)

    def ratio(remedy: str, seed: int) -> float:
        net = remedy_net("sigmoid", remedy, seed)
        _, bp = net.loss_and_grads(data.x_train[:32], data.y_train[:32], "cross_entropy")
        return math.log10(np.linalg.norm(bp.dW[0]) / np.linalg.norm(bp.dW[29]))

    assert 29 * math.log10(math.sqrt(theory.chi1("sigmoid", 1.0, 0.0))) == pytest.approx(
        -18, abs=0.3
    )
    mean = {r: np.mean([ratio(r, s) for s in SEEDS]) for r in ("plain", "residual", "batch")}
    assert -21.5 < mean["plain"] < -15.5
    assert -4 < mean["residual"] < 0.5
    assert mean["batch"] > 0.3


def test_remedies_a_residual_relu_nets_signal_explodes_as_the_mean_field_predicts() -> None:
    """README: without a norm a residual relu net's E[(a³⁰)²] is 10^(8.3 ± 0.8) at init, the
    mean-field recursion's 10^(8.4 ± 0.1), and every seed diverges (at the grid's smallest lr
    here, 0.01, as at 0.1 and 1); with LayerNorm in the branch it trains (99.3 ± 0.7% at
    0.01; tanh 98.9 ± 1%), and the plain relu net stays at chance at every lr of the grid, also
    clipped (its E[(aˡ)²] halves per layer).  One seed each: the diverged and chance runs do
    not vary, residual + layer's seeds gave 97.5–100%; bounds 1 decade and 10 points."""
    from experiments.diagnostics.signal import SignalPropagation

    data = bpcore.make_dataset("circles", test_fraction=0.2)
    found: dict[str, float] = {}
    net = remedy_net("relu", "residual", 0)
    callback = SignalPropagation(lambda family, step, metrics: found.update(metrics))
    sgd = bpcore.get_optimizer("sgd", 0.01)
    with np.errstate(all="ignore"):
        result = bpcore.fit(net, data, "cross_entropy", sgd, 32, 8, seed=0, callbacks=[callback])
    measured = math.log10(found["signal_sq_mean/layer_30"] + found["signal_var/layer_30"])
    assert measured > 6
    assert math.log10(found["signal_theory/layer_30"]) == pytest.approx(measured, abs=1)
    assert result.diverged_at_step is not None
    assert remedy_run("relu", "residual_layer", 0.01, 0)[0] > 0.89
    assert remedy_run("tanh", "residual_layer", 0.01, 0)[0] > 0.89  # 98.9 ± 1% (5 seeds)
    for lr in (0.01, 0.1, 1.0):
        assert remedy_run("relu", "plain", lr, 100)[0] < 0.6, lr
    assert remedy_run("relu", "clip", 1.0, 0)[0] < 0.6  # its chosen lr: 50.1 ± 0.7%


def test_remedies_sigmoid_learns_with_batchnorm_and_clipping_does_not_help() -> None:
    """README: sigmoid at depth 30 does best with BatchNorm (75.5 ± 12% at lr 0.1) and stays
    at chance plain, with LayerNorm alone (at its chosen lr 1) and clipped (50.1 ± 0.7%):
    clipping only scales a gradient down, and a vanishing one is rarely above the clip norm
    (5 of 152 steps here).  Two seeds for BatchNorm, bound 10 points below the preset's
    lowest-but-one seed (70%)."""
    assert np.mean([remedy_run("sigmoid", "batch", 0.1, s)[0] for s in (0, 1)]) > 0.6
    plain_accuracy, _ = remedy_run("sigmoid", "plain", 0.1, 0)
    clipped_accuracy, clipped_steps = remedy_run("sigmoid", "clip", 0.1, 0)
    assert plain_accuracy < 0.6 and clipped_accuracy < 0.6
    assert remedy_run("sigmoid", "layer", 1.0, 0)[0] < 0.6
    assert clipped_steps < 15  # of 152: the vanishing gradient is rarely above the clip norm
