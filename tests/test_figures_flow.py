"""The gradient-flow, moments, per-layer and mean-field figures drawn from tiny real runs (bpcore,
no tracking, no processes): what each draws, against independent expectations, and that each
passes the automatic checks of a reviewer (``tests/figure_checks.problems``)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pytest
from figure_checks import problems as reviewer_problems
from figure_checks import visible_texts

import bpcore
from bpcore.inits import NormalBias
from experiments.diagnostics.history import History
from experiments.diagnostics.recorder import DiagnosticsRecorder
from experiments.diagnostics.theory import theory_callbacks
from experiments.figures import gradients, layers, moments, registry, style, theory
from experiments.figures.common import Data, RunInfo, group_runs

pytestmark = pytest.mark.usefixtures("one_blas_thread")


def geometric_mean(values: list[float]) -> float:
    """exp(mean(ln v)): what the log-axis figures draw over seeds."""
    return math.exp(sum(math.log(v) for v in values) / len(values))


SEEDS = ("0", "1", "2")


def tiny_run(
    activation: str,
    depth: int,
    seed: int,
    width: int = 8,
    sigma_w2: float = 1.0,
    sigma_b2: float = 0.0,
    data: str = "spirals",
) -> History:
    """A depth × width net, 2 epochs of SGD with every diagnostic the figures read: per-layer
    metrics, profiles, theory metrics and the training-set gradient."""
    dataset = bpcore.make_dataset(data, n_samples=120)
    init = bpcore.get_initializer("lecun_normal", gain=math.sqrt(sigma_w2))
    bias = NormalBias(std=math.sqrt(sigma_b2)) if sigma_b2 else 0.0
    sizes = [dataset.x_train.shape[1], *[width] * depth, int(dataset.y_train.max()) + 1]
    net = bpcore.MLP(sizes, activation, "softmax", init, seed, bias_init=bias)
    recorder = DiagnosticsRecorder(3)
    extra = theory_callbacks(net, dataset, "cross_entropy", recorder.record, 3)
    sgd = bpcore.get_optimizer("sgd", 0.1)
    bpcore.fit(net, dataset, "cross_entropy", sgd, 16, epochs=2, callbacks=[recorder, *extra])
    recorder.record_profiles()
    return recorder.history


def data_of(runs: Iterable[tuple[dict[str, str], History]], keys: list[str]) -> Data:
    """Figure data of (params, history) pairs, one panel per config (its lowest seed)."""
    infos, histories = [], {}
    for i, (params, history) in enumerate(runs):
        infos.append(RunInfo(str(i), str(i), params))
        histories[str(i)] = history
    panels = [(c, g[0]) for c, g in group_runs(infos, keys).items()]
    return Data(infos, histories, keys, panels)


@pytest.fixture(scope="module")
def activations() -> Data:
    """relu, leaky_relu, tanh at depth 4, three seeds each: the activations preset in small."""
    runs = [
        ({"activation.name": a, "seed": s}, tiny_run(a, 4, int(s)))
        for a in ("relu", "leaky_relu", "tanh")
        for s in SEEDS
    ]
    return data_of(runs, ["activation.name"])


@pytest.fixture(scope="module")
def nielsen() -> Data:
    """Sigmoid nets of width 30 with 2 and 3 hidden layers, biases N(0, 1): Nielsen's."""
    runs = [
        (
            {"activation.name": "sigmoid", "model.width": "30", "model.depth": str(d), "seed": s},
            tiny_run("sigmoid", d, int(s), width=30, sigma_b2=1.0),
        )
        for d in (2, 3)
        for s in SEEDS[:2]
    ]
    return data_of(runs, ["model.depth"])


