"""Activation functions, each with its derivative written directly beneath it.

Every activation is a small class with

* ``__call__(z)``  -- the value  a = f(z);
* ``grad(z, a)``   -- the derivative  ∂a/∂z = f′(z), given both z and a = f(z) so that
  functions whose derivative is cheapest in terms of their output (sigmoid, tanh) reuse it;
  it returns a new array, which the backward pass overwrites with δ;
* ``max_grad``     -- sup_z |f′(z)|, the reference for "saturated" (|f′| below 5% of it).

All are elementwise, keep the input dtype (float32 stays float32), and are finite with no numpy
warnings for |z| up to 1e4.  At kinks the derivative takes the value stated in the docstring.
Constants are Python floats, which numpy never lets upcast an array.

``ACTIVATIONS`` is the one registry: configs, error messages and tests all read it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from scipy.special import erfc as _untyped_erfc  # type: ignore[import-untyped]

Array = NDArray[np.floating[Any]]

_erfc: Callable[[Array], Array] = _untyped_erfc  # keeps float32

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_GELU_K = 0.044715


def _select(z: Array, pos: Array | float, nonpos: Array | float) -> Array:
    """``np.where(z > 0, pos, nonpos)`` for finite values, as arithmetic (exact: p is 0 or 1).

    np.where branches per element and is ~6x slower when the signs of z are mixed.
    """
    p = (z > 0).astype(z.dtype)
    return p * pos + (1 - p) * nonpos


def _sigmoid(z: Array) -> Array:
    """σ(z) = e^{min(z, 0)} / (1 + e^{-|z|}): both exponents are ≤ 0, so nothing overflows."""
    numerator: Array = np.exp(np.minimum(z, 0))
    denominator: Array = 1 + np.exp(-np.abs(z))
    return numerator / denominator


def _softplus(z: Array) -> Array:
    """log(1 + e^z) = max(z, 0) + log1p(e^{-|z|}): the exponent is never positive."""
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


class Activation:
    """Base class: subclasses set ``name``, ``max_grad`` and implement ``__call__`` and ``grad``.

    ``max_grad`` is a class attribute, or a property when it depends on a parameter.
    """

    name: ClassVar[str]
    kinks: ClassVar[tuple[float, ...]] = ()  # points where f′ or f″ jumps (gradcheck avoids them)

    @property
    def max_grad(self) -> float:
        """sup_z f′(z); subclasses override it."""
        return 1.0

    def __call__(self, z: Array) -> Array:
        raise NotImplementedError

    def grad(self, z: Array, a: Array) -> Array:
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


class Identity(Activation):
    r"""Identity (linear output).

    .. math:: f(z) = z, \qquad f'(z) = 1
    """

    name = "identity"
    max_grad = 1.0

    def __call__(self, z: Array) -> Array:
        return z.copy()  # a fresh array like every other activation: no aliasing of z

    def grad(self, z: Array, a: Array) -> Array:
        return np.ones_like(z)


class Sigmoid(Activation):
    r"""Logistic sigmoid.

    .. math:: f(z) = \frac{1}{1 + e^{-z}}, \qquad f'(z) = f(z)\,(1 - f(z)) \le \tfrac14

    Computed from exponentials of non-positive arguments only, so nothing overflows.
    """

    name = "sigmoid"
    max_grad = 0.25

    def __call__(self, z: Array) -> Array:
        return _sigmoid(z)

    def grad(self, z: Array, a: Array) -> Array:
        da_dz = 1 - a
        da_dz *= a  # a(1 − a), in place: one temporary fewer in the hot loop
        return da_dz


class Tanh(Activation):
    r"""Hyperbolic tangent.

    .. math:: f(z) = \tanh z, \qquad f'(z) = 1 - \tanh^2 z
    """

    name = "tanh"
    max_grad = 1.0

    def __call__(self, z: Array) -> Array:
        return np.tanh(z)

    def grad(self, z: Array, a: Array) -> Array:
        da_dz = np.multiply(a, a, out=np.empty_like(a))
        return np.subtract(1, da_dz, out=da_dz)  # 1 − a², in one buffer


class ReLU(Activation):
    r"""Rectified linear unit.

    .. math:: f(z) = \max(0, z), \qquad f'(z) = [z > 0] \quad (f'(0) = 0)
    """

    name = "relu"
    kinks = (0.0,)
    max_grad = 1.0

    def __call__(self, z: Array) -> Array:
        return np.maximum(z, 0)

    def grad(self, z: Array, a: Array) -> Array:
        return (z > 0).astype(z.dtype)


class LeakyReLU(Activation):
    r"""Leaky ReLU with negative slope ``alpha``.

    .. math:: f(z) = \begin{cases} z & z > 0 \\ \alpha z & z \le 0 \end{cases}, \qquad
              f'(z) = \begin{cases} 1 & z > 0 \\ \alpha & z \le 0 \end{cases}
              \quad (f'(0) = \alpha)
    """

    name = "leaky_relu"
    kinks = (0.0,)

    def __init__(self, alpha: float = 0.01) -> None:
        self.alpha = float(alpha)

    @property
    def max_grad(self) -> float:
        return max(1.0, self.alpha)

    def __call__(self, z: Array) -> Array:
        return np.maximum(z, 0) + self.alpha * np.minimum(z, 0)

    def grad(self, z: Array, a: Array) -> Array:
        return _select(z, 1.0, self.alpha)


class ELU(Activation):
    r"""Exponential linear unit.

    .. math:: f(z) = \begin{cases} z & z > 0 \\ \alpha (e^z - 1) & z \le 0 \end{cases}, \qquad
              f'(z) = \begin{cases} 1 & z > 0 \\ \alpha e^z = f(z) + \alpha & z \le 0 \end{cases}
              \quad (f'(0) = \alpha)
    """

    name = "elu"
    kinks = (0.0,)

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = float(alpha)

    @property
    def max_grad(self) -> float:
        return max(1.0, self.alpha)

    def __call__(self, z: Array) -> Array:
        return np.maximum(z, 0) + self.alpha * np.expm1(np.minimum(z, 0))

    def grad(self, z: Array, a: Array) -> Array:
        return _select(z, 1.0, a + self.alpha)


class SELU(Activation):
    r"""Scaled ELU (Klambauer et al., 2017), with the self-normalising constants λ and α.

    .. math:: f(z) = \lambda \begin{cases} z & z > 0 \\ \alpha (e^z - 1) & z \le 0 \end{cases},
              \qquad
              f'(z) = \begin{cases} \lambda & z > 0 \\ \lambda \alpha e^z = f(z) + \lambda\alpha
              & z \le 0 \end{cases} \quad (f'(0) = \lambda\alpha)
    """

    name = "selu"
    kinks = (0.0,)
    LAMBDA: ClassVar[float] = 1.0507009873554805
    ALPHA: ClassVar[float] = 1.6732632423543772
    max_grad = LAMBDA * ALPHA  # ≈ 1.7580993408473766, at z = 0

    def __call__(self, z: Array) -> Array:
        return self.LAMBDA * (np.maximum(z, 0) + self.ALPHA * np.expm1(np.minimum(z, 0)))

    def grad(self, z: Array, a: Array) -> Array:
        return _select(z, self.LAMBDA, a + self.LAMBDA * self.ALPHA)


class GELU(Activation):
    r"""Gaussian error linear unit, exact form; Φ and φ are the standard normal cdf and pdf.

    .. math:: f(z) = z\,\Phi(z) = \tfrac12 z \bigl(1 + \operatorname{erf}(z/\sqrt2)\bigr), \qquad
              f'(z) = \Phi(z) + z\,\varphi(z)

    Uses :math:`1 + \operatorname{erf}(x) = \operatorname{erfc}(-x)`, accurate in the left tail.
    """

    name = "gelu"
    max_grad = 1.1289041451851547  # f′(√2), as f″ = φ(z)(2 − z²)

    def __call__(self, z: Array) -> Array:
        return 0.5 * z * _erfc(-_SQRT_HALF * z)

    def grad(self, z: Array, a: Array) -> Array:
        cdf = 0.5 * _erfc(-_SQRT_HALF * z)
        pdf = _INV_SQRT_2PI * np.exp(-0.5 * z * z)
        return cdf + z * pdf


class GELUTanh(Activation):
    r"""GELU, tanh approximation (Hendrycks & Gimpel); within 5e-4 of the exact form.

    .. math:: f(z) = \tfrac12 z (1 + \tanh u), \quad u = \sqrt{2/\pi}\,(z + 0.044715 z^3),
              \qquad f'(z) = \tfrac12 (1 + \tanh u) + \tfrac12 z (1 - \tanh^2 u)\,u'(z),
              \quad u'(z) = \sqrt{2/\pi}\,(1 + 3 \cdot 0.044715 z^2)

    u is computed as z (1 + k z²), finite in float32 up to |z| ≈ 1e12.
    """

    name = "gelu_tanh"
    max_grad = 1.1289930686587717  # at z ≈ 1.4185

    @staticmethod
    def _u(z: Array) -> Array:
        return _SQRT_2_OVER_PI * z * (1 + _GELU_K * z * z)

    def __call__(self, z: Array) -> Array:
        t: Array = np.tanh(self._u(z))
        return 0.5 * z * (1 + t)

    def grad(self, z: Array, a: Array) -> Array:
        t: Array = np.tanh(self._u(z))
        du = _SQRT_2_OVER_PI * (1 + 3 * _GELU_K * z * z)
        h = 0.5 * (1 + t)
        return h + (h * (1 - t)) * z * du  # ½(1 − t²) first: it is 0 where z·u′ is huge


class SiLU(Activation):
    r"""Sigmoid linear unit (swish with β = 1).

    .. math:: f(z) = z\,\sigma(z), \qquad
              f'(z) = \sigma(z) + z\,\sigma(z)(1 - \sigma(z)) = \sigma(z) + f(z)(1 - \sigma(z))
    """

    name = "silu"
    max_grad = 1.099839320128867  # at z ≈ 2.3994, the root of z tanh(z/2) = 2

    def __call__(self, z: Array) -> Array:
        return z * _sigmoid(z)

    def grad(self, z: Array, a: Array) -> Array:
        s = _sigmoid(z)
        return s + a * (1 - s)


class Softplus(Activation):
    r"""Softplus, a smooth ReLU.

    .. math:: f(z) = \log(1 + e^z) = \max(z, 0) + \log(1 + e^{-|z|}), \qquad
              f'(z) = \sigma(z) = 1 - e^{-f(z)}

    The derivative reuses f: ``-expm1(-a)`` is accurate at both ends, and -f ≤ 0 cannot overflow.
    """

    name = "softplus"
    max_grad = 1.0  # sup, approached as z → ∞

    def __call__(self, z: Array) -> Array:
        return _softplus(z)

    def grad(self, z: Array, a: Array) -> Array:
        return -np.expm1(-a)


class Softsign(Activation):
    r"""Softsign.

    .. math:: f(z) = \frac{z}{1 + |z|}, \qquad f'(z) = \frac{1}{(1 + |z|)^2}
    """

    name = "softsign"
    kinks = (0.0,)
    max_grad = 1.0

    def __call__(self, z: Array) -> Array:
        d: Array = 1 + np.abs(z)
        return z / d

    def grad(self, z: Array, a: Array) -> Array:
        d = 1 / (1 + np.abs(z))  # not 1 − |a|: that cancels for large |z|
        return d * d


class Mish(Activation):
    r"""Mish (Misra, 2019).

    .. math:: f(z) = z \tanh(\operatorname{softplus} z), \qquad
              f'(z) = \tanh(\operatorname{softplus} z)
                      + z\,\sigma(z)\bigl(1 - \tanh^2(\operatorname{softplus} z)\bigr)
    """

    name = "mish"
    max_grad = 1.088498161251728  # at z ≈ 1.4906

    def __call__(self, z: Array) -> Array:
        return z * np.tanh(_softplus(z))

    def grad(self, z: Array, a: Array) -> Array:
        sp = _softplus(z)
        t: Array = np.tanh(sp)
        s = -np.expm1(-sp)  # σ(z), as in Softplus.grad
        return t + z * s * (1 - t * t)


class HardTanh(Activation):
    r"""Hard tanh: clip to [-1, 1].

    .. math:: f(z) = \max(-1, \min(1, z)), \qquad f'(z) = [\,|z| < 1\,] \quad (f'(\pm 1) = 0)

    As with ReLU at 0, the kinks take the outer (flat) side's derivative.
    """

    name = "hard_tanh"
    kinks = (-1.0, 1.0)
    max_grad = 1.0

    def __call__(self, z: Array) -> Array:
        return np.clip(z, -1, 1)

    def grad(self, z: Array, a: Array) -> Array:
        return (np.abs(z) < 1).astype(z.dtype)


ACTIVATIONS: dict[str, type[Activation]] = {
    cls.name: cls
    for cls in (
        Identity,
        Sigmoid,
        Tanh,
        ReLU,
        LeakyReLU,
        ELU,
        SELU,
        GELU,
        GELUTanh,
        SiLU,
        Softplus,
        Softsign,
        Mish,
        HardTanh,
    )
}


def get_activation(name: str | Activation, **params: float) -> Activation:
    """The activation called ``name`` with its parameters (e.g. ``alpha``); objects pass through."""
    if isinstance(name, Activation):
        return name
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}")
    try:
        return ACTIVATIONS[name](**params)
    except TypeError:
        raise ValueError(f"activation {name!r} does not take parameters {sorted(params)}") from None
