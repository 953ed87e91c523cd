"""Gradient-flow diagnostics against independent numpy computations, and the history file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import bpcore
from bpcore.training import minibatches
from experiments.diagnostics.history import History
from experiments.diagnostics.recorder import (
    BATCH_LOSS,
    GLOBAL_GRAD_NORM,
    DiagnosticsRecorder,
    layer_diagnostics,
    metric_keys,
    remedy_diagnostics,
    remedy_keys,
)
from experiments.figures.common import per_layer_over_time

SIZES = [2, 16, 16, 16, 2]
LR = 0.1
F_PRIME = {  # independent f′ from the activations a (or z for relu)
    "tanh": lambda z, a: 1 - a**2,
    "sigmoid": lambda z, a: a * (1 - a),
    "relu": lambda z, a: (z > 0).astype(float),
}
MAX_GRAD = {"tanh": 1.0, "sigmoid": 0.25, "relu": 1.0}


@pytest.fixture(scope="module")
def data() -> bpcore.Dataset:
    return bpcore.make_dataset("spirals", n_samples=200)  # 160 train examples


def run(
    net: bpcore.MLP, data: bpcore.Dataset, recorder: DiagnosticsRecorder, **fit_args: int
) -> bpcore.FitResult:
    opt = bpcore.get_optimizer("sgd", lr=LR)
    return bpcore.fit(net, data, "cross_entropy", opt, callbacks=[recorder], **fit_args)


def first_record(history: History) -> dict[str, float]:
    return {key: float(history.series(key)[1][0]) for key in history.keys}


def test_metric_keys_format() -> None:
    """Hidden layers are layer_01 …, the last weight matrix is output, whatever the depth."""
    keys = metric_keys(4)
    assert keys[:4] == [*(f"grad_norm/layer_0{i}" for i in range(1, 4)), "grad_norm/output"]
    assert len(keys) == len(set(keys)) == 5 * 4 + 2 * 3
    assert "saturation/layer_03" in keys and "dead/layer_03" in keys
    assert not any(k.endswith(("layer_04", "output")) for k in keys[5 * 4 :])
    assert not any(k.endswith("layer_04") for k in keys)
    assert metric_keys(12)[10:12] == ["grad_norm/layer_11", "grad_norm/output"]


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
@pytest.mark.parametrize("batch_size", [160, 32])  # full batch, minibatch
def test_step_zero_matches_numpy(data: bpcore.Dataset, activation: str, batch_size: int) -> None:
    net = bpcore.MLP(SIZES, activation=activation, seed=3)
    ref = bpcore.MLP(SIZES, activation=activation, seed=3)  # the initial parameters
    sent: list[tuple[int, dict[str, float]]] = []
    recorder = DiagnosticsRecorder(every_n_steps=100, sink=lambda step, m: sent.append((step, m)))
    run(net, data, recorder, max_steps=1, batch_size=batch_size)
    batch = next(minibatches(len(data.x_train), batch_size, np.random.default_rng(0)))  # fit's
    loss, bp = ref.loss_and_grads(data.x_train[batch], data.y_train[batch], "cross_entropy")
    step, got = sent[0]  # then an epoch record when the batch is full
    assert step == 0 and got[BATCH_LOSS] == pytest.approx(loss, rel=1e-12)
    L = len(SIZES) - 1
    assert set(got) == {BATCH_LOSS, *metric_keys(L), GLOBAL_GRAD_NORM}
    all_grads = np.concatenate([g.ravel() for g in (*bp.dW, *bp.db)])
    assert got[GLOBAL_GRAD_NORM] == pytest.approx(np.linalg.norm(all_grads), rel=1e-10)
    for l in range(L):
        t = f"layer_{l + 1:02d}" if l < L - 1 else "output"
        g, a = bp.dW[l], bp.activations[l]
        assert got[f"grad_norm/{t}"] == pytest.approx(np.linalg.norm(g), rel=1e-10)
        assert got[f"bias_grad_norm/{t}"] == pytest.approx(np.linalg.norm(bp.db[l]), rel=1e-10)
        assert got[f"act_mean/{t}"] == pytest.approx(np.mean(a), rel=1e-10, abs=1e-14)
        assert got[f"act_std/{t}"] == pytest.approx(np.std(a), rel=1e-10)
        # SGD: ΔW = −lr·g, so ‖ΔW‖/‖W_before‖ = lr‖g‖/‖W₀‖
        expected = LR * np.linalg.norm(g) / np.linalg.norm(ref.weights[l])
        assert got[f"update_ratio/{t}"] == pytest.approx(expected, rel=1e-10)
        if l < L - 1:
            fp = F_PRIME[activation](bp.zs[l], a)
            assert got[f"saturation/{t}"] == np.mean(np.abs(fp) < 0.05 * MAX_GRAD[activation])
            assert got[f"dead/{t}"] == np.mean(np.all(fp == 0, axis=0))
    assert "saturation/output" not in got and "dead/output" not in got


def test_float32_net_accumulates_in_float64(data: bpcore.Dataset) -> None:
    net = bpcore.MLP(SIZES, activation="tanh", dtype="float32")
    recorder = DiagnosticsRecorder(1)
    run(net, data, recorder, max_steps=1)
    ref = bpcore.MLP(SIZES, activation="tanh", dtype="float32")
    _, bp = ref.loss_and_grads(data.x_train, data.y_train, "cross_entropy")
    got = first_record(recorder.history)["grad_norm/layer_02"]
    assert got == pytest.approx(np.linalg.norm(bp.dW[1].astype(np.float64)), rel=1e-5)


@pytest.mark.parametrize(("scale", "low", "high"), [(1e3, 0.9, 1.0), (1e-6, 0.0, 0.0)])
def test_sigmoid_saturation_with_huge_and_tiny_weights(
    data: bpcore.Dataset, scale: float, low: float, high: float
) -> None:
    net = bpcore.MLP(SIZES, activation="sigmoid")
    for W in net.weights:
        W *= scale
    recorder = DiagnosticsRecorder(1)
    run(net, data, recorder, max_steps=1)
    got = first_record(recorder.history)
    for l in (1, 2, 3):
        assert low <= got[f"saturation/layer_{l:02d}"] <= high


@pytest.mark.parametrize(("z", "saturated"), [(-1.5, 0.0), (-4.0, 1.0)])
def test_gelu_saturation_is_a_small_slope_of_either_sign(
    data: bpcore.Dataset, z: float, saturated: float
) -> None:
    """GELU′(−1.5) = Φ(−1.5) − 1.5 φ(−1.5) ≈ −0.13: steep, not saturated, though below 5% of
    sup GELU′ ≈ 1.13; GELU′(−4) ≈ −5e-4 is flat.  Every pre-activation of layer 1 is z."""
    net = bpcore.MLP(SIZES, activation="gelu")
    net.weights[0][:] = 0.0
    net.biases[0][:] = z
    recorder = DiagnosticsRecorder(1)
    run(net, data, recorder, max_steps=1)
    assert first_record(recorder.history)["saturation/layer_01"] == saturated


def test_relu_layer_with_very_negative_bias_is_dead(data: bpcore.Dataset) -> None:
    net = bpcore.MLP(SIZES, activation="relu")
    net.biases[1][:] = -1e3
    recorder = DiagnosticsRecorder(1)
    run(net, data, recorder, max_steps=1)
    got = first_record(recorder.history)
    assert got["dead/layer_02"] == 1.0 and got["saturation/layer_02"] == 1.0
    assert got["dead/layer_01"] < 1.0


def test_recorded_steps_epochs_and_sink(data: bpcore.Dataset) -> None:
    sent: list[tuple[int, dict[str, float]]] = []
    recorder = DiagnosticsRecorder(3, sink=lambda step, m: sent.append((step, m)))
    assert [recorder.wants_step(s) for s in range(4)] == [True, False, False, True]
    net = bpcore.MLP(SIZES, activation="tanh")
    run(net, data, recorder, batch_size=32, epochs=2)  # 5 steps per epoch
    h = recorder.history
    np.testing.assert_array_equal(h.series("grad_norm/layer_01")[0], [0, 3, 6, 9])
    np.testing.assert_array_equal(h.series(BATCH_LOSS)[0], [0, 3, 6, 9])
    steps, epochs = h.series("progress/epoch")
    np.testing.assert_array_equal(steps, [5, 10])
    np.testing.assert_array_equal(epochs, [1.0, 2.0])
    np.testing.assert_array_equal(h.series("progress/examples_seen")[1], [160.0, 320.0])
    for key in ("train/loss", "val/loss", "train/accuracy", "val/accuracy", "progress/seconds"):
        assert len(h.series(key)[1]) == 2
    # the sink got exactly what is stored, nothing else (no histograms)
    assert sorted({k for _, m in sent for k in m}) == sorted(h.keys)
    for key in h.keys:
        want = [(s, m[key]) for s, m in sent if key in m]
        steps, values = h.series(key)
        assert want == list(zip(steps.tolist(), values.tolist()))
    assert all(type(v) is float for _, m in sent for v in m.values())


def test_regression_has_no_accuracy() -> None:
    recorder = DiagnosticsRecorder(1)
    history = recorder.history
    recorder.on_epoch_end(bpcore.EpochReport(1, 5, 80, 0.1, 0.5, 0.6, None, None))
    assert history.keys == [
        "train/loss", "val/loss", "progress/epoch", "progress/examples_seen", "progress/seconds"
    ]  # fmt: skip


def test_history_round_trip_with_nan_and_histograms(data: bpcore.Dataset, tmp_path: Path) -> None:
    recorder = DiagnosticsRecorder(2, histograms=True, histogram_bins=20)
    net = bpcore.MLP(SIZES, activation="relu")
    run(net, data, recorder, batch_size=40, epochs=2)  # steps 0..7, recorded 0, 2, 4, 6
    h = recorder.history
    step_keys = [BATCH_LOSS, *metric_keys(4), GLOBAL_GRAD_NORM]
    diverging = {key: float(h.series(key)[1][-1]) for key in step_keys}
    diverging |= {
        BATCH_LOSS: math.nan,
        "grad_norm/layer_01": math.inf,
        "act_mean/layer_03": -math.inf,
    }
    diverging["grad_norm/layer_02"] = math.nan
    h.add("step", 8, diverging)  # a last record as a diverging run would leave it
    path = tmp_path / "diagnostics.npz"
    h.save(path)
    loaded = History.load(path)
    assert loaded.keys == h.keys and loaded.n_layers == 4
    for key in h.keys:
        for want, got in zip(h.series(key), loaded.series(key)):
            np.testing.assert_array_equal(got, want, strict=True)
    assert np.isnan(loaded.series("grad_norm/layer_02")[1][-1])
    with np.load(path, allow_pickle=False) as raw:
        assert raw["grad_norm"].shape == (5, 4) and raw["saturation"].shape == (5, 3)
        assert raw["step"].dtype == np.int64 and raw["train_loss"].shape == (2,)
        meta = json.loads(str(raw["meta"]))
        assert meta["schema_version"] == 3 and meta["metric_keys"] == h.keys
        assert raw["hist_activation_counts"].shape == (4, 4, 20)
    for kind in ("activation", "delta"):
        steps, edges, counts = loaded.histogram(kind)
        np.testing.assert_array_equal(steps, [0, 2, 4, 6])
        assert edges.shape == (4, 4, 21) and np.all(np.diff(edges, axis=2) > 0)
        np.testing.assert_array_equal(counts.sum(axis=2), np.tile([40 * 16] * 3 + [40 * 2], (4, 1)))
        for want, got in zip(h.histogram(kind), (steps, edges, counts)):
            np.testing.assert_array_equal(got, want)
    # each step's activation bins span that step's values: none piles up in an end bin
    _, edges, _ = loaded.histogram("activation")
    for step, layer_edges in zip([0, 2, 4, 6], edges, strict=True):
        assert layer_edges[0, -1] > 0 and layer_edges[0, -1] == -layer_edges[0, 0], step
    assert not np.array_equal(edges[0], edges[-1])  # the range moved with training


def test_schema_1_histories_still_load(data: bpcore.Dataset, tmp_path: Path) -> None:
    """Schema 1 kept one set of histogram edges for every step: they apply to each step."""
    recorder = DiagnosticsRecorder(2, histograms=True, histogram_bins=10)
    run(bpcore.MLP(SIZES, activation="tanh"), data, recorder, batch_size=40, epochs=1)
    recorder.history.save(tmp_path / "v2.npz")
    with np.load(tmp_path / "v2.npz", allow_pickle=False) as raw:
        arrays = {name: raw[name] for name in raw.files}
    meta = json.loads(str(arrays["meta"])) | {"schema_version": 1}
    arrays["meta"] = np.array(json.dumps(meta))
    for kind in ("activation", "delta"):
        arrays[f"hist_{kind}_edges"] = arrays[f"hist_{kind}_edges"][0]  # as schema 1 stored it
    np.savez(tmp_path / "v1.npz", **arrays)
    old = History.load(tmp_path / "v1.npz")
    steps, edges, counts = old.histogram("activation")
    assert edges.shape == (len(steps), 4, 11)
    np.testing.assert_array_equal(edges[-1], arrays["hist_activation_edges"])
    np.testing.assert_array_equal(counts, recorder.history.histogram("activation")[2])


def test_histograms_off_by_default(data: bpcore.Dataset, tmp_path: Path) -> None:
    recorder = DiagnosticsRecorder(1)
    run(recorder=recorder, net=bpcore.MLP(SIZES), data=data, max_steps=2)
    recorder.history.save(tmp_path / "h.npz")
    with np.load(tmp_path / "h.npz", allow_pickle=False) as raw:
        assert not any(name.startswith("hist") for name in raw.files)
    with pytest.raises(KeyError):
        History.load(tmp_path / "h.npz").histogram("activation")


def test_direct_call_and_validation(data: bpcore.Dataset) -> None:
    with pytest.raises(ValueError, match="every_n_steps"):
        DiagnosticsRecorder(0)
    net = bpcore.MLP([2, 3, 2], activation="tanh")
    _, bp = net.loss_and_grads(data.x_train[:4], data.y_train[:4], "cross_entropy")
    report = bpcore.StepReport(0, 0, 0, 0.7, bp, [], net)  # no update applied
    got = layer_diagnostics(report)
    assert list(got) == metric_keys(2) and math.isnan(got["update_ratio/layer_01"])
    h = History()
    h.add("step", 0, {"a": 1.0})
    with pytest.raises(ValueError, match="keys"):
        h.add("step", 1, {"b": 1.0})


def test_profiles_per_hidden_layer_at_the_first_and_last_recorded_step(
    data: bpcore.Dataset,
) -> None:
    """profile/delta_norm_init at step l is ‖δˡ‖_F of the first minibatch; the output layer
    has no point; final is the last recorded step's."""
    net = bpcore.MLP(SIZES, activation="tanh", seed=3)
    ref = bpcore.MLP(SIZES, activation="tanh", seed=3)
    recorder = DiagnosticsRecorder(every_n_steps=2)
    run(net, data, recorder, max_steps=4, batch_size=32)
    recorder.record_profiles()
    batch = next(minibatches(len(data.x_train), 32, np.random.default_rng(0)))
    _, bp = ref.loss_and_grads(data.x_train[batch], data.y_train[batch], "cross_entropy")
    steps, deltas = recorder.history.series("profile/delta_norm_init")
    np.testing.assert_array_equal(steps, [1, 2, 3])  # 3 hidden layers; not the output (4)
    expected = [np.linalg.norm(bp.deltas[l]) for l in range(3)]
    np.testing.assert_allclose(deltas, expected, rtol=1e-10)
    _, variances = recorder.history.series("profile/act_var_init")
    np.testing.assert_allclose(variances, [np.var(bp.activations[l]) for l in range(3)], rtol=1e-10)
    _, final = recorder.history.series("profile/grad_norm_final")
    last = [recorder.history.series(f"grad_norm/layer_0{l}")[1][-1] for l in (1, 2, 3)]
    assert recorder.history.series("grad_norm/layer_01")[0][-1] == 2
    np.testing.assert_array_equal(final, last)


