"""Optimizers, gradient clipping and the learning-rate scaling rule with batch size.

``step(params, grads)`` updates the parameters in place and returns the updates ΔW it applied,
arrays the caller keeps.  The training loop calls ``step_in_place`` instead, which returns the
optimizer's own update buffers (overwritten by the next step: no allocation per step).

Clipping (every optimizer; Pascanu et al. 2013), before the update uses the gradient g:

    by value   gᵢ ← min(max(gᵢ, −clip_value), clip_value)           (each component)
    by norm    g ← g · min(1, clip_norm / ‖g‖)                       (‖g‖ over all parameters)

by value first, so both bounds hold when both are set; SGD's update then has ‖ΔW‖ ≤ lr·clip_norm.
A step is *clipped* if either changed g; ``clipped_fraction`` counts them.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from bpcore.activations import Array

LR_SCALING = ("none", "linear", "sqrt")


def scaled_lr(
    lr: float, batch_size: int, rule: str = "none", reference_batch_size: int = 1
) -> float:
    """Learning rate for ``batch_size`` under ``rule``, relative to ``reference_batch_size``.

    none: lr;  linear: lr·B/B_ref (Goyal et al. 2017);  sqrt: lr·√(B/B_ref) (Krizhevsky 2014).
    """
    if rule not in LR_SCALING:
        raise ValueError(f"lr_scaling: unknown rule {rule!r}; known: {', '.join(LR_SCALING)}")
    if batch_size < 1 or reference_batch_size < 1:
        raise ValueError(
            f"batch_size and reference_batch_size must be ≥ 1, got {batch_size}, "
            f"{reference_batch_size}"
        )
    ratio = batch_size / reference_batch_size
    return {"none": lr, "linear": lr * ratio, "sqrt": lr * math.sqrt(ratio)}[rule]


def global_norm(arrays: list[Array]) -> float:
    """‖g‖ = √(Σ gᵢ²) over every entry of every array, summed in float64."""
    return math.sqrt(sum(float(np.vdot(g, g)) for g in arrays))


class Optimizer:
    """Base class: holds the learning rate, the clipping thresholds (None: off) and one update
    buffer per parameter."""

    name: ClassVar[str]

    def __init__(
        self, lr: float, clip_norm: float | None = None, clip_value: float | None = None
    ) -> None:
        if not lr > 0 or not math.isfinite(lr):
            raise ValueError(f"lr: must be a positive finite number, got {lr}")
        for key, limit in (("clip_norm", clip_norm), ("clip_value", clip_value)):
            if limit is not None and not (limit > 0 and math.isfinite(limit)):
                raise ValueError(f"{key}: must be a positive finite number or None, got {limit}")
        self.lr = lr
        self.clip_norm, self.clip_value = clip_norm, clip_value
        self.steps = self.clipped_steps = 0
        self._updates: list[Array] = []
        self._clipped: list[Array] = []

    @property
    def clipping(self) -> bool:
        return self.clip_norm is not None or self.clip_value is not None

    @property
    def clipped_fraction(self) -> float | None:
        """The fraction of steps so far whose gradient was clipped (None: clipping is off)."""
        return self.clipped_steps / max(self.steps, 1) if self.clipping else None

    def _buffers(self, params: list[Array]) -> list[Array]:
        """Zero-initialised arrays shaped like ``params``, made on first use."""
        return [np.zeros_like(p) for p in params]

    def step(self, params: list[Array], grads: list[Array]) -> list[Array]:
        """Apply one update in place; return the applied updates ΔW (new arrays, one per
        parameter)."""
        return [update.copy() for update in self.step_in_place(params, grads)]

    def step_in_place(self, params: list[Array], grads: list[Array]) -> list[Array]:
        """``step``, returning the optimizer's update buffers: the next step overwrites them."""
        if not self._updates:
            self._updates = self._buffers(params)
        self.steps += 1
        grads = self._clip(grads) if self.clipping else grads
        for i, (p, g, update) in enumerate(zip(params, grads, self._updates, strict=True)):
            self._update(i, g, update)
            p += update
        return self._updates

    def _clip(self, grads: list[Array]) -> list[Array]:
        """The clipped gradient (the optimizer's buffers; ``grads`` is left as it is)."""
        if not self._clipped:
            self._clipped = self._buffers(grads)
        clipped = self._clipped
        for g, c in zip(grads, clipped, strict=True):
            np.copyto(c, g)
        was_clipped = False
        if self.clip_value is not None:
            was_clipped = any(np.abs(g).max() > self.clip_value for g in grads)
            for c in clipped:
                np.clip(c, -self.clip_value, self.clip_value, out=c)  # each gᵢ in [−v, v]
        if self.clip_norm is not None and (norm := global_norm(clipped)) > self.clip_norm:
            was_clipped = True
            for c in clipped:
                c *= self.clip_norm / norm  # g ← g · clip_norm / ‖g‖
        self.clipped_steps += was_clipped
        return clipped

    def _update(self, i: int, grad: Array, out: Array) -> None:
        """Write parameter i's update ΔW into ``out``."""
        raise NotImplementedError


