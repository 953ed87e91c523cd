"""The reproduction figures: their data functions alone, then each figure on real tiny runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

import bpcore
from experiments import figdata as fd
from experiments import paperfigs as pf
from experiments import style
from experiments.config import Experiment
from experiments.diagnostics import DiagnosticsRecorder, History
from experiments.plots import Data
from experiments.theory_metrics import theory_callbacks


def _run(batch: int, lr: float, seed: int = 0) -> History:
    """A tiny tanh net on spirals with the theory and full-gradient metrics."""
    data = bpcore.make_dataset("spirals", n_samples=200)
    net = bpcore.MLP([2, 8, 8, 8, 2], "tanh", "softmax", "xavier_normal", seed)
    exp = Experiment(data, net, bpcore.get_optimizer("sgd", lr), "cross_entropy", batch, [8] * 3)
    recorder = DiagnosticsRecorder(2)
    callbacks = [recorder, *theory_callbacks(True, 2, exp, recorder.record)]
    bpcore.fit(net, data, exp.loss, exp.optimizer, batch, epochs=3, callbacks=callbacks)
    return recorder.history


@pytest.fixture(scope="module")
def runs() -> dict[str, History]:
    return {f"b{b}-lr{lr}": _run(b, lr) for b in (4, 16, 160) for lr in (0.3, 1.0)}


def test_overlay_is_the_mean_field_line_through_the_top_hidden_layer(runs) -> None:
    layers, measured, predicted = pf.overlay(runs["b4-lr0.3"]) or ((), (), ())
    np.testing.assert_array_equal(layers, [1, 2, 3])
    assert predicted[-1] == measured[-1]
    ratio = math.sqrt(pf.first(runs["b4-lr0.3"], pf.CHI1))
    np.testing.assert_allclose(predicted[:-1] / predicted[1:], ratio, rtol=1e-12)
    assert pf.overlay(History(3)) is None


def test_growth_points_undo_the_logged_slope(runs) -> None:
    chi, measured = pf.growth_points(runs)
    h = runs["b4-lr0.3"]
    assert chi[0] == pf.first(h, pf.CHI1)
    assert measured[0] == pytest.approx(math.exp(-2 * pf.first(h, pf.SLOPE)), rel=1e-12)


def _infos(runs: dict[str, History]) -> list[fd.RunInfo]:
    return [fd.RunInfo(k, k, {"train.batch_size": k.split("-")[0][1:]}) for k in runs]


def test_best_steps_take_the_fastest_learning_rate(runs) -> None:
    target = max(float(h.series(pf.FULL_LOSS)[1].min()) for h in runs.values())
    batches, steps = pf.best_steps(_infos(runs), runs, target)
    np.testing.assert_array_equal(batches, [4.0, 16.0, 160.0])
    for b, s in zip(batches, steps):
        each = [
            fd.steps_to_target(*h.series(pf.FULL_LOSS), target)
            for k, h in runs.items()
            if k.startswith(f"b{int(b)}-")
        ]
        assert s == min(each)


def test_layer_moments(runs) -> None:
    h = runs["b4-lr0.3"]
    layers, second, mean = pf.layer_moments_of(h)
    np.testing.assert_array_equal(layers, [1, 2, 3])
    std, m = (h.series(f"{f}/layer_02")[1][0] for f in ("act_std", "act_mean"))
    assert (second[1], mean[1]) == (pytest.approx(std**2 + m**2), m)


def test_trainability_points_group_by_sigma_b2(runs) -> None:
    points = pf.trainability_points(runs)
    assert list(points) == [0.0]
    sigma_w2, depth, accuracy = points[0.0]
    assert len(sigma_w2) == len(runs) and np.all(depth == 3)
    assert np.all((accuracy >= 0) & (accuracy <= 1))


@pytest.mark.parametrize("name", list(pf.FIGURES))
def test_each_figure_draws_its_runs(runs, name: str) -> None:
    infos = _infos(runs)
    panels = [((r.name, "1.0", "3"), r) for r in infos[:2]]
    reached = max(float(h.series(pf.FULL_LOSS)[1].min()) for h in runs.values())
    keys = ["train.batch_size", "init.gain", "model.depth"]  # as if σ_w² and depth were swept
    data = Data(infos, runs, keys, panels, target_loss=reached)
    figure, can_show = pf.FIGURES[name]
    assert can_show(data) or name == "chi1_growth"  # one init here: a single χ₁
    fig, shown, keys = figure(data)
    assert shown and keys
    assert style.render(fig, ["png"])["png"].startswith(b"\x89PNG")


def test_growth_vs_chi1_needs_three_values_and_trainability_a_swept_init() -> None:
    def with_chi1(value: float) -> History:
        h = History(3)
        h.add("theory", 0, {pf.CHI1: value})
        return h

    infos = [fd.RunInfo(str(v), str(v)) for v in (0.5, 1.0, 2.0)]
    histories = {r.run_id: with_chi1(float(r.run_id)) for r in infos}
    chi1_growth, trainability = pf.FIGURES["chi1_growth"][1], pf.FIGURES["trainability"][1]
    assert chi1_growth(Data(infos, histories, [], []))
    assert not chi1_growth(Data(infos[:2], histories, [], []))
    assert trainability(Data(infos, histories, ["init.gain", "model.depth"], []))
    assert not trainability(Data(infos, histories, ["model.depth"], []))
