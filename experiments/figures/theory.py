"""The mean-field theory next to what the runs measured (the ``theory/*`` metrics of
``experiments.diagnostics.theory``; Poole et al. 2016, Schoenholz et al. 2017):

    theory_overlay   step-0 ‖∂L/∂bˡ‖ per hidden layer, with the mean-field line
                     ‖∂L/∂bˡ‖ ∝ (√χ₁)^(L−1−l) through the top hidden layer (nielsen_ch5)
    chi1_growth      the measured per-layer factor of ‖∂L/∂bˡ‖², exp(−2 · measured slope),
                     against χ₁ of the run's init (the edge_of_chaos sweep)
    trainability     final val/accuracy over (σ_w², depth), one panel per σ_b², with the
                     gradient depth scale 6|ξ_∇| (edge_of_chaos)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from bpcore import theory
from experiments.comparison.records import ACTIVATION_KEY
from experiments.diagnostics.history import FloatArray, History, IntArray
from experiments.figures import style
from experiments.figures.common import (
    BIAS_GRAD,
    DEPTH_KEY,
    Built,
    Data,
    config_label,
    family_keys,
    group_runs,
    per_layer_over_time,
    positive,
    runs_with,
    t_interval,
)
from experiments.figures.layers import (
    BOOK_SPEEDS,
    FULL_BIAS_GRAD,
    geometric_mean,
    is_nielsens,
    log_ticks,
    panel_grid,
    seed_lines,
)

if TYPE_CHECKING:
    import pandas as pd

CHI1, SLOPE = "theory/chi1", "theory/measured_slope"
SIGMA_W2, SIGMA_B2 = "theory/sigma_w2", "theory/sigma_b2"
VAL_ACCURACY = "val/accuracy"
TRAINABLE_XI = 6  # Schoenholz et al.: trainable up to ≈ 6 ξ_c (correlation depth); drawn with ξ_∇
MEAN_FIELD_GID = "mean field"  # the gid of every mean-field line, for tests to find them
MEAN_FIELD_LOOK: dict[str, Any] = {
    "color": style.BLACK,
    "linestyle": (0, (2, 1.5)),
    "lw": 0.9,
    "gid": MEAN_FIELD_GID,
}


# ------------------------------------------------------------------------------------- data


def first(history: History, key: str) -> float:
    """The value of ``key`` at its first recorded step (step 0 for the theory family)."""
    return float(history.series(key)[1][0])


def overlay(history: History) -> tuple[IntArray, FloatArray, FloatArray] | None:
    """(hidden layers 1 … L−1, measured step-0 ‖∂L/∂bˡ‖ (of the training set where the run
    logged it, else of the minibatch), the mean-field line through the top hidden layer:
    measured[L−1] · (√χ₁)^(L−1−l)); None for a run without theory metrics."""
    if CHI1 not in history.keys or history.n_layers is None:
        return None
    full = f"{FULL_BIAS_GRAD}/layer_01" in history.keys  # Nielsen's measure, where logged
    family = FULL_BIAS_GRAD if full else "bias_grad_norm"
    _, all_layers, norms = per_layer_over_time(history, family)
    layers, measured = all_layers[:-1], norms[:-1, 0]  # hidden layers, at step 0
    ratio = math.sqrt(first(history, CHI1))
    with np.errstate(over="ignore"):
        predicted = measured[-1] * ratio ** (layers[-1] - layers).astype(np.float64)
    return layers, measured, predicted


def growth_points(histories: Mapping[str, History]) -> tuple[FloatArray, FloatArray]:
    """(χ₁, measured per-layer factor of ‖∂L/∂bˡ‖² = exp(−2 · slope)), one entry per run with
    theory metrics, in the mapping's order."""
    with_theory = [h for h in histories.values() if CHI1 in h.keys]
    chi = np.array([first(h, CHI1) for h in with_theory])
    measured = np.exp(-2 * np.array([first(h, SLOPE) for h in with_theory]))
    return chi, measured