@pytest.fixture(scope="module")
def chaos() -> Data:
    """tanh over σ_w² ∈ {0.5, 1.5, 3} × depth ∈ {3, 6}, σ_b² = 0.05: edge_of_chaos in small."""
    runs = [
        (
            {"init.gain": f"{math.sqrt(w):.4f}", "model.depth": str(d), "seed": s},
            tiny_run("tanh", d, int(s), sigma_w2=w, sigma_b2=0.05),
        )
        for w in (0.5, 1.5, 3.0)
        for d in (3, 6)
        for s in SEEDS[:2]
    ]
    return data_of(runs, ["init.gain", "model.depth"])


def problems(fig) -> list[str]:
    """``figure_checks.problems`` and every text that reaches past the page's edge (a legend
    row or a label wider than the figure is cut off when saved)."""
    found = reviewer_problems(fig)
    page = fig.bbox
    for text in visible_texts(fig):
        box = text.get_window_extent()
        if (
            box.x0 < page.x0 - 1
            or box.x1 > page.x1 + 1
            or box.y0 < page.y0 - 1
            or box.y1 > page.y1 + 1
        ):
            found.append(f"{text.get_text()[:40]!r} reaches past the page")
    return found


def visible(fig) -> list:
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]


# --- gradient_flow: ‖δˡ‖ per activation family with √χ₁ ---


def test_gradient_flow_has_a_panel_per_family_and_the_mean_field_through_the_top(
    activations: Data,
) -> None:
    fig, shown, keys = gradients.gradient_flow(activations)
    axes = visible(fig)
    assert [ax.get_title() for ax in axes] == ["tanh", "relu"]  # leaky_relu shares relu's
    assert keys == [gradients.DELTA_PROFILE, theory.CHI1] and len(shown) == 9
    relu = [activations.histories[r.run_id] for r in activations.runs[:3]]
    top = geometric_mean([h.series(gradients.DELTA_PROFILE)[1][-1] for h in relu])
    bottom = geometric_mean([h.series(gradients.DELTA_PROFILE)[1][0] for h in relu])
    dashed = [ln for ln in axes[1].get_lines() if ln.get_gid() == theory.MEAN_FIELD_GID]
    assert len(dashed) == 2  # relu and leaky_relu
    x, y = (np.asarray(v, dtype=float) for v in dashed[0].get_data())
    assert (x[0], x[-1]) == (1, 4) and y[-1] == pytest.approx(top)
    assert y[0] == pytest.approx(top * 0.5**1.5)  # χ₁ = σ_w²/2 for relu: (√½)³ below the top
    assert bottom < top  # ‖δˡ‖ falls towards the input at σ_w² = 1
    names = {t.get_text() for t in axes[1].texts}
    assert names == {"relu", "leaky_relu"}
    assert problems(fig) == []


def test_gradient_heatmaps_set_the_output_layer_apart(activations: Data) -> None:
    fig, _, _ = gradients.gradient_heatmaps(activations)
    for ax in visible(fig):
        (mesh,) = ax.collections
        assert mesh.get_array().shape[0] == 5  # 4 hidden layers and the output × steps
        assert [t.get_text() for t in ax.get_yticklabels()][-1] == "out"
        assert [ln.get_ydata()[0] for ln in ax.get_lines()] == [4.5]  # the white line
    assert problems(fig) == []


# --- layer_moments: squared mean and variance with the mean field ---


def test_mean_field_moments_of_relu_halve_per_layer_at_sigma_w2_one() -> None:
    """He et al.: relu with σ_w² = 1 halves E[a²] per layer; a wide layer's mean is √(q/2π)
    and its variance q/2 − q/2π (q the pre-activation variance)."""
    squares, variances = moments.mean_field_moments("relu", 1.0, 0.0, 0.4, 1.0, 5)
    np.testing.assert_allclose((squares + variances)[1:] / (squares + variances)[:-1], 0.5)
    q = 1.0 / 2**3  # the 5th layer's pre-activation variance: σ_w² p⁴, p⁴ = 1/2³
    assert squares[-1] == pytest.approx(q / (2 * math.pi), rel=1e-9)
    assert variances[-1] == pytest.approx(q / 2 - q / (2 * math.pi), rel=1e-9)
    selu_sq, selu_var = moments.mean_field_moments("selu", 1.0, 0.0, 0.0, 1.0, 10)
    assert np.all(selu_sq < 1e-6) and np.allclose(selu_var, 1, atol=1e-4)  # the fixed point


