"""Figures (``experiments.figures``): the style module, the figure data on synthetic histories,
the registry against the README, and end to end `python -m experiments.plots` on a real 8-run
sweep in a temporary sqlite store."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bpcore
from experiments import PROJECT_ROOT
from experiments.diagnostics.history import History
from experiments.figures import (
    activations,
    batch,
    boundaries,
    common,
    depth,
    gradients,
    histograms,
    losses,
    registry,
    style,
)
from experiments.figures import cli as plots_cli
from experiments.figures.common import CEILING, Data, RunInfo
from experiments.figures.runs import Selection

# one worker runs the module, so its sweep is trained once under `pytest -n 2 --dist loadgroup`
pytestmark = pytest.mark.xdist_group("plots_sweep")

FIGURES = [kind.name for kind in registry.FIGURES]
ALWAYS = [kind.name for kind in registry.FIGURES if kind.can_show(Data([], {}, [], []))]
NOT_IN_SWEEP = {  # what the end-to-end sweep below cannot show, and why
    "depth_width_heatmap": "one width",
    "chi1_growth": "fewer than three χ₁",
    "trainability": "one init",
    "speed_of_learning": "no log.full_gradient",
    "steps_vs_batch": "no log.full_gradient",
    "lr_sensitivity": "not a tuned sweep (tests/test_tuning.py draws it)",
    "lr_vs_batch": "not a tuned sweep",
}
SWEEP_FIGURES = [name for name in FIGURES if name not in NOT_IN_SWEEP]
TINY = ["data.n_samples=200", "train.epochs=3", "model.width=8", "log.every_n_steps=5"]
TINY += ["mlflow.run_figures=false", "mlflow.sweep_figures=false"]  # drawn in test_mlflow_ui


def run_info(name: str, diverged_at: int | None = None, **params: str) -> RunInfo:
    tags = {"diverged": "false"}
    if diverged_at is not None:
        tags = {"diverged": "true", "diverged_at_step": str(diverged_at)}
    return RunInfo(name, name, {"train.batch_size": "32", **params}, tags)


def history(n_layers: int, steps: list[int], epochs: list[int], scale: float = 1.0) -> History:
    """A History shaped like DiagnosticsRecorder's: per-layer step metrics, epoch losses."""
    h = History(n_layers)
    for s in steps:
        row = {"train/batch_loss": scale / (1 + s)}
        for l in range(1, n_layers + 1):
            tag = f"layer_{l:02d}" if l < n_layers else "output"
            row[f"grad_norm/{tag}"] = scale * 10.0**-l * (1 + s)
            row[f"update_ratio/{tag}"] = 1e-3 * l
        for l in range(1, n_layers):
            row[f"saturation/layer_{l:02d}"] = 0.1 * l
            row[f"dead/layer_{l:02d}"] = 0.0
        h.add("step", s, row)
    for e in epochs:
        metrics = {"train/loss": scale / e, "val/loss": 2 * scale / e}
        progress = {"progress/examples_seen": 32.0 * e, "progress/seconds": 0.01 * e}
        h.add("epoch", e, {**metrics, **progress})
    return h


# --- style ---


def test_every_activation_has_a_look_of_its_own() -> None:
    looks = [style.activation_style(name) for name in bpcore.ACTIVATIONS]
    assert set(style.ACTIVATION_STYLES) == set(bpcore.ACTIVATIONS)
    assert len(set(looks)) == len(looks)
    assert all(colour in style.PALETTE for colour, _ in looks)
    assert style.activation_style("new_one") == style.activation_style("new_one")


def test_save_writes_every_format_with_fixed_metadata(tmp_path: Path) -> None:
    from matplotlib.image import imread

    style.apply()

    def draw() -> list[Path]:
        fig = style.figure(style.ONE_COLUMN, 2.0)
        fig.subplots().plot([0, 1], [0, 1], label="x")
        return style.save(fig, tmp_path / "fig", ["png", "pdf", "svg"])

    first = {p: p.read_bytes() for p in draw()}
    assert [p.suffix for p in first] == [".png", ".pdf", ".svg"]
    assert imread(tmp_path / "fig.png").shape[:2] == (400, 680)  # 3.4 × 2.0 in at 200 dpi
    assert b"CreationDate" not in first[tmp_path / "fig.pdf"]
    assert b"<dc:date>" not in first[tmp_path / "fig.svg"]
    assert {p: p.read_bytes() for p in draw()} == first
    with pytest.raises(ValueError, match="unknown format"):
        style.save(style.figure(1, 1), tmp_path / "x", ["jpg"])


