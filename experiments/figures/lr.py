"""How each config's outcome depends on the learning rate: the tuning stage of a sweep.

lr_sensitivity   final validation loss against the lr, per config: the mean over the tuning
                 seeds and, from 3 seeds on, its 95% Student-t band (seaborn; the summary
                 table's rule: with 2 seeds the band would be ±12.7 standard errors), each
                 seed a dot, the lr chosen for the config a star, seeds that diverged an ×
                 at the top.  The best case and the robustness at once.  More than
                 ``ONE_PANEL`` configs: one panel per value of the first key (e.g. the
                 activation), a line per value of the others.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from experiments.comparison.records import LR_KEY, Config, Record
from experiments.comparison.selection import chosen_lrs
from experiments.figures import style
from experiments.figures.common import (
    Built,
    Data,
    config_keys,
    config_label,
    record_of,
    t_interval,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

VAL_LOSS = "val/loss"
ONE_PANEL = 4  # configs drawn together in one panel; more get a panel per first-key value
BAND_SEEDS = 3  # the fewest seeds at an lr that get a band


def tuning_records(data: Data) -> list[Record]:
    """The tuning runs as records, their config being every varying key but lr and seed."""
    keys = [k for k in config_keys(data.tuning) if k != LR_KEY]
    return [record_of(r, data.histories[r.run_id], keys) for r in data.tuning]


def t_band(values: Sequence[float]) -> tuple[float, float]:
    """The 95% Student-t interval of the mean, as seaborn's ``errorbar`` callable wants it;
    no width below ``BAND_SEEDS`` values."""
    return t_interval(values, BAND_SEEDS)


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
    panels = _panels(configs)
    lines = list(dict.fromkeys(_line(c, len(panels)) for c in configs))
    if len(panels) == 1:  # one panel: the configs' own looks (activation colours)
        keys = [key for key, _ in configs[0]] if configs else []
        look = style.looks(keys, [_values(c) for c in configs])
        colours = {_line(c, 1): look[_values(c)]["color"] for c in configs}
    else:  # a colour per line, the same in every panel
        colours = {line: style.config_style(i)[0] for i, line in enumerate(lines)}
    frame = pd.DataFrame(
        [
            {
                "config": r.config,
                "line": _line(r.config, len(panels)),
                "lr": r.lr,
                VAL_LOSS: _loss(r),
            }
            for r in records
        ]
    )
    columns = 4
    fig, axes = style.grid(len(panels), 1.6, columns) if len(panels) > 1 else _one_panel()
    finite = frame[VAL_LOSS].dropna()
    top = finite.max() if len(finite) else 1.0
    bottom = finite.min() if len(finite) else 0.0
    log_y = bottom > 0 and top / bottom > 100
    limits = (bottom / 1.5, top * 1.5) if log_y else (min(0.0, bottom), top * 1.05)
    for i, (ax, (title, members)) in enumerate(zip(axes, panels.items(), strict=True)):
        mine = frame[frame["config"].isin(members)]
        palette = {line: colours[line] for line in mine["line"].unique()}
        band_kw = {"alpha": 0.15, "linewidth": 0}
        kw = {
            "x": "lr",
            "y": VAL_LOSS,
            "hue": "line",
            "palette": palette,
            "ax": ax,
            "legend": False,
        }
        sns.lineplot(mine, errorbar=t_band, err_kws=band_kw, **kw)
        sns.scatterplot(mine, s=10, **kw)
        for config in members:
            colour = colours[_line(config, len(panels))]
            at = mine[(mine["config"] == config) & (mine["lr"] == chosen[config])][VAL_LOSS]
            star_kw: dict[str, Any] = {"color": colour, "markeredgecolor": "0.1", "zorder": 5}
            ax.plot([chosen[config]], [at.mean()], marker="*", markersize=11, ls="none", **star_kw)
            lost = list(mine[(mine["config"] == config) & mine[VAL_LOSS].isna()]["lr"])
            if lost:  # an empty unclipped line would stretch the panel's layout box to (0, 0)
                ax.plot(lost, [top] * len(lost), "x", color=colour, clip_on=False, zorder=5)
        ax.set_xscale("log")
        ax.set_yscale("log" if log_y else "linear")
        ax.set_ylim(*limits)
        ax.set_title(title, fontsize="medium")
        first_column, bottom_of_column = i % columns == 0, i + columns >= len(axes)
        ax.tick_params(labelleft=first_column, labelbottom=bottom_of_column)
        ax.set_xlabel("learning rate" if bottom_of_column else "")
        ax.set_ylabel("final val loss" if first_column else "")
    handles = [Line2D([], [], color=colours[line], marker="o", label=line) for line in lines]
    if len(panels) > 1 and len(lines) == 1:
        handles = []  # each panel is one config, named by its title
    star = Line2D([], [], color="0.5", marker="*", markersize=9, linestyle="none")
    star.set(markeredgecolor="0.1", label="chosen lr")
    cross = Line2D([], [], color="0.3", marker="x", linestyle="none", label="diverged")
    band_label = f"95% t-band (≥ {BAND_SEEDS} seeds)"
    band = Line2D([], [], color="0.5", linewidth=6, alpha=0.3, label=band_label)
    entries = [*handles, star, cross, band]
    if len(panels) == 1:
        style.legend(fig, entries)
    else:  # below the grid: beside it, it would squeeze four columns of panels
        fig.legend(handles=entries, loc="outside lower center", ncols=3)
    return fig, data.tuning, [VAL_LOSS]


def _one_panel() -> tuple[Figure, list[Axes]]:
    fig = style.figure(style.TWO_COLUMN, 2.8)
    return fig, [fig.subplots()]


def _panels(configs: Sequence[Config]) -> dict[str, list[Config]]:
    """The configs of each panel, by panel title: all in one (titled "") up to ``ONE_PANEL``,
    else grouped by the value of the first key."""
    if len(configs) <= ONE_PANEL or not configs[0]:
        return {"": list(configs)}
    panels: dict[str, list[Config]] = {}
    for config in configs:
        key, value = config[0]
        panels.setdefault(config_label([key], (value,)), []).append(config)
    return panels


def _line(config: Config, n_panels: int) -> str:
    """The legend name of a config's line: the whole config in one panel, else the keys after
    the first (the panel's title names the first); "all" when there are none."""
    shown = config if n_panels == 1 else config[1:]
    return _label(shown) if shown else "all"


def _loss(record: Record) -> float:
    """The record's val loss, NaN for a diverged run."""
    return math.nan if record.diverged or not math.isfinite(record.val_loss) else record.val_loss


def _values(config: Config) -> tuple[str, ...]:
    return tuple(value for _, value in config)


def _label(config: Config) -> str:
    """``relu, depth=8``: as the other figures name a config."""
    return config_label([key for key, _ in config], _values(config))
