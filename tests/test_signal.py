"""Signal propagation at initialization (``experiments.diagnostics.signal``): the step-0
channel moments against numpy on the same pass, BatchNorm's exact 0 and 1, and the residual
mean-field recursion against a wide net."""

from __future__ import annotations

import numpy as np
import pytest

import bpcore
from experiments.diagnostics.signal import SignalPropagation, channel_moments, signal_keys

pytestmark = pytest.mark.usefixtures("one_blas_thread")


def step_zero(net: bpcore.MLP, n_samples: int = 200) -> tuple[dict[str, float], bpcore.Backprop]:
    """The signal metrics of ``net``'s first step on a full batch of circles, and the same pass
    computed before it (the full batch: the same examples, whatever their order)."""
    data = bpcore.make_dataset("circles", n_samples=n_samples)
    _, bp = net.loss_and_grads(data.x_train, data.y_train, "cross_entropy")  # at init
    found: dict[str, float] = {}
    callback = SignalPropagation(lambda family, step, metrics: found.update(metrics))
    sgd = bpcore.get_optimizer("sgd", 0.1)
    bpcore.fit(net, data, "cross_entropy", sgd, len(data.x_train), 1, callbacks=[callback])
    return found, bp


def test_channel_moments_average_each_units_batch_mean_and_variance() -> None:
    x = np.array([[1.0, 2.0], [3.0, 6.0]])  # unit means 2, 4; variances 1, 4
    assert channel_moments(x) == (pytest.approx((4 + 16) / 2), pytest.approx((1 + 4) / 2))


def test_step_zero_moments_of_a_residual_net_match_numpy() -> None:
    """The branch is what the skip adds, aˡ − aˡ⁻¹ (not the branch the code keeps)."""
    net = bpcore.MLP([2, 8, 8, 8, 2], "tanh", residual=True, residual_scale=0.5, seed=1)
    found, bp = step_zero(net)
    assert list(found) == signal_keys(net)
    for l in range(3):
        a = bp.activations[l]
        tag = f"layer_{l + 1:02d}"
        assert found[f"signal_sq_mean/{tag}"] == pytest.approx(np.mean(a.mean(0) ** 2), rel=1e-9)
        assert found[f"signal_var/{tag}"] == pytest.approx(np.mean(a.var(0)), rel=1e-9)
    branch = bp.activations[2] - bp.activations[1]
    assert found["signal_branch_var/layer_03"] == pytest.approx(np.mean(branch.var(0)), rel=1e-9)
    assert "signal_branch_var/layer_01" not in found  # 2 inputs, 8 units: no skip


def test_batchnorm_starts_every_hidden_layer_at_channel_mean_0_and_variance_1() -> None:
    """With f = identity, aˡ = x̂ˡ: each unit has batch mean 0 and variance σ²/(σ² + ε)."""
    net = bpcore.MLP([2, *[16] * 6, 2], "identity", norm="batch", seed=0)
    found, _ = step_zero(net)
    for l in range(1, 7):
        assert found[f"signal_sq_mean/layer_{l:02d}"] < 1e-25
        assert found[f"signal_var/layer_{l:02d}"] == pytest.approx(1, abs=1e-3)
    assert not any(k.startswith(("signal_theory", "signal_branch")) for k in found)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
def test_the_residual_recursion_predicts_a_wide_nets_second_moment(activation: str) -> None:
    """Yang & Schoenholz (2017) at width 1024: E[(aˡ)²] grows linearly (tanh), quadratically
    through the mean (sigmoid, E[φ] = ½) or geometrically (relu) and the recursion started
    from each example's first hidden layer follows it.  Finite width: seed 0 is within 5%
    (tanh, sigmoid) and 10.5% at relu's last layer (geometric growth compounds the
    fluctuations); 15% bounds them."""
    net = bpcore.MLP([2, *[1024] * 10, 2], activation, residual=True, seed=0)
    found, bp = step_zero(net)
    assert [k for k in found if k.startswith("signal_theory")] == [
        f"signal_theory/layer_{l:02d}" for l in range(2, 11)
    ]
    for l in range(2, 11):
        measured = float(np.mean(np.square(bp.activations[l - 1])))
        assert found[f"signal_theory/layer_{l:02d}"] == pytest.approx(measured, rel=0.15), l
    growth = [float(np.mean(np.square(bp.activations[l]))) for l in (1, 9)]
    assert growth[1] > 3 * growth[0]  # no fixed point: the plain net's q* is not reached


def test_no_theory_without_skips_or_with_a_norm() -> None:
    for net in (
        bpcore.MLP([2, 8, 8, 2], "tanh"),
        bpcore.MLP([2, 8, 8, 2], "tanh", residual=True, norm="layer"),
        bpcore.MLP([2, 8, 8, 2], ["tanh", "relu"], residual=True),
    ):
        assert not [k for k in signal_keys(net) if k.startswith("signal_theory")]
