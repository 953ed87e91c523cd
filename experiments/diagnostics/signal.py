"""Signal propagation at initialization (Brock, De & Smith 2021), units as channels.

``SignalPropagation`` (every run, step 0), family "signal", per hidden layer l of aˡ on the
step-0 minibatch (the training pass: BatchNorm with the batch's statistics), with μ_c and σ²_c
the mean and variance of unit c over the batch and an average over the units c:

    signal_sq_mean/layer_XX     average channel squared mean   mean_c μ_c²
    signal_var/layer_XX         average channel variance       mean_c σ²_c
    signal_branch_var/layer_XX  of the residual branch α·f(yˡ) (skip layers only), as signal_var

Their sum signal_sq_mean + signal_var is E[(aˡ)²] over batch × units.  For a residual net
without a norm, of one activation and width, whose skip layers follow each other to the last
hidden layer, the mean-field recursion of ``bpcore.theory.residual_second_moments``
(Yang & Schoenholz 2017) predicts that second moment at each skip layer, started from each
example's measured mean and second moment of the first hidden layer (which has no skip) and
averaged over the batch:

    signal_theory/layer_XX      pˡ = (qˡ⁺¹ − σ_b²)/σ_w², E[(aˡ)²] of the recursion
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

import bpcore
from bpcore import theory
from bpcore.activations import Array
from experiments.diagnostics.recorder import layer_tag

Record = Callable[[str, int, Mapping[str, float]], None]  # (family, step, metrics)
FAMILY = "signal"
THEORY_EXAMPLES = 64  # examples the recursion runs from (a larger batch: evenly spaced ones)
SQ_MEAN, VAR, BRANCH_VAR, THEORY = (
    "signal_sq_mean",
    "signal_var",
    "signal_branch_var",
    "signal_theory",
)


def channel_moments(x: Array) -> tuple[float, float]:
    """(mean_c μ_c², mean_c σ²_c) of a (batch, units) array, in float64."""
    x64 = np.asarray(x, dtype=np.float64)
    return float(np.mean(x64.mean(axis=0) ** 2)), float(np.mean(x64.var(axis=0)))


def theory_layers(net: bpcore.MLP) -> range | None:
    """The skip layers the residual recursion predicts (indices, 0-based), or None if its
    assumptions do not hold: no norm, one activation, σ_w² > 0, a first hidden layer without
    a skip (its aˡ starts the recursion) and skips on every hidden layer after it."""
    hidden = range(net.n_layers - 1)
    skips = [l for l in hidden if net.skips[l]]
    if net.norm is not None or len({f.name for f in net.hidden_activations}) != 1:
        return None
    width = net.layer_sizes[-2]
    if skips != list(range(1, len(hidden))) or not skips or net.init.sigma_w2(width, width) <= 0:
        return None
    return range(1, len(hidden))


def signal_keys(net: bpcore.MLP) -> list[str]:
    """Keys of ``signal_metrics`` for ``net``, in order."""
    hidden = range(net.n_layers - 1)
    keys = [f"{f}/{layer_tag(l, net.n_layers)}" for f in (SQ_MEAN, VAR) for l in hidden]
    keys += [f"{BRANCH_VAR}/{layer_tag(l, net.n_layers)}" for l in hidden if net.skips[l]]
    return keys + [f"{THEORY}/{layer_tag(l, net.n_layers)}" for l in theory_layers(net) or ()]


def predicted_second_moments(net: bpcore.MLP, below: Array, layers: range) -> Array:
    """E[(aˡ)²] at ``layers`` by the residual recursion, from ``below`` = aˡ⁻¹ of the first.

    The recursion is per input: it runs from each example's mean and second moment over the
    units and the predictions are averaged over the examples, as the measurement is (it is
    not linear in p: started from the batch average it missed a wide net by ~15% at depth 10
    on circles, whose inputs' norms differ).  A batch of more than ``THEORY_EXAMPLES``
    examples is sampled evenly."""
    width = net.layer_sizes[layers[0] + 1]
    sigma_w2, sigma_b2 = net.init.sigma_w2(width, width), net.bias_init.variance()
    act, alpha, n = net.hidden_activations[0], net.residual_scale, len(layers) + 1
    rows = np.asarray(below, dtype=np.float64)
    rows = rows[:: -(-len(rows) // THEORY_EXAMPLES)]  # ≈ 1 ms per example and layer: a sample
    qs = [
        theory.residual_second_moments(act, sigma_w2, sigma_b2, alpha, n, float(p0), float(m0))
        for p0, m0 in zip(np.mean(rows * rows, axis=1), np.mean(rows, axis=1), strict=True)
    ]
    q: Array = np.mean(qs, axis=0)[1:]
    return (q - sigma_b2) / sigma_w2  # qˡ⁺¹ = σ_w² pˡ + σ_b²


def signal_metrics(report: bpcore.StepReport) -> dict[str, float]:
    """The "signal" metrics of one step (see the module docstring), ordered as ``signal_keys``."""
    bp, net = report.bp, report.net
    values: dict[str, float] = {}
    with np.errstate(over="ignore", invalid="ignore"):  # an exploding net: inf/NaN values
        for l in range(net.n_layers - 1):
            tag = layer_tag(l, net.n_layers)
            values[f"{SQ_MEAN}/{tag}"], values[f"{VAR}/{tag}"] = channel_moments(bp.activations[l])
            if net.skips[l]:
                values[f"{BRANCH_VAR}/{tag}"] = channel_moments(net.residual_scale * bp.hs[l])[1]
        layers = theory_layers(net)
        if layers is not None:
            predicted = predicted_second_moments(net, bp.activations[layers[0] - 1], layers)
            tags = [f"{THEORY}/{layer_tag(l, net.n_layers)}" for l in layers]
            values |= {tag: float(p) for tag, p in zip(tags, predicted, strict=True)}
    return {key: values[key] for key in signal_keys(net)}


class SignalPropagation(bpcore.Callback):
    """The "signal" family at step 0 (see the module docstring)."""

    def __init__(self, record: Record) -> None:
        self.record = record

    def wants_step(self, step: int) -> bool:
        return step == 0

    def on_step(self, report: bpcore.StepReport) -> None:
        self.record(FAMILY, report.step, signal_metrics(report))
