"""``final_accuracy``: each config's test accuracy at the end, the sweep's summary table as a
figure: the mean over seeds with its 95% Student-t interval (seaborn; the summary's rule, no
interval from fewer than 2 seeds; cut at 100%), each seed a dot, diverged seeds left out as in
the table (a note where every seed diverged).
One row per config of the keys after the activation, a colour per activation (when the
activation and something else vary), else one row per config."""

from __future__ import annotations

import math

import numpy as np

from experiments.figures import style
from experiments.figures.common import (
    Built,
    Data,
    final_value,
    group_runs,
    runs_with,
    t_interval,
)
from experiments.figures.signal import split_config

TEST_ACCURACY = "test/accuracy"
DODGE = 0.5  # the rows' height the hues spread over


def has_test_accuracy(data: Data) -> bool:
    """At least two configs with a test accuracy: a comparison to draw."""
    runs = runs_with(data, TEST_ACCURACY)
    return len(group_runs(runs, data.keys)) >= 2


def final_accuracy(data: Data) -> Built:
    """Test accuracy per config: mean and 95% t-interval over seeds, seeds as dots."""
    import pandas as pd
    import seaborn as sns

    runs = runs_with(data, TEST_ACCURACY)
    rows = []
    for config, group in group_runs(runs, data.keys).items():
        activation, line = split_config(data.keys, config)
        for run in group:
            accuracy = 100 * final_value(data.histories[run.run_id], TEST_ACCURACY)
            accuracy = math.nan if run.diverged else accuracy  # left out, as in the table
            rows.append({"hue": activation or "all", "config": line, "accuracy": accuracy})
    frame = pd.DataFrame(rows, columns=["hue", "config", "accuracy"])
    hues = list(dict.fromkeys(frame["hue"]))
    by_activation = bool(data.keys) and data.keys[0] == "activation.name"
    palette = {
        h: style.activation_style(h)[0] if by_activation else style.config_style(i)[0]
        for i, h in enumerate(hues)
    }
    n_rows = frame["config"].nunique()
    fig = style.figure(style.TWO_COLUMN, 0.9 + 0.32 * n_rows * max(1, len(hues) / 3))
    ax = fig.subplots()
    kw = {"y": "config", "x": "accuracy", "hue": "hue", "palette": palette, "ax": ax}
    dodge = len(hues) > 1  # seaborn divides by the number of hues less one
    state = np.random.get_state()  # seaborn jitters with numpy's global generator:
    np.random.seed(0)  # the same runs, the same figure
    sns.stripplot(frame, dodge=dodge, size=2.5, alpha=0.5, legend=False, **kw)
    np.random.set_state(state)
    point_kw = {"markers": "o", "markersize": 3.5, "err_kws": {"linewidth": 1.2}}
    sns.pointplot(
        frame,
        errorbar=t_interval,
        dodge=DODGE if dodge else False,
        linestyle="none",
        **point_kw,
        **kw,
    )
    ax.set_xlim(right=min(ax.get_xlim()[1], 101))  # an interval past 100% is cut there
    lost = frame.groupby(["config", "hue"], sort=False)["accuracy"].count()
    configs = list(dict.fromkeys(frame["config"]))
    for (config, hue), n in lost.items():
        if n == 0:  # every seed diverged: no point, a note in the row
            note = f"{hue}: every seed diverged" if len(hues) > 1 else "every seed diverged"
            slot = hues.index(hue) / (len(hues) - 1) - 0.5 if dodge else 0.0
            y = configs.index(config) + DODGE * slot  # the hue's place in the row, as seaborn's
            ax.text(ax.get_xlim()[0], y, f" {note}", color=palette[hue], va="center")
    ax.set(xlabel="test accuracy (%) at the end: mean, 95% t-interval over seeds", ylabel="")
    ax.grid(axis="x", color="0.9", lw=0.5)
    ax.set_axisbelow(True)
    legend = ax.get_legend()
    if legend is not None:
        handles = [h for h in legend.legend_handles if h is not None]
        for handle, text in zip(handles, legend.get_texts(), strict=True):
            handle.set_label(text.get_text())
        legend.remove()
        if len(hues) > 1:
            style.legend(fig, handles)
    return fig, runs, [TEST_ACCURACY]
