"""``layer_moments``: signal propagation at initialization as Brock, De & Smith (2021) draw it,
the squared mean and the variance of aˡ per hidden layer at step 0, each with the mean field's
prediction (He et al. 2015: E[(aˡ)²] ∝ (σ_w²/2)ˡ for ReLU, (½)ˡ with Xavier, constant with He;
Klambauer et al. 2017: SELU with lecun_normal keeps mean 0 and variance 1).

The mean field runs the length map from the first hidden layer's measured second moment
p¹ = E[(a¹)²] over units of a wide net:

    qˡ⁺¹ = σ_w² pˡ + σ_b²,   pˡ⁺¹ = E[φ(√qˡ⁺¹ z)²],   mˡ⁺¹ = E[φ(√qˡ⁺¹ z)],   z ~ N(0, 1),

and draws mˡ² (squared mean) and pˡ − mˡ² (variance).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

import bpcore
from bpcore.theory import gaussian_expectation
from experiments.comparison.records import ACTIVATION_KEY
from experiments.diagnostics.history import FloatArray, History, IntArray
from experiments.figures import style
from experiments.figures.common import (
    Built,
    Data,
    family_keys,
    group_runs,
    per_layer_over_time,
    positive,
    spans_decades,
)
from experiments.figures.layers import INTERVAL, LOG_INTERVAL, log_ticks, seed_lines
from experiments.figures.signal import short_label
from experiments.figures.theory import MEAN_FIELD_LOOK

if TYPE_CHECKING:
    import pandas as pd

SIGMA_W2, SIGMA_B2 = "theory/sigma_w2", "theory/sigma_b2"
FLOOR = 1e-8  # a log panel's lowest value relative to its highest (a zero mean would be 1e-40)
QUANTITIES = {"sq_mean": r"squared mean $(E[a^l])^2$", "variance": r"variance $Var[a^l]$"}


def layer_moments_of(history: History) -> tuple[IntArray, FloatArray, FloatArray]:
    """(layers 1 … L−1, E[(aˡ)²] = std² + mean², mean of aˡ) of the hidden layers at step 0."""
    _, layers, means = per_layer_over_time(history, "act_mean")
    _, _, stds = per_layer_over_time(history, "act_std")
    m, sd = means[:-1, 0], stds[:-1, 0]
    return layers[:-1], sd * sd + m * m, m


def mean_field_moments(
    activation: str, sigma_w2: float, sigma_b2: float, m1: float, p1: float, n_layers: int
) -> tuple[FloatArray, FloatArray]:
    """(squared mean mˡ², variance pˡ − mˡ²) for l = 1 … ``n_layers`` of a wide plain net whose
    first hidden layer has mean ``m1`` and second moment ``p1`` (the module docstring's
    recursion; layer 1 is the measured one)."""
    act = bpcore.get_activation(activation)
    kinks = tuple(getattr(act, "kinks", ()))
    m, p = m1, p1
    squares, variances = [m * m], [p - m * m]
    for _ in range(n_layers - 1):
        q = sigma_w2 * p + sigma_b2
        m = gaussian_expectation(act, q, kinks)
        p = gaussian_expectation(lambda x: np.square(act(x)), q, kinks)
        squares.append(m * m)
        variances.append(p - m * m)
    return np.array(squares), np.array(variances)


def moments_frame(data: Data) -> pd.DataFrame:
    """One row per (run, hidden layer, quantity): line, seed, layer, quantity (``sq_mean`` or
    ``variance``), value and theory (the mean field through the run's layer 1; NaN without
    theory metrics)."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    for config, group in group_runs(data.runs, data.keys).items():
        line = short_label(data.keys, config)
        for run in group:
            history = data.histories[run.run_id]
            layers, second, mean = layer_moments_of(history)
            measured = {"sq_mean": mean * mean, "variance": second - mean * mean}
            theory = _theory(run.params.get(ACTIVATION_KEY, ""), history, mean, second)
            for quantity, values in measured.items():
                predicted = theory[quantity] if theory else np.full(len(layers), math.nan)
                rows += [
                    {"line": line, "seed": run.seed, "layer": int(l), "quantity": quantity}
                    | {"value": v, "theory": t}
                    for l, v, t in zip(layers, values, predicted, strict=True)
                ]
    columns = ["line", "seed", "layer", "quantity", "value", "theory"]
    return pd.DataFrame(rows, columns=columns)


def _theory(
    activation: str, history: History, mean: FloatArray, second: FloatArray
) -> dict[str, FloatArray] | None:
    if SIGMA_W2 not in history.keys or not activation or len(mean) == 0:
        return None
    sigma_w2, sigma_b2 = (float(history.series(k)[1][0]) for k in (SIGMA_W2, SIGMA_B2))
    squares, variances = mean_field_moments(
        activation, sigma_w2, sigma_b2, float(mean[0]), float(second[0]), len(mean)
    )
    return {"sq_mean": squares, "variance": variances}


def layer_moments(data: Data) -> Built:
    """Step-0 squared mean and variance of aˡ per hidden layer: mean and 95% t-interval over
    seeds per config, the mean field dashed."""
    from matplotlib.layout_engine import ConstrainedLayoutEngine
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    frame = moments_frame(data)
    frame["value"] = positive(frame["value"].to_numpy())
    configs = list(group_runs(data.runs, data.keys))
    look = style.looks(data.keys, configs)
    lines = {short_label(data.keys, c): look[c] for c in configs}
    fig = style.figure(style.TWO_COLUMN, 2.8)
    engine = fig.get_layout_engine()
    if isinstance(engine, ConstrainedLayoutEngine):
        engine.set(w_pad=0.1)  # room for tick labels such as 10⁻¹⁰ at the page's left edge
    axes = fig.subplots(1, 2)
    logs = [spans_decades([frame[frame["quantity"] == q]["value"].to_numpy()]) for q in QUANTITIES]
    for ax, (quantity, title), log in zip(axes, QUANTITIES.items(), logs, strict=True):
        mine = frame[frame["quantity"] == quantity]
        seed_lines(ax, mine, "layer", "value", lines, log=log, lw=1.0)
        for _, rows in mine.groupby("line", sort=False):
            theory = rows.groupby("layer")["theory"].mean()
            values = positive(theory.to_numpy())
            if log:  # a mean field of 0 (an odd φ's mean) is off the panel, not a cliff
                values[values < FLOOR * np.nanmax(mine["value"].to_numpy())] = np.nan
            if np.isfinite(values).any():
                ax.plot(theory.index, values, **MEAN_FIELD_LOOK)
        if log:
            ax.set_yscale("log")
            top = np.nanmax(mine["value"].to_numpy())
            ax.set_ylim(max(ax.get_ylim()[0], top * FLOOR), None)  # lower values: off the panel
            log_ticks([ax])
        ax.set(title=title, xlabel="", ylabel="")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.supxlabel("hidden layer l (at initialization, step 0)")
    handles = [
        Line2D([], [], color=k["color"], linestyle=k["linestyle"], label=name)
        for name, k in lines.items()
    ]
    handles.append(Line2D([], [], **MEAN_FIELD_LOOK, label="mean field (from layer 1)"))
    band = LOG_INTERVAL if any(logs) else INTERVAL
    handles.append(Line2D([], [], color="0.5", lw=6, alpha=0.3, label=band))
    fig.legend(handles=handles, loc="outside upper center", ncols=min(3, len(handles)))
    keys = family_keys(data, data.runs, "act_mean", "act_std")
    return fig, data.runs, [k for k in keys if "/layer_" in k]