def trainability_points(
    histories: Mapping[str, History],
) -> dict[float, tuple[FloatArray, FloatArray, FloatArray]]:
    """Per σ_b²: (σ_w², depth L − 1, last val/accuracy) of each run with theory metrics."""
    points: dict[float, list[tuple[float, float, float]]] = {}
    for h in histories.values():
        if CHI1 not in h.keys or VAL_ACCURACY not in h.keys or h.n_layers is None:
            continue
        accuracy = float(h.series(VAL_ACCURACY)[1][-1])
        row = (first(h, SIGMA_W2), float(h.n_layers - 1), accuracy)
        points.setdefault(round(first(h, SIGMA_B2), 6), []).append(row)
    out = {}
    for b, rows in sorted(points.items()):
        w2s, depths, accuracies = (np.array(c, np.float64) for c in zip(*sorted(rows), strict=True))
        out[b] = (w2s, depths, accuracies)
    return out


# ------------------------------------------------------------------------ what runs can show


def has_chi1(data: Data) -> bool:
    """Some run recorded the mean-field χ₁ (≥ 2 equal hidden layers of one activation)."""
    return bool(runs_with(data, CHI1))


def several_chi1(data: Data) -> bool:
    """At least three distinct χ₁ among the runs: a growth-vs-χ₁ plot has something to show."""
    values = {round(first(data.histories[r.run_id], CHI1), 6) for r in runs_with(data, CHI1)}
    return len(values) >= 3


def init_and_depth_vary(data: Data) -> bool:
    init_varies = any(k.startswith("init.") for k in data.keys)
    return init_varies and DEPTH_KEY in data.keys and bool(runs_with(data, CHI1))


# ---------------------------------------------------------------------------------- figures


def overlay_frame(data: Data) -> pd.DataFrame:
    """One row per (run with theory metrics, hidden layer): config (label), seed, layer,
    measured (step-0 ‖∂L/∂bˡ‖, the training set's where logged), chi1, book (Nielsen's net)."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    for config, group in group_runs(runs_with(data, CHI1), data.keys).items():
        for run in group:
            found = overlay(data.histories[run.run_id])
            if found is None:
                continue
            layers, measured, _ = found
            chi1 = first(data.histories[run.run_id], CHI1)
            rows += [
                {"config": config_label(data.keys, config), "seed": run.seed, "layer": int(l)}
                | {"measured": m, "chi1": chi1, "book": is_nielsens(run.params)}
                for l, m in zip(layers, measured, strict=True)
            ]
    return pd.DataFrame(rows, columns=["config", "seed", "layer", "measured", "chi1", "book"])


def theory_overlay(data: Data) -> Built:
    """One panel per config on a shared log axis: step-0 ‖∂L/∂bˡ‖ per hidden layer (mean and
    95% t-interval over seeds), the mean-field line through the top hidden layer (dashed) and,
    for Nielsen's net, the book's values (◇)."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    frame = overlay_frame(data)
    frame["measured"] = positive(frame["measured"].to_numpy())
    configs = list(dict.fromkeys(frame["config"]))
    fig, axes = panel_grid(max(1, len(configs)), 1.9)
    for ax in axes[1:]:
        ax.sharey(axes[0])
    book_drawn = False
    measured_look = {"color": style.BLUE, "linestyle": "-"}
    for ax, config in zip(axes, configs, strict=True):
        mine = frame[frame["config"] == config].assign(line="measured")
        looks = {"measured": measured_look}
        seed_lines(ax, mine, "layer", "measured", looks, log=True, marker="o", lw=1)
        mean = mine.groupby("layer")["measured"].agg(geometric_mean)
        top = mean.index.max()
        layers = mean.index.to_numpy()
        predicted = mean[top] * math.sqrt(mine["chi1"].iloc[0]) ** (top - layers)
        ax.plot(layers, positive(predicted), **MEAN_FIELD_LOOK)
        book = BOOK_SPEEDS.get(len(layers)) if mine["book"].iloc[0] else None
        if book is not None:
            ax.plot(layers, book, ls="none", **style.BOOK_LOOK, mec=style.BLACK, zorder=5)
            book_drawn = True
        ax.set(yscale="log", xlabel="", ylabel="")
        ax.set_title(config, fontsize="medium")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    log_ticks(axes)
    handles = [
        Line2D([], [], marker="o", color=style.BLUE, label="measured (seed mean, 95% t-int.)"),
        Line2D([], [], **MEAN_FIELD_LOOK, label=r"$(\sqrt{\chi_1})^{H-l}$"),
    ]
    if book_drawn:
        look = style.BOOK_LOOK | {"mec": style.BLACK}
        handles.append(Line2D([], [], ls="none", **look, label="Nielsen's book"))
    fig.legend(handles=handles, loc="outside upper center", ncols=len(handles))
    fig.supxlabel("hidden layer l (1 = input side; H = top hidden layer; output left out)")
    fig.supylabel(f"{BIAS_GRAD} at step 0")
    shown = runs_with(data, CHI1)
    families = [FULL_BIAS_GRAD, "bias_grad_norm"]
    keys = [k for k in family_keys(data, shown, *families) if "/layer_" in k]
    return fig, shown, [*keys, CHI1]


