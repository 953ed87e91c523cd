"""Small benchmark datasets, deterministic from a seed and ready for training.

Every generator takes ``n_samples, noise, seed, val_fraction, test_fraction`` (plus its own
parameters) and draws everything from ``np.random.default_rng(seed)``.  It first holds out
``n_test = round(test_fraction · n_samples)`` rows as the test set, chosen by a stream of its
own (``default_rng([seed, TEST_STREAM])``), so the test rows are the same whatever the
validation split; then it shuffles the rest, splits off ``n_val = round(val_fraction ·
n_samples)`` rows (at least 1, leaving at least 1) as the validation set, and standardizes the
inputs with the *training* statistics, ``x ← (x − μ_train) / σ_train`` (population std;
constant features keep σ = 1).  The statistics are kept on the :class:`Dataset` so the raw
inputs are ``ds.unstandardize(x)``.  ``test_fraction=0`` (the default) holds out nothing and
gives exactly the train/validation split of earlier versions.

The 2-D classification sets (spirals, circles, xor, gaussians) follow the geometry and noise scale
of the TensorFlow Playground, where the noise level runs over ``[0, 0.5]``; moons follows
scikit-learn.  Unlike the Playground, noise always perturbs the *inputs* and the label is always
the generating class, so ``noise=0`` gives exactly the clean structure.  Labels are ``0 … K−1``.

``DATASETS`` is the one registry; :func:`make_dataset` validates arguments and dispatches to it.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
MIN_SAMPLES = 10
N_DIGITS = 1797  # rows in scikit-learn's bundled 8×8 digits
_COMMON = frozenset({"n_samples", "noise", "seed", "val_fraction", "test_fraction"})
TEST_STREAM = 7_357  # the test rows' own random stream: default_rng([seed, TEST_STREAM])


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/validation/test split (the test set may be empty).

    ``x_*``: float64 ``(n, n_features)``, standardized with the train statistics ``x_mean`` and
    ``x_std`` (each ``(n_features,)``).  ``y_*``: int64 labels ``(n,)`` in ``[0, n_classes)`` for
    ``task="classification"``, float64 targets ``(n, n_targets)`` for ``task="regression"``
    (``n_classes`` is then 0).
    """

    x_train: FloatArray
    y_train: NDArray[Any]
    x_val: FloatArray
    y_val: NDArray[Any]
    x_test: FloatArray
    y_test: NDArray[Any]
    task: str
    n_classes: int
    name: str
    x_mean: FloatArray
    x_std: FloatArray

    def __post_init__(self) -> None:
        if self.task not in ("classification", "regression"):
            raise ValueError(f"task must be 'classification' or 'regression', got {self.task!r}")

    @property
    def n_features(self) -> int:
        """Input dimension."""
        return int(self.x_train.shape[1])

    @property
    def n_outputs(self) -> int:
        """Network output width: ``n_classes`` (classification) or ``n_targets`` (regression)."""
        return self.n_classes if self.task == "classification" else int(self.y_train.shape[1])

    def unstandardize(self, x: FloatArray) -> FloatArray:
        """Map standardized inputs back to raw ones: ``x · σ_train + μ_train``."""
        return x * self.x_std + self.x_mean


# --------------------------------------------------------------------------------- validation


def _bad(dataset: str, arg: str, value: object, allowed: str) -> ValueError:
    return ValueError(f"{dataset}: {arg} must be {allowed}, got {value!r}")


def _int(dataset: str, arg: str, value: object, lo: int, hi: int | None = None) -> int:
    v = None
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        v = int(value)
    if v is None or v < lo or (hi is not None and v > hi):
        allowed = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"
        raise _bad(dataset, arg, value, allowed)
    return v


def _real(value: object) -> float:
    """``float(value)`` for a real number, NaN for anything else (so every range check fails)."""
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        return float(value)
    return math.nan


def _common(
    dataset: str,
    n_samples: object,
    noise: object,
    seed: object,
    val_fraction: object,
    test_fraction: object,
    lo: int,
) -> None:
    n = _int(dataset, "n_samples", n_samples, lo)
    _int(dataset, "seed", seed, 0)
    if not 0 <= _real(noise) < math.inf:
        raise _bad(dataset, "noise", noise, "a finite number >= 0")
    if not 0 < _real(val_fraction) < 1:
        raise _bad(dataset, "val_fraction", val_fraction, "a number in the open interval (0, 1)")
    if not 0 <= _real(test_fraction) < 1:
        raise _bad(dataset, "test_fraction", test_fraction, "a number in [0, 1)")
    if n - round(_real(test_fraction) * n) < 2:
        allowed = "small enough to leave a training and a validation row"
        raise _bad(dataset, "test_fraction", test_fraction, allowed)