def test_a_file_of_schema_2_loads_with_the_output_layer_renamed(tmp_path: Path) -> None:
    """Before schema 3 the output layer's keys had its number (layer_03 of a depth-2 net);
    such a file, written as the old ``save`` wrote it, loads with them as …/output."""
    meta = {
        "schema_version": 2,
        "n_layers": 3,
        "metric_keys": [*(f"grad_norm/layer_0{i}" for i in (1, 2, 3)), "dead/layer_01", "val/loss"],
        "families": {
            "step": {"steps": "step", "keys": [*(f"grad_norm/layer_0{i}" for i in (1, 2, 3))]},
            "epoch": {"steps": "epoch_step", "keys": ["val/loss"]},
        },
        "columns": {
            **{f"grad_norm/layer_0{i}": ["grad_norm", i - 1] for i in (1, 2, 3)},
            "dead/layer_01": ["dead", 0],
            "val/loss": ["val_loss", None],
        },
        "histogram_kinds": [],
    }
    meta["families"]["step"]["keys"].append("dead/layer_01")
    np.savez(
        tmp_path / "old.npz",
        step=np.array([0, 5]),
        epoch_step=np.array([5]),
        grad_norm=np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
        dead=np.array([[0.0], [0.5]]),
        val_loss=np.array([0.7]),
        meta=np.array(json.dumps(meta)),
    )
    old = History.load(tmp_path / "old.npz")
    assert old.keys == [
        *("grad_norm/layer_01", "grad_norm/layer_02", "grad_norm/output", "dead/layer_01"),
        "val/loss",
    ]
    np.testing.assert_array_equal(old.series("grad_norm/output")[1], [3.0, 6.0])
    np.testing.assert_array_equal(old.series("dead/layer_01")[1], [0.0, 0.5])
    _, layers, matrix = per_layer_over_time(old, "grad_norm")  # as every figure reads it
    np.testing.assert_array_equal(layers, [1, 2, 3])
    np.testing.assert_array_equal(matrix[:, 0], [1.0, 2.0, 3.0])
    old.save(tmp_path / "new.npz")  # and it is written in the current schema
    with np.load(tmp_path / "new.npz", allow_pickle=False) as raw:
        np.testing.assert_array_equal(raw["grad_norm"][:, 2], [3.0, 6.0])
        assert json.loads(str(raw["meta"]))["schema_version"] == 3
    assert History.load(tmp_path / "new.npz").keys == old.keys


