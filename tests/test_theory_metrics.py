"""The per-run theory metrics and full-batch gradients the experiment layer logs."""

from __future__ import annotations

import math

import numpy as np
import pytest

import bpcore
from experiments.diagnostics.recorder import DiagnosticsRecorder
from experiments.diagnostics.theory import mean_field_inputs, theory_callbacks

DATA = bpcore.make_dataset("spirals", n_samples=200)


def _net(hidden: list[int], seed: int = 0) -> bpcore.MLP:
    sizes = [DATA.n_features, *hidden, DATA.n_outputs]
    return bpcore.MLP(sizes, "tanh", "softmax", "xavier_normal", seed)


def test_mean_field_inputs_need_equal_hidden_layers() -> None:
    act, sigma_w2, sigma_b2 = mean_field_inputs(_net([8, 8, 8])) or (None, 0, 0)
    assert act is not None and act.name == "tanh"
    assert (sigma_w2, sigma_b2) == (pytest.approx(1.0), 0.0)  # xavier, fan_in = fan_out: σ_w² = 1
    assert mean_field_inputs(_net([8])) is None
    assert mean_field_inputs(_net([8, 16])) is None


def test_logged_theory_and_full_gradient() -> None:
    """Step 0: the full-batch bias gradients are those of the initial net on the whole training
    set (the minibatch update already applied is undone exactly, to rounding); the theory
    family holds the mean-field numbers of the init."""
    net = _net([8, 8, 8])
    recorder = DiagnosticsRecorder(5)
    theory = theory_callbacks(net, DATA, "cross_entropy", recorder.record, full_gradient_every=5)
    sgd = bpcore.get_optimizer("sgd", 0.1)
    bpcore.fit(net, DATA, "cross_entropy", sgd, 16, epochs=2, callbacks=[recorder, *theory])
    _, bp = _net([8, 8, 8]).loss_and_grads(DATA.x_train, DATA.y_train, "cross_entropy")
    history = recorder.history
    tags = ["layer_01", "layer_02", "layer_03", "output"]  # 3 hidden layers, then the output
    for tag, b in zip(tags, bp.db, strict=True):
        steps, values = history.series(f"full_bias_grad_norm/{tag}")
        assert steps[0] == 0
        assert values[0] == pytest.approx(np.linalg.norm(b), rel=1e-10)
    assert history.series("theory/chi1")[1][0] == pytest.approx(bpcore.theory.chi1("tanh", 1, 0))
    assert math.isfinite(history.series("theory/measured_slope")[1][0])
    b_simple = history.series("noise/B_simple")[1]
    assert len(b_simple) == 4 and np.all(np.isfinite(b_simple))  # steps 0, 5, 10, 15