def test_layer_moments_draw_each_quantity_with_seeds_and_theory(activations: Data) -> None:
    fig, _, keys = moments.layer_moments(activations)
    axes = visible(fig)
    assert [ax.get_title() for ax in axes] == list(moments.QUANTITIES.values())
    assert "act_mean/layer_01" in keys and "act_mean/output" not in keys
    dashed = [[ln for ln in ax.get_lines() if ln.get_gid() == theory.MEAN_FIELD_GID] for ax in axes]
    assert len(dashed[1]) == 3  # the variance of relu, leaky_relu, tanh
    assert len(dashed[0]) in (2, 3)  # tanh's mean field mean is 0: off a log panel
    assert problems(fig) == []


# --- per-layer figures over training ---


def test_activation_stats_draw_hidden_layers_against_epochs(activations: Data) -> None:
    fig, _, keys = layers.activation_stats(activations)
    assert all("/output" not in k for k in keys)
    for ax in visible(fig):
        assert len(ax.get_lines()) >= 4  # one mean line per hidden layer (+ error bar caps)
        assert ax.get_xlim()[1] <= 2.5  # epochs, not steps
    assert problems(fig) == []


@pytest.mark.parametrize("name", ["saturation_dead", "update_ratio"])
def test_layer_grids_colour_only_the_hidden_layers(activations: Data, name: str) -> None:
    fig, _, _ = registry.figure(name).draw(activations)
    (bar,) = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert bar.get_ylim() == (0.5, 4.5)  # hidden layers 1 … 4, no 5th
    assert problems(fig) == []


def test_speed_of_learning_draws_the_books_values_and_seed_means(nielsen: Data) -> None:
    fig, shown, _ = layers.speed_of_learning(nielsen)
    axes = visible(fig)
    assert [ax.get_title() for ax in axes] == ["depth=2", "depth=3"] and len(shown) == 4
    book = [ln for ln in axes[1].get_lines() if ln.get_marker() == "D"]
    assert sorted(ln.get_ydata()[0] for ln in book) == [0.012, 0.060, 0.283]
    assert {t.get_text() for t in axes[1].texts} == {"l = 1", "l = 2", "l = 3", "output"}
    assert axes[0].get_shared_y_axes().joined(axes[0], axes[1])
    assert problems(fig) == []


def test_theory_overlay_is_the_seed_mean_with_the_book(nielsen: Data) -> None:
    fig, _, _ = theory.theory_overlay(nielsen)
    axes = visible(fig)
    book = [ln for ln in axes[0].get_lines() if ln.get_marker() == "D"]
    assert list(book[0].get_ydata()) == [0.07, 0.31]
    runs = [r for r in nielsen.runs if r.params["model.depth"] == "2"]
    full = "full_bias_grad_norm/layer_02"
    top = geometric_mean([nielsen.histories[r.run_id].series(full)[1][0] for r in runs])
    dashed = [ln for ln in axes[0].get_lines() if ln.get_gid() == theory.MEAN_FIELD_GID]
    assert dashed[0].get_ydata()[-1] == pytest.approx(top)
    assert problems(fig) == []


# --- edge of chaos ---


def test_trainability_is_a_heatmap_of_the_seed_mean(chaos: Data) -> None:
    fig, _, _ = theory.trainability(chaos)
    (ax,) = visible(fig)
    (mesh,) = ax.collections
    grid = mesh.get_array().reshape(2, 3)  # depth × σ_w²
    runs = [
        chaos.histories[r.run_id]
        for r in chaos.runs
        if r.params["model.depth"] == "6" and r.params["init.gain"] == "1.2247"
    ]
    expected = 100 * np.mean([h.series("val/accuracy")[1][-1] for h in runs])
    assert grid[1, 1] == pytest.approx(expected)
    assert problems(fig) == []


