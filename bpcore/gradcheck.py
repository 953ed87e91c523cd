"""Check analytic gradients against central finite differences (autograd's ``check_grads``).

Each checked parameter θ is nudged by ±h and ±2h and the derivative estimated with the
fourth-order central stencil

    ∂L/∂θ ≈ (L(θ−2h) − 8L(θ−h) + 8L(θ+h) − L(θ+2h)) / 12h,

whose truncation error is O(h⁴), so float64 round-off (≈1e-16·L/h) dominates.  A stencil must
stay on one smooth piece of the loss: if any hidden activation's input would cross a kink of its
activation (relu at 0, hard_tanh at ±1, …), h is shrunk tenfold until none does.  The error of an
entry is |analytic − numeric| / max(|analytic|, |numeric|, floor): relative for gradient entries
above ``floor`` (1e-5), measured against ``floor`` for smaller ones, whose relative error would
mostly measure the stencil's own round-off (≈1e-13 absolute when h has to shrink near a kink).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bpcore.mlp import MLP

STENCIL = ((-2, 1.0), (-1, -8.0), (1, 8.0), (2, -1.0))  # (offset in h, weight) ÷ 12h
SMALLEST_H = 1e-9


def gradcheck(
    net: MLP,
    x: ArrayLike,
    y: ArrayLike,
    loss: str,
    h: float = 1e-3,
    floor: float = 1e-5,
    max_checks: int = 2000,
    seed: int = 0,
) -> float:
    """Largest error of ``net.loss_and_grads`` against finite differences, over all parameters.

    Nets with more than ``max_checks`` parameters are checked on a random subset of that many
    entries, drawn with ``seed``, uniformly over all entries.  Use a float64 net: float32
    round-off swamps any finite difference.
    """
    _, bp = net.loss_and_grads(x, y, loss)
    params, analytic = net.params, bp.grads
    sides = _kink_sides(net, bp.ys)
    offsets = np.cumsum([0] + [p.size for p in params])
    checked = np.arange(offsets[-1])
    if checked.size > max_checks:
        checked = np.sort(
            np.random.default_rng(seed).choice(checked.size, max_checks, replace=False)
        )
    worst = 0.0
    for k in checked:
        i = int(np.searchsorted(offsets, k, side="right") - 1)
        index = np.unravel_index(k - offsets[i], params[i].shape)
        numeric = _finite_difference(net, params[i], index, x, y, loss, h, sides)
        exact = float(analytic[i][index])
        worst = max(worst, abs(exact - numeric) / max(abs(exact), abs(numeric), floor))
    return worst


def _kink_sides(net: MLP, ys: list[NDArray[Any]]) -> list[NDArray[Any]]:
    """For every hidden unit and example, which smooth piece of its activation its input yˡ
    (zˡ, or the normalized zˡ) lies on."""
    return [np.searchsorted(f.kinks, y) for f, y in zip(net.hidden_activations, ys, strict=False)]


def _finite_difference(
    net: MLP,
    param: NDArray[Any],
    index: tuple[Any, ...],
    x: ArrayLike,
    y: ArrayLike,
    loss: str,
    h: float,
    sides: list[NDArray[Any]],
) -> float:
    """The stencil's estimate of ∂L/∂param[index], with h small enough to cross no kink."""
    original = param[index]
    try:
        while True:
            total, same_piece = 0.0, True
            for offset, weight in STENCIL:
                param[index] = original + offset * h
                value, bp = net.loss_and_grads(x, y, loss)
                total += weight * value
                same_piece &= all(map(np.array_equal, _kink_sides(net, bp.ys), sides))
            if same_piece or h < SMALLEST_H:
                return total / (12 * h)
            h /= 10
    finally:
        param[index] = original