class SGD(Optimizer):
    """ΔW = −lr·g."""

    name = "sgd"

    def _update(self, i: int, grad: Array, out: Array) -> None:
        np.multiply(grad, -self.lr, out=out)


class Momentum(Optimizer):
    """Heavy ball: v ← μv + g, ΔW = −lr·v; Nesterov: ΔW = −lr·(g + μv) (PyTorch's form)."""

    name = "momentum"

    def __init__(
        self, lr: float, momentum: float = 0.9, nesterov: bool = False, **clip: float | None
    ) -> None:
        super().__init__(lr, **clip)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum: must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.nesterov = nesterov
        self._velocity: list[Array] = []

    def step_in_place(self, params: list[Array], grads: list[Array]) -> list[Array]:
        if not self._velocity:
            self._velocity = self._buffers(params)
        return super().step_in_place(params, grads)

    def _update(self, i: int, grad: Array, out: Array) -> None:
        v = self._velocity[i]
        v *= self.momentum
        v += grad
        if self.nesterov:
            np.multiply(v, self.momentum, out=out)
            out += grad
            out *= -self.lr
        else:
            np.multiply(v, -self.lr, out=out)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015): m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², ΔW = −lr·m̂/(√v̂ + ε)."""

    name = "adam"

    def __init__(
        self,
        lr: float,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        **clip: float | None,
    ) -> None:
        super().__init__(lr, **clip)
        for key, beta in (("beta1", beta1), ("beta2", beta2)):
            if not 0 <= beta < 1:
                raise ValueError(f"{key}: must be in [0, 1), got {beta}")
        if not eps > 0:
            raise ValueError(f"eps: must be positive, got {eps}")
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self._m: list[Array] = []
        self._v: list[Array] = []
        self._t = 0

    def step_in_place(self, params: list[Array], grads: list[Array]) -> list[Array]:
        if not self._m:
            self._m, self._v = self._buffers(params), self._buffers(params)
        self._t += 1
        return super().step_in_place(params, grads)

    def _update(self, i: int, grad: Array, out: Array) -> None:
        m, v = self._m[i], self._v[i]
        m *= self.beta1
        m += (1 - self.beta1) * grad
        v *= self.beta2
        v += (1 - self.beta2) * grad * grad
        m_hat = m / (1 - self.beta1**self._t)  # bias corrections
        v_hat = v / (1 - self.beta2**self._t)
        np.divide(m_hat, np.sqrt(v_hat) + self.eps, out=out)
        out *= -self.lr


OPTIMIZERS: dict[str, type[Optimizer]] = {c.name: c for c in (SGD, Momentum, Adam)}


def get_optimizer(name: str, lr: float, **params: float | bool | None) -> Optimizer:
    """The optimizer called ``name`` (sgd, momentum, adam) with learning rate ``lr``; every one
    takes ``clip_norm`` and ``clip_value``."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    try:
        return OPTIMIZERS[name](lr, **params)
    except TypeError:
        raise ValueError(f"optimizer {name!r} does not take parameters {sorted(params)}") from None
