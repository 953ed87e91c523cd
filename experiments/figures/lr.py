"""How each config's outcome depends on the learning rate: the tuning stage of a sweep.

lr_sensitivity   final validation loss against the lr, per config: the mean and its 95%
                 Student-t band over the tuning seeds (seaborn; the summary table's
                 rule), each seed a dot, the lr chosen for the config a star, seeds that
                 diverged an × at the top.  The best case and the robustness at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from experiments.comparison.records import LR_KEY, Config, Record
from experiments.comparison.selection import chosen_lrs
from experiments.comparison.summary import interval
from experiments.figures import style
from experiments.figures.common import Built, Data, config_keys, config_label, record_of

VAL_LOSS = "val/loss"


def tuning_records(data: Data) -> list[Record]:
    """The tuning runs as records, their config being every varying key but lr and seed."""
    keys = [k for k in config_keys(data.tuning) if k != LR_KEY]
    return [record_of(r, data.histories[r.run_id], keys) for r in data.tuning]


def t_band(values: Sequence[float]) -> tuple[float, float]:
    """The 95% Student-t interval of the mean, as seaborn's ``errorbar`` callable wants it
    (no width with one seed)."""
    found = interval(values)
    width = found.half_width or 0.0
    return found.mean - width, found.mean + width


def has_tuning(data: Data) -> bool:
    return bool(data.tuning)


def lr_sensitivity(data: Data) -> Built:
    """Final val loss vs lr per config (mean, t-band, seeds), the chosen lr starred."""
    import pandas as pd
    import seaborn as sns
    from matplotlib.lines import Line2D

    records = tuning_records(data)
    chosen = chosen_lrs(records)
    configs = list(dict.fromkeys(r.config for r in records))
    keys = [key for key, _ in configs[0]] if configs else []
    look = style.looks(keys, [_values(c) for c in configs])
    colours = {_label(c): look[_values(c)]["color"] for c in configs}
    rows = [{"config": _label(r.config), "lr": r.lr, VAL_LOSS: _loss(r)} for r in records]
    frame = pd.DataFrame(rows)
    fig = style.figure(style.TWO_COLUMN, 2.8)
    ax = fig.subplots()
    sns.lineplot(
        frame,
        x="lr",
        y=VAL_LOSS,
        hue="config",
        palette=colours,
        errorbar=t_band,
        err_kws={"alpha": 0.15, "linewidth": 0},
        ax=ax,
        legend=False,
    )
    dots = {"s": 10, "legend": False}
    sns.scatterplot(frame, x="lr", y=VAL_LOSS, hue="config", palette=colours, ax=ax, **dots)
    finite = frame[VAL_LOSS].dropna()
    top = finite.max() if len(finite) else 1.0
    for config in configs:
        label = _label(config)
        mine = frame[frame["config"] == label]
        at = mine[mine["lr"] == chosen[config]][VAL_LOSS].mean()
        kw = {"color": colours[label], "markeredgecolor": "0.1", "zorder": 5}
        ax.plot([chosen[config]], [at], marker="*", markersize=11, linestyle="none", **kw)
        lost = [r.lr for r in records if r.config == config and math.isnan(_loss(r))]
        ax.plot(lost, [top] * len(lost), "x", color=colours[label], clip_on=False, zorder=5)
    ax.set_xscale("log")
    if len(finite) and finite.min() > 0 and finite.max() / finite.min() > 100:
        ax.set_yscale("log")
    ax.set(xlabel="learning rate (optim.lr)", ylabel="final val loss (mean, 95% t-band)")
    handles = [Line2D([], [], color=colours[c], marker="o", label=c) for c in colours]
    star = Line2D([], [], color="0.5", marker="*", markersize=9, linestyle="none")
    star.set(markeredgecolor="0.1", label="chosen lr")
    handles.append(star)
    handles.append(Line2D([], [], color="0.3", marker="x", linestyle="none", label="diverged"))
    style.legend(fig, handles)
    return fig, data.tuning, [VAL_LOSS]


def _loss(record: Record) -> float:
    """The record's val loss, NaN for a diverged run."""
    return math.nan if record.diverged or not math.isfinite(record.val_loss) else record.val_loss


def _values(config: Config) -> tuple[str, ...]:
    return tuple(value for _, value in config)


def _label(config: Config) -> str:
    """``relu, depth=8``: as the other figures name a config."""
    return config_label([key for key, _ in config], _values(config))
