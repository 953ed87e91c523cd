"""Output heads and losses: where backpropagation starts.

A *head* is the output layer's activation a = h(z).  Softmax is not elementwise, so each head
carries its own vector-Jacobian product ``backward(z, a, dL_da) -> dL_dz``.

A *loss* turns the head's output and the targets into a scalar (a batch mean) and gives the
output layer's delta δᴸ = ∂L/∂zᴸ.  Two pairs are canonical and have the seed article's delta
δᴸ = (a − y)/batch, computed from the logits so nothing overflows:

* softmax + cross_entropy:  L = mean_b [logsumexp(z_b) − z_b[y_b]]
* sigmoid + bce:            L = mean_b Σ_k [max(z,0) − z·y + log(1 + e^{−|z|})]

``mse`` (½‖a − y‖² per example, batch mean) works with any head: ∂L/∂a = (a − y)/batch, then
the head's Jacobian.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from bpcore.activations import Array, Sigmoid


class Head:
    """Output activation with its vector-Jacobian product."""

    name: ClassVar[str]

    def __call__(self, z: Array) -> Array:
        raise NotImplementedError

    def backward(self, z: Array, a: Array, dL_da: Array) -> Array:
        """∂L/∂z = (∂a/∂z)ᵀ ∂L/∂a for each example."""
        raise NotImplementedError


class SoftmaxHead(Head):
    r""":math:`a_k = e^{z_k - m} / \sum_j e^{z_j - m}` with m = max_j z_j (no overflow)."""

    name = "softmax"

    def __call__(self, z: Array) -> Array:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]

    def backward(self, z: Array, a: Array, dL_da: Array) -> Array:
        # ∂a_k/∂z_j = a_k (1[k=j] − a_j)  ⇒  ∂L/∂z = a ⊙ (g − Σ_k a_k g_k)
        return a * (dL_da - (a * dL_da).sum(axis=1, keepdims=True))  # type: ignore[no-any-return]


class SigmoidHead(Head):
    r""":math:`a = \sigma(z)`, :math:`\partial a/\partial z = a(1 - a)` elementwise."""

    name = "sigmoid"
    _sigmoid = Sigmoid()

    def __call__(self, z: Array) -> Array:
        return self._sigmoid(z)

    def backward(self, z: Array, a: Array, dL_da: Array) -> Array:
        return dL_da * self._sigmoid.grad(z, a)


class IdentityHead(Head):
    """a = z: regression outputs."""

    name = "identity"

    def __call__(self, z: Array) -> Array:
        return z

    def backward(self, z: Array, a: Array, dL_da: Array) -> Array:
        return dL_da


HEADS: dict[str, type[Head]] = {h.name: h for h in (SoftmaxHead, SigmoidHead, IdentityHead)}


def get_head(name: str) -> Head:
    """The output head called ``name``."""
    if name not in HEADS:
        raise ValueError(f"unknown output head {name!r}; known: {', '.join(HEADS)}")
    return HEADS[name]()


def as_targets(y: NDArray[Any], n_outputs: int, dtype: np.dtype[Any]) -> Array:
    """Targets as a (batch, n_outputs) array: integer labels become one-hot (or a column)."""
    y = np.asarray(y)
    if y.ndim == 1 and np.issubdtype(y.dtype, np.integer):
        if n_outputs == 1:
            return y.astype(dtype)[:, None]
        if y.size and (y.min() < 0 or y.max() >= n_outputs):
            raise ValueError(
                f"y: integer labels must lie in [0, {n_outputs}), got {y.min()}..{y.max()}"
            )
        one_hot: Array = np.eye(n_outputs, dtype=dtype)[y]
        return one_hot
    if y.ndim == 1 and n_outputs == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[1] != n_outputs:
        raise ValueError(
            f"y: expected integer labels of shape (batch,) or targets of shape"
            f" (batch, {n_outputs}), got shape {y.shape}"
        )
    return y.astype(dtype, copy=False)


class Loss:
    """A batch-mean loss and the delta it starts backpropagation with."""

    name: ClassVar[str]
    heads: ClassVar[tuple[str, ...]]  # output heads this loss is defined for

    def value(self, z: Array, a: Array, y: Array) -> float:
        raise NotImplementedError

    def output_delta(self, head: Head, z: Array, a: Array, y: Array) -> Array:
        """δᴸ = ∂L/∂zᴸ, shape (batch, n_outputs)."""
        raise NotImplementedError


class MSE(Loss):
    r""":math:`L = \frac{1}{B}\sum_b \tfrac12 \lVert a_b - y_b \rVert^2`; ∂L/∂a = (a − y)/B."""

    name = "mse"
    heads = ("softmax", "sigmoid", "identity")

    def value(self, z: Array, a: Array, y: Array) -> float:
        return 0.5 * float(np.sum((a - y) ** 2)) / len(a)

    def output_delta(self, head: Head, z: Array, a: Array, y: Array) -> Array:
        dL_da = (a - y) / len(a)  # the seed article's "output − expected", batch-averaged
        return head.backward(z, a, dL_da)


class BCE(Loss):
    r"""Binary cross-entropy from logits, summed over outputs, batch mean; δ = (σ(z) − y)/B."""

    name = "bce"
    heads = ("sigmoid",)

    def value(self, z: Array, a: Array, y: Array) -> float:
        # −[y log σ(z) + (1−y) log(1−σ(z))] = max(z,0) − z·y + log(1 + e^{−|z|})
        per_unit = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
        return float(per_unit.sum()) / len(z)

    def output_delta(self, head: Head, z: Array, a: Array, y: Array) -> Array:
        return (a - y) / len(a)


class CrossEntropy(Loss):
    r"""Softmax cross-entropy from logits.

    .. math:: L = \frac1B \sum_b \Big(\log\sum_k e^{z_{bk}} - z_{b,y_b}\Big), \qquad
              \delta^L = (\mathrm{softmax}(z) - y)/B
    """

    name = "cross_entropy"
    heads = ("softmax",)

    def value(self, z: Array, a: Array, y: Array) -> float:
        m = z.max(axis=1, keepdims=True)
        log_sum_exp = m + np.log(np.exp(z - m).sum(axis=1, keepdims=True))
        return float(np.sum(y * (log_sum_exp - z))) / len(z)

    def output_delta(self, head: Head, z: Array, a: Array, y: Array) -> Array:
        return (a - y) / len(a)


LOSSES: dict[str, type[Loss]] = {c.name: c for c in (MSE, BCE, CrossEntropy)}


def get_loss(name: str, head: str) -> Loss:
    """The loss called ``name``, checked against the output head it will be used with."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}")
    loss = LOSSES[name]()
    if head not in loss.heads:
        raise ValueError(
            f"loss {name!r} needs output head {' or '.join(loss.heads)}, but the net's output is"
            f" {head!r}"
        )
    return loss
