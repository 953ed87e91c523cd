"""The reproduction figures (``experiments.figures``: theory, moments, layers, batch): their
data functions alone, then each figure on real tiny runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

import bpcore
from experiments.app.setup import Setup
from experiments.diagnostics.history import History
from experiments.diagnostics.recorder import DiagnosticsRecorder
from experiments.diagnostics.signal import SignalPropagation
from experiments.diagnostics.theory import theory_callbacks
from experiments.figures import batch, moments, registry, style, theory
from experiments.figures.common import Data, RunInfo

PAPER_FIGURES = [  # the reproductions' figures (README, "Theory meets measurement")
    "theory_overlay",
    "chi1_growth",
    "trainability",
    "layer_moments",
    "speed_of_learning",
    "activation_stats",
    "steps_vs_batch",
]


def _run(batch_size: int, lr: float, seed: int = 0) -> History:
    """A tiny tanh net on spirals with the theory and full-gradient metrics."""
    data = bpcore.make_dataset("spirals", n_samples=200)
    net = bpcore.MLP([2, 8, 8, 8, 2], "tanh", "softmax", "xavier_normal", seed)
    run = Setup(data, net, bpcore.get_optimizer("sgd", lr), "cross_entropy", batch_size, [8] * 3)
    recorder = DiagnosticsRecorder(2)
    extra = theory_callbacks(net, data, run.loss, recorder.record, full_gradient_every=2)
    callbacks = [recorder, *extra]
    bpcore.fit(net, data, run.loss, run.optimizer, batch_size, epochs=3, callbacks=callbacks)
    return recorder.history


@pytest.fixture(scope="module")
def runs() -> dict[str, History]:
    grid = [(b, lr, seed) for b in (4, 16, 160) for lr in (0.3, 1.0) for seed in (0, 1)]
    return {f"b{b}-lr{lr}-s{seed}": _run(b, lr, seed) for b, lr, seed in grid}


def test_overlay_is_the_mean_field_line_through_the_top_hidden_layer(runs) -> None:
    layers, measured, predicted = theory.overlay(runs["b4-lr0.3-s0"]) or ((), (), ())
    np.testing.assert_array_equal(layers, [1, 2, 3])
    assert predicted[-1] == measured[-1]
    ratio = math.sqrt(theory.first(runs["b4-lr0.3-s0"], theory.CHI1))
    np.testing.assert_allclose(predicted[:-1] / predicted[1:], ratio, rtol=1e-12)
    assert theory.overlay(History(3)) is None


def test_growth_points_undo_the_logged_slope(runs) -> None:
    chi, measured = theory.growth_points(runs)
    h = runs["b4-lr0.3-s0"]
    assert chi[0] == theory.first(h, theory.CHI1)
    assert measured[0] == pytest.approx(math.exp(-2 * theory.first(h, theory.SLOPE)), rel=1e-12)


def _infos(runs: dict[str, History]) -> list[RunInfo]:
    def params(name: str) -> dict[str, str]:
        batch_size, lr, seed = name.split("-")
        return {"train.batch_size": batch_size[1:], "optim.lr": lr[2:], "seed": seed[1:]}

    return [RunInfo(k, k, params(k)) for k in runs]


def test_best_steps_take_the_learning_rate_fastest_on_average_over_seeds(runs) -> None:
    target = max(float(h.series(batch.FULL_LOSS)[1].min()) for h in runs.values())
    batches, steps = batch.best_steps(_infos(runs), runs, target)
    np.testing.assert_array_equal(batches, [4.0, 16.0, 160.0])
    for b, s in zip(batches, steps):
        means = []
        for lr in ("0.3", "1.0"):
            seeds = [runs[f"b{int(b)}-lr{lr}-s{seed}"] for seed in (0, 1)]
            each = [batch.steps_to_target(*h.series(batch.FULL_LOSS), target) for h in seeds]
            means.append((each[0] + each[1]) / 2)
        assert s == pytest.approx(min(means), rel=1e-12)


def test_best_steps_leave_out_an_lr_that_one_seed_never_brought_to_the_target(runs) -> None:
    target = max(float(h.series(batch.FULL_LOSS)[1].min()) for h in runs.values())
    stuck = History(3)  # a seed whose training-set loss never falls
    for step in range(0, 50, 5):
        stuck.add("step", step, {batch.FULL_LOSS: 10 * target})
    infos = [r for r in _infos(runs) if r.name.startswith("b4-")]
    lr_03 = [runs[f"b4-lr0.3-s{seed}"].series(batch.FULL_LOSS) for seed in (0, 1)]
    _, steps = batch.best_steps(infos, {**runs, "b4-lr1.0-s1": stuck}, target)
    assert steps == pytest.approx([np.mean([batch.steps_to_target(*s, target) for s in lr_03])])


def test_layer_moments(runs) -> None:
    h = runs["b4-lr0.3-s0"]
    layers, second, mean = moments.layer_moments_of(h)
    np.testing.assert_array_equal(layers, [1, 2, 3])
    std, m = (h.series(f"{f}/layer_02")[1][0] for f in ("act_std", "act_mean"))
    assert (second[1], mean[1]) == (pytest.approx(std**2 + m**2), m)


def test_trainability_points_group_by_sigma_b2(runs) -> None:
    points = theory.trainability_points(runs)
    assert list(points) == [0.0]
    sigma_w2, depth, accuracy = points[0.0]
    assert len(sigma_w2) == len(runs) and np.all(depth == 3)
    assert np.all((accuracy >= 0) & (accuracy <= 1))


@pytest.mark.parametrize("name", PAPER_FIGURES)
def test_each_figure_draws_its_runs(runs, name: str) -> None:
    infos = _infos(runs)
    panels = [((r.name, "1.0", "3"), r) for r in infos[:2]]
    reached = max(float(h.series(batch.FULL_LOSS)[1].min()) for h in runs.values())
    keys = ["train.batch_size", "init.gain", "model.depth"]  # as if σ_w² and depth were swept
    data = Data(infos, runs, keys, panels, target_loss=reached)
    kind = registry.figure(name)
    assert kind.can_show(data) or name == "chi1_growth"  # one init here: a single χ₁
    fig, shown, keys = kind.draw(data)
    assert shown and keys
    assert style.render(fig, ["png"])["png"].startswith(b"\x89PNG")


def test_growth_vs_chi1_needs_three_values_and_trainability_a_swept_init() -> None:
    def with_chi1(value: float) -> History:
        h = History(3)
        h.add("theory", 0, {theory.CHI1: value})
        return h

    infos = [RunInfo(str(v), str(v)) for v in (0.5, 1.0, 2.0)]
    histories = {r.run_id: with_chi1(float(r.run_id)) for r in infos}
    chi1_growth = registry.figure("chi1_growth").can_show
    trainability = registry.figure("trainability").can_show
    assert chi1_growth(Data(infos, histories, [], []))
    assert not chi1_growth(Data(infos[:2], histories, [], []))
    assert trainability(Data(infos, histories, ["init.gain", "model.depth"], []))
    assert not trainability(Data(infos, histories, ["model.depth"], []))


# --- the remedies' figures: signal propagation and final accuracy ---


def _remedy_run(activation: str, residual: bool, seed: int) -> History:
    """A tiny depth-4 net on spirals with the step-0 signal metrics and a test accuracy."""
    data = bpcore.make_dataset("spirals", n_samples=200, test_fraction=0.2)
    net = bpcore.MLP([2, *[8] * 4, 2], activation, seed=seed, residual=residual)
    recorder = DiagnosticsRecorder(5)
    callbacks = [recorder, SignalPropagation(recorder.record)]
    bpcore.fit(
        net, data, "cross_entropy", bpcore.get_optimizer("sgd", 0.1), 32, 2, callbacks=callbacks
    )
    accuracy = bpcore.evaluate(net, data.x_test, data.y_test, "cross_entropy")[1]
    recorder.record("test", 1, {"test/accuracy": accuracy})
    return recorder.history


@pytest.fixture(scope="module")
def remedy_runs() -> Data:
    """tanh, relu × plain, residual × seeds 0, 1: 8 runs, as a sweep's figure data."""
    keys = ["activation.name", "model.residual"]
    grid = [(a, r, s) for a in ("tanh", "relu") for r in (False, True) for s in (0, 1)]
    infos, histories = [], {}
    for a, r, s in grid:
        name = f"{a}-{r}-s{s}"
        infos.append(RunInfo(name, name, {keys[0]: a, keys[1]: str(r), "seed": str(s)}))
        histories[name] = _remedy_run(a, r, s)
    return Data(infos, histories, keys, [])