def test_a_pdf_with_mathtext_roots_logs_no_font_timestamp_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`make run` printed "'created' timestamp seems very low" twice: fontTools reading the
    date of matplotlib's cmex10 (mathtext's √) while the PDF backend subsets it."""
    style.apply()
    fig = style.figure(style.ONE_COLUMN, 2.0)
    fig.subplots().set_xlabel(r"$\sqrt{q^*}$")
    with caplog.at_level(logging.WARNING):
        style.render(fig, ["pdf"])
    assert not [r for r in caplog.records if "timestamp" in r.getMessage()]


# --- figure data ---


def test_config_keys_leave_out_seeds_and_keys_that_follow_from_others() -> None:
    runs = [
        run_info(
            f"{a}{d}{s}",
            **{"activation.name": a, "activation.alpha": alpha},
            **{"model.depth": d, "seed": s, "data.name": "spirals"},
        )
        for a, alpha in (("relu", "None"), ("leaky_relu", "0.01"))
        for d in ("2", "10")
        for s in ("0", "1")
    ]
    assert common.config_keys(runs) == ["activation.name", "model.depth"]
    groups = common.group_runs(runs, ["activation.name", "model.depth"])
    assert list(groups) == [
        ("relu", "2"),
        ("relu", "10"),
        ("leaky_relu", "2"),
        ("leaky_relu", "10"),
    ]
    assert [r.seed for r in groups[("relu", "2")]] == ["0", "1"]
    label = common.config_label(
        ["activation.name", "model.depth", "init.name"], ("relu", "2", "he")
    )
    assert label == "relu, depth=2, init=he"


def test_band_aligns_series_and_skips_non_finite_values() -> None:
    b = common.band(
        [(np.array([0, 5]), np.array([1.0, np.inf])), (np.array([5, 10]), np.array([3.0, 4.0]))]
    )
    np.testing.assert_array_equal(b.x, [0, 5, 10])
    np.testing.assert_array_equal(b.mean, [1.0, 3.0, 4.0])
    np.testing.assert_array_equal(b.lo, [1.0, 3.0, 4.0])
    b = common.band([(np.array([0]), np.array([np.nan])), (np.array([0]), np.array([np.nan]))])
    assert np.isnan(b.mean).all() and np.isnan(b.hi).all()


def test_a_log_t_band_is_the_geometric_mean_with_the_interval_of_ln_y() -> None:
    """Seeds 1 and 100 at x = 0: geometric mean 10, ln-interval 10 · e^(∓ t₀.₉₇₅,₁ · ln 100 / 2)
    (sd of {0, ln 100} is ln 100/√2, over √2); a non-positive loss is left out, a single
    value has no width."""
    seeds = [(np.array([0, 1]), np.array([1.0, 0.0])), (np.array([0, 1]), np.array([100.0, 5.0]))]
    b = common.band(seeds, spread="log t")
    half = 12.706204736174698 * math.log(100) / 2
    np.testing.assert_allclose(b.mean, [10.0, 5.0])
    np.testing.assert_allclose(b.lo, [10 * math.exp(-half), 5.0])
    np.testing.assert_allclose(b.hi, [10 * math.exp(half), 5.0])


def test_band_mean_of_huge_finite_values_does_not_overflow() -> None:
    b = common.band([(np.array([0]), np.array([1e308])), (np.array([0]), np.array([1.5e308]))])
    np.testing.assert_allclose(b.mean, [1.25e308])  # their sum is inf
    assert not b.over.any()


def test_per_layer_families_and_grad_flow() -> None:
    h = history(3, [0, 5, 10], [5, 10])
    steps, layers, m = common.per_layer_over_time(h, "grad_norm")
    np.testing.assert_array_equal(steps, [0, 5, 10])
    np.testing.assert_array_equal(layers, [1, 2, 3])
    np.testing.assert_allclose(m[:, 0], [0.1, 0.01, 0.001])
    _, hidden, sat = common.per_layer_over_time(h, "saturation")
    assert list(hidden) == [1, 2] and sat.shape == (2, 3)
    runs = [run_info("a")]
    first = gradients.grad_flow({"a": h}, runs, "first")["a"]
    last = gradients.grad_flow({"a": h}, runs, "last")["a"]
    np.testing.assert_allclose(last[1], 11 * first[1])
    with pytest.raises(KeyError):
        common.per_layer_over_time(h, "act_std")


def test_loss_curves_average_seeds_and_mark_where_diverged_runs_stopped() -> None:
    runs = [
        run_info("s0", **{"activation.name": "relu", "seed": "0"}),
        run_info("s1", **{"activation.name": "relu", "seed": "1"}),
        run_info("bad", 12, **{"activation.name": "tanh", "seed": "0"}),
        run_info("early", 3, **{"activation.name": "sigmoid", "seed": "0"}),
    ]
    histories = {
        "s0": history(2, [0, 5, 10], [5, 10], scale=1.0),
        "s1": history(2, [0, 5, 10], [5, 10], scale=3.0),
        "bad": history(2, [0, 5, 10], [5, 10]),
        "early": history(2, [0], []),  # diverged before its first epoch ended
    }
    curves = losses.loss_curves_of(histories, runs, ["activation.name"])
    assert [c.label for c in curves] == ["sigmoid", "tanh", "relu"]
    relu = curves[2].by_step["val/loss"]
    np.testing.assert_allclose(relu.mean, [0.8, 0.4])  # (2/5 + 6/5) / 2, (2/10 + 6/10) / 2
    # 95% t-interval of two values: mean + t(0.975, 1) · s/√2, s/√2 = |a − b|/2
    np.testing.assert_allclose(relu.hi, [0.8 + 12.7062 * 0.4, 0.4 + 12.7062 * 0.2], rtol=1e-5)
    np.testing.assert_array_equal(curves[2].by_examples["val/loss"].x, [160, 320])
    (stop,) = curves[1].stops
    assert (stop.step, stop.examples, stop.loss["train/loss"]) == (12, 12 * 32, 0.1)
    (early,) = curves[0].stops
    assert early.examples == 3 * 32 and early.loss["val/loss"] == 1.0  # its last batch loss
    assert not curves[2].stops


def test_loss_curves_draw_huge_finite_losses_at_the_ceiling_and_mark_them() -> None:
    """Finite losses up to float64's largest (a relu run at lr 1e4 reached 1.3e257 without
    diverging) are drawn at CEILING, marked ▲; before, drawing them raised OverflowError."""
    from matplotlib.colors import to_rgba

    runs = [
        run_info("huge", **{"activation.name": "relu", "seed": "0"}),
        run_info("max", **{"activation.name": "relu", "seed": "1"}),
        run_info("crossing", **{"activation.name": "tanh", "seed": "0"}),
        run_info("fine", **{"activation.name": "sigmoid", "seed": "0"}),
    ]
    histories = {  # val/loss = 2 × scale / epoch at epochs 2 and 4
        "huge": history(2, [0], [2, 4], scale=1.3e257),
        "max": history(2, [0], [2, 4], scale=1e308),
        "crossing": history(2, [0], [2, 4], scale=1.5 * CEILING),
        "fine": history(2, [0], [2, 4]),
    }
    curves = losses.loss_curves_of(histories, runs, ["activation.name"])
    sigmoid, tanh, relu = curves
    for by in (relu.by_step, relu.by_examples):
        b = by["val/loss"]
        for values in (b.mean, b.lo, b.hi):
            np.testing.assert_array_equal(values, [CEILING, CEILING])
        assert b.over.all()
    crossing = tanh.by_step["val/loss"]
    np.testing.assert_array_equal(crossing.mean, [CEILING, 0.75 * CEILING])
    assert list(crossing.over) == [True, False]
    assert not tanh.by_step["train/loss"].over.any()  # 0.75 × CEILING, 0.375 × CEILING
    np.testing.assert_array_equal(sigmoid.by_step["val/loss"].mean, [1.0, 0.5])
    assert not sigmoid.by_step["val/loss"].over.any()

    style.apply()
    data = Data(runs, histories, ["activation.name"], [])
    fig, _, _ = losses.loss_curves(data)
    assert style.render(fig, ["png"])["png"].startswith(b"\x89PNG")
    val_by_step = fig.axes[1]  # one panel per loss: the activation is the only key
    marks = [line for line in val_by_step.lines if line.get_marker() == "^"]
    relu_colour, tanh_colour = (to_rgba(style.activation_style(a)[0]) for a in ("relu", "tanh"))
    assert {to_rgba(m.get_color()): list(m.get_xdata()) for m in marks} == {
        relu_colour: [2, 4],
        tanh_colour: [2],
    }
    assert all(list(m.get_ydata()) == [CEILING] * len(m.get_xdata()) for m in marks)
    assert val_by_step.get_ylim()[1] < 1e40
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[-2] == "above 1e+38, drawn at it"


def test_gradient_heatmaps_end_their_colour_scale_at_the_ceiling() -> None:
    runs = [run_info(a, **{"activation.name": a}) for a in ("relu", "tanh")]
    histories = {  # ‖∂L/∂Wˡ‖ = scale × 10^-l × (1 + step), l = 1, 2, 3
        "relu": history(3, [0, 5, 10], [5], scale=1e258),
        "tanh": history(3, [0, 5, 10], [5]),
    }
    data = Data(runs, histories, ["activation.name"], [((r.name,), r) for r in runs])
    style.apply()
    fig, _, _ = gradients.gradient_heatmaps(data)
    assert style.render(fig, ["png"])["png"].startswith(b"\x89PNG")  # before: OverflowError
    norm = fig.axes[0].collections[0].norm
    assert (norm.vmin, norm.vmax) == (1e-3, CEILING)


def test_panel_runs_keep_every_activation_at_the_last_depth() -> None:
    runs = [
        run_info(f"{a}{d}", **{"activation.name": a, "model.depth": d})
        for a in bpcore.ACTIVATIONS
        for d in ("3", "10")
    ]
    keys = common.config_keys(runs)
    panels, note = common.panel_runs(runs, keys, 16)
    assert [c for c, _ in panels] == [(a, "10") for a in bpcore.ACTIVATIONS]
    assert note == "showing depth=10 only"
    panels, note = common.panel_runs(runs, keys, 4)
    assert len(panels) == 4 and panels[0][0] == ("identity", "3") and "4 of 28" in note
    few, note = common.panel_runs(runs[:4], keys, 16)
    assert len(few) == 4 and note == ""


def test_activation_curves_cover_the_registry() -> None:
    z = np.linspace(-4, 4, 81)
    curves = activations.activation_curves(z)
    assert list(curves) == list(bpcore.ACTIVATIONS)
    for f, fp, sup in curves.values():
        assert f.shape == fp.shape == z.shape and np.all(fp <= sup + 1e-12)


def test_final_values_across_depth_and_in_a_depth_by_width_table() -> None:
    runs, histories = [], {}
    for a in ("relu", "tanh"):
        for d in ("1", "4"):
            for w in ("8", "32"):
                for s in ("0", "1"):
                    name = f"{a}{d}{w}{s}"
                    scale = int(d) * int(w) * (1 + int(s)) * (2 if a == "tanh" else 1)
                    runs.append(
                        run_info(
                            name,
                            **{"activation.name": a, "model.depth": d},
                            **{"model.width": w, "seed": s},
                        )
                    )
                    histories[name] = history(2, [0], [1, 2], scale=float(scale))
    histories["tanh4320"] = history(2, [0], [1, 2], scale=np.inf)  # diverged: left out
    assert common.final_value(histories["relu180"], "val/loss") == 8.0  # 2 · scale / epoch 2
    assert np.isnan(common.final_value(histories["relu180"], "no/such"))
    assert np.isnan(common.final_value(histories["tanh4320"], "val/loss"))
    lines = depth.across(
        histories, runs, "model.depth", "val/loss", ["activation.name", "model.width"]
    )
    relu8 = lines[("relu", "8")]
    np.testing.assert_array_equal(relu8.x, [1, 4])
    np.testing.assert_allclose(
        relu8.mean, [12.0, 48.0]
    )  # val = 2 · scale / 2 epochs … mean of s=0,1
    np.testing.assert_allclose(relu8.lo, [8.0, 32.0])
    np.testing.assert_allclose(lines[("tanh", "32")].mean, [96.0, 512.0])  # seed 0 diverged
    depths, widths, matrix = depth.table(histories, runs, "model.depth", "model.width", "val/loss")
    assert (depths, widths) == (["1", "4"], ["8", "32"])
    assert matrix[0, 0] == (8 + 16 + 16 + 32) / 4  # relu and tanh, both seeds
    assert matrix[1, 1] == (128 + 256 + 512) / 3  # the diverged run is not averaged in


def test_batch_size_curves_and_steps_to_a_target() -> None:
    assert batch.steps_to_target(np.array([10, 20, 30]), np.array([1.0, 0.5, 0.1]), 0.3) == 25.0
    assert batch.steps_to_target(np.array([10, 20]), np.array([0.2, 0.1]), 0.3) == 10.0
    assert np.isnan(batch.steps_to_target(np.array([10, 20]), np.array([np.inf, 0.5]), 0.3))
    assert batch.steps_to_target(np.array([10, 20]), np.array([np.nan, 0.2]), 0.3) == 20.0
    runs = [
        run_info("b8", **{"train.batch_size": "8", "seed": "0"}),
        run_info("full", **{"train.batch_size": "full", "seed": "0"}),
    ]
    histories = {"b8": history(2, [0], [1, 2]), "full": history(2, [0], [4, 8], scale=2.0)}
    assert batch.batch_size_of(runs[0], histories["b8"]) == 8.0
    assert batch.batch_size_of(runs[1], histories["full"]) == 32.0  # examples / steps
    by_examples = batch.loss_against(histories, runs, ["train.batch_size"], common.EXAMPLES_KEY)
    np.testing.assert_array_equal(by_examples[("full",)].x, [128, 256])
    np.testing.assert_allclose(by_examples[("full",)].mean, [0.5, 0.25])
    by_seconds = batch.loss_against(histories, runs, ["train.batch_size"], common.SECONDS_KEY)
    np.testing.assert_allclose(by_seconds[("8",)].x, [0.01, 0.02])
    by_step = batch.loss_against(histories, runs, ["train.batch_size"], None)
    assert batch.default_target(by_step.values(), reached_by=1.0) == 0.5  # best: 0.5 and 0.25
    assert batch.default_target(by_step.values(), reached_by=0.0) == 0.25
    assert batch.first_loss_ceiling(by_step.values()) == 1.1 * 1.0  # first: 1, 0.5
    assert batch.first_loss_ceiling([common.band([(np.array([1]), np.array([np.inf]))])]) is None


def test_layer_histograms_are_fractions_on_bin_centres() -> None:
    h = History(2)
    edges = {
        "activation": np.array([[-1.0, 0.0, 1.0]] * 2),
        "delta": np.array([[1e-4, 1e-2, 1.0]] * 2),
    }
    h.add_histograms(
        0, edges, {"activation": np.array([[1, 3], [2, 2]]), "delta": np.array([[4, 0], [0, 0]])}
    )
    later = {**edges, "activation": np.array([[-2.0, 0.0, 2.0]] * 2)}  # each step its own range
    h.add_histograms(
        5, later, {"activation": np.array([[0, 4], [4, 0]]), "delta": np.array([[1, 1], [2, 2]])}
    )
    assert h.histogram_kinds == ["activation", "delta"]
    step, centres, fractions = histograms.layer_histograms(h, "activation", "first")
    assert step == 0
    np.testing.assert_allclose(centres, [[-0.5, 0.5]] * 2)
    np.testing.assert_allclose(fractions, [[0.25, 0.75], [0.5, 0.5]])
    step, centres, fractions = histograms.layer_histograms(h, "delta", "first")
    np.testing.assert_allclose(centres, [[1e-3, 1e-1]] * 2)  # geometric: log-spaced bins
    np.testing.assert_allclose(fractions, [[1.0, 0.0], [0.0, 0.0]])  # no counts: zeros, no NaN
    assert histograms.layer_histograms(h, "delta", "last")[0] == 5
    step, centres, _ = histograms.layer_histograms(h, "activation", "last")
    np.testing.assert_allclose(centres, [[-1.0, 1.0]] * 2)


def test_decision_surface_of_a_known_classifier() -> None:
    data = bpcore.make_dataset("moons", n_samples=100, seed=3)
    net = bpcore.MLP([2, 2, 2], activation="identity", output="softmax")
    net.weights[0][...] = np.eye(2) * data.x_std  # z¹ = raw x − μ (standardization undone)
    net.biases[0][...] = 0.0
    net.weights[1][...] = [[-5.0, 5.0], [0.0, 0.0]]  # class 1 where raw x₁ > μ₁
    net.biases[1][...] = [0.0, 0.0]
    surface = boundaries.decision_surface(net, data, resolution=21)
    assert surface.proba.shape == (21, 21, 2) and surface.x.shape == (80, 2)
    np.testing.assert_allclose(surface.x, data.unstandardize(data.x_train))
    right = surface.gx > data.x_mean[0]
    assert (surface.proba[:, right, 1] > 0.5).all() and (surface.proba[:, ~right, 1] < 0.5).all()
    with pytest.raises(ValueError, match="2-D inputs"):
        boundaries.decision_surface(net, bpcore.make_dataset("sawtooth"))


def test_a_diverged_nets_boundary_is_said_not_drawn_and_warns_nothing() -> None:
    data = bpcore.make_dataset("moons", n_samples=100, seed=3)
    net = bpcore.MLP([2, 8, 8, 2], activation="selu", output="softmax")
    for w in net.weights:
        w[...] = 1e200  # what an overflowing update leaves: finite weights, no finite output
    fig = style.figure(style.ONE_COLUMN, 2.0)
    ax = fig.subplots()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        surface = boundaries.decision_surface(net, data, resolution=11)
        boundaries.draw_surface(ax, surface)
    assert not np.isfinite(surface.proba).all()
    assert not ax.images and [t.get_text() for t in ax.texts] == ["no boundary:\nthe net diverged"]
    assert len(ax.collections) == 1  # the training points


def test_run_dataset_rebuilds_the_data_from_params() -> None:
    params = {"data.name": "spirals", "data.n_samples": "120", "data.noise": "0.1"}
    params |= {"data.seed": "4", "data.val_fraction": "0.25", "data.k": "None"}
    data = boundaries.run_dataset(params)
    expected = bpcore.make_dataset("spirals", n_samples=120, noise=0.1, seed=4, val_fraction=0.25)
    np.testing.assert_array_equal(data.x_train, expected.x_train)
    np.testing.assert_array_equal(data.y_val, expected.y_val)


def test_figures_are_chosen_by_what_the_runs_vary() -> None:
    h = history(2, [0], [1])
    runs = [run_info("a", **{"model.depth": "2"}), run_info("b", **{"model.depth": "4"})]
    data = Data(runs, {"a": h, "b": h}, ["model.depth"], [(("2",), runs[0])])
    assert set(registry.chosen(data)) == {*ALWAYS, "depth_vs_width"}
    data.keys = ["model.depth", "model.width", "train.batch_size"]
    data.models = {"a": bpcore.MLP([2, 3, 2])}
    h.add_histograms(0, {"activation": np.zeros((2, 3))}, {"activation": np.zeros((2, 2), int)})
    more = {"depth_width_heatmap", "batch_size", "histograms", "decision_boundaries"}
    assert set(registry.chosen(data)) == {*ALWAYS, "depth_vs_width", *more}


@pytest.mark.parametrize("figure", ["depth_width_heatmap", "depth_vs_width"])
def test_depth_figures_render_per_dataset_and_budget(tmp_path: Path, figure: str) -> None:
    from matplotlib.image import imread

    runs, histories = [], {}
    for data in ("spirals", "sawtooth"):
        for d, w in ((1, 8), (1, 16), (4, 8), (4, 16)):
            params = {"model.depth": str(d), "model.width": str(w), "data.name": data}
            runs.append(run_info(f"{data}{d}{w}", **params, **{"model.param_budget": "2500"}))
            histories[runs[-1].run_id] = history(2, [0], [1], scale=float(d * w))
    keys = ["data.name", "model.depth", "model.width"]
    style.apply()
    fig, shown, used = registry.figure(figure).draw(Data(runs, histories, keys, []))
    (path,) = style.save(fig, tmp_path / figure, ["png"])
    assert imread(path).std() > 0 and shown == runs and "val/loss" in used
    titles = {ax.get_title() for ax in fig.axes} - {""}
    expected = {"spirals (≈ 2500 parameters)", "sawtooth (≈ 2500 parameters)"}
    assert titles == (
        {"data=spirals", "data=sawtooth"} if figure == "depth_width_heatmap" else expected
    )


def test_depth_vs_width_at_a_budget_names_each_depths_width() -> None:
    """The width a budget gives is in the run's name only (``tanh-d3-w48-…``)."""
    assert depth.width_of(RunInfo("a", "tanh-d3-w48-b32-s0")) == "48"
    assert depth.width_of(RunInfo("a", "b800-linear-s1 · tanh-d3-w32")) == "32"
    assert depth.width_of(RunInfo("a", "wide-run")) == "?"
    runs, histories = [], {}
    for d, w in ((1, 97), (4, 30)):
        params = {"model.depth": str(d), "data.name": "spirals", "model.param_budget": "500"}
        runs.append(RunInfo(f"r{d}", f"relu-d{d}-w{w}-b32-s0", params, {"diverged": "false"}))
        histories[f"r{d}"] = history(2, [0], [1])
    style.apply()
    fig, _, _ = depth.depth_vs_width(Data(runs, histories, ["model.depth"], []))
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["1\nw 97", "4\nw 30"]