def test_summary_over_hidden_units_and_first_over_last_hidden_gradient(
    data: bpcore.Dataset,
) -> None:
    """A relu net [2, 8, 24, 4, 2] with half its 24-unit layer dead: the dead fraction counts
    units of every hidden layer (12 of 36 at least), the gradient ratio is ‖∂L/∂W¹‖ over
    ‖∂L/∂W³‖ (the last hidden layer, not the output)."""
    sizes = [2, 8, 24, 4, 2]
    net, ref = (bpcore.MLP(sizes, activation="relu", seed=1) for _ in range(2))
    for m in (net, ref):
        m.biases[1][:12] = -1e3
    recorder = DiagnosticsRecorder(every_n_steps=100)
    run(net, data, recorder, max_steps=1, batch_size=160)  # one full-batch step: init = final
    recorder.record_summary(1, {"summary/lr": LR})
    _, bp = ref.loss_and_grads(data.x_train, data.y_train, "cross_entropy")
    dead = sum(int(np.sum(np.all(bp.zs[l] <= 0, axis=0))) for l in range(3))
    saturated = sum(int(np.sum(bp.zs[l] <= 0)) for l in range(3)) / 160  # relu′ = 0 there
    ratio = math.log10(np.linalg.norm(bp.dW[0]) / np.linalg.norm(bp.dW[2]))
    got = {key: float(recorder.history.series(key)[1][0]) for key in recorder.history.keys}
    assert got["summary/dead_fraction"] == pytest.approx(dead / 36) and dead >= 12
    assert got["summary/saturated_fraction"] == pytest.approx(saturated / 36)
    for when in ("init", "final"):
        assert got[f"summary/log10_grad_ratio_{when}"] == pytest.approx(ratio, rel=1e-10)
    assert got["summary/lr"] == LR
    assert recorder.history.series("summary/lr")[0][0] == 1


