"""Per-layer metrics over training, one panel per config (``layer_grid``): ``saturation_dead``,
``update_ratio``, ``activation_stats`` (Glorot & Bengio, Fig. 2) and ``speed_of_learning``
(Nielsen, ch. 5)."""

from __future__ import annotations

import numpy as np

from experiments.diagnostics.recorder import SATURATION_THRESHOLD
from experiments.figures import style
from experiments.figures.common import (
    BIAS_GRAD,
    LAYER,
    STEP,
    Built,
    Data,
    config_label,
    family_keys,
    finite_or_nan,
    per_layer_over_time,
    positive,
    runs_with,
)

UPDATE_RATIO_GUIDE = 1e-3  # a healthy ‖ΔW‖/‖W‖ per step (Karpathy)
UPDATE_RATIO = r"$\Vert\Delta W^l\Vert_F \,/\, \Vert W^l\Vert_F$"
FULL_BIAS_GRAD = "full_bias_grad_norm"  # recorded with log.full_gradient


def layer_grid(data: Data, families: dict[str, str], log: bool, ylabel: str) -> Built:
    """One panel per config (lowest seed), one line per layer coloured by its index; each
    family (name → line style) in the same panel."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.collections import LineCollection
    from matplotlib.ticker import MaxNLocator

    norm, cmap = style.layer_colours(
        max(data.histories[r.run_id].n_layers or 1 for _, r in data.panels)
    )
    fig, axes = style.grid(len(data.panels), 1.3)
    for ax, (config, run) in zip(axes, data.panels, strict=True):
        ax.set(title=config_label(data.keys, config), yscale="log" if log else "linear")
        for family, linestyle in families.items():
            steps, layers, m = per_layer_over_time(data.histories[run.run_id], family)
            m = positive(m) if log else finite_or_nan(m)
            lines = [np.column_stack([steps, y]) for y in m]  # one artist for all layers: fast
            colours = cmap(norm(layers))
            ax.add_collection(LineCollection(lines, colors=colours, linestyles=linestyle, lw=0.9))
        ax.autoscale_view()
    fig.supxlabel(STEP)
    fig.supylabel(ylabel)
    bar = fig.colorbar(ScalarMappable(norm, cmap), ax=axes, label=LAYER)
    bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    shown = [r for _, r in data.panels]
    return fig, shown, family_keys(data, shown, *families)


def saturation_dead(data: Data) -> Built:
    """Saturated fraction (solid) and dead units (dashed) per hidden layer over training."""
    from matplotlib.lines import Line2D

    fig, shown, used = layer_grid(data, {"saturation": "-", "dead": "--"}, False, "fraction")
    for ax in fig.axes[: len(data.panels)]:
        ax.set_ylim(-0.03, 1.03)
    handles = [
        Line2D([], [], color="0.2", label=f"saturated: f′ < {SATURATION_THRESHOLD:.0%} of sup f′"),
        Line2D([], [], color="0.2", linestyle="--", label="dead units: f′ = 0 on the batch"),
    ]
    fig.legend(handles=handles, loc="outside upper center", ncols=2)
    return fig, shown, used


def update_ratio(data: Data) -> Built:
    """‖ΔW‖/‖W‖ per layer over training, with the 1e-3 guide line."""
    from matplotlib.lines import Line2D

    fig, shown, used = layer_grid(data, {"update_ratio": "-"}, True, UPDATE_RATIO)
    for ax in fig.axes[: len(data.panels)]:
        ax.axhline(UPDATE_RATIO_GUIDE, color="0.4", linestyle=":", lw=0.8)
    handle = Line2D([], [], color="0.4", linestyle=":", lw=0.8)
    handle.set_label(f"guide: {UPDATE_RATIO_GUIDE:g} per step")
    fig.legend(handles=[handle], loc="outside upper center")
    return fig, shown, used


def activation_stats(data: Data) -> Built:
    """Glorot & Bengio Fig. 2: mean (solid) and std (dashed) of aˡ per layer over training."""
    return layer_grid(data, {"act_mean": "-", "act_std": "--"}, False, "mean (—), std (--) of aˡ")


def speed_of_learning(data: Data) -> Built:
    """Nielsen's speed of learning: training-set ‖∂C/∂bˡ‖ per layer over training."""
    return layer_grid(data, {FULL_BIAS_GRAD: "-"}, True, f"{BIAS_GRAD} (training set)")


def has_full_gradient(data: Data) -> bool:
    """Some run recorded the training-set gradient per layer (``log.full_gradient``)."""
    return bool(runs_with(data, f"{FULL_BIAS_GRAD}/layer_01"))