# --- end to end: a real sweep, the CLI, MLflow ---


@dataclass
class Sweep:
    folder: Path
    uri: str
    parent_id: str
    run_ids: set[str]


SPAWNED = (  # `python -m experiments.plots` with spawned workers (the start method on macOS)
    "import multiprocessing, sys; multiprocessing.set_start_method('spawn'); "
    "from experiments.plots import main; main(sys.argv[1:])"
)


def cli(folder: Path, uri: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m *args`` in ``folder`` on the store ``uri``."""
    return python(folder, uri, "-m", *args)


def python(folder: Path, uri: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    return subprocess.run(
        [sys.executable, *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    """activation=relu,tanh × model.depth=1,2 × batch 16, full, with histograms: 8 tiny runs
    under one parent (≈ 12 s)."""
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("plots")
    uri = f"sqlite:///{folder}/mlflow.db"
    args = ["experiments.train", "-m", "activation=relu,tanh", "model.depth=1,2", *TINY]
    args += ["train.batch_size=16,full", "log.histograms=true"]
    done = cli(folder, uri, *args)
    assert done.returncode == 0, done.stderr
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name("default").experiment_id
    runs = client.search_runs([experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    parent_id = parent.info.run_id
    children = {r.info.run_id for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id}
    assert len(children) == 8
    crashed = client.create_run(experiment_id, tags={"mlflow.parentRunId": parent_id}).info
    client.log_param(crashed.run_id, "activation.name", "relu")
    client.set_terminated(crashed.run_id, "FAILED")  # never plotted: not FINISHED
    return Sweep(folder, uri, parent_id, children)


@pytest.mark.slow
def test_figure_data_equals_what_mlflow_logged(sweep: Sweep) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(sweep.uri)
    run = client.get_run(sorted(sweep.run_ids)[0])
    info = RunInfo(run.info.run_id, run.info.run_name, run.data.params, run.data.tags)
    path = client.download_artifacts(info.run_id, "history.npz", str(sweep.folder))
    histories = {info.run_id: History.load(path)}

    def logged(key: str) -> tuple[list[int], list[float]]:
        metrics = sorted(client.get_metric_history(info.run_id, key), key=lambda m: m.step)
        return [m.step for m in metrics], [m.value for m in metrics]

    layers, first = gradients.grad_flow(histories, [info], "first")[info.run_id]
    keys = [f"grad_norm/layer_{l:02d}" for l in layers[:-1]] + ["grad_norm/output"]
    assert [logged(key)[1][0] for key in keys] == list(first)
    steps, _, matrix = common.per_layer_over_time(histories[info.run_id], "grad_norm")
    assert logged(keys[1]) == (list(steps), list(matrix[1]))  # layer_02, or a depth-1 output
    (curves,) = losses.loss_curves_of(histories, [info], [])
    assert logged("val/loss") == (
        list(curves.by_step["val/loss"].x),
        list(curves.by_step["val/loss"].mean),
    )
    # The decision-boundary panel's net and data are the run's: they give its logged val loss.
    model = client.download_artifacts(info.run_id, boundaries.MODEL_FILE, str(sweep.folder))
    data = boundaries.run_dataset(info.params)
    loss, accuracy = bpcore.evaluate(
        boundaries.load_model(model, info.params), data.x_val, data.y_val, "cross_entropy"
    )
    assert (loss, accuracy) == (logged("val/loss")[1][-1], logged("val/accuracy")[1][-1])


@pytest.mark.slow
def test_plots_cli_writes_every_figure_and_logs_them(sweep: Sweep) -> None:
    from matplotlib.image import imread
    from mlflow import MlflowClient

    out = sweep.folder / "figs"
    done = cli(sweep.folder, sweep.uri, "experiments.plots", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr
    expected = [out / f"{name}.{fmt}" for name in SWEEP_FIGURES for fmt in ("png", "pdf")]
    assert done.stdout.splitlines()[: len(expected) + 1] == [str(p) for p in expected] + [
        str(out / "manifest.json")
    ]
    table = (out / "summary.md").read_text()  # one row per config, printed too
    assert len([line for line in table.splitlines() if line.startswith("| ")]) == 1 + 8
    assert table in done.stdout
    for name in SWEEP_FIGURES:
        pixels = imread(out / f"{name}.png")
        assert pixels.std() > 0 and pixels.shape[1] in (680, 1400), name  # 3.4 or 7.0 in
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["selection"]["resolved"]["sweep"] == sweep.parent_id
    flow = manifest["figures"]["gradient_flow.pdf"]
    assert {r["id"] for r in flow["runs"]} == sweep.run_ids
    assert flow["metric_keys"] == ["profile/delta_norm_init", "theory/chi1"]  # ‖δˡ‖, √χ₁ lines
    assert manifest["figures"]["activation_gallery.png"]["runs"] == []
    for file, entry in manifest["figures"].items():
        assert entry["caption"] == registry.figure(file.rpartition(".")[0]).caption
    logged = MlflowClient(sweep.uri).list_artifacts(sweep.parent_id, "figures")
    files = {"manifest.json", "summary.md", "summary.csv"}
    assert {Path(a.path).name for a in logged} == {p.name for p in expected} | files


@pytest.mark.slow
def test_same_runs_give_identical_pdf_and_svg_bytes(sweep: Sweep) -> None:
    """Also whatever the workers' start method: the second command spawns them."""
    folders = [sweep.folder / "again_a", sweep.folder / "again_b"]
    for folder, command in zip(folders, (("-m", "experiments.plots"), ("-c", SPAWNED))):
        args = ("--out", str(folder), "--formats", "pdf,svg")
        done = python(sweep.folder, sweep.uri, *command, *args)
        assert done.returncode == 0, done.stderr
    files = sorted(p.name for p in folders[0].iterdir())
    assert len(files) == 2 * len(SWEEP_FIGURES) + 3  # the manifest, summary.md, summary.csv
    for name in files:
        assert (folders[0] / name).read_bytes() == (folders[1] / name).read_bytes(), name


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--experiment", "nope"], "error: no experiment 'nope' in sqlite:///"),
        (["--filter", "params.model.depth = '99'"], "error: no FINISHED runs in sqlite:///"),
        (["--sweep", "0123abc"], "error: no run '0123abc' in sqlite:///"),
    ],
)
def test_empty_or_unknown_selection_fails_with_one_line(
    sweep: Sweep, args: list[str], message: str
) -> None:
    done = cli(
        sweep.folder, sweep.uri, "experiments.plots", "--out", str(sweep.folder / "x"), *args
    )
    assert done.returncode == 1
    assert done.stderr.startswith(message) and len(done.stderr.strip().splitlines()) == 1
    assert args[-1] in done.stderr and not (sweep.folder / "x").exists()


