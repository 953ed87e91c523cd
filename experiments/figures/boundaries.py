"""``decision_boundaries``: each 2-D classifier's class probabilities on the input plane, from
the run's saved weights (``model.npz``) and its dataset rebuilt from the run's params."""

from __future__ import annotations

import ast
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from bpcore import MLP, Dataset, get_activation, make_dataset
from experiments.diagnostics.history import NORM_ARRAYS, FloatArray, IntArray
from experiments.figures import style
from experiments.figures.common import DATA_KEY, Built, Data, config_label, final_value

MODEL_FILE = "model.npz"  # the run artifact holding the trained weights
REMEDY_KEYS = ("norm", "residual", "residual_scale", "norm_eps")  # model.* keys MLP takes


def _param(value: str) -> Any:
    """A param as MLflow stores it (a string) back to a Python value: '0.2' → 0.2, 'None'."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def run_dataset(params: Mapping[str, str]) -> Dataset:
    """The run's dataset, rebuilt from its ``data.*`` params (datasets are seeded)."""
    names = ("n_samples", "noise", "seed", "val_fraction", "test_fraction", "k")
    kwargs = {n: _param(params[f"data.{n}"]) for n in names if f"data.{n}" in params}
    return make_dataset(params[DATA_KEY], **{n: v for n, v in kwargs.items() if v is not None})


def load_model(path: str | os.PathLike[str], params: Mapping[str, str]) -> MLP:
    """The trained net of a run's ``model.npz`` (read with ``allow_pickle=False``); activation
    parameters such as ``alpha`` and the remedies (``model.norm``, ``model.residual`` …) come
    from the run's params (a run from before them has none: a plain MLP)."""
    with np.load(path, allow_pickle=False) as saved:
        arrays = {name: saved[name] for name in saved.files}
    alpha = _param(params.get("activation.alpha", "None"))
    kwargs = {} if alpha is None else {"alpha": float(alpha)}
    activations = [get_activation(str(name), **kwargs) for name in arrays["activations"]]
    sizes = [int(n) for n in arrays["layer_sizes"]]
    dtype = str(arrays["W0"].dtype)
    remedies = {k: _param(params[f"model.{k}"]) for k in REMEDY_KEYS if f"model.{k}" in params}
    remedies["norm"] = None if remedies.get("norm", "none") == "none" else remedies["norm"]
    net = MLP(sizes, activations, output=str(arrays["output"]), dtype=dtype, **remedies)
    for l in range(len(sizes) - 1):
        net.weights[l][...] = arrays[f"W{l}"]
        net.biases[l][...] = arrays[f"b{l}"]
    for name in NORM_ARRAYS:
        for l, array in enumerate(getattr(net, name)):
            array[...] = arrays[f"{name}{l}"]
    return net


@dataclass
class Surface:
    """Class probabilities of a 2-D classifier on a grid, and the training points (raw units)."""

    gx: FloatArray  # (nx,)
    gy: FloatArray  # (ny,)
    proba: FloatArray  # (ny, nx, classes)
    x: FloatArray  # (n, 2)
    y: IntArray  # (n,)


def decision_surface(net: MLP, data: Dataset, resolution: int = 120) -> Surface:
    """The net's class probabilities on a ``resolution``² grid spanning the training points
    (plus 10%), in raw input units (the net sees them standardized as in training)."""
    if data.n_features != 2 or data.task != "classification":
        raise ValueError(f"{data.name}: needs 2-D inputs and classes for a decision boundary")
    x = data.unstandardize(data.x_train)
    lo, hi = x.min(axis=0), x.max(axis=0)
    pad = 0.1 * (hi - lo)
    gx, gy = (np.linspace(lo[i] - pad[i], hi[i] + pad[i], resolution) for i in range(2))
    grid = np.stack(np.meshgrid(gx, gy), axis=-1).reshape(-1, 2)
    with np.errstate(all="ignore"):  # a diverged net's weights overflow: its surface is NaN
        proba = np.asarray(net.forward((grid - data.x_mean) / data.x_std), dtype=np.float64)
    return Surface(gx, gy, proba.reshape(resolution, resolution, -1), x, data.y_train)


def has_models(data: Data) -> bool:
    """Some panel run is a 2-D classifier whose weights were read (``Data.models``)."""
    return bool(data.models)


def decision_boundaries(data: Data) -> Built:
    """Each 2-D classifier's class probabilities on the input plane (colour mixed by
    probability, lines where the predicted class changes) with its training points."""
    panels = [(c, r) for c, r in data.panels if r.run_id in data.models]
    fig, axes = style.grid(len(panels), 1.55)
    for ax, (config, run) in zip(axes, panels, strict=True):
        draw_surface(ax, decision_surface(data.models[run.run_id], run_dataset(run.params)))
        accuracy = final_value(data.histories[run.run_id], "val/accuracy")
        ax.set_title(f"{config_label(data.keys, config)}\nval accuracy {accuracy:.0%}", fontsize=7)
    fig.supxlabel("input x₁")
    fig.supylabel("input x₂")
    shown = [r for _, r in panels]
    return fig, shown, ["val/accuracy"]


def draw_surface(ax: Any, surface: Surface) -> None:
    """Class probabilities as colour (mixed by probability), lines where the predicted class
    changes, and the training points."""
    from matplotlib.colors import to_rgb

    k = surface.proba.shape[-1]
    colours = np.array([to_rgb(style.PALETTE[i % len(style.PALETTE)]) for i in range(k)])
    light = 0.55 + 0.45 * colours  # the background: pale class colours
    ax.scatter(*surface.x.T, c=colours[surface.y], s=2.5, linewidths=0, rasterized=True)
    ax.set(xticks=[], yticks=[])
    if not np.isfinite(surface.proba).all():
        ax.text(0.5, 0.5, "no boundary:\nthe net diverged", ha="center", transform=ax.transAxes)
        return
    extent = (surface.gx[0], surface.gx[-1], surface.gy[0], surface.gy[-1])
    ax.imshow(
        surface.proba @ light,
        origin="lower",
        extent=extent,
        aspect="auto",
        interpolation="bilinear",
    )
    predicted = surface.proba.argmax(axis=-1)
    ax.contour(
        surface.gx,
        surface.gy,
        predicted,
        levels=np.arange(k - 1) + 0.5,
        colors="0.2",
        linewidths=0.6,
    )
