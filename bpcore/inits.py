r"""Weight and bias initializers.

Weights have shape ``(fan_in, fan_out)`` (the layer computes ``z = a @ W + b``) and i.i.d.
zero-mean entries, except ``orthogonal``.  Every initializer knows the exact per-entry variance
it produces, ``variance(fan_in, fan_out) = Var(W_ij)``, and the mean-field weight variance

.. math:: \sigma_w^2 = \text{fan\_in} \cdot \mathrm{Var}(W_{ij}),

the quantity :mod:`bpcore.theory` works with (Poole et al. 2016).  Every initializer takes a
``gain`` that multiplies its std / limit (so the variance scales with ``gain**2``).

``INITIALIZERS`` and ``BIAS_INITS`` are the registries; configs, error messages and tests read
them.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, fields
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


def _check_positive(owner: str, name: str, value: Any) -> None:
    ok = isinstance(value, Real) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and value > 0):
        raise ValueError(f"{owner}: {name} must be a positive finite number, got {value!r}")


def _check_fan(name: str, value: Any) -> None:
    if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class Initializer:
    """Base class: ``W = init(fan_in, fan_out, rng)``, float64 of shape (fan_in, fan_out)."""

    name: ClassVar[str]
    gain: float = 1.0

    def __post_init__(self) -> None:
        _check_positive(f"init {self.name!r}", "gain", self.gain)

    def __call__(self, fan_in: int, fan_out: int, rng: np.random.Generator) -> Array:
        _check_fan("fan_in", fan_in)
        _check_fan("fan_out", fan_out)
        return self._sample(fan_in, fan_out, rng)

    def _sample(self, fan_in: int, fan_out: int, rng: np.random.Generator) -> Array:
        raise NotImplementedError

    def variance(self, fan_in: int, fan_out: int) -> float:
        """Var(W_ij), exact."""
        raise NotImplementedError

    def sigma_w2(self, fan_in: int, fan_out: int) -> float:
        """Mean-field weight variance σ_w² = fan_in · Var(W_ij)."""
        return fan_in * self.variance(fan_in, fan_out)


@dataclass(frozen=True, kw_only=True)
class _GaussianInit(Initializer):
    """W_ij ~ N(0, (gain · std)²) with ``std = self.std_for(fan_in, fan_out)``."""

    def std_for(self, fan_in: int, fan_out: int) -> float:
        raise NotImplementedError

    def _sample(self, fan_in: int, fan_out: int, rng: np.random.Generator) -> Array:
        std = self.gain * self.std_for(fan_in, fan_out)
        return rng.normal(0.0, std, size=(fan_in, fan_out))

    def variance(self, fan_in: int, fan_out: int) -> float:
        return (self.gain * self.std_for(fan_in, fan_out)) ** 2


@dataclass(frozen=True, kw_only=True)
class _UniformInit(Initializer):
    """W_ij ~ U[−r, r] with r = gain · ``self.limit_for(fan_in, fan_out)``; Var = r²/3."""

    def limit_for(self, fan_in: int, fan_out: int) -> float:
        raise NotImplementedError

    def _sample(self, fan_in: int, fan_out: int, rng: np.random.Generator) -> Array:
        r = self.gain * self.limit_for(fan_in, fan_out)
        return rng.uniform(-r, r, size=(fan_in, fan_out))

    def variance(self, fan_in: int, fan_out: int) -> float:
        return (self.gain * self.limit_for(fan_in, fan_out)) ** 2 / 3


@dataclass(frozen=True, kw_only=True)
class Normal(_GaussianInit):
    """Fixed-scale Gaussian, W_ij ~ N(0, (gain · std)²).

    Default ``std = 0.01``: the classic "small random weights" init (e.g. Krizhevsky et al.
    2012), which ignores the fan-in and so makes signals and gradients vanish in deep nets.
    """

    name = "normal"
    std: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive(f"init {self.name!r}", "std", self.std)

    def std_for(self, fan_in: int, fan_out: int) -> float:
        return self.std


@dataclass(frozen=True, kw_only=True)
class Uniform(_UniformInit):
    """Fixed-scale uniform, W_ij ~ U[−gain · limit, gain · limit].

    Default ``limit = None`` means 1/√fan_in: the "commonly used heuristic" U[−1/√n, 1/√n]
    that Glorot & Bengio (2010) call the *standard* initialization (Var = 1/(3 fan_in),
    σ_w² = 1/3).
    """

    name = "uniform"
    limit: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.limit is not None:
            _check_positive(f"init {self.name!r}", "limit", self.limit)

    def limit_for(self, fan_in: int, fan_out: int) -> float:
        return 1 / math.sqrt(fan_in) if self.limit is None else self.limit


@dataclass(frozen=True, kw_only=True)
class XavierNormal(_GaussianInit):
    """Glorot & Bengio (2010): std = gain · √(2 / (fan_in + fan_out))."""

    name = "xavier_normal"

    def std_for(self, fan_in: int, fan_out: int) -> float:
        return math.sqrt(2 / (fan_in + fan_out))


@dataclass(frozen=True, kw_only=True)
class XavierUniform(_UniformInit):
    """Glorot & Bengio (2010): limit = gain · √(6 / (fan_in + fan_out))."""

    name = "xavier_uniform"

    def limit_for(self, fan_in: int, fan_out: int) -> float:
        return math.sqrt(6 / (fan_in + fan_out))


@dataclass(frozen=True, kw_only=True)
class HeNormal(_GaussianInit):
    """He et al. (2015): std = gain · √(2 / fan_in), i.e. σ_w² = 2 gain², critical for ReLU."""

    name = "he_normal"

    def std_for(self, fan_in: int, fan_out: int) -> float:
        return math.sqrt(2 / fan_in)


@dataclass(frozen=True, kw_only=True)
class HeUniform(_UniformInit):
    """He et al. (2015): limit = gain · √(6 / fan_in), i.e. σ_w² = 2 gain²."""

    name = "he_uniform"

    def limit_for(self, fan_in: int, fan_out: int) -> float:
        return math.sqrt(6 / fan_in)


@dataclass(frozen=True, kw_only=True)
class LecunNormal(_GaussianInit):
    """LeCun et al. (1998, "Efficient BackProp"): std = gain · √(1 / fan_in), σ_w² = gain²."""

    name = "lecun_normal"

    def std_for(self, fan_in: int, fan_out: int) -> float:
        return math.sqrt(1 / fan_in)


@dataclass(frozen=True, kw_only=True)
class Orthogonal(Initializer):
    r"""Saxe et al. (2014): a Haar-random (semi-)orthogonal matrix times ``gain``.

    Q from the QR decomposition of a Gaussian matrix, with each column's sign flipped so that
    diag(R) > 0 (which makes Q exactly Haar-distributed; as in ``torch.nn.init.orthogonal_``).
    For fan_in ≥ fan_out the columns are orthonormal (WᵀW = gain² I), otherwise the rows are
    (WWᵀ = gain² I).  Every entry then has E[W_ij] = 0 and

    .. math:: \mathrm{Var}(W_{ij}) = \frac{\text{gain}^2}{\max(\text{fan\_in}, \text{fan\_out})}.
    """

    name = "orthogonal"

    def _sample(self, fan_in: int, fan_out: int, rng: np.random.Generator) -> Array:
        tall = rng.standard_normal((max(fan_in, fan_out), min(fan_in, fan_out)))
        q, r = np.linalg.qr(tall)
        q *= np.where(np.diag(r) < 0, -1.0, 1.0)
        w = q if fan_in >= fan_out else q.T
        return np.ascontiguousarray(self.gain * w)

    def variance(self, fan_in: int, fan_out: int) -> float:
        return self.gain**2 / max(fan_in, fan_out)


INITIALIZERS: dict[str, type[Initializer]] = {
    cls.name: cls
    for cls in (
        Normal,
        Uniform,
        XavierNormal,
        XavierUniform,
        HeNormal,
        HeUniform,
        LecunNormal,
        Orthogonal,
    )
}


def _build(kind: str, registry: dict[str, type[Any]], name: str, params: dict[str, Any]) -> Any:
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; known: {', '.join(registry)}")
    cls = registry[name]
    allowed = [f.name for f in fields(cls)]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        takes = ", ".join(allowed) or "nothing"
        raise ValueError(f"{kind} {name!r} does not take parameter(s) {unknown}; it takes: {takes}")
    missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in params]
    if missing:
        raise ValueError(f"{kind} {name!r} needs parameter(s) {missing}")
    return cls(**params)


def get_initializer(init: str | Initializer, **params: Any) -> Initializer:
    """The initializer called ``init`` built with ``params`` (e.g. ``std``, ``gain``).

    Objects pass through (then no ``params`` are allowed).  Unknown names, unknown parameters and
    non-positive std / limit / gain raise ``ValueError``.
    """
    if isinstance(init, Initializer):
        if params:
            raise ValueError(f"parameters {sorted(params)} given with an initializer object")
        return init
    built: Initializer = _build("init", INITIALIZERS, init, params)
    return built


# --------------------------------------------------------------------------------------- biases


@dataclass(frozen=True, kw_only=True)
class BiasInit:
    """Base class: ``b = bias_init(fan_out, rng)``, a float64 array of shape (fan_out,)."""

    name: ClassVar[str]

    def __call__(self, fan_out: int, rng: np.random.Generator) -> Array:
        _check_fan("fan_out", fan_out)
        return self._sample(fan_out, rng)

    def _sample(self, fan_out: int, rng: np.random.Generator) -> Array:
        raise NotImplementedError

    def variance(self) -> float:
        """Var(b_i), the mean-field σ_b²."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class ConstantBias(BiasInit):
    """b_i = value.  Deterministic, so σ_b² = 0 (a nonzero value is a mean shift, which the
    zero-mean mean-field theory does not model)."""

    name = "constant"
    value: float = 0.0

    def __post_init__(self) -> None:
        ok = isinstance(self.value, Real) and not isinstance(self.value, bool)
        if not (ok and math.isfinite(self.value)):
            msg = f"bias init 'constant': value must be a finite number, got {self.value!r}"
            raise ValueError(msg)

    def _sample(self, fan_out: int, rng: np.random.Generator) -> Array:
        return np.full(fan_out, float(self.value))

    def variance(self) -> float:
        return 0.0


