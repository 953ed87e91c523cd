"""Theory next to measurement, per run: the mean-field gradient slope and full-batch gradients.

``TheoryMetrics`` (step 0; nets with ≥ 2 equal-width hidden layers of one activation), family
"theory" — the mean-field prediction from the run's init (Poole et al. 2016, Schoenholz et al.
2017) and the same slope measured on the step-0 minibatch:

    theory/sigma_w2          fan_in · Var(W) of the hidden-to-hidden weights
    theory/sigma_b2          Var(b)
    theory/q_star, theory/chi1, theory/xi       q*, χ₁ and ξ_∇ = −1/ln χ₁
    theory/predicted_slope   −½ ln χ₁, the predicted d ln‖∂L/∂bˡ‖ / dl
    theory/measured_slope    least-squares slope of ln ‖∂L/∂bˡ‖ over the hidden layers

The output layer is left out of the fit: its δ comes from the loss, not from the recursion.

``FullGradient`` (``log.full_gradient``; on the recorder's steps), family "full_grad": the
gradient of the mean loss over the whole training set at the parameters the step's minibatch
gradient was taken at (W − ΔW), i.e. one more forward + backward pass over n_train examples
per logged step:

    train/full_loss                the training-set loss there (steps to a target loss)
    full_bias_grad_norm/layer_XX   ‖∂C/∂bˡ‖ of the training-set mean (Nielsen ch. 5's measure;
                                   …/output for the output layer)
    noise/grad_sq_small            |G_B|², the step's minibatch gradient (every parameter)
    noise/grad_sq_big              |G_n|², the training-set gradient
    noise/B_simple                 McCandlish et al.'s tr(Σ)/|G|² over the last NOISE_WINDOW
                                   logged steps (``bpcore.noise_scale``); NaN at full batch
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Callable, Mapping

import numpy as np

import bpcore
from bpcore import theory
from bpcore.activations import Array
from bpcore.noise_scale import noise_scale
from experiments.diagnostics.recorder import layer_tag, norm

Record = Callable[[str, int, Mapping[str, float]], None]  # (family, step, metrics)
NOISE_WINDOW = 10  # logged steps averaged before the ratio B_simple = tr(Σ)/|G|²


def mean_field_inputs(net: bpcore.MLP) -> tuple[bpcore.Activation, float, float] | None:
    """(activation, σ_w², σ_b²) of the hidden-to-hidden layers, or None if the theory's
    assumptions (≥ 2 hidden layers, one width, one activation, no norm, no skips) do not
    hold."""
    hidden = net.layer_sizes[1:-1]
    names = {f.name for f in net.hidden_activations}
    if len(hidden) < 2 or len(set(hidden)) != 1 or len(names) != 1:
        return None
    if net.norm is not None or any(net.skips):
        return None
    return (
        net.hidden_activations[0],
        net.init.sigma_w2(hidden[0], hidden[0]),
        net.bias_init.variance(),
    )


def slope_metrics(
    activation: bpcore.Activation, sigma_w2: float, sigma_b2: float, bias_grad_norms: list[float]
) -> dict[str, float]:
    """The "theory/…" metrics for hidden-layer bias-gradient norms (input side first)."""
    return {
        "theory/sigma_w2": sigma_w2,
        "theory/sigma_b2": sigma_b2,
        "theory/q_star": theory.q_star(activation, sigma_w2, sigma_b2),
        "theory/chi1": theory.chi1(activation, sigma_w2, sigma_b2),
        "theory/xi": theory.gradient_depth_scale(activation, sigma_w2, sigma_b2),
        "theory/predicted_slope": theory.predicted_log_slope(activation, sigma_w2, sigma_b2),
        "theory/measured_slope": theory.log_slope(bias_grad_norms),
    }


class TheoryMetrics(bpcore.Callback):
    """The "theory" family at step 0 (see the module docstring)."""

    def __init__(self, inputs: tuple[bpcore.Activation, float, float], record: Record) -> None:
        self.inputs, self.record = inputs, record

    def wants_step(self, step: int) -> bool:
        return step == 0

    def on_step(self, report: bpcore.StepReport) -> None:
        norms = [norm(b) for b in report.bp.db[:-1]]
        self.record("theory", report.step, slope_metrics(*self.inputs, norms))


class FullGradient(bpcore.Callback):
    """The "full_grad" family every ``every_n_steps`` steps (see the module docstring)."""

    def __init__(self, every_n_steps: int, data: bpcore.Dataset, loss: str, record: Record) -> None:
        self.every_n_steps, self.data, self.loss, self.record = every_n_steps, data, loss, record
        self._window: deque[tuple[float, float, int]] = deque(maxlen=NOISE_WINDOW)

    def wants_step(self, step: int) -> bool:
        return step % self.every_n_steps == 0

    def on_step(self, report: bpcore.StepReport) -> None:
        if len(report.bp.zs[0]) == len(self.data.x_train):  # full batch: the step's own pass
            loss, full = report.loss, report.bp
        else:
            before = copy.copy(report.net)  # the parameters the minibatch gradient was taken at
            params: list[Array] = [
                p - u for p, u in zip(report.net.params, report.updates, strict=True)
            ]
            before.params = params
            loss, full = before.loss_and_grads(self.data.x_train, self.data.y_train, self.loss)
        metrics = {"train/full_loss": loss}
        L = len(full.db)
        metrics |= {
            f"full_bias_grad_norm/{layer_tag(l, L)}": norm(b) for l, b in enumerate(full.db)
        }
        small, big = _squared_norm(report.bp), _squared_norm(full)
        self._window.append((small, big, len(report.bp.zs[0])))
        metrics["noise/grad_sq_small"], metrics["noise/grad_sq_big"] = small, big
        metrics["noise/B_simple"] = self._b_simple(len(self.data.x_train))
        self.record("full_grad", report.step, metrics)

    def _b_simple(self, n_train: int) -> float:
        small, big, batch = (np.array(column) for column in zip(*self._window, strict=True))
        if batch.max() >= n_train:
            return math.nan
        return noise_scale(small, big, batch, n_train).b_simple


def _squared_norm(bp: bpcore.Backprop) -> float:
    """|G|² over every parameter's gradient."""
    return sum(norm(g) ** 2 for g in bp.grads)


def theory_callbacks(
    net: bpcore.MLP,
    data: bpcore.Dataset,
    loss: str,
    record: Record,
    full_gradient_every: int | None = None,
) -> list[bpcore.Callback]:
    """TheoryMetrics when the theory applies to ``net``; FullGradient every
    ``full_gradient_every`` steps if given."""
    inputs = mean_field_inputs(net)
    callbacks: list[bpcore.Callback] = [] if inputs is None else [TheoryMetrics(inputs, record)]
    if full_gradient_every is not None:
        callbacks.append(FullGradient(full_gradient_every, data, loss, record))
    return callbacks
