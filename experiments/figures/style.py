"""The one plotting style of the suite: paper rcParams, a fixed look per activation, ``save``.

Widths are a journal's one column (3.4 in) or two columns (7.0 in); fonts 8–9 pt.  Colours are
Okabe & Ito's colour-blind-safe palette, set as seaborn's palette by ``apply`` (seaborn's
"paper" theme under the suite's rcParams).  Every activation of ``bpcore.ACTIVATIONS`` has one
fixed (colour, line style) in every figure: related functions share a colour and differ in
line style (relu solid, leaky_relu dashed), since 14 names need more than 8 colours.
``save`` writes PNG at 200 dpi and PDF/SVG with fixed metadata: same input, same bytes.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
from cycler import cycler

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ONE_COLUMN = 3.4  # inches
TWO_COLUMN = 7.0
DPI = 200
FORMATS = ("png", "pdf", "svg")

# Okabe & Ito (2008), "Color Universal Design"; yellow (#F0E442) is left out: too light on white.
BLACK, ORANGE, SKY_BLUE, GREEN = "#000000", "#E69F00", "#56B4E9", "#009E73"
BLUE, VERMILLION, PURPLE = "#0072B2", "#D55E00", "#CC79A7"
PALETTE = (BLUE, ORANGE, GREEN, VERMILLION, PURPLE, SKY_BLUE, BLACK)
LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
# a published value drawn beside ours (Nielsen's book): open diamonds
BOOK_LOOK: dict[str, Any] = {"marker": "D", "mfc": "white", "ms": 4}
LAYER_CMAP = "viridis"  # layer 1 (input) … L (output) in per-layer plots
HEATMAP_CMAP = "magma"

ACTIVATION_STYLES: dict[str, tuple[str, str]] = {
    "identity": (BLACK, "-"),
    "sigmoid": (ORANGE, "-"),
    "softplus": (ORANGE, "--"),  # softplus′ = sigmoid
    "tanh": (VERMILLION, "-"),
    "hard_tanh": (VERMILLION, "--"),
    "softsign": (VERMILLION, "-."),
    "relu": (BLUE, "-"),
    "leaky_relu": (BLUE, "--"),
    "elu": (SKY_BLUE, "-"),
    "selu": (SKY_BLUE, "--"),
    "gelu": (GREEN, "-"),
    "gelu_tanh": (GREEN, "--"),
    "silu": (PURPLE, "-"),
    "mish": (PURPLE, "--"),
}

RC: dict[str, Any] = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "figure.titlesize": 9,
    "figure.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "pdf.fonttype": 42,  # TrueType: text stays text in the PDF
    "svg.hashsalt": "backprop-lab",  # fixed ids: identical SVG bytes for identical figures
    "axes.prop_cycle": cycler(color=list(PALETTE)),
}

_METADATA: dict[str, dict[str, Any]] = {
    "png": {"Software": None},
    "pdf": {"CreationDate": None, "Creator": None, "Producer": None},
    "svg": {"Date": None, "Creator": None},
}


def _not_a_font_timestamp(record: logging.LogRecord) -> bool:
    """False for fontTools' "'created' timestamp seems very low" warning: matplotlib's own
    Computer Modern fonts (cmex10 draws mathtext's √) carry 1904-based dates of 0, which
    fontTools reads, says so twice and fixes, each time a PDF subsets them."""
    return "timestamp seems very low" not in record.getMessage()


def apply() -> None:
    """Select the Agg backend, seaborn's paper theme (white, ticks) with the Okabe–Ito palette
    and the suite's rcParams over it; quiet fontTools on matplotlib's fonts' dates (all
    process-wide)."""
    import seaborn as sns

    matplotlib.use("Agg")
    head_table = logging.getLogger("fontTools.ttLib.tables._h_e_a_d")
    if _not_a_font_timestamp not in head_table.filters:
        head_table.addFilter(_not_a_font_timestamp)
    sns.set_theme(context="paper", style="ticks", palette=list(PALETTE), rc=RC)


def activation_style(name: str) -> tuple[str, str]:
    """(colour, line style) of an activation; unknown names get a fixed fallback from the name."""
    if name in ACTIVATION_STYLES:
        return ACTIVATION_STYLES[name]
    index = sum(name.encode())  # stable across processes, unlike hash()
    return PALETTE[index % len(PALETTE)], LINESTYLES[index // len(PALETTE) % len(LINESTYLES)]


def config_style(index: int) -> tuple[str, str]:
    """(colour, line style) of the index-th config when configs are not activations."""
    return PALETTE[index % len(PALETTE)], LINESTYLES[index // len(PALETTE) % len(LINESTYLES)]


def figure(width: float, height: float) -> Figure:
    """A constrained-layout figure, without pyplot's global state."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def render(fig: Figure, formats: Sequence[str] = ("png", "pdf")) -> dict[str, bytes]:
    """Each format's file content, with fixed metadata (same figure, same PDF/SVG bytes).

    The constrained layout is computed once and then frozen: every format gets the same
    layout (whatever the list of formats) and it is not recomputed for each one.
    """
    unknown = [fmt for fmt in formats if fmt not in _METADATA]
    if unknown:
        raise ValueError(f"unknown format {unknown[0]!r}; known: {', '.join(FORMATS)}")
    files = {}
    with matplotlib.rc_context({"svg.hashsalt": RC["svg.hashsalt"]}):
        fig.draw_without_rendering()
        fig.set_layout_engine("none")
        for fmt in formats:
            buffer = io.BytesIO()
            fig.savefig(buffer, format=fmt, dpi=DPI, metadata=_METADATA[fmt])
            files[fmt] = buffer.getvalue()
    return files