def _finish(
    name: str,
    x: FloatArray,
    y: NDArray[Any],
    rng: np.random.Generator,
    split: tuple[int, float, float],
    n_classes: int = 0,
) -> Dataset:
    """Hold out the test rows, shuffle and split the rest, standardize with the train
    statistics; ``split`` is (seed, val_fraction, test_fraction)."""
    seed, val_fraction, test_fraction = split
    n = len(x)
    held_out = np.random.default_rng([seed, TEST_STREAM]).permutation(n)
    n_test = round(test_fraction * n)
    test_rows, rest = held_out[:n_test], np.sort(held_out[n_test:])
    x_test, y_test = x[test_rows], y[test_rows]
    order = rest[rng.permutation(len(rest))]
    x, y = x[order], y[order]
    n_val = min(max(round(val_fraction * n), 1), len(x) - 1)
    x_train, x_val = x[n_val:], x[:n_val]
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    return Dataset(
        x_train=(x_train - mean) / std,
        y_train=y[n_val:],
        x_val=(x_val - mean) / std,
        y_val=y[:n_val],
        x_test=(x_test - mean) / std,
        y_test=y_test,
        task="classification" if n_classes else "regression",
        n_classes=n_classes,
        name=name,
        x_mean=mean,
        x_std=std,
    )