def test_chi1_growth_encodes_depth_and_sigma_b2(chaos: Data) -> None:
    fig, shown, _ = theory.chi1_growth(chaos)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"σ_b² = 0.05", "3 hidden layers", "6 hidden layers"} <= set(labels)
    assert len(shown) == 12
    assert problems(fig) == []


def test_each_changed_figure_renders(activations: Data) -> None:
    fig, _, _ = gradients.gradient_flow(activations)
    assert style.render(fig, ["png"])["png"].startswith(b"\x89PNG")


def test_gradient_flow_draws_the_weight_gradient_of_runs_without_delta_or_bias_norms() -> None:
    """Runs logged before profiles and bias gradients: ‖∂L/∂Wˡ‖ of the hidden layers, named so
    on the y axis (the output layer left out)."""
    h = History(3)
    for step in (0, 5):
        norms = {"grad_norm/layer_01": 1e-3, "grad_norm/layer_02": 1e-1, "grad_norm/output": 1.0}
        h.add("step", step, norms)
    data = data_of([({"activation.name": "relu", "seed": "0"}, h)], ["activation.name"])
    fig, _, keys = gradients.gradient_flow(data)
    assert keys == ["grad_norm/layer_01", "grad_norm/layer_02"]
    (line,) = [ln for ln in visible(fig)[0].get_lines() if len(ln.get_xdata())]
    assert list(line.get_ydata()) == pytest.approx([1e-3, 1e-1])
    assert "partial W" in fig.get_supylabel()
    assert problems(fig) == []


def test_the_readme_gradient_flow_claim_at_small_size() -> None:
    """README, the gradient_flow caption: where χ₁ < 1, ‖δˡ‖ at init falls from the top hidden
    layer to the first by the mean field's (√χ₁)^(H−1) within 0.3 decades; where χ₁ = 1 it
    stays within a factor 10. Here depth 10, width 32, σ_w² = 1, geometric mean of 3 seeds."""
    from bpcore.theory import chi1

    for activation in ("sigmoid", "relu", "tanh"):
        falls = []
        for seed in range(3):
            profile = tiny_run(activation, 10, seed, width=32).series(gradients.DELTA_PROFILE)[1]
            falls.append(math.log10(profile[0] / profile[-1]))
        measured = sum(falls) / len(falls)
        mean_field = 0.5 * 9 * math.log10(chi1(activation, 1.0, 0.0))
        if activation == "tanh":
            assert mean_field == pytest.approx(0.0, abs=1e-6) and abs(measured) < 1.0
        else:
            assert mean_field < -1 and measured == pytest.approx(mean_field, abs=0.3)


def test_a_run_with_one_logged_step_gets_dots_not_an_empty_panel() -> None:
    """A full-batch run of 8 steps logs its update ratios once: lines of one point draw
    nothing, so each layer is a dot (the output layer's black)."""
    history = History()
    ratios = {"update_ratio/layer_01": 1e-2, "update_ratio/layer_02": 3e-2}
    history.add("step", 0, ratios | {"update_ratio/output": 5e-2})
    data = data_of([({"train.batch_size": "full"}, history)], ["train.batch_size"])
    fig, _, _ = layers.update_ratio(data)
    (ax,) = visible(fig)
    (dots,) = [c for c in ax.collections if len(c.get_offsets()) == 2]
    np.testing.assert_allclose(np.asarray(dots.get_offsets())[:, 1], [1e-2, 3e-2])
    assert [ln.get_marker() for ln in ax.get_lines() if ln.get_color() == style.BLACK] == ["o"]
