"""``layer_moments``: signal propagation at initialization, E[(aˡ)²] and the mean of aˡ per
hidden layer at step 0 (He et al. 2015; Klambauer et al. 2017: the he_depth30 and
selu_selfnorm presets)."""

from __future__ import annotations

from experiments.diagnostics.history import FloatArray, History, IntArray
from experiments.figures import style
from experiments.figures.common import Built, Data, config_label, per_layer_over_time, positive


def layer_moments_of(history: History) -> tuple[IntArray, FloatArray, FloatArray]:
    """(layers 1 … L−1, E[(aˡ)²] = std² + mean², mean of aˡ) of the hidden layers at step 0."""
    _, layers, means = per_layer_over_time(history, "act_mean")
    _, _, stds = per_layer_over_time(history, "act_std")
    m, sd = means[:-1, 0], stds[:-1, 0]
    return layers[:-1], sd * sd + m * m, m


def layer_moments(data: Data) -> Built:
    """Step-0 E[(aˡ)²] (log) and mean of aˡ per hidden layer, per config (lowest seed)."""
    from matplotlib.ticker import MaxNLocator

    fig = style.figure(style.TWO_COLUMN, 2.6)
    axes = fig.subplots(1, 2)
    look = style.looks(data.keys, [c for c, _ in data.panels])
    for config, run in data.panels:
        layers, second, mean = layer_moments_of(data.histories[run.run_id])
        kw = {**look[config], "markevery": max(1, len(layers) // 8)}
        axes[0].plot(layers, positive(second), **kw)
        axes[1].plot(layers, mean, **kw)
    axes[0].set(yscale="log", ylabel=r"$E[(a^l)^2]$ at step 0")
    axes[1].set(ylabel=r"mean of $a^l$ at step 0")
    for ax in axes:
        ax.set_xlabel("hidden layer l")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    configs = [c for c, _ in data.panels]
    style.legend(fig, style.legend_handles(data.keys, configs, config_label))
    shown = [r for _, r in data.panels]
    return fig, shown, ["act_mean", "act_std"]
