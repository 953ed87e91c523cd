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

Remedies (``norm``, ``residual``), on hidden layers only; the output layer stays as above:

    forward    yˡ = γˡ ⊙ x̂ˡ + βˡ,  x̂ˡ = norm(zˡ)                    (norms.py; yˡ = zˡ without)
               hˡ = fˡ(yˡ)
               aˡ = aˡ⁻¹ + α hˡ        where fan_in = fan_out            (α: residual_scale)
               aˡ = hˡ                 elsewhere
    backward   ∂L/∂aˡ = δˡ⁺¹ Wˡ⁺¹ᵀ (+ ∂L/∂aˡ⁺¹ if layer l+1 has the skip: ∂aˡ⁺¹/∂aˡ ∋ I)
               ∂L/∂hˡ = α ∂L/∂aˡ on a skip layer, else ∂L/∂aˡ
               ∂L/∂yˡ = ∂L/∂hˡ ⊙ f′(yˡ)
               ∂L/∂γˡ = Σ_batch ∂L/∂yˡ ⊙ x̂ˡ,  ∂L/∂βˡ = Σ_batch ∂L/∂yˡ,  ∂L/∂x̂ˡ = ∂L/∂yˡ ⊙ γˡ
               δˡ = ∂L/∂zˡ = norm′(∂L/∂x̂ˡ)                             (norms.py; ∂L/∂yˡ without)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from bpcore.activations import Activation, Array, get_activation
from bpcore.inits import BiasInit, Initializer, get_bias_init, get_initializer
from bpcore.losses import Head, Loss, as_targets, get_head, get_loss
from bpcore.norms import NORMS, NormPass, batch_size_problem, normalize, normalize_backward, track

DTYPES = ("float32", "float64")


@dataclass
class ForwardPass:
    """Every layer's forward quantities, indexed by layer l = 0 … L−1."""

    zs: list[Array]  # zˡ, pre-activations, shape (batch, fan_out)
    ys: list[Array]  # yˡ = γˡ ⊙ x̂ˡ + βˡ, the input of fˡ (zˡ itself without a norm)
    hs: list[Array]  # hˡ = fˡ(yˡ) (aˡ itself without a skip)
    activations: list[Array]  # aˡ (= aˡ⁻¹ + α hˡ on a skip layer), shape (batch, fan_out)
    norms: list[NormPass]  # each hidden layer's normalization (empty without a norm)