@dataclass(frozen=True, kw_only=True)
class NormalBias(BiasInit):
    """b_i ~ N(0, std²), so σ_b² = std² (Poole et al. 2016).  ``std`` is required."""

    name = "normal"
    std: float

    def __post_init__(self) -> None:
        _check_positive(f"bias init {self.name!r}", "std", self.std)

    def _sample(self, fan_out: int, rng: np.random.Generator) -> Array:
        return rng.normal(0.0, self.std, size=fan_out)

    def variance(self) -> float:
        return float(self.std) ** 2


BIAS_INITS: dict[str, type[BiasInit]] = {cls.name: cls for cls in (ConstantBias, NormalBias)}


def get_bias_init(spec: float | BiasInit | str, **params: Any) -> BiasInit:
    """A bias initializer: a number means ``ConstantBias(value=spec)``, a name is looked up in
    ``BIAS_INITS`` and built with ``params`` (e.g. ``std``), objects pass through."""
    if isinstance(spec, str):
        built: BiasInit = _build("bias init", BIAS_INITS, spec, params)
        return built
    if params:
        raise ValueError(f"parameters {sorted(params)} only apply to a bias init name")
    if isinstance(spec, BiasInit):
        return spec
    if isinstance(spec, Real) and not isinstance(spec, bool):
        return ConstantBias(value=float(spec))
    raise ValueError(f"bias init must be a number, a name or a BiasInit, got {spec!r}")
