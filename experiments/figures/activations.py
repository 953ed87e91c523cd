"""``activation_gallery``: every registered activation and its derivative (needs no runs)."""

from __future__ import annotations

import numpy as np

from bpcore import ACTIVATIONS, get_activation
from experiments.diagnostics.history import FloatArray
from experiments.diagnostics.recorder import SATURATION_THRESHOLD
from experiments.figures import style
from experiments.figures.common import Built, Data


def activation_curves(z: FloatArray) -> dict[str, tuple[FloatArray, FloatArray, float]]:
    """Every registered activation at default parameters: name → (f(z), f′(z), sup |f′|)."""
    out = {}
    for name in ACTIVATIONS:
        f = get_activation(name)
        a = np.asarray(f(z), dtype=np.float64)
        out[name] = (a, np.asarray(f.grad(z, a), dtype=np.float64), float(f.max_grad))
    return out


def activation_gallery(data: Data) -> Built:
    """Every activation f (solid) and f′ (dashed); shaded where |f′| < 5% of sup |f′| (the
    saturation metric's rule: GELU′ ≈ −0.1 is a slope, not a plateau)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    z = np.linspace(-4.0, 4.0, 801)
    curves = activation_curves(z)
    fig, axes = style.grid(len(curves) + 1, 1.25)  # the last panel holds the legend
    for ax, (name, (f, fp, sup)) in zip(axes, curves.items(), strict=False):
        colour = style.activation_style(name)[0]
        shade = np.abs(fp) < SATURATION_THRESHOLD * sup
        ax.fill_between(z, 0, 1, where=shade, transform=ax.get_xaxis_transform(), color="0.9")
        ax.axhline(0, color="0.6", lw=0.4)
        ax.axvline(0, color="0.6", lw=0.4)
        ax.plot(z, f, color=colour)
        ax.plot(z, fp, color=colour, linestyle="--", lw=0.9)
        ax.text(0.04, 0.96, f"sup f′ = {sup:.3g}", transform=ax.transAxes, va="top")
        ax.set(title=name, xlim=(-4, 4), ylim=(-2, 3))
    axes[-1].axis("off")
    handles = [
        Line2D([], [], color="0.2", label="f(z)"),
        Line2D([], [], color="0.2", linestyle="--", label="f′(z)"),
        Patch(color="0.9", label=f"|f′| < {SATURATION_THRESHOLD:.0%} of sup |f′|"),
    ]
    axes[-1].legend(handles=handles, loc="center")
    fig.supxlabel("pre-activation z")
    fig.supylabel("f(z) and f′(z)")
    return fig, [], []