@dataclass
class Backprop(ForwardPass):
    """Everything one forward + backward pass computed, indexed by layer l = 0 … L−1."""

    dW: list[Array]  # ∂L/∂Wˡ, shape (fan_in, fan_out)
    db: list[Array]  # ∂L/∂bˡ, shape (fan_out,)
    deltas: list[Array]  # δˡ = ∂L/∂zˡ, shape (batch, fan_out)
    dgamma: list[Array]  # ∂L/∂γˡ per hidden layer, shape (fan_out,) (empty without a norm)
    dbeta: list[Array]  # ∂L/∂βˡ, as dgamma

    @property
    def grads(self) -> list[Array]:
        """∂L/∂θ in ``MLP.params`` order: every ∂L/∂Wˡ, ∂L/∂bˡ, then ∂L/∂γˡ, ∂L/∂βˡ."""
        return [*self.dW, *self.db, *self.dgamma, *self.dbeta]

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
        norm: None, "batch" or "layer": normalizes every hidden layer's zˡ before f, with
            parameters γ = 1, β = 0 at init (``bpcore.norms``).
        residual: add a skip connection aˡ = aˡ⁻¹ + residual_scale · hˡ on every hidden layer
            whose input width equals its width (at least one must).
        residual_scale: α, the residual branch's scale.
        norm_eps: ε of the normalization, σ = √(σ² + ε).
        norm_momentum: of BatchNorm's running statistics, r ← (1 − m)·r + m·batch statistic.

    BatchNorm's running statistics change only in ``track_running_stats`` (``bpcore.fit``
    calls it after every step); ``forward`` and ``bpcore.evaluate`` normalize with them.
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
        norm: str | None = None,
        residual: bool = False,
        residual_scale: float = 1.0,
        norm_eps: float = 1e-5,
        norm_momentum: float = 0.1,
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
        _check_remedies(norm, residual_scale, norm_eps, norm_momentum)
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
        self.skips = [residual and m == n for m, n in pairwise(sizes[:-1])] + [False]
        if residual and not any(self.skips):
            raise ValueError(
                f"residual: no hidden layer has as many units as inputs in {sizes}, so none "
                "can add a skip connection"
            )
        self.residual_scale = residual_scale
        self.norm, self.norm_eps, self.norm_momentum = norm, norm_eps, norm_momentum
        widths = sizes[1:-1] if norm is not None else []
        self.gammas: list[Array] = [np.ones(n, self.dtype) for n in widths]
        self.betas: list[Array] = [np.zeros(n, self.dtype) for n in widths]
        batch_widths = widths if norm == "batch" else []
        self.running_means: list[Array] = [np.zeros(n, self.dtype) for n in batch_widths]
        self.running_vars: list[Array] = [np.ones(n, self.dtype) for n in batch_widths]

    @property
    def n_layers(self) -> int:
        """L, the number of weight matrices."""
        return len(self.weights)

    @property
    def n_params(self) -> int:
        """Number of trainable parameters."""
        return sum(p.size for p in self.params)

    @property
    def params(self) -> list[Array]:
        """Weights, biases, then γ and β of the norms: the order optimizers and gradients use."""
        return [*self.weights, *self.biases, *self.gammas, *self.betas]

    @params.setter
    def params(self, values: Sequence[Array]) -> None:
        if len(values) != len(self.params):
            raise ValueError(f"params: expected {len(self.params)} arrays, got {len(values)}")
        L, n_norms = self.n_layers, len(self.gammas)
        self.weights, self.biases = list(values[:L]), list(values[L : 2 * L])
        self.gammas = list(values[2 * L : 2 * L + n_norms])
        self.betas = list(values[2 * L + n_norms :])

    def check_input(self, x: ArrayLike) -> Array:
        """``x`` as a (batch, layer_sizes[0]) array of the net's dtype, or a ValueError."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.layer_sizes[0] or x.shape[0] == 0:
            raise ValueError(f"x: expected shape (batch ≥ 1, {self.layer_sizes[0]}), got {x.shape}")
        if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
            raise ValueError("x: must be finite numbers (found NaN, inf or non-numeric values)")
        return x.astype(self.dtype, copy=False)

    def forward(self, x: ArrayLike) -> Array:
        """Network output aᴸ⁻¹ in evaluation (BatchNorm: the running statistics), shape
        (batch, layer_sizes[-1])."""
        return self._forward(self.check_input(x), keep=False).activations[-1]

    def loss_and_grads(self, x: ArrayLike, y: ArrayLike, loss: str) -> tuple[float, Backprop]:
        """Loss (a batch mean) and the full backward pass for the batch (x, y).

        ``y``: integer class labels of shape (batch,) or targets of shape (batch, n_outputs).
        ``loss``: "mse" (any head), "bce" (sigmoid head), "cross_entropy" (softmax head).
        A training pass: BatchNorm normalizes with the batch's statistics (batches of ≥ 2) and
        leaves the running ones alone (``track_running_stats`` folds them in).
        """
        loss_fn = get_loss(loss, self.head.name)
        x = self.check_input(x)
        targets = as_targets(np.asarray(y), self.layer_sizes[-1], self.dtype)
        if len(targets) != len(x):
            raise ValueError(f"y: has {len(targets)} rows but x has {len(x)}")
        if not np.isfinite(targets).all():
            raise ValueError("y: must be finite numbers (found NaN or inf)")
        return self._loss_and_grads(x, targets, loss_fn)

    def track_running_stats(self, bp: Backprop) -> None:
        """Fold a training pass's batch statistics into BatchNorm's running ones:
        r ← (1 − m)·r + m·s, s = μ and the unbiased variance n/(n − 1)·σ² of the n examples."""
        if self.norm != "batch":
            return
        n = len(bp.zs[0])
        for p, mean, var in zip(bp.norms, self.running_means, self.running_vars, strict=True):
            track(mean, p.mean, self.norm_momentum)
            track(var, p.var * (n / (n - 1)), self.norm_momentum)

    def _loss_and_grads(
        self, x: Array, targets: Array, loss_fn: Loss, reuse: Backprop | None = None
    ) -> tuple[float, Backprop]:
        """Forward, loss, backward on validated arrays: the training hot path.

        ``reuse``: an earlier Backprop of the same batch size, whose arrays are overwritten
        instead of allocating new ones (fresh memory costs big nets ~10% of a step); only the
        training loop passes one, for arrays nobody else holds.
        """
        out = reuse if reuse is not None and len(reuse.zs[0]) == len(x) else None
        fp = self._forward(x, out, training=True)
        z_out, a_out = fp.zs[-1], fp.activations[-1]
        loss_value = loss_fn.value(z_out, a_out, targets)
        delta_out = loss_fn.output_delta(self.head, z_out, a_out, targets)
        return loss_value, self._backward(x, fp, delta_out, out)

    def _forward(
        self, x: Array, out: Backprop | None = None, training: bool = False, keep: bool = True
    ) -> ForwardPass:
        """zˡ, yˡ, hˡ, aˡ of every layer; norms with the batch's statistics if ``training``,
        else BatchNorm with its running ones.  ``keep=False`` (evaluation): the output layer's
        only, each hidden layer's arrays freed once the next is computed (keeping them all made
        a depth-30 net's pass over 1079 rows 3× slower: fresh memory for every layer)."""
        if training and (problem := batch_size_problem(self.norm, len(x))):
            raise ValueError(f"x: {problem}")
        fp = ForwardPass([], [], [], [], [])
        a = x
        for l, (W, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            z = np.matmul(a, W, out=_slot(out, "zs", l))  # (batch, fan_in) @ (fan_in, fan_out)
            z += b
            y = z
            if self._normalized(l):
                p = self._normalize(l, z, training)
                y = self.gammas[l] * p.x_hat + self.betas[l]  # yˡ = γˡ ⊙ x̂ˡ + βˡ
                if keep:
                    fp.norms.append(p)
            h = self._activation(l)(y)  # hˡ = fˡ(yˡ)
            a = a + self.residual_scale * h if self.skips[l] else h  # aˡ = aˡ⁻¹ + α hˡ, or hˡ
            if keep or l == self.n_layers - 1:
                fp.zs.append(z)
                fp.ys.append(y)
                fp.hs.append(h)
                fp.activations.append(a)
        return fp

    def _normalized(self, l: int) -> bool:
        return self.norm is not None and l < self.n_layers - 1

    def _normalize(self, l: int, z: Array, training: bool) -> NormPass:
        """x̂ˡ of zˡ over the batch (BatchNorm; running statistics in evaluation) or the units."""
        if self.norm == "batch" and not training:
            return normalize(z, 0, self.norm_eps, self.running_means[l], self.running_vars[l])
        return normalize(z, self._norm_axis, self.norm_eps, None, None)

    @property
    def _norm_axis(self) -> int:
        """The axis the norm's statistics average over: 0 (BatchNorm) or 1 (LayerNorm)."""
        assert self.norm is not None
        return NORMS[self.norm]

    def _activation(self, l: int) -> Activation | Head:
        return self.head if l == self.n_layers - 1 else self.hidden_activations[l]

    def _backward(
        self, x: Array, fp: ForwardPass, delta_out: Array, out: Backprop | None = None
    ) -> Backprop:
        """Chain rule from the output delta down to the first layer."""
        L = self.n_layers
        deltas: list[Any] = [None] * L
        dW: list[Any] = [None] * L
        db: list[Any] = [None] * L
        dgamma: list[Any] = [None] * len(self.gammas)
        dbeta: list[Any] = [None] * len(self.betas)
        delta = delta_out  # δᴸ⁻¹ = ∂L/∂zᴸ⁻¹, from the loss
        dL_da_above: Array | None = None  # ∂L/∂aˡ⁺¹, kept for a skip aˡ⁺¹ = aˡ + α hˡ⁺¹
        for l in reversed(range(L)):
            if l < L - 1:
                # ∂L/∂aˡ = δˡ⁺¹ Wˡ⁺¹ᵀ: (batch, fan_out) @ (fan_out, fan_in)
                dL_da = np.matmul(deltas[l + 1], self.weights[l + 1].T, out=_slot(out, "deltas", l))
                if self.skips[l + 1]:
                    dL_da += dL_da_above  # + ∂L/∂aˡ⁺¹ through the skip (∂aˡ⁺¹/∂aˡ ∋ I)
                # ∂L/∂hˡ = α ∂L/∂aˡ on a skip layer (a new array: ∂L/∂aˡ goes on down), else ∂L/∂aˡ
                dL_dh = self.residual_scale * dL_da if self.skips[l] else dL_da
                dh_dy = self.hidden_activations[l].grad(fp.ys[l], fp.hs[l])  # f′(yˡ)
                delta = np.multiply(dL_dh, dh_dy, out=dL_dh)  # ∂L/∂yˡ = ∂L/∂hˡ ⊙ f′(yˡ)
                if self._normalized(l):
                    dL_dy, p = delta, fp.norms[l]
                    dgamma[l] = np.sum(dL_dy * p.x_hat, axis=0)  # ∂L/∂γˡ = Σ_batch ∂L/∂yˡ ⊙ x̂ˡ
                    dbeta[l] = np.sum(dL_dy, axis=0)  # ∂L/∂βˡ = Σ_batch ∂L/∂yˡ
                    dL_dx_hat = dL_dy * self.gammas[l]  # ∂L/∂x̂ˡ = ∂L/∂yˡ ⊙ γˡ
                    delta = normalize_backward(dL_dx_hat, p, self._norm_axis)  # δˡ = ∂L/∂zˡ
                dL_da_above = dL_da
            dz_dW = x if l == 0 else fp.activations[l - 1]  # ∂z/∂W: the layer's input aˡ⁻¹
            # ∂L/∂Wˡ = aˡ⁻¹ᵀ δˡ: (fan_in, batch) @ (batch, fan_out)
            dW[l] = np.matmul(dz_dW.T, delta, out=_slot(out, "dW", l))
            db[l] = np.sum(delta, axis=0, out=_slot(out, "db", l))  # ∂L/∂bˡ = Σ_batch δˡ
            deltas[l] = delta
        return Backprop(
            fp.zs, fp.ys, fp.hs, fp.activations, fp.norms, dW, db, deltas, dgamma, dbeta
        )


def _check_remedies(
    norm: str | None, residual_scale: float, norm_eps: float, norm_momentum: float
) -> None:
    """A ValueError naming the first remedy keyword outside what it allows."""
    if norm is not None and norm not in NORMS:
        raise ValueError(f"norm: must be None or one of {', '.join(NORMS)}, got {norm!r}")
    for key, value in (("residual_scale", residual_scale), ("norm_eps", norm_eps)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{key}: must be a positive finite number, got {value}")
    if not 0 < norm_momentum <= 1:
        raise ValueError(f"norm_momentum: must be in (0, 1], got {norm_momentum}")


def _slot(out: Backprop | None, field: str, l: int) -> Array | None:
    """The array ``out.<field>[l]`` to write into, or None (numpy then allocates a new one)."""
    return None if out is None else getattr(out, field)[l]
