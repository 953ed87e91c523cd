"""What a reviewer checks in a figure that a program can check too.

``problems(fig)`` lists, in words, every defect of a drawn figure among:

- text smaller than 7 pt at print size (figures are made at their print width, 3.4 or 7 in);
- two visible texts whose boxes overlap (titles, labels, tick labels, legends, annotations);
- a visible panel with no data drawn in it (an empty panel is omitted or explained in a caption);
- a log axis with fewer than two labelled ticks inside its limits.

An empty list means the figure passes.  Tests call it on every figure kind.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import combinations
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis, Tick
    from matplotlib.figure import Figure
    from matplotlib.text import Text

MIN_PT = 7.0
OVERLAP_PX = 1.0  # boxes that only touch are fine


def problems(fig: Figure) -> list[str]:
    """Every automatic defect of ``fig``, one sentence each; [] when there is none."""
    fig.draw_without_rendering()  # lays out the text, so that boxes are where they will be saved
    texts = visible_texts(fig)
    found = [f"{name(t)} is {t.get_fontsize():g} pt" for t in texts if t.get_fontsize() < MIN_PT]
    found += overlapping(texts)
    for ax in fig.axes:
        if not ax.get_visible() or is_colorbar(ax) or holds_legend_only(ax):
            continue
        if not has_data(ax):
            found.append(f"panel {ax.get_title()!r} has no data")
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if ax.get_visible() and axis.get_scale() == "log" and axis.get_visible():
                labelled = labelled_ticks(axis)
                if len(labelled) < 2:
                    found.append(f"log axis {axis_name(ax, axis)} has tick labels {labelled}")
    return found


def visible_texts(fig: Figure) -> list[Text]:
    """The non-empty texts drawn inside the page, tick labels included, hidden parents pruned."""
    from matplotlib.text import Text

    page = fig.bbox
    texts = []
    for artist in shown_artists(fig):
        if isinstance(artist, Text) and artist.get_text().strip() and artist.get_alpha() != 0:
            box = artist.get_window_extent()
            inside = box.x1 > page.x0 and box.y1 > page.y0 and box.x0 < page.x1 and box.y0 < page.y1
            if inside and box.width > 0:
                texts.append(artist)
    return texts


def shown_artists(artist: Artist) -> Iterator[Artist]:
    """``artist`` and its descendants, skipping every invisible one with all below it, and the
    ticks outside an axis's limits (matplotlib keeps but does not draw them)."""
    from matplotlib.axis import Axis, Tick

    if not artist.get_visible():
        return
    yield artist
    drawn_ticks = {id(tick) for tick in ticks_in_view(artist)} if isinstance(artist, Axis) else None
    for child in artist.get_children():
        if drawn_ticks is None or not isinstance(child, Tick) or id(child) in drawn_ticks:
            yield from shown_artists(child)


def ticks_in_view(axis: Axis) -> list[Tick]:
    """The major and minor ticks whose location lies within the axis's view limits."""
    low, high = sorted(axis.get_view_interval())
    slack = 1e-9 * (high - low)
    located = [
        *zip(axis.get_majorticklocs(), axis.get_major_ticks(len(axis.get_majorticklocs()))),
        *zip(axis.get_minorticklocs(), axis.get_minor_ticks(len(axis.get_minorticklocs()))),
    ]
    return [tick for loc, tick in located if low - slack <= loc <= high + slack]


def overlapping(texts: list[Text]) -> list[str]:
    """One sentence per pair of texts whose boxes overlap by more than ``OVERLAP_PX``."""
    boxes = [t.get_window_extent().padded(-OVERLAP_PX) for t in texts]
    return [
        f"{name(a)} overlaps {name(b)}"
        for (a, box_a), (b, box_b) in combinations(zip(texts, boxes, strict=True), 2)
        if box_a.overlaps(box_b)
    ]


def is_colorbar(ax: Axes) -> bool:
    return ax.get_label() == "<colorbar>"


def holds_legend_only(ax: Axes) -> bool:
    """A grid cell turned off (no frame, no ticks) to hold the figure's legend."""
    return not ax.axison and ax.get_legend() is not None


def has_data(ax: Axes) -> bool:
    """A line with a finite point, a non-empty collection, an image or a bar."""
    for line in ax.get_lines():
        x, y = (np.asarray(v, dtype=float) for v in line.get_data())
        if np.isfinite(x).any() and np.isfinite(y).any():
            return True
    if any(len(c.get_paths()) > 0 or len(c.get_offsets()) > 0 for c in ax.collections):
        return True
    return bool(ax.images) or bool(ax.patches)


def labelled_ticks(axis: Axis) -> list[str]:
    """The texts of the drawn tick labels (major and minor, either side) within the limits."""
    labels = [label for tick in ticks_in_view(axis) for label in (tick.label1, tick.label2)]
    return [
        label.get_text() for label in labels if label.get_visible() and label.get_text().strip()
    ]


def axis_name(ax: Axes, axis: Axis) -> str:
    label = axis.get_label_text() or axis.axis_name
    return f"{label!r} of panel {ax.get_title()!r}"


def name(text: Text) -> str:
    return repr(text.get_text()[:40])