def save(fig: Figure, path_stem: str | Path, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Write ``path_stem.<fmt>`` for each format (as ``render``); return the paths."""
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt, content in render(fig, formats).items():
        paths.append(stem.with_name(f"{stem.name}.{fmt}"))
        paths[-1].write_bytes(content)
    return paths


def grid(n: int, row_height: float, ncols: int = 4) -> tuple[Figure, list[Any]]:
    """A two-column figure with ``n`` panels in rows of ``ncols``; unused panels hidden."""
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig = figure(TWO_COLUMN, row_height * nrows + 0.5)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def looks(
    keys: Sequence[str], configs: Sequence[tuple[str, ...]], rest: str = "marker"
) -> dict[tuple[str, ...], dict[str, Any]]:
    """Line kwargs per config: colour and line style from the activation when it is the first
    key, the other keys then choosing the marker (``rest="marker"``) or, for dense curves,
    the line style (``rest="linestyle"``, no marker); else from the config's index."""
    out: dict[tuple[str, ...], dict[str, Any]] = {}
    by_activation = bool(keys) and keys[0] == "activation.name"
    rests = list(dict.fromkeys(c[1:] for c in configs)) if by_activation else []
    for i, config in enumerate(configs):
        if by_activation:
            colour, linestyle = activation_style(config[0])
            index = rests.index(config[1:]) if len(rests) > 1 else 0
            if rest == "linestyle":
                linestyle, marker = LINESTYLES[index % len(LINESTYLES)], "none"
            else:
                marker = MARKERS[index % len(MARKERS)]
        else:
            (colour, linestyle), marker = config_style(i), "o" if rest == "marker" else "none"
        out[config] = {"color": colour, "linestyle": linestyle, "marker": marker}
    return out


def legend_handles(
    keys: Sequence[str],
    configs: Sequence[tuple[str, ...]],
    label: Callable[..., str],
    rest: str = "marker",
) -> list[Any]:
    """Legend entries: with the activation and other keys varying, one line per activation and
    one grey marker (or line style, as ``looks``) per value of the others; else one entry per
    config (named by ``label``)."""
    from matplotlib.lines import Line2D

    look = looks(keys, configs, rest)
    if not (keys and keys[0] == "activation.name" and len(keys) > 1):
        return [Line2D([], [], **look[c], label=label(keys, c)) for c in configs]
    firsts: dict[str, tuple[str, ...]] = {}  # the first config of each activation
    for c in configs:
        firsts.setdefault(c[0], c)
    solid = rest == "linestyle"
    handles = [
        Line2D(
            [],
            [],
            color=look[c]["color"],
            linestyle="-" if solid else look[c]["linestyle"],
            label=name,
        )
        for name, c in firsts.items()
    ]
    for values in dict.fromkeys(c[1:] for c in configs):
        first = next(look[c] for c in configs if c[1:] == values)
        entry = Line2D([], [], color="0.4", linestyle=first["linestyle"] if solid else "none")
        entry.set_marker(first["marker"])
        entry.set_label(label(keys[1:], values))
        handles.append(entry)
    return handles


def legend(fig: Figure, handles: list[Any]) -> None:
    """A figure legend right of the panels, in as many columns as its height needs."""
    rows = max(1, int((fig.get_figheight() - 0.2) / 0.17))  # ≈ 0.17 in per 8 pt entry
    fig.legend(handles=handles, loc="outside right upper", ncols=-(-len(handles) // rows))


def ordered_colours(n: int) -> list[Any]:
    """``n`` colours along the sequential colour map, for an ordered axis such as batch size
    (the map's light yellow end left out: it vanishes on white)."""
    from matplotlib import colormaps

    cmap = colormaps[LAYER_CMAP]
    return [cmap(0.85 * i / max(n - 1, 1)) for i in range(n)]


def layer_colours(depth: int) -> tuple[Any, Any]:
    """(norm, colormap) colouring layer 1…depth, the same layer index alike in every panel."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    return Normalize(1, max(depth, 2)), colormaps[LAYER_CMAP]