def test_signal_propagation_draws_every_quantity_per_activation_with_the_mean_field(
    remedy_runs: Data,
) -> None:
    """A row per activation, a column per quantity; every panel has a line per config that has
    the quantity (the branch only for residual nets) and E[(aˡ)²] the dashed mean field of the
    residual config."""
    kind = registry.figure("signal_propagation")
    assert kind.can_show(remedy_runs) and not kind.can_show(Data([], {}, [], []))
    fig, shown, keys = kind.draw(remedy_runs)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2 * 4 and len(shown) == 8
    assert {"signal_sq_mean/layer_01", "signal_branch_var/layer_02"} <= set(keys)
    assert "signal_theory/layer_04" in keys
    for i, ax in enumerate(axes):
        solid = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-" and len(ln.get_xdata())]
        assert len(solid) == (1 if i % 4 == 3 else 2), ax.get_title()  # branch: residual only
        dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        assert len(dashed) == (1 if i % 4 == 0 else 0)
        if dashed:  # layers 2 … 4, the skip layers
            assert list(dashed[0].get_xdata()) == [2, 3, 4]
    assert axes[0].get_ylabel() == "tanh" and axes[4].get_ylabel() == "relu"
    assert style.render(fig, ["png"])["png"].startswith(b"\x89PNG")