def _labels(n: int, k: int) -> NDArray[np.int64]:
    """Balanced labels in class order: class ``c`` gets ``n // k`` (+1 for ``c < n % k``) rows."""
    return np.repeat(np.arange(k, dtype=np.int64), [n // k + (c < n % k) for c in range(k)])


# ------------------------------------------------------------------------- 2-D classification


def spirals(
    *,
    n_samples: int = 1000,
    noise: float = 0.1,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    n_classes: int = 2,
) -> Dataset:
    r"""Interleaved spiral arms (Playground "spiral", generalized to ``n_classes`` arms).

    .. math:: u \sim U(0,1),\ r = 5u,\ t = 3.5\pi u + 2\pi c/K,\
              x = r(\sin t, \cos t) + \text{noise}\cdot U(-1,1)^2
    """
    _int("spirals", "n_classes", n_classes, 2, 100)
    _common(
        "spirals",
        n_samples,
        noise,
        seed,
        val_fraction,
        test_fraction,
        max(MIN_SAMPLES, 2 * n_classes),
    )
    rng = np.random.default_rng(seed)
    y = _labels(n_samples, n_classes)
    u = rng.uniform(0, 1, n_samples)
    r, t = 5 * u, 3.5 * np.pi * u + 2 * np.pi * y / n_classes
    x = np.column_stack([r * np.sin(t), r * np.cos(t)])
    x += noise * rng.uniform(-1, 1, x.shape)
    return _finish("spirals", x, y, rng, (seed, val_fraction, test_fraction), n_classes)


def moons(
    *,
    n_samples: int = 1000,
    noise: float = 0.1,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
) -> Dataset:
    r"""Two interleaving half circles (as ``sklearn.datasets.make_moons``, random angles).

    .. math:: t \sim U(0,\pi):\ x_0 = (\cos t, \sin t),\ x_1 = (1 - \cos t, \tfrac12 - \sin t);\
              x \mathrel{+}= \text{noise}\cdot N(0, I_2)
    """
    _common("moons", n_samples, noise, seed, val_fraction, test_fraction, MIN_SAMPLES)
    rng = np.random.default_rng(seed)
    y = _labels(n_samples, 2)
    t = rng.uniform(0, np.pi, n_samples)
    upper, lower = (
        np.column_stack([np.cos(t), np.sin(t)]),
        np.column_stack([1 - np.cos(t), 0.5 - np.sin(t)]),
    )
    x = np.where((y == 0)[:, None], upper, lower)
    x += noise * rng.standard_normal(x.shape)
    return _finish("moons", x, y, rng, (seed, val_fraction, test_fraction), 2)


def circles(
    *,
    n_samples: int = 1000,
    noise: float = 0.1,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
) -> Dataset:
    r"""A disc inside a ring (Playground "circle"): class 0 has radius ``r ~ U(0, 2.5)``,
    class 1 ``r ~ U(3.5, 5)``, angle ``U(0, 2π)``; then ``x += 5·noise·U(−1,1)²``.
    """
    _common("circles", n_samples, noise, seed, val_fraction, test_fraction, MIN_SAMPLES)
    rng = np.random.default_rng(seed)
    y = _labels(n_samples, 2)
    r = np.where(y == 0, rng.uniform(0, 2.5, n_samples), rng.uniform(3.5, 5, n_samples))
    t = rng.uniform(0, 2 * np.pi, n_samples)
    x = np.column_stack([r * np.sin(t), r * np.cos(t)])
    x += 5 * noise * rng.uniform(-1, 1, x.shape)
    return _finish("circles", x, y, rng, (seed, val_fraction, test_fraction), 2)


def xor(
    *,
    n_samples: int = 1000,
    noise: float = 0.1,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
) -> Dataset:
    r"""Quadrants (Playground "xor"): ``x ~ U(−5,5)²`` pushed 0.3 away from both axes,
    label ``1[x₁x₂ > 0]`` of the clean point; then ``x += 5·noise·U(−1,1)²``.
    """
    _common("xor", n_samples, noise, seed, val_fraction, test_fraction, MIN_SAMPLES)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-5, 5, (n_samples, 2))
    x = np.where(x >= 0, x + 0.3, x - 0.3)
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
    x += 5 * noise * rng.uniform(-1, 1, x.shape)
    return _finish("xor", x, y, rng, (seed, val_fraction, test_fraction), 2)


def gaussians(
    *,
    n_samples: int = 1000,
    noise: float = 0.1,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
) -> Dataset:
    r"""Two isotropic blobs (Playground "gauss"): class 0 at (−2, −2), class 1 at (2, 2), each
    ``N(center, σ² I)`` with Playground's variance ``σ² = 0.5 + 7·noise`` (0.5 … 4 for noise
    0 … 0.5), so even ``noise=0`` leaves blobs of std ≈ 0.71.
    """
    _common("gaussians", n_samples, noise, seed, val_fraction, test_fraction, MIN_SAMPLES)
    rng = np.random.default_rng(seed)
    y = _labels(n_samples, 2)
    center = np.where(y == 1, 2.0, -2.0)[:, None]
    x = center + math.sqrt(0.5 + 7 * noise) * rng.standard_normal((n_samples, 2))
    return _finish("gaussians", x, y, rng, (seed, val_fraction, test_fraction), 2)


# --------------------------------------------------------------------------------- regression

_TEACHER_ACTIVATIONS: dict[str, Callable[[FloatArray], FloatArray]] = {
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    "sigmoid": lambda z: 0.5 * (1 + np.tanh(z / 2)),
}


def teacher(
    *,
    n_samples: int = 1000,
    noise: float = 0.0,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    n_features: int = 8,
    width: int = 32,
    depth: int = 2,
    n_targets: int = 1,
    activation: str = "tanh",
) -> Dataset:
    r"""Targets from a random teacher MLP with ``depth`` hidden layers of ``width`` units.

    .. math:: h_0 = x \sim N(0, I_d),\ h_l = \phi(h_{l-1} W_l + b_l),\
              y = h_L W_{out} + \text{noise}\cdot N(0, 1)

    with ``W ~ N(0, 1/fan_in)`` (LeCun), ``b ~ N(0, 0.1²)`` and ``φ`` = ``activation``
    (tanh | relu | sigmoid).  Teacher weights, inputs and noise all come from ``seed``.
    """
    for arg, value in (("n_features", n_features), ("width", width), ("n_targets", n_targets)):
        _int("teacher", arg, value, 1)
    _int("teacher", "depth", depth, 1)
    if activation not in _TEACHER_ACTIVATIONS:
        raise _bad("teacher", "activation", activation, f"one of {sorted(_TEACHER_ACTIVATIONS)}")
    _common("teacher", n_samples, noise, seed, val_fraction, test_fraction, MIN_SAMPLES)
    rng = np.random.default_rng(seed)
    phi = _TEACHER_ACTIVATIONS[activation]
    sizes = [n_features] + [width] * depth
    layers = [
        (rng.standard_normal((a, b)) / math.sqrt(a), 0.1 * rng.standard_normal(b))
        for a, b in itertools.pairwise(sizes)
    ]
    w_out = rng.standard_normal((width, n_targets)) / math.sqrt(width)
    x = rng.standard_normal((n_samples, n_features))
    h = x
    for w, b in layers:
        h = phi(h @ w + b)
    y = h @ w_out + noise * rng.standard_normal((n_samples, n_targets))
    return _finish("teacher", x, y, rng, (seed, val_fraction, test_fraction))


def tent_map(x: FloatArray, k: int) -> FloatArray:
    r"""The tent map composed ``k`` times (Telgarsky 2016), ``T(x) = 2x`` for ``x < ½`` else
    ``2(1 − x)``, on ``[0, 1]``.

    ``T^k`` is piecewise linear with exactly ``2^k`` pieces of slope ``±2^k`` (``2^(k−1)``
    teeth), equal to 0 at ``x = 2j/2^k`` and 1 at ``x = (2j+1)/2^k``.  Exact in float64 (``2x``
    and ``1 − x`` for ``x ≥ ½`` are exact), so dyadic inputs give exact outputs.
    """
    for _ in range(k):
        x = np.where(x < 0.5, 2 * x, 2 * (1 - x))
    return x


def sawtooth(
    *,
    n_samples: int = 1000,
    noise: float = 0.0,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    k: int = 3,
) -> Dataset:
    r"""Telgarsky's sawtooth: raw ``x ~ U(0, 1)`` (one feature), target
    ``y = T^k(x) + noise·N(0, 1)`` with :func:`tent_map` applied to the *raw* x
    (``2^k`` linear pieces, ``2^(k−1)`` teeth); x is then standardized like every other set.
    The default k = 3 (8 pieces) is one a small deep ReLU net fits in 30 epochs and a one-layer
    net of the same size does not; with k = 4 none of the suite's nets beat the constant
    predictor in that time.
    """
    _int("sawtooth", "k", k, 1, 30)
    _common("sawtooth", n_samples, noise, seed, val_fraction, test_fraction, MIN_SAMPLES)
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n_samples, 1))
    y = tent_map(x, k) + noise * rng.standard_normal((n_samples, 1))
    return _finish("sawtooth", x, y, rng, (seed, val_fraction, test_fraction))


