"""Optimizers, learning-rate scaling and the training loop with its callbacks."""

from __future__ import annotations

import math

import numpy as np
import pytest

import bpcore
from bpcore.training import minibatches


def quadratic_step(name: str, steps: int, **params: float | bool) -> np.ndarray:
    """Minimise ½‖w‖² (gradient w) from w = (1, −2) with an optimizer; return w."""
    w = np.array([1.0, -2.0])
    opt = bpcore.get_optimizer(name, **params)  # type: ignore[arg-type]
    for _ in range(steps):
        opt.step([w], [w.copy()])
    return w


def test_sgd_update_is_minus_lr_grad() -> None:
    w = np.array([1.0, -2.0])
    updates = bpcore.get_optimizer("sgd", lr=0.1).step([w], [np.array([0.5, 1.0])])
    np.testing.assert_allclose(updates[0], [-0.05, -0.1])
    np.testing.assert_allclose(w, [0.95, -2.1])


@pytest.mark.parametrize("name", bpcore.OPTIMIZERS)
def test_the_updates_a_step_returns_are_the_callers_to_keep(name: str) -> None:
    w = np.array([1.0, -2.0])
    opt = bpcore.get_optimizer(name, lr=0.1)
    first = opt.step([w], [w.copy()])
    kept = first[0].copy()
    applied = w.copy()
    opt.step([w], [np.array([5.0, 5.0])])  # a different update
    np.testing.assert_array_equal(first[0], kept)
    np.testing.assert_allclose(applied - kept, [1.0, -2.0])  # it was the update applied


def test_momentum_matches_closed_form() -> None:
    # heavy ball on f = ½w²: v₁ = g₀, v₂ = μv₁ + g₁
    w = quadratic_step("momentum", 2, lr=0.1, momentum=0.9)
    w0 = np.array([1.0, -2.0])
    w1 = w0 - 0.1 * w0
    w2 = w1 - 0.1 * (0.9 * w0 + w1)
    np.testing.assert_allclose(w, w2)
    w = quadratic_step("momentum", 1, lr=0.1, momentum=0.9, nesterov=True)
    np.testing.assert_allclose(w, w0 - 0.1 * (w0 + 0.9 * w0))


def test_adam_first_step_is_lr_times_sign() -> None:
    w = quadratic_step("adam", 1, lr=0.01)
    np.testing.assert_allclose(w, [1.0 - 0.01, -2.0 + 0.01], rtol=1e-6)


@pytest.mark.parametrize("name", bpcore.OPTIMIZERS)
def test_every_optimizer_minimises_a_quadratic(name: str) -> None:
    assert np.linalg.norm(quadratic_step(name, 500, lr=0.05)) < 1e-2


