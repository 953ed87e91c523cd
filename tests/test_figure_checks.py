"""The automatic figure checks find each defect they name, and nothing in a clean figure."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pytest
from figure_checks import problems

from experiments.figures import style

style.apply()

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def two_panels() -> Figure:
    """A clean two-column figure: two titled panels, a log y axis over four decades, a legend."""
    fig = style.figure(style.TWO_COLUMN, 2.2)
    left, right = fig.subplots(1, 2)
    steps = np.arange(1, 101)
    left.plot(steps, 1e-4 * steps**2, label="tanh")
    left.set(yscale="log", xlabel="step", ylabel="‖∂L/∂W‖", title="gradient")
    left.legend(loc="upper left")
    right.plot(steps, np.exp(-steps / 30), label="loss")
    right.set(xlabel="step", title="loss")
    return fig


def test_a_clean_figure_has_no_problem() -> None:
    assert problems(two_panels()) == []


def tiny_font(fig: Figure) -> str:
    fig.axes[0].set_xlabel("step", fontsize=5)
    return "'step' is 5 pt"


def clashing_titles(fig: Figure) -> str:
    fig.axes[0].set_title("a title long enough to run into the panel beside it " * 2)
    fig.set_layout_engine("none")
    return "overlaps"


def empty_panel(fig: Figure) -> str:
    fig.axes[1].clear()
    fig.axes[1].set_title("nothing")
    return "panel 'nothing' has no data"


def one_decade(fig: Figure) -> str:
    from matplotlib.ticker import NullFormatter

    (line,) = fig.axes[0].get_lines()
    line.set_ydata(np.linspace(2, 30, 100))
    fig.axes[0].set_ylim(2, 30)  # one decade tick, 10¹, and minor ticks without labels
    fig.axes[0].yaxis.set_minor_formatter(NullFormatter())
    return "log axis '‖∂L/∂W‖'"


@pytest.mark.parametrize("spoil", [tiny_font, clashing_titles, empty_panel, one_decade])
def test_each_defect_is_found(spoil: Callable[[Figure], str]) -> None:
    fig = two_panels()
    expected = spoil(fig)
    found = problems(fig)
    assert any(expected in p for p in found), found


def test_a_hidden_panel_and_hidden_tick_labels_are_not_defects() -> None:
    fig = two_panels()
    fig.axes[1].set_visible(False)
    fig.axes[0].tick_params(labelbottom=False)
    assert problems(fig) == []


def test_a_panel_turned_off_to_hold_the_legend_is_not_empty() -> None:
    fig = two_panels()
    fig.axes[1].clear()
    fig.axes[1].axis("off")
    fig.axes[1].legend(handles=fig.axes[0].get_lines(), loc="center")
    assert problems(fig) == []
    fig.axes[1].get_legend().remove()  # turned off and holding nothing: still an empty panel
    assert any("has no data" in p for p in problems(fig))
