"""A dense multilayer perceptron whose backward pass reads as the chain rule.

Notation (layer l = 0 … L−1 counts weight matrices from the input; a⁻¹ = x is the input):

    forward    zˡ = aˡ⁻¹ Wˡ + bˡ,   aˡ = fˡ(zˡ)                     (fᴸ⁻¹ is the output head)
    backward   δᴸ⁻¹ = ∂L/∂zᴸ⁻¹                                        (from the loss: losses.py)
               ∂L/∂aˡ = δˡ⁺¹ Wˡ⁺¹ᵀ                                     (from the layer above)
               δˡ = ∂L/∂aˡ ⊙ f′(zˡ)                                    (∂a/∂z: forward quantity)
               ∂L/∂Wˡ = aˡ⁻¹ᵀ δˡ                                       (∂z/∂W: the layer's input)
               ∂L/∂bˡ = Σ_batch δˡ

The loss is a batch mean, so δᴸ⁻¹ already carries the 1/batch and every gradient above is the
batch mean of the per-example gradients (batch size 1 is the seed article's online SGD).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from bpcore.activations import Activation, Array, get_activation
from bpcore.inits import BiasInit, Initializer, get_bias_init, get_initializer
from bpcore.losses import Head, Loss, as_targets, get_head, get_loss

DTYPES = ("float32", "float64")


@dataclass
class Backprop:
    """Everything one forward + backward pass computed, indexed by layer l = 0 … L−1."""

    dW: list[Array]  # ∂L/∂Wˡ, shape (fan_in, fan_out)
    db: list[Array]  # ∂L/∂bˡ, shape (fan_out,)
    deltas: list[Array]  # δˡ = ∂L/∂zˡ, shape (batch, fan_out)
    zs: list[Array]  # zˡ, pre-activations, shape (batch, fan_out)
    activations: list[Array]  # aˡ = fˡ(zˡ), shape (batch, fan_out)

    @property
    def grads(self) -> list[Array]:
        """∂L/∂θ in ``MLP.params`` order: every ∂L/∂Wˡ, then every ∂L/∂bˡ."""
        return [*self.dW, *self.db]

    @property
    def weights(self) -> list[Array]:
        """Deprecated alias of ``dW`` (the gradients, not the weights); removed in 0.3."""
        return self.dW

    @property
    def biases(self) -> list[Array]:
        """Deprecated alias of ``db``; removed in 0.3."""
        return self.db


class MLP:
    """Dense network ``layer_sizes[0] → … → layer_sizes[-1]`` with hidden ``activation``.

    Args:
        layer_sizes: widths from input to output, at least two entries, all positive.
        activation: hidden activation name or object, or one per hidden layer.
        output: output head, one of "softmax", "sigmoid", "identity".
        init: weight initializer name or object (see ``bpcore.inits.INITIALIZERS``).
        seed: seeds the initializer; same seed → identical parameters.
        dtype: "float32" or "float64".
        bias_init: a constant, or a ``BiasInit`` object (e.g. ``NormalBias(std=1.0)``).
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        activation: str | Activation | Sequence[str | Activation] = "tanh",
        output: str = "softmax",
        init: str | Initializer = "xavier_normal",
        seed: int = 0,
        dtype: str = "float64",
        bias_init: float | BiasInit = 0.0,
    ) -> None:
        sizes = list(layer_sizes)
        if len(sizes) < 2 or not all(isinstance(n, int | np.integer) and n > 0 for n in sizes):
            raise ValueError(
                f"layer_sizes: need at least two positive integers (input, …, output), got {sizes}"
            )
        if dtype not in DTYPES:
            raise ValueError(f"dtype: must be one of {', '.join(DTYPES)}, got {dtype!r}")
        n_hidden = len(sizes) - 2
        if isinstance(activation, str | Activation):
            activation = [activation] * n_hidden
        if len(activation) != n_hidden:
            raise ValueError(
                f"activation: got {len(activation)} names for {n_hidden} hidden layers"
            )
        self.layer_sizes = sizes
        self.dtype = np.dtype(dtype)
        self.hidden_activations: list[Activation] = [get_activation(a) for a in activation]
        self.head: Head = get_head(output)
        self.init = get_initializer(init)
        self.bias_init = get_bias_init(bias_init)
        rng = np.random.default_rng(seed)
        self.weights: list[Array] = []
        self.biases: list[Array] = []
        for fan_in, fan_out in pairwise(sizes):
            self.weights.append(self.init(fan_in, fan_out, rng).astype(self.dtype))
            self.biases.append(self.bias_init(fan_out, rng).astype(self.dtype))

    @property
    def n_layers(self) -> int:
        """L, the number of weight matrices."""
        return len(self.weights)

    @property
    def n_params(self) -> int:
        """Number of trainable parameters."""
        return sum(w.size + b.size for w, b in zip(self.weights, self.biases, strict=True))

    @property
    def params(self) -> list[Array]:
        """Weights then biases, the order optimizers and gradients use."""
        return [*self.weights, *self.biases]

    def check_input(self, x: ArrayLike) -> Array:
        """``x`` as a (batch, layer_sizes[0]) array of the net's dtype, or a ValueError."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.layer_sizes[0] or x.shape[0] == 0:
            raise ValueError(f"x: expected shape (batch ≥ 1, {self.layer_sizes[0]}), got {x.shape}")
        if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
            raise ValueError("x: must be finite numbers (found NaN, inf or non-numeric values)")
        return x.astype(self.dtype, copy=False)

    def forward(self, x: ArrayLike) -> Array:
        """Network output aᴸ⁻¹, shape (batch, layer_sizes[-1])."""
        return self._forward(self.check_input(x))[1][-1]

    def loss_and_grads(self, x: ArrayLike, y: ArrayLike, loss: str) -> tuple[float, Backprop]:
        """Loss (a batch mean) and the full backward pass for the batch (x, y).

        ``y``: integer class labels of shape (batch,) or targets of shape (batch, n_outputs).
        ``loss``: "mse" (any head), "bce" (sigmoid head), "cross_entropy" (softmax head).
        """
        loss_fn = get_loss(loss, self.head.name)
        x = self.check_input(x)
        targets = as_targets(np.asarray(y), self.layer_sizes[-1], self.dtype)
        if len(targets) != len(x):
            raise ValueError(f"y: has {len(targets)} rows but x has {len(x)}")
        if not np.isfinite(targets).all():
            raise ValueError("y: must be finite numbers (found NaN or inf)")
        return self._loss_and_grads(x, targets, loss_fn)

    def _loss_and_grads(
        self, x: Array, targets: Array, loss_fn: Loss, reuse: Backprop | None = None
    ) -> tuple[float, Backprop]:
        """Forward, loss, backward on validated arrays: the training hot path.

        ``reuse``: an earlier Backprop of the same batch size, whose arrays are overwritten
        instead of allocating new ones (fresh memory costs big nets ~10% of a step); only the
        training loop passes one, for arrays nobody else holds.
        """
        out = reuse if reuse is not None and len(reuse.zs[0]) == len(x) else None
        zs, activations = self._forward(x, out)
        loss_value = loss_fn.value(zs[-1], activations[-1], targets)
        delta_out = loss_fn.output_delta(self.head, zs[-1], activations[-1], targets)
        return loss_value, self._backward(x, zs, activations, delta_out, out)

    def _forward(self, x: Array, out: Backprop | None = None) -> tuple[list[Array], list[Array]]:
        """Pre-activations zˡ and activations aˡ of every layer."""
        zs: list[Array] = []
        activations: list[Array] = []
        a = x
        for l, (W, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            z = np.matmul(a, W, out=_slot(out, "zs", l))  # (batch, fan_in) @ (fan_in, fan_out)
            z += b
            a = self._activation(l)(z)
            zs.append(z)
            activations.append(a)
        return zs, activations

    def _activation(self, l: int) -> Activation | Head:
        return self.head if l == self.n_layers - 1 else self.hidden_activations[l]

    def _backward(
        self,
        x: Array,
        zs: list[Array],
        activations: list[Array],
        delta_out: Array,
        out: Backprop | None = None,
    ) -> Backprop:
        """Chain rule from the output delta down to the first layer."""
        L = self.n_layers
        deltas: list[Any] = [None] * L
        dW: list[Any] = [None] * L
        db: list[Any] = [None] * L
        delta = delta_out  # δᴸ⁻¹ = ∂L/∂zᴸ⁻¹, from the loss
        for l in reversed(range(L)):
            if l < L - 1:
                # ∂L/∂aˡ = δˡ⁺¹ Wˡ⁺¹ᵀ: (batch, fan_out) @ (fan_out, fan_in)
                dL_da = np.matmul(deltas[l + 1], self.weights[l + 1].T, out=_slot(out, "deltas", l))
                da_dz = self.hidden_activations[l].grad(zs[l], activations[l])  # f′(zˡ)
                delta = np.multiply(dL_da, da_dz, out=dL_da)  # δˡ = ∂L/∂aˡ ⊙ f′(zˡ)
            dz_dW = x if l == 0 else activations[l - 1]  # ∂z/∂W: the layer's input aˡ⁻¹
            # ∂L/∂Wˡ = aˡ⁻¹ᵀ δˡ: (fan_in, batch) @ (batch, fan_out)
            dW[l] = np.matmul(dz_dW.T, delta, out=_slot(out, "dW", l))
            db[l] = np.sum(delta, axis=0, out=_slot(out, "db", l))  # ∂L/∂bˡ = Σ_batch δˡ
            deltas[l] = delta
        return Backprop(dW, db, deltas, zs, activations)


def _slot(out: Backprop | None, field: str, l: int) -> Array | None:
    """The array ``out.<field>[l]`` to write into, or None (numpy then allocates a new one)."""
    return None if out is None else getattr(out, field)[l]