def growth_frame(data: Data) -> pd.DataFrame:
    """One row per run with theory metrics: chi1, factor (exp(−2 · measured slope)), σ_b²
    and depth (hidden layers) as labels."""
    import pandas as pd

    rows = []
    for run in runs_with(data, CHI1):
        h = data.histories[run.run_id]
        rows.append(
            {
                "chi1": first(h, CHI1),
                "factor": math.exp(-2 * first(h, SLOPE)),
                "σ_b²": f"{first(h, SIGMA_B2):.3g}",
                "hidden layers": str((h.n_layers or 1) - 1),
            }
        )
    return pd.DataFrame(rows, columns=["chi1", "factor", "σ_b²", "hidden layers"])


def chi1_growth(data: Data) -> Built:
    """Measured per-layer factor of ‖∂L/∂bˡ‖² against χ₁ per config (mean and 95% t-interval
    over seeds; colour σ_b², marker depth), with the identity line."""
    import seaborn as sns

    frame = growth_frame(data)
    frame = frame.sort_values(["σ_b²", "hidden layers"], key=_numeric)
    fig = style.figure(style.ONE_COLUMN, 3.1)
    ax = fig.subplots()
    ax.axhline(1, color="0.8", lw=0.5)
    ax.axvline(1, color="0.8", lw=0.5)
    values = np.concatenate([frame["chi1"], frame["factor"]]) if len(frame) else np.array([1.0])
    span = np.array([values.min(), values.max()])
    ax.plot(span, span, **MEAN_FIELD_LOOK, label="mean field: factor = χ₁")
    sigma_b2s = list(dict.fromkeys(frame["σ_b²"]))
    depths = list(dict.fromkeys(frame["hidden layers"]))
    sns.lineplot(
        frame,
        x="chi1",
        y="factor",
        hue="σ_b²",
        style="hidden layers",
        palette=[style.config_style(i)[0] for i in range(len(sigma_b2s))],
        markers=list(style.MARKERS[: len(depths)]),
        dashes=False,
        estimator="mean",
        errorbar=t_interval,
        err_style="bars",
        err_kws={"elinewidth": 0.8},
        linestyle="none",
        markersize=4,
        ax=ax,
    )
    ax.set(xscale="log", yscale="log")
    log_ticks([ax], "x")
    log_ticks([ax], "y")
    ax.set(xlabel=r"$\chi_1 = \sigma_w^2\,E[\phi'(\sqrt{q^*}z)^2]$")
    ax.set_ylabel(f"per-layer factor of {BIAS_GRAD}$^2$")
    ax.text(0.03, 0.97, "ordered: χ₁ < 1", transform=ax.transAxes, ha="left", va="top")
    ax.text(0.97, 0.03, "chaotic: χ₁ > 1", transform=ax.transAxes, ha="right", va="bottom")
    handles, labels = ax.get_legend_handles_labels()
    legend = ax.get_legend()
    if legend is not None:
        legend.remove()
    entries, title = [], ""
    for handle, label in zip(handles, labels, strict=True):  # seaborn's titles into the labels
        if label in ("σ_b²", "hidden layers"):
            title = label
            continue
        named = {"σ_b²": f"σ_b² = {label}", "hidden layers": f"{label} hidden layers"}
        handle.set_label(named.get(title, label))
        entries.append(handle)
    fig.legend(handles=entries, loc="outside lower center", ncols=2, fontsize=7)
    return fig, runs_with(data, CHI1), [CHI1, SLOPE, SIGMA_B2]


def _numeric(column: pd.Series) -> pd.Series:
    return column.astype(float)