# ------------------------------------------------------------------------------------ digits


@functools.cache
def _load_digits() -> tuple[FloatArray, NDArray[np.int64]]:
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]

    x, y = load_digits(return_X_y=True)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.int64)


def digits(
    *,
    n_samples: int | None = None,
    noise: float = 0.0,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
) -> Dataset:
    """The real 8×8 handwritten digits bundled with scikit-learn (no download): 64 features
    (pixel intensities 0 … 16), 10 classes.  ``n_samples=None`` uses all 1797 images, otherwise
    a seeded subsample without replacement; ``noise`` adds ``noise·N(0, 1)`` to raw pixels.
    """
    n = N_DIGITS if n_samples is None else n_samples
    _int("digits", "n_samples", n, MIN_SAMPLES, N_DIGITS)
    _common("digits", n, noise, seed, val_fraction, test_fraction, MIN_SAMPLES)
    rng = np.random.default_rng(seed)
    x_all, y_all = _load_digits()
    rows = np.sort(rng.choice(N_DIGITS, size=n, replace=False))
    x = x_all[rows] + noise * rng.standard_normal((n, x_all.shape[1]))
    return _finish("digits", x, y_all[rows].copy(), rng, (seed, val_fraction, test_fraction), 10)


# ---------------------------------------------------------------------------------- registry

DATASETS: dict[str, Callable[..., Dataset]] = {
    "spirals": spirals,
    "moons": moons,
    "circles": circles,
    "xor": xor,
    "gaussians": gaussians,
    "teacher": teacher,
    "sawtooth": sawtooth,
    "digits": digits,
}


def make_dataset(
    name: str,
    *,
    n_samples: int | None = None,
    noise: float | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    **params: Any,
) -> Dataset:
    """Build dataset ``name`` from :data:`DATASETS`; ``None`` means that dataset's default.

    ``params`` are the dataset's own parameters (e.g. ``n_classes`` for spirals, ``k`` for
    sawtooth); anything else raises ``ValueError``.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    fn = DATASETS[name]
    allowed = sorted(set(inspect.signature(fn).parameters) - _COMMON)
    for key in params:
        if key not in allowed:
            raise ValueError(
                f"{name}: unknown parameter {key!r}; allowed: {', '.join(allowed) or '(none)'}"
            )
    kwargs: dict[str, Any] = {"seed": seed, "val_fraction": val_fraction, **params}
    kwargs["test_fraction"] = test_fraction
    if n_samples is not None:
        kwargs["n_samples"] = n_samples
    if noise is not None:
        kwargs["noise"] = noise
    return fn(**kwargs)


__all__ = [
    "DATASETS",
    "Dataset",
    "circles",
    "digits",
    "gaussians",
    "make_dataset",
    "moons",
    "sawtooth",
    "spirals",
    "teacher",
    "tent_map",
    "xor",
]