def test_remedy_diagnostics_match_numpy(data: bpcore.Dataset) -> None:
    """A LayerNorm net with skips (α = 0.5), γ and β away from init, step reported with a
    clipped fraction: every remedy metric against numpy on the pass's own arrays."""
    net = bpcore.MLP([2, 6, 6, 2], activation="tanh", norm="layer", residual=True, seed=1)
    net.residual_scale = 0.5
    rng = np.random.default_rng(0)
    for gamma, beta in zip(net.gammas, net.betas, strict=True):
        gamma[...], beta[...] = rng.uniform(0.5, 2.0, 6), rng.normal(size=6)
    x = data.x_train[:16]
    _, bp = net.loss_and_grads(x, data.y_train[:16], "cross_entropy")
    got = remedy_diagnostics(bpcore.StepReport(0, 0, 0, 0.7, bp, [], net, 0.25))
    assert list(got) == remedy_keys(net, clipping=True)
    everything = np.concatenate([g.ravel() for g in (*bp.dW, *bp.db, *bp.dgamma, *bp.dbeta)])
    assert got["grad_norm/global"] == pytest.approx(np.linalg.norm(everything), rel=1e-12)
    assert got["clip/fraction"] == 0.25
    a = x
    for l in range(2):
        z = a @ net.weights[l] + net.biases[l]
        mean, var = z.mean(axis=1, keepdims=True), z.var(axis=1, keepdims=True)
        y = net.gammas[l] * (z - mean) / np.sqrt(var + 1e-5) + net.betas[l]
        tag = f"layer_{l + 1:02d}"
        assert got[f"prenorm_mean/{tag}"] == pytest.approx(z.mean(), rel=1e-12)
        assert got[f"prenorm_var/{tag}"] == pytest.approx(z.var(), rel=1e-12)
        assert got[f"postnorm_mean/{tag}"] == pytest.approx(y.mean(), rel=1e-12)
        assert got[f"postnorm_var/{tag}"] == pytest.approx(y.var(), rel=1e-12)
        saturated = np.mean(1 - np.tanh(y) ** 2 < 0.05)  # f′ at the activation's input
        assert layer_diagnostics(bpcore.StepReport(0, 0, 0, 0.7, bp, [], net))[
            f"saturation/{tag}"
        ] == pytest.approx(saturated)
        branch = 0.5 * np.tanh(y)  # α·f(yˡ)
        a = a + branch if l == 1 else np.tanh(y)  # the first layer, 2 → 6, has no skip
    assert "residual_var/layer_01" not in got
    assert got["residual_var/layer_02"] == pytest.approx(np.var(branch), rel=1e-12)