OVERFLOW = "cannot convert float infinity to integer"  # what loss_curves raised on a 1e257 loss


DRAW = plots_cli.draw


def draw_all_but_loss_curves(name: str, data: Data, formats: list[str]) -> plots_cli.Drawn:
    """The CLI's ``draw`` (module level: the workers unpickle it), loss_curves failing."""
    if name == "loss_curves":
        raise OverflowError(OVERFLOW)
    return DRAW(name, data, formats)


@pytest.mark.slow
def test_a_figure_that_fails_is_named_and_the_others_are_written(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI with the store replaced by two runs in memory and loss_curves raising."""
    runs = [run_info(a, **{"activation.name": a, "seed": "0"}) for a in ("relu", "tanh")]
    histories = {r.run_id: history(2, [0, 5, 10], [5, 10]) for r in runs}
    for h in histories.values():
        h.add("act", 0, {f"act_{s}/layer_{l:02d}": 0.5 for s in ("mean", "std") for l in (1, 2)})
    logged: list[str] = []
    monkeypatch.setattr(plots_cli, "check_store", lambda uri: None)
    monkeypatch.setattr(plots_cli, "select", lambda *args: Selection("exp", "parent", runs))
    monkeypatch.setattr(plots_cli, "read_histories", lambda uri, runs: histories)
    monkeypatch.setattr(plots_cli, "read_classifiers", lambda uri, runs: {})
    monkeypatch.setattr(
        plots_cli, "log_files", lambda *args: logged.extend(p.name for p in args[2])
    )
    monkeypatch.setattr(plots_cli, "draw", draw_all_but_loss_curves)
    with pytest.raises(SystemExit) as exited:
        plots_cli.main(["--out", str(tmp_path), "--formats", "png"])
    assert exited.value.code == 1
    error = f"error: figure loss_curves not drawn: OverflowError: {OVERFLOW}"
    assert capsys.readouterr().err.splitlines() == [error]
    others = [name for name in ALWAYS if name != "loss_curves"]  # the gallery among them
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(
        [f"{n}.png" for n in others] + ["manifest.json", "summary.csv", "summary.md"]
    )
    assert sorted(logged) == written
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["not_drawn"] == {"loss_curves": f"OverflowError: {OVERFLOW}"}


def plots_failing_on(uri: str, folder: Path, prefix: Sequence[str] = ()) -> str:
    """``python -m experiments.plots`` on the store ``uri``: it fails within seconds with a
    line or two and no traceback; the last line."""
    started = time.monotonic()
    command = [*prefix, sys.executable, "-m", "experiments.plots", "--tracking-uri", uri]
    done = subprocess.run(
        [*command, "--out", str(folder / "figs")],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) <= 2 and lines[-1].startswith("error: "), done.stderr
    assert time.monotonic() - started < 45  # MLflow alone retries a database for ≈ 100 s
    assert not (folder / "figs").exists()
    return lines[-1]


def test_plots_on_a_garbage_file_say_so_in_one_line(tmp_path: Path) -> None:
    store = tmp_path / "mlflow.db"
    store.write_bytes(np.random.default_rng(0).bytes(20_000))
    line = plots_failing_on(f"sqlite:///{store}", tmp_path)
    what = f"{store} cannot be read as an MLflow store (file is not a database)"
    assert line == f"error: {what}; check --tracking-uri or $MLFLOW_TRACKING_URI"


def test_plots_on_a_closed_port_say_so_in_one_line(tmp_path: Path) -> None:
    uri = "postgresql://u@127.0.0.1:1/db"  # nothing listens on port 1
    line = plots_failing_on(uri, tmp_path)
    assert line.startswith(f"error: cannot connect to the MLflow store {uri}: ")
    assert "Connection refused" in line


def read_only_prefix(folder: Path) -> list[str]:
    """The command prefix under which ``folder`` (mode 555) cannot be written to: none for a
    user; for root, setpriv without the capabilities that let root write anywhere."""
    if os.geteuid() != 0:
        return []
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    touch = [*prefix, "touch", str(folder / "probe")]
    if not shutil.which("setpriv") or subprocess.run(touch, capture_output=True).returncode == 0:
        pytest.skip("as root, which writes to read-only folders, and setpriv cannot drop that")
    return prefix


@pytest.mark.slow
def test_plots_on_a_store_in_a_read_only_folder_say_so_in_one_line(tmp_path: Path) -> None:
    """A store that misses a table (left half-created): MLflow creates it before it reads,
    and fails in a read-only folder (reading alone needs no writes)."""
    from mlflow import MlflowClient

    folder = tmp_path / "store"
    folder.mkdir()
    uri = f"sqlite:///{folder}/mlflow.db"
    MlflowClient(uri).search_experiments()  # creates the store
    with contextlib.closing(sqlite3.connect(folder / "mlflow.db")) as db:
        db.execute("DROP TABLE params")
        db.commit()
    folder.chmod(0o555)
    try:
        line = plots_failing_on(uri, tmp_path, read_only_prefix(folder))
    finally:
        folder.chmod(0o755)
    assert (
        line == f"error: MLflow cannot read the store {uri}: attempt to write a readonly database"
    )


def test_gallery_redraw_names_the_missing_store_or_shot_and_touches_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from experiments.figures import gallery

    monkeypatch.setattr(gallery, "WORK", tmp_path / "gallery")
    monkeypatch.setattr(gallery, "DOCS", tmp_path / "docs")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "kept.png").write_bytes(b"png")
    store = tmp_path / "gallery" / "mlflow.db"
    with pytest.raises(SystemExit, match=f"no gallery store {store}: run `make gallery` first"):
        gallery.main(["--redraw"])
    store.parent.mkdir()
    with contextlib.closing(sqlite3.connect(store)) as db, db:
        db.execute("CREATE TABLE experiments (name TEXT)")
        db.executemany("INSERT INTO experiments VALUES (?)", [(s.name,) for s in gallery.SHOTS[1:]])
    first = gallery.SHOTS[0].name
    with pytest.raises(SystemExit, match=f"has no runs of the shot\\(s\\) {first}: run"):
        gallery.main(["--redraw"])
    assert (tmp_path / "docs" / "kept.png").exists()  # nothing removed before the check


def test_the_readme_gallery_is_what_the_gallery_command_writes(
    compose_config: Callable[..., Any],
) -> None:
    """Every image README.md and docs/*.md show is a figure a gallery shot draws, in docs/;
    every shot names figures of the registry."""
    from experiments.figures import gallery

    shown = []
    for page in [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]:
        for link in re.findall(r"!\[[^\]]*\]\(([^)\s]+\.png)\)", page.read_text()):
            shown.append((page.parent / link).resolve().relative_to(PROJECT_ROOT).as_posix())
    written = [gallery.image(shot, name) for shot in gallery.SHOTS for name in shot.figures]
    assert shown and set(shown) <= set(written) and len(set(written)) == len(written)
    assert gallery.unknown_figures() == []
    assert {name for shot in gallery.SHOTS for name in shot.figures} <= set(FIGURES)
    for path in written:
        assert (PROJECT_ROOT / path).stat().st_size > 10_000, path
    for shot in gallery.SHOTS:
        compose_config(list(shot.sweep))  # each sweep's overrides compose


def readme_figure_table() -> list[tuple[str, str, str]]:
    """The rows (figure, when, what) of the figure table of docs/figures.md, headed
    "| figure | when | what |"."""
    lines = (PROJECT_ROOT / "docs" / "figures.md").read_text().splitlines()
    start = lines.index("| figure | when | what |")
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("| `"):
            break  # the table's end
        name, when, what = (cell.strip() for cell in line.strip("|").split(" | "))
        rows.append((name.strip("`"), when, what.replace("\\|", "|")))
    return rows


def test_the_documented_figure_table_is_the_registry() -> None:
    """The figure table (docs/figures.md, linked from the README) is documentation of the
    registry: every figure, in its order, with its one-line description; "always" there is
    what the registry draws for any selection."""
    table = readme_figure_table()
    assert [(name, what) for name, _, what in table] == [(k.name, k.what) for k in registry.FIGURES]
    assert sorted(name for name, when, _ in table if when == "always") == sorted(ALWAYS)


def test_every_figure_has_a_caption_of_what_is_drawn_and_how_to_read_it() -> None:
    for kind in registry.FIGURES:
        what = kind.what[0].upper() + kind.what[1:]
        assert kind.caption.startswith(f"{what}. "), kind.name
        reading = kind.caption.removeprefix(f"{what}. ")
        assert reading.endswith(".") and reading.count(". ") == 0, kind.name  # one sentence


def test_histograms_of_a_single_config() -> None:
    h = history(3, [0, 5], [1])
    edges = {
        "activation": np.array([[-1.0, 0.0, 1.0]] * 3),
        "delta": np.array([[1e-4, 1e-2, 1.0]] * 3),
    }
    counts = {"activation": np.ones((3, 2), int), "delta": np.ones((3, 2), int)}
    for step in (0, 5):
        h.add_histograms(step, edges, counts)
    run = run_info("a")
    data = Data([run], {"a": h}, [], [((), run)])
    assert histograms.has_histograms(data)
    style.apply()
    fig, shown, _ = histograms.histograms(data)
    assert shown == [run] and style.render(fig, ["png"])["png"].startswith(b"\x89PNG")
    # the first |δ| bin (zeros) is a share in the title, not a point at 1e-16 on the log axis
    assert histograms.zero_fraction(h, "last") == 0.5  # 1 of the 2 bins of each hidden layer
    delta_panel = fig.axes[2]
    assert delta_panel.get_title() == "|δ| = 0: 50%"
    assert all(line.get_xdata().min() > 1e-4 for line in delta_panel.lines)
    assert histograms.decade_ticks(1e-5, 2e-2) == [1e-5, 1e-3]  # 4 decades: every other one


def test_lr_sensitivity_stars_each_configs_chosen_lr_and_marks_diverged_seeds() -> None:
    """relu: lr 0.1 has the lower mean (0.4 < 0.6); tanh: a seed of lr 0.1 diverged, so 0.01
    wins although the other seed did better."""
    from experiments.figures import lr

    losses = {
        ("relu", 0.01): [0.5, 0.7],
        ("relu", 0.1): [0.3, 0.5],
        ("tanh", 0.01): [0.2, 0.2],
        ("tanh", 0.1): [0.1, None],  # None: diverged
    }
    runs, histories = [], {}
    for (activation, rate), values in losses.items():
        for seed, value in enumerate(values):
            name = f"{activation}-{rate}-{seed}"
            params = {"activation.name": activation, "optim.lr": str(rate), "seed": str(seed)}
            diverged = value is None
            run = run_info(name, 3 if diverged else None, stage="tune", **params)
            h = History(2)
            h.add("epoch", 5, {"val/loss": 1.0 if diverged else value})
            runs.append(run)
            histories[name] = h
    data = Data([], histories, [], [], tuning=runs)
    assert registry.figure("lr_sensitivity").can_show(data)
    style.apply()
    fig, shown, used = lr.lr_sensitivity(data)
    stars = [line for line in fig.axes[0].lines if line.get_marker() == "*"]
    assert sorted((float(s.get_xdata()[0]), float(s.get_ydata()[0])) for s in stars) == [
        (0.01, pytest.approx(0.2)),
        (0.1, pytest.approx(0.4)),
    ]
    crosses = [
        line for line in fig.axes[0].lines if line.get_marker() == "x" and len(line.get_xdata())
    ]
    assert [list(c.get_xdata()) for c in crosses] == [[0.1]]
    assert shown == runs and used == ["val/loss"]
    assert style.render(fig, ["png"])["png"].startswith(b"\x89PNG")


def test_lr_sensitivity_puts_many_configs_in_a_panel_per_first_key_value() -> None:
    """3 activations × 2 depths (6 configs > ONE_PANEL): a panel per activation, a star per
    depth in each; the band needs 3 seeds (2 give no width, 3 the Student-t interval)."""
    from scipy import stats

    from experiments.figures import lr

    runs, histories = [], {}
    for activation in ("relu", "selu", "tanh"):
        for layers in ("3", "10"):
            for rate in (0.01, 0.1):
                for seed in range(2):
                    name = f"{activation}-{layers}-{rate}-{seed}"
                    params = {"activation.name": activation, "model.depth": layers}
                    params |= {"optim.lr": str(rate), "seed": str(seed)}
                    runs.append(run_info(name, None, stage="tune", **params))
                    histories[name] = History(2)
                    histories[name].add("epoch", 5, {"val/loss": rate + seed / 10})
    style.apply()
    fig, _, _ = lr.lr_sensitivity(Data([], histories, [], [], tuning=runs))
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["relu", "selu", "tanh"]
    for ax in panels:
        assert len([line for line in ax.lines if line.get_marker() == "*"]) == 2
    assert lr.t_band([1.0, 2.0]) == (1.5, 1.5)
    low, high = stats.t.interval(0.95, 2, loc=2.0, scale=stats.sem([1.0, 2.0, 3.0]))
    assert lr.t_band([1.0, 2.0, 3.0]) == (pytest.approx(low), pytest.approx(high))
    assert style.render(fig, ["png"])["png"].startswith(b"\x89PNG")


def test_lr_vs_batch_draws_the_chosen_lr_of_each_batch_size() -> None:
    """Batch 16 does best at lr 0.1, 64 at 0.3, 256 at 1.0 (validation loss): the points; the
    linear rule through batch 16 reaches 0.1 · 256/16 = 1.6 at batch 256."""
    from experiments.figures import batch

    best = {"16": 0.1, "64": 0.3, "256": 1.0}
    runs, histories = [], {}
    for size, winner in best.items():
        for rate in (0.1, 0.3, 1.0):
            name = f"b{size}-{rate}"
            params = {"train.batch_size": size, "optim.lr": str(rate), "seed": "100"}
            runs.append(run_info(name, stage="tune", **params))
            histories[name] = History(2)
            histories[name].add("epoch", 5, {"val/loss": 0.1 if rate == winner else 0.5})
    data = Data([], histories, [], [], tuning=runs)
    assert registry.figure("lr_vs_batch").can_show(data)
    style.apply()
    fig, shown, _ = batch.lr_vs_batch(data)
    lines = {line.get_label(): line for line in fig.axes[0].lines}
    chosen = lines["chosen on validation loss"]
    assert list(chosen.get_xdata()) == [16, 64, 256] and list(chosen.get_ydata()) == [0.1, 0.3, 1.0]
    linear = lines["lr ∝ B (linear)"]
    assert linear.get_ydata()[-1] == pytest.approx(1.6) and shown == runs


def test_batch_axis_labels_sizes_that_stay_apart_and_always_the_largest() -> None:
    style.apply()
    fig = style.figure(style.ONE_COLUMN, 2.0)
    ax = fig.subplots()
    ax.plot([1, 600], [1, 2])
    common.batch_axis(ax, [1, 4, 16, 64, 256, 600])  # 256 is 0.37 decades below 600
    fig.draw_without_rendering()
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["1", "4", "16", "64", "", "600"]