def trainability(data: Data) -> Built:
    """Schoenholz et al. (2017), Fig. 5: final val accuracy (mean over seeds, colour and
    number) on the σ_w² × depth grid, a panel per σ_b², with 6|ξ_∇| (ordered and chaotic
    branches) dashed."""
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullFormatter, NullLocator

    runs = runs_with(data, CHI1)
    points = trainability_points({r.run_id: data.histories[r.run_id] for r in runs})
    activation = data.runs[0].params.get(ACTIVATION_KEY, "tanh") if data.runs else "tanh"
    n = max(1, len(points))
    fig = style.figure(style.TWO_COLUMN, 3.0)
    axes = list(np.atleast_1d(fig.subplots(1, n, sharey=True)))
    norm, cmap = Normalize(0, 100), "viridis"
    mesh = None
    for ax, (sigma_b2, (sigma_w2, depth, accuracy)) in zip(axes, points.items(), strict=False):
        grid = accuracy_grid(sigma_w2, depth, accuracy)
        w2s, depths, means = grid
        mesh = ax.pcolormesh(
            _edges(w2s, log=False),
            _edges(depths, log=True),
            100 * means,
            cmap=cmap,
            norm=norm,
            edgecolors="white",
            linewidth=0.3,
        )
        for i, d in enumerate(depths):
            for j, w in enumerate(w2s):
                if np.isfinite(means[i, j]):
                    text = "white" if means[i, j] < 0.6 else "black"
                    ax.text(
                        w,
                        d,
                        f"{100 * means[i, j]:.0f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color=text,
                    )
        dense = np.linspace(w2s.min(), w2s.max(), 400)
        xi = np.array([abs(theory.gradient_depth_scale(activation, w, sigma_b2)) for w in dense])
        bottom, top = _edges(depths, log=True)[[0, -1]]
        curve = np.where(TRAINABLE_XI * xi <= top * 1.5, TRAINABLE_XI * xi, np.nan)
        ax.plot(dense, curve, color=style.VERMILLION, ls="--", lw=1.4)
        ax.set(yscale="log", ylim=(bottom, top), xlim=_edges(w2s, log=False)[[0, -1]])
        ax.set_title(f"σ_b² = {sigma_b2:.3g}", fontsize="medium")
        ax.set_xlabel("σ_w²")
        ax.set_xticks(w2s, [f"{w:.3g}" for w in w2s], rotation=90 if len(w2s) > 8 else 0)
        ax.yaxis.set_major_locator(NullLocator())
        ax.yaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_yticks(depths, [f"{d:g}" for d in depths])
    axes[0].set_ylabel("hidden layers")
    if mesh is not None:
        fig.colorbar(mesh, ax=axes, label="val accuracy (%), seed mean")
    curve_label = f"{TRAINABLE_XI}|ξ_∇|: trainable below it (mean field, {activation})"
    handle = Line2D([], [], color=style.VERMILLION, ls="--", lw=1.4, label=curve_label)
    fig.legend(handles=[handle], loc="outside upper center")
    return fig, runs, [SIGMA_W2, SIGMA_B2, VAL_ACCURACY]


def accuracy_grid(
    sigma_w2: FloatArray, depth: FloatArray, accuracy: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(the distinct σ_w², the distinct depths, the mean accuracy over runs at each (depth,
    σ_w²): NaN where none ran)."""
    w2s, depths = np.unique(np.round(sigma_w2, 6)), np.unique(depth)
    total = np.zeros((len(depths), len(w2s)))
    count = np.zeros_like(total)
    for w, d, a in zip(np.round(sigma_w2, 6), depth, accuracy, strict=True):
        i, j = np.searchsorted(depths, d), np.searchsorted(w2s, w)
        if math.isfinite(a):
            total[i, j] += a
            count[i, j] += 1
    with np.errstate(invalid="ignore"):
        return w2s, depths, np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _edges(centres: FloatArray, log: bool) -> FloatArray:
    """Cell edges around sorted centres: midpoints (geometric on a log axis), ends mirrored."""
    c = np.log(centres) if log else np.asarray(centres, dtype=np.float64)
    if len(c) == 1:
        inner = np.array([c[0] - 0.5, c[0] + 0.5])
    else:
        mid = (c[1:] + c[:-1]) / 2
        inner = np.r_[2 * c[0] - mid[0], mid, 2 * c[-1] - mid[-1]]
    return np.exp(inner) if log else inner
