r"""Mean-field theory of signal and gradient propagation at initialization.

For a wide net with i.i.d. weights of variance σ_w²/fan_in and biases of variance σ_b²
(Poole et al. 2016, Schoenholz et al. 2017), the pre-activation second moment q obeys the
*length map*

.. math:: q^{l+1} = \sigma_w^2\, \mathbb{E}_{z}\big[\phi(\sqrt{q^l}\, z)^2\big] + \sigma_b^2,
          \qquad z \sim \mathcal{N}(0, 1),

which converges to a fixed point q*.  Back-propagated gradients δˡ = ∂L/∂hˡ then change in
squared norm by the factor

.. math:: \chi_1 = \sigma_w^2\, \mathbb{E}_z\big[\phi'(\sqrt{q^*}\, z)^2\big]

per layer: χ₁ < 1 vanishes (ordered phase), χ₁ > 1 explodes (chaotic), χ₁ = 1 is the edge of
chaos.  ``activation`` arguments are names or objects of :mod:`bpcore.activations`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.polynomial.legendre import leggauss
from numpy.typing import ArrayLike, NDArray

from bpcore.activations import Activation, get_activation

Array = NDArray[np.float64]

Q_MAX = 1e8  # fixed points above this count as divergent (q* = inf)
Q_MIN = 1e-300  # fixed points below this are 0; χ₁ at q* = 0 is taken here (the q → 0⁺ limit)
_NOISE = 64 * float(np.finfo(np.float64).eps)  # |f(q) − q| this small (relative) is rounding

# Quadrature panels: z in [−Z_MAX, Z_MAX] (the N(0, 1) mass outside is 1.5e-23), edges every
# 0.5 in z and every 0.5 in x = √q z up to |x| = 8 (where activations bend), then 1.5× wider.
Z_MAX = 10.0
_Z_EDGES = np.arange(0.5, Z_MAX, 0.5)
_X_EDGES = np.concatenate([np.arange(0.5, 8.25, 0.5), 8 * 1.5 ** np.arange(1, 50)])  # to 3e9
_GL_T, _GL_W = leggauss(8)


@lru_cache(maxsize=1024)
def _rule(q: float, kinks: tuple[float, ...]) -> tuple[Array, Array]:
    """Nodes z and weights w (summing to 1) with E[f(√q z)] ≈ Σ w f(√q z); symmetric in z."""
    edges = _Z_EDGES
    if q > 0:
        edges = np.concatenate([edges, _X_EDGES / math.sqrt(q), np.divide(kinks, math.sqrt(q))])
    e = np.sort(np.concatenate([[0.0, Z_MAX], edges[(edges > 0) & (edges < Z_MAX)]]))
    mid, half = (e[1:] + e[:-1]) / 2, (e[1:] - e[:-1]) / 2  # duplicate edges: zero weights
    zp = (mid[:, None] + half[:, None] * _GL_T).ravel()
    wp = (half[:, None] * _GL_W).ravel() * np.exp(-zp * zp / 2)
    z, w = np.concatenate([-zp[::-1], zp]), np.concatenate([wp[::-1], wp])
    return z, w / w.sum()


def gaussian_expectation(
    fn: Callable[[Array], NDArray[Any]], q: float, kinks: Sequence[float] = ()
) -> float:
    r""":math:`\mathbb{E}[fn(\sqrt{q}\, z)]` for z ~ N(0, 1), i.e. E[fn(x)] for x ~ N(0, q).

    Composite 8-point Gauss–Legendre on panels of z ∈ [−10, 10], with edges on a grid in z, on
    a grid in x near 0, at x = 0 and at x = ±``kinks`` (where fn is not smooth).  The rule is
    symmetric, so ReLU-type jumps at 0 are exact (E[relu′²] = 1/2); for every registered
    activation E[φ²] and E[φ′²] agree with adaptive quadrature to ≲ 1e-9 for q in [1e-4, 1e8]
    (Gauss–Hermite with 100 nodes, exact only for smooth fn, is off by up to 4% for hard_tanh,
    softsign, SELU and ELU).  ``fn`` gets a float64 array; nodes reach |x| = 10√q, beyond where
    activations promise warning-free values, so floating-point warnings (e.g. from a discarded
    branch) are silenced; an infinite result is returned, a NaN raises ValueError.
    """
    if not (math.isfinite(q) and q >= 0):
        raise ValueError(f"q must be a finite number >= 0, got {q!r}")
    z, w = _rule(float(q), tuple(sorted({abs(float(k)) for k in kinks})))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        value = float(np.sum(w * fn(math.sqrt(q) * z)))
    if math.isnan(value):
        raise ValueError(f"gaussian_expectation: the integrand is NaN at q={q!r}")
    return value


def _check_variance(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _kinks(act: Activation) -> tuple[float, ...]:
    """Where φ′ or φ″ jumps (``Activation.kinks``; absent on third-party activations)."""
    return tuple(getattr(act, "kinks", ()))


def _mean_sq_value(act: Activation, q: float) -> float:
    """E[φ(√q z)²]."""
    return gaussian_expectation(lambda x: np.square(act(x)), q, _kinks(act))


def _mean_sq_grad(act: Activation, q: float) -> float:
    """E[φ′(√q z)²]; the derivative comes from ``act.grad(z, φ(z))``."""
    return gaussian_expectation(lambda x: np.square(act.grad(x, act(x))), q, _kinks(act))


def q_star(
    activation: str | Activation,
    sigma_w2: float,
    sigma_b2: float,
    q0: float = 1.0,
    tol: float = 1e-12,
    max_iter: int = 1000,
) -> float:
    r"""Fixed point q* of the length map f(q) = σ_w² E[φ(√q z)²] + σ_b², the one a deep net's
    forward pass reaches from q⁰ = ``q0``.

    Plain iteration of f converges at rate f′(q*), arbitrarily slowly near criticality (and only
    like 1/n for tanh at σ_w² = 1, σ_b² = 0), so the root of g(q) = f(q) − q is bracketed
    instead.  For increasing f the iterates move monotonically to the nearest fixed point in the
    direction of g(q0); so if g(q0) < 0 the bracket is [σ_b², q0] (g(σ_b²) ≥ 0), if g(q0) > 0
    it is found by stepping up from q0 (to the next iterate, or doubling if further).  The
    bracket keeps g(lo) ≥ 0 > g(hi), so it closes on a *stable* fixed point (a downward
    crossing); it shrinks by geometric bisection while it spans decades, then by the Illinois
    variant of regula falsi, to a relative width ≤ ``tol``.  ``max_iter`` bounds the
    evaluations of f (RuntimeError if reached).

    Divergence: if g stays positive up to ``Q_MAX`` (no finite fixed point above q0, e.g. ReLU
    with σ_w² > 2, or σ_w² = 2 and σ_b² > 0) the result is ``inf``, with no warning; fixed
    points above ``Q_MAX`` are reported as ``inf`` too.  Marginal maps: if |g(q0)| is rounding
    noise q0 is returned, e.g. ReLU at σ_w² = 2, σ_b² = 0 (every q is fixed); a stable zero
    fixed point (σ_b² = 0, φ(0) = 0: tanh with σ_w² < 1, ReLU with σ_w² < 2) gives 0.0 (tanh at
    σ_w² = 1 approaches it so flatly that g is rounding noise from q ≈ 1e-14 on: a tiny q > 0
    is returned).  Maps within ~1e-14 (relative) of marginal cannot be told from marginal.
    """
    act = get_activation(activation)
    _check_variance("sigma_w2", sigma_w2)
    _check_variance("sigma_b2", sigma_b2)
    _check_variance("q0", q0)
    evals = 0

    def gap(q: float) -> float:  # g(q) = f(q) − q
        nonlocal evals
        evals += 1
        if evals > max_iter:
            raise RuntimeError(f"q_star: no convergence in {max_iter} evaluations (q = {q:.6g})")
        return sigma_w2 * _mean_sq_value(act, q) + sigma_b2 - q

    def is_noise(q: float, g: float) -> bool:  # |f(q) − q| at rounding level
        return abs(g) <= _NOISE * max(q, q + g)

    g0 = gap(q0)
    if is_noise(q0, g0):
        return float(q0)
    if g0 < 0:  # g(σ_b²) = σ_w² E[φ²] ≥ 0
        lo, hi, g_hi = sigma_b2, q0, g0
        g_lo = gap(lo)
    else:  # step up: lo stays below the fixed point, hi is the next iterate or 2·lo
        lo, hi, g_lo, g_hi = q0, q0, g0, g0
        while g_hi >= 0:
            if lo >= Q_MAX:
                return math.inf
            hi = min(max(lo + g_lo, 2 * lo), Q_MAX)
            g_hi = gap(hi)
            if is_noise(hi, g_hi):
                return float(hi)
            if g_hi > 0:
                lo, g_lo = hi, g_hi
    kept = 0  # which end the last step kept: −1 hi, +1 lo (Illinois: halve its g if twice)
    while hi - lo > tol * hi and hi > Q_MIN:
        if hi > 4 * max(lo, Q_MIN):  # the bracket spans decades: geometric midpoint
            mid = math.sqrt(max(lo, Q_MIN)) * math.sqrt(hi)
        else:  # regula falsi; the midpoint if that is not inside (g_lo = 0)
            mid = hi - g_hi * (hi - lo) / (g_hi - g_lo)
            mid = mid if lo < mid < hi else (lo + hi) / 2
        if not lo < mid < hi:  # float resolution reached
            break
        g_mid = gap(mid)
        if is_noise(mid, g_mid):
            return mid
        if g_mid > 0:
            lo, g_lo, g_hi, kept = mid, g_mid, g_hi / 2 if kept == -1 else g_hi, -1
        else:
            hi, g_hi, g_lo, kept = mid, g_mid, g_lo / 2 if kept == 1 else g_lo, 1
    return float(lo) if hi <= Q_MIN else (lo + hi) / 2


def chi1(activation: str | Activation, sigma_w2: float, sigma_b2: float) -> float:
    r""":math:`\chi_1 = \sigma_w^2\, E[\phi'(\sqrt{q^*} z)^2]`, the per-layer factor of ‖δ‖².

    Limits at the ends: if q* = inf (the forward signal explodes) it is taken at ``Q_MAX``, if
    q* = 0 at ``Q_MIN`` (giving σ_w² φ′(0)² for smooth φ; σ_w²/2 for ReLU, as at every q > 0).
    """
    act = get_activation(activation)
    q = q_star(act, sigma_w2, sigma_b2)
    return sigma_w2 * _mean_sq_grad(act, min(max(q, Q_MIN), Q_MAX))


def grad_norm_ratio(activation: str | Activation, sigma_w2: float, sigma_b2: float) -> float:
    """√χ₁: the predicted ratio ‖δˡ‖ / ‖δˡ⁺¹‖ of back-propagated gradient norms between
    consecutive layers of equal width (< 1 vanishing, > 1 exploding)."""
    return math.sqrt(chi1(activation, sigma_w2, sigma_b2))


def gradient_depth_scale(activation: str | Activation, sigma_w2: float, sigma_b2: float) -> float:
    """ξ_∇ = −1 / ln χ₁, the depth over which ‖δ‖² changes by a factor e (‖δˡ‖² ∝ e^(−(L−l)/ξ_∇)).

    Positive for χ₁ < 1 (gradients vanish towards the input), ``inf`` at χ₁ = 1 (up to
    rounding), negative for χ₁ > 1 (they grow; |ξ_∇| is the e-folding depth of the growth),
    0 when χ₁ = 0.
    """
    c = chi1(activation, sigma_w2, sigma_b2)
    if c == 0:
        return 0.0
    if abs(c - 1) <= _NOISE:
        return math.inf
    return -1 / math.log(c)


def predicted_grad_norms(
    activation: str | Activation, sigma_w2: float, sigma_b2: float, n_layers: int
) -> Array:
    """Relative gradient norms ‖δˡ‖ / ‖δᴸ‖ = (√χ₁)^(L−l) for l = 1..L (the last entry is 1).

    Entries may overflow to ``inf`` (no warning) for large χ₁ and depth.
    """
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
        raise ValueError(f"n_layers must be a positive integer, got {n_layers!r}")
    ratio = grad_norm_ratio(activation, sigma_w2, sigma_b2)
    with np.errstate(over="ignore"):
        return np.power(ratio, np.arange(n_layers - 1, -1, -1, dtype=np.float64))


def critical_sigma_w2(
    activation: str | Activation, sigma_b2: float, tol: float = 1e-10, sigma_w2_max: float = 1e4
) -> float:
    """The σ_w² with χ₁(σ_w², σ_b²) = 1: the edge of chaos (Schoenholz et al. 2017).

    Bisection on σ_w² (assumes χ₁ increases with σ_w², as for the usual activations), to a
    relative width ``tol``.  ValueError if χ₁ < 1 for all σ_w² ≤ ``sigma_w2_max``.  Where the
    stable q* jumps to ``inf`` (GELU, SiLU, Mish at small σ_b²) χ₁ jumps across 1, and the
    jump is returned.
    """
    act = get_activation(activation)
    lo, hi = 0.0, 1.0
    while chi1(act, hi, sigma_b2) < 1:
        lo, hi = hi, 2 * hi
        if hi > sigma_w2_max:
            msg = f"chi1 < 1 for all sigma_w2 <= {sigma_w2_max:g} at sigma_b2={sigma_b2!r}"
            raise ValueError(msg)
    while hi - lo > tol * hi:
        mid = (lo + hi) / 2
        if chi1(act, mid, sigma_b2) < 1:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def residual_second_moments(
    activation: str | Activation,
    sigma_w2: float,
    sigma_b2: float,
    residual_scale: float,
    n_layers: int,
    p0: float = 1.0,
    m0: float = 0.0,
) -> Array:
    r"""Pre-activation second moments qˡ, l = 1 … ``n_layers``, of a wide net of residual
    layers aˡ = aˡ⁻¹ + α φ(zˡ), zˡ = aˡ⁻¹Wˡ + bˡ (Yang & Schoenholz 2017), from an input a⁰
    with second moment ``p0`` and mean ``m0`` per entry.  With pˡ = E[(aˡ)²], mˡ = E[aˡ] and
    E over z ~ N(0, qˡ) (the zˡ of a unit is independent of that unit's aˡ⁻¹ in the limit):

    .. math:: q^l = \sigma_w^2 p^{l-1} + \sigma_b^2, \qquad
              p^l = p^{l-1} + \alpha^2 E[\phi(z)^2] + 2\alpha\, m^{l-1} E[\phi(z)], \qquad
              m^l = m^{l-1} + \alpha E[\phi(z)],

    so qˡ⁺¹ = qˡ + α²σ_w² E[φ(√qˡ z)²] for an odd φ from a zero-mean input: q grows without a
    fixed point (linearly for bounded φ, geometrically for ReLU), where a plain net's settles.
    """
    act = get_activation(activation)
    _check_variance("sigma_w2", sigma_w2)
    _check_variance("sigma_b2", sigma_b2)
    _check_variance("p0", p0)
    if not (math.isfinite(residual_scale) and residual_scale > 0):
        raise ValueError(f"residual_scale must be a positive finite number, got {residual_scale!r}")
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
        raise ValueError(f"n_layers must be a positive integer, got {n_layers!r}")
    qs = np.empty(n_layers)
    p, m = p0, m0
    for l in range(n_layers):
        qs[l] = q = sigma_w2 * p + sigma_b2  # qˡ = σ_w² pˡ⁻¹ + σ_b²
        mean_phi = gaussian_expectation(act, q, _kinks(act))  # E[φ(√q z)]
        p += residual_scale**2 * _mean_sq_value(act, q) + 2 * residual_scale * m * mean_phi
        m += residual_scale * mean_phi
    return qs


# ------------------------------------------------------------------ measured vs predicted slope


def predicted_log_slope(activation: str | Activation, sigma_w2: float, sigma_b2: float) -> float:
    r"""Predicted slope of ln‖δˡ‖ against the layer index l (counted from the input).

    ‖δˡ‖ ∝ (√χ₁)^(L−l) gives

    .. math:: \frac{d \ln\Vert\delta^l\Vert}{d l} = -\tfrac12 \ln\chi_1 = \frac{1}{2\,\xi_\nabla},

    positive when gradients vanish towards the input (ordered phase), negative when they grow
    (chaotic), 0 at the edge of chaos; ``inf`` when χ₁ = 0.
    """
    c = chi1(activation, sigma_w2, sigma_b2)
    return math.inf if c == 0 else -0.5 * math.log(c)


def log_slope(norms: ArrayLike) -> float:
    r"""Least-squares slope of ln ``norms[l]`` against l = 0, 1, …:

    .. math:: \hat s = \frac{\sum_l (l - \bar l)\,(\ln n_l - \overline{\ln n})}
                            {\sum_l (l - \bar l)^2}.

    NaN if fewer than two norms are given or any is not finite and positive (a vanished or
    exploded layer has no logarithm to fit).
    """
    y = np.asarray(norms, dtype=np.float64)
    if y.ndim != 1 or len(y) < 2 or not np.all(np.isfinite(y) & (y > 0)):
        return math.nan
    x = np.arange(len(y), dtype=np.float64) - (len(y) - 1) / 2  # l − l̄
    log_y = np.log(y)
    return float(np.dot(x, log_y - log_y.mean()) / np.dot(x, x))