def test_lr_scaling_rules() -> None:
    assert bpcore.scaled_lr(0.1, 64, "none", 16) == 0.1
    assert bpcore.scaled_lr(0.1, 64, "linear", 16) == pytest.approx(0.4)
    assert bpcore.scaled_lr(0.1, 64, "sqrt", 16) == pytest.approx(0.2)
    with pytest.raises(
        ValueError, match="lr_scaling: unknown rule 'cubic'; known: none, linear, sqrt"
    ):
        bpcore.scaled_lr(0.1, 64, "cubic")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: bpcore.get_optimizer("rmsprop", lr=0.1),
            "unknown optimizer 'rmsprop'; known: sgd",
        ),
        (lambda: bpcore.get_optimizer("sgd", lr=0.0), "lr: must be a positive"),
        (lambda: bpcore.get_optimizer("sgd", lr=-1.0), "lr: must be a positive"),
        (lambda: bpcore.get_optimizer("momentum", lr=0.1, momentum=1.0), "momentum"),
        (lambda: bpcore.get_optimizer("sgd", lr=0.1, beta1=0.9), "does not take parameters"),
    ],
)
def test_bad_optimizer_arguments(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_minibatches_cover_every_example_once_per_epoch() -> None:
    batches = list(minibatches(10, 4, np.random.default_rng(0)))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(np.concatenate(batches)) == list(range(10))


class Recorder(bpcore.Callback):
    def __init__(self, every: int) -> None:
        self.every = every
        self.steps: list[bpcore.StepReport] = []
        self.epochs: list[bpcore.EpochReport] = []
        self.asked: list[int] = []

    def wants_step(self, step: int) -> bool:
        self.asked.append(step)
        return step % self.every == 0

    def on_step(self, report: bpcore.StepReport) -> None:
        self.steps.append(report)

    def on_epoch_end(self, report: bpcore.EpochReport) -> None:
        self.epochs.append(report)


def test_fit_reports_requested_steps_and_epochs() -> None:
    data = bpcore.make_dataset("xor", n_samples=250, seed=0)  # 200 train
    net = bpcore.MLP([2, 16, 2], activation="tanh", seed=0)
    params_before = [p.copy() for p in net.params]
    recorder = Recorder(every=5)
    opt = bpcore.get_optimizer("sgd", lr=0.3)
    result = bpcore.fit(
        net, data, "cross_entropy", opt, batch_size=64, epochs=3, callbacks=[recorder]
    )
    assert result.steps == 12 and result.epochs == 3 and result.examples_seen == 600
    assert result.diverged_at_step is None
    assert recorder.asked == list(range(12))
    assert [r.step for r in recorder.steps] == [0, 5, 10]
    assert [r.examples_seen for r in recorder.steps] == [
        0,
        200 + 64,
        400 + 2 * 64,
    ]  # 4 steps per epoch
    assert [r.epoch for r in recorder.epochs] == [1, 2, 3]
    assert recorder.epochs[-1].val_accuracy is not None
    assert recorder.epochs[-1].train_loss < recorder.epochs[0].train_loss
    first = recorder.steps[0]  # step 0: gradient at the initial parameters
    _, bp0 = bpcore.MLP([2, 16, 2], activation="tanh", seed=0).loss_and_grads(
        data.x_train[:1], data.y_train[:1], "cross_entropy"
    )
    assert first.bp.dW[0].shape == bp0.dW[0].shape
    assert first.loss == pytest.approx(math.log(2), abs=0.3)
    assert all(np.isfinite(u).all() for u in first.updates)
    assert not all(np.array_equal(a, b) for a, b in zip(params_before, net.params, strict=True))


def test_fit_max_steps_and_full_batch() -> None:
    data = bpcore.make_dataset("circles", n_samples=100, seed=0)
    net = bpcore.MLP([2, 8, 2], seed=0)
    result = bpcore.fit(
        net, data, "cross_entropy", bpcore.get_optimizer("sgd", lr=0.1), epochs=50, max_steps=7
    )
    assert result.steps == 7 and result.examples_seen == 7 * 80


@pytest.mark.parametrize(("max_steps", "reported"), [(3, [(0, 3)]), (7, [(1, 4), (1, 7)])])
def test_max_steps_inside_an_epoch_reports_the_losses_where_training_stopped(
    max_steps: int, reported: list[tuple[int, int]]
) -> None:
    """4 steps an epoch: a stop inside one still gives the losses at the final parameters."""
    data = bpcore.make_dataset("xor", n_samples=250, seed=0)  # 200 train
    net = bpcore.MLP([2, 16, 2], activation="tanh", seed=0)
    recorder = Recorder(every=100)
    opt = bpcore.get_optimizer("sgd", lr=0.3)
    result = bpcore.fit(
        net,
        data,
        "cross_entropy",
        opt,
        batch_size=64,
        epochs=5,
        max_steps=max_steps,
        callbacks=[recorder],
    )
    assert result.steps == max_steps and result.epochs == max_steps // 4
    assert [(r.epoch, r.step) for r in recorder.epochs] == reported
    assert result.last_epoch is recorder.epochs[-1]
    val_loss, val_accuracy = bpcore.evaluate(net, data.x_val, data.y_val, "cross_entropy")
    assert (result.last_epoch.val_loss, result.last_epoch.val_accuracy) == (val_loss, val_accuracy)


def test_max_steps_at_the_end_of_an_epoch_reports_it_once() -> None:
    data = bpcore.make_dataset("xor", n_samples=250, seed=0)
    recorder = Recorder(every=100)
    opt = bpcore.get_optimizer("sgd", lr=0.3)
    net = bpcore.MLP([2, 16, 2], activation="tanh", seed=0)
    bpcore.fit(
        net, data, "cross_entropy", opt, batch_size=64, epochs=5, max_steps=8, callbacks=[recorder]
    )
    assert [(r.epoch, r.step) for r in recorder.epochs] == [(1, 4), (2, 8)]


def test_fit_stops_at_divergence() -> None:
    data = bpcore.make_dataset("teacher", n_samples=200, seed=0)
    net = bpcore.MLP([8, 32, 32, 1], activation="relu", output="identity", init="he_normal", seed=0)
    result = bpcore.fit(
        net, data, "mse", bpcore.get_optimizer("sgd", lr=50.0), batch_size=16, epochs=20
    )
    assert result.diverged_at_step is not None and result.diverged_at_step == result.steps
    assert all(np.isfinite(p).all() for p in net.params)  # the non-finite update was not applied


def test_fit_rejects_bad_batch_size() -> None:
    data = bpcore.make_dataset("moons", n_samples=100, seed=0)
    net = bpcore.MLP([2, 4, 2])
    opt = bpcore.get_optimizer("sgd", lr=0.1)
    for bad in (0, 81):
        with pytest.raises(ValueError, match=r"batch_size: must be in \[1, 80\]"):
            bpcore.fit(net, data, "cross_entropy", opt, batch_size=bad)


def test_regression_evaluation_has_no_accuracy() -> None:
    data = bpcore.make_dataset("sawtooth", n_samples=100, seed=0)
    net = bpcore.MLP([1, 8, 8, 1], activation="relu", output="identity")
    loss, accuracy = bpcore.evaluate(net, data.x_val, data.y_val, "mse")
    assert loss > 0 and accuracy is None


def test_what_callbacks_get_is_theirs_to_keep() -> None:
    """A callback that keeps a step's report (no copy) still holds that step's numbers after
    training went on: the loop reuses arrays only on steps nobody was shown."""
    import copy

    class Keep(bpcore.Callback):
        def __init__(self) -> None:
            self.kept: list[tuple[bpcore.StepReport, bpcore.Backprop, list[np.ndarray]]] = []

        def wants_step(self, step: int) -> bool:
            return step % 3 == 0

        def on_step(self, report: bpcore.StepReport) -> None:
            snapshot = (copy.deepcopy(report.bp), [u.copy() for u in report.updates])
            self.kept.append((report, *snapshot))

    data = bpcore.make_dataset("spirals", n_samples=200, seed=0)
    keep = Keep()
    opt = bpcore.get_optimizer("adam", lr=0.01)
    bpcore.fit(
        bpcore.MLP([2, 8, 8, 2], seed=0), data, "cross_entropy", opt, 16, 2, callbacks=[keep]
    )
    assert [report.step for report, _, _ in keep.kept] == list(range(0, 20, 3))
    for report, bp, updates in keep.kept:
        for field in ("dW", "db", "deltas", "zs", "activations"):
            for got, then in zip(getattr(report.bp, field), getattr(bp, field), strict=True):
                np.testing.assert_array_equal(got, then)
        for got, then in zip(report.updates, updates, strict=True):
            np.testing.assert_array_equal(got, then)
