"""``signal_propagation``: Brock, De & Smith's (2021) signal-propagation plot of an MLP at
initialization, units as channels (the "signal" family of ``experiments.diagnostics.signal``).

Per hidden layer l at step 0, mean and min–max over seeds (seaborn), one column per quantity:
E[(aˡ)²] (the sum of the next two) with the mean-field residual recursion dashed where the run
logged it (Yang & Schoenholz 2017: residual nets without a norm), the average channel squared
mean, the average channel variance and the residual branch's average channel variance.  One
row per activation when the activation and something else vary, the rest of the config the
line's colour; else one row, a colour per config.  A column whose values span two decades has
a log y axis, shared down the column.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from experiments.comparison.records import ACTIVATION_KEY
from experiments.diagnostics.signal import BRANCH_VAR, SQ_MEAN, THEORY, VAR
from experiments.figures import style
from experiments.figures.common import (
    Built,
    Config,
    Data,
    config_label,
    family_keys,
    group_runs,
    per_layer_over_time,
    positive,
    runs_with,
    spans_decades,
)

if TYPE_CHECKING:
    import pandas as pd

SECOND = "second_moment"  # E[(aˡ)²] = squared mean + variance
COLUMNS = {
    SECOND: r"$E[(a^l)^2]$",
    SQ_MEAN: "channel squared mean",
    VAR: "channel variance",
    BRANCH_VAR: "branch variance",
}


def has_signal(data: Data) -> bool:
    """Some run logged the step-0 signal metrics."""
    return bool(runs_with(data, f"{SQ_MEAN}/layer_01"))


OFF = ("none", "False", "None")  # a remedy's value when it is off


def short_label(keys: Sequence[str], config: Config) -> str:
    """``norm=layer, residual=True``: the config's label without the keys that are off
    (``plain`` when all are)."""
    on = [(k, v) for k, v in zip(keys, config, strict=True) if v not in OFF]
    return config_label([k for k, _ in on], tuple(v for _, v in on)) if on else "plain"


def split_config(keys: Sequence[str], config: Config) -> tuple[str, str]:
    """(row, line) of a config: by activation and the rest when both vary, else ('', all)."""
    if len(keys) > 1 and keys[0] == ACTIVATION_KEY:
        return config[0], short_label(keys[1:], config[1:])
    return "", short_label(keys, config)


def signal_frame(data: Data) -> pd.DataFrame:
    """One row per (run, hidden layer, quantity): columns row, line, seed, layer, quantity,
    value; quantity ``THEORY`` is the mean-field E[(aˡ)²] where the run logged it."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    runs = runs_with(data, f"{SQ_MEAN}/layer_01")
    for config, group in group_runs(runs, data.keys).items():
        row, line = split_config(data.keys, config)
        for run in group:
            history = data.histories[run.run_id]
            found = {}
            for family in (SQ_MEAN, VAR, BRANCH_VAR, THEORY):
                if f"{family}/layer_" in " ".join(history.keys):
                    _, layers, matrix = per_layer_over_time(history, family)
                    found[family] = dict(zip(layers.tolist(), matrix[:, 0].tolist(), strict=True))
            found[SECOND] = {l: v + found[VAR][l] for l, v in found[SQ_MEAN].items()}
            for quantity, values in found.items():
                rows += [
                    {"row": row, "line": line, "seed": run.seed, "layer": layer, "value": value}
                    | {"quantity": quantity}
                    for layer, value in values.items()
                ]
    return pd.DataFrame(rows, columns=["row", "line", "seed", "layer", "quantity", "value"])


def signal_propagation(data: Data) -> Built:
    """Step-0 signal propagation per hidden layer (see the module docstring)."""
    import seaborn as sns
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator, NullFormatter

    frame = signal_frame(data)
    frame["value"] = positive(frame["value"].to_numpy())
    columns = [q for q in COLUMNS if (frame["quantity"] == q).any()]
    rows = list(dict.fromkeys(frame["row"]))
    lines = list(dict.fromkeys(frame["line"]))
    colours = _colours(data, lines)
    fig = style.figure(style.TWO_COLUMN, 0.6 + 1.55 * len(rows))
    axes = fig.subplots(len(rows), len(columns), squeeze=False, sharex=True, sharey="col")
    for j, quantity in enumerate(columns):
        log = spans_decades([frame[frame["quantity"] == quantity]["value"].to_numpy()])
        for i, row in enumerate(rows):
            ax = axes[i, j]
            mine = frame[(frame["row"] == row) & (frame["quantity"] == quantity)]
            if mine["value"].notna().any():
                palette = {line: colours[line] for line in mine["line"].unique()}
                sns.lineplot(
                    mine,
                    x="layer",
                    y="value",
                    hue="line",
                    palette=palette,
                    estimator="mean",
                    errorbar=("pi", 100),
                    err_kws={"alpha": 0.15, "linewidth": 0},
                    ax=ax,
                    legend=False,
                    lw=1.0,
                )
            else:
                ax.text(0.5, 0.5, "no residual branch", transform=ax.transAxes, ha="center")
            if quantity == SECOND:
                theory = frame[(frame["row"] == row) & (frame["quantity"] == THEORY)]
                _theory_lines(ax, theory)
            if log:
                ax.set_yscale("log")
                ax.yaxis.set_minor_formatter(NullFormatter())
            ax.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
            ax.set(xlabel="", ylabel=row if j == 0 else "")
            if i == 0:
                ax.set_title(COLUMNS[quantity])
    fig.supxlabel("hidden layer l (at initialization, step 0)")
    handles = [Line2D([], [], color=colours[line], label=line) for line in lines]
    if (frame["quantity"] == THEORY).any():
        theory_label = "mean field (residual recursion)"
        handles.append(Line2D([], [], color=style.BLACK, ls="--", lw=0.9, label=theory_label))
    handles.append(Line2D([], [], color="0.5", lw=6, alpha=0.3, label="min–max over seeds"))
    fig.legend(handles=handles, loc="outside upper center", ncols=min(4, len(handles)))
    shown = runs_with(data, f"{SQ_MEAN}/layer_01")
    return fig, shown, family_keys(data, shown, SQ_MEAN, VAR, BRANCH_VAR, THEORY)


def _theory_lines(ax: Any, theory: pd.DataFrame) -> None:
    """The mean-field E[(aˡ)²] of each config that has it, mean over seeds, black dashed on
    top of the measured line of its colour."""
    for _, group in theory.groupby("line", sort=False):
        mean = group.groupby("layer")["value"].mean()
        ax.plot(mean.index, mean.to_numpy(), ls="--", color=style.BLACK, lw=0.9, zorder=4)


def _colours(data: Data, lines: Sequence[str]) -> dict[str, Any]:
    """A colour per line: the activation's own when lines are activations, else by index."""
    if data.keys == [ACTIVATION_KEY]:
        return {line: style.activation_style(line)[0] for line in lines}
    return {line: style.config_style(i)[0] for i, line in enumerate(lines)}