def test_final_accuracy_shows_each_configs_mean_over_seeds(remedy_runs: Data) -> None:
    kind = registry.figure("final_accuracy")
    assert kind.can_show(remedy_runs)
    fig, shown, keys = kind.draw(remedy_runs)
    assert keys == ["test/accuracy"] and len(shown) == 8
    (ax,) = [ax for ax in fig.axes if ax.get_visible()]
    means = sorted(
        float(x) for ln in ax.get_lines() for x in ln.get_xdata() if ln.get_marker() == "o"
    )
    expected = sorted(
        100
        * np.mean(
            [remedy_runs.histories[f"{a}-{r}-s{s}"].series("test/accuracy")[1][-1] for s in (0, 1)]
        )
        for a in ("tanh", "relu")
        for r in (False, True)
    )
    np.testing.assert_allclose(means, expected, rtol=1e-12)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["plain", "residual=True"]
    assert style.render(fig, ["png"])["png"].startswith(b"\x89PNG")


def test_final_accuracy_draws_the_same_pixels_for_the_same_runs(remedy_runs: Data) -> None:
    """The seeds' dots are jittered: the same runs give the same figure, whatever numpy's
    global generator held before (it is left as it was)."""
    kind = registry.figure("final_accuracy")
    np.random.seed(1)
    first = style.render(kind.draw(remedy_runs)[0], ["png"])["png"]
    after = np.random.random()
    np.random.seed(1)
    assert np.random.random() == after  # the draw left the generator as it found it
    np.random.seed(2)
    assert style.render(kind.draw(remedy_runs)[0], ["png"])["png"] == first
