"""Regenerate the README's figure gallery, ``docs/gallery/*.png``, from real sweeps.

    python -m experiments.figures.gallery            # or: make gallery  (≈ 24 min on 2 cores)
    python -m experiments.figures.gallery --redraw   # the figures only, from the last run's store

Checks first that every figure a shot names is in ``experiments.figures.registry``; then runs
each sweep of ``SHOTS`` with ``python -m experiments.train -m`` into its own store,
``outputs/gallery/mlflow.db`` (browse it with ``mlflow ui``), draws its figures with
``python -m experiments.plots`` into ``outputs/gallery/<name>/`` and copies the ones the README
shows to ``docs/gallery/<sweep>-<figure>.png``.  The commands are exactly a user's: nothing
here draws by itself.

``--redraw`` skips the sweeps: it draws and copies the figures (the same ``experiments.plots``
commands and copies) from the runs already in ``outputs/gallery/mlflow.db``, after a change to
the figures; it says in one line which store or shot is missing, before touching anything.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from experiments import PROJECT_ROOT
from experiments.figures.registry import FIGURES

WORK = PROJECT_ROOT / "outputs" / "gallery"
DOCS = PROJECT_ROOT / "docs" / "gallery"


@dataclass(frozen=True)
class Shot:
    """One sweep and the figures of it the README shows."""

    name: str
    sweep: tuple[str, ...]  # overrides of ``python -m experiments.train -m``
    figures: tuple[str, ...]
    plots: tuple[str, ...] = ()  # extra arguments of ``python -m experiments.plots``


SHOTS = (
    Shot(
        "activations",
        ("experiment=activations",),
        ("activation_gallery", "gradient_flow", "gradient_heatmaps"),
        ("--filter", "params.model.depth = '20'"),
    ),
    Shot("depth_vs_width", ("experiment=depth_vs_width",), ("depth_vs_width",)),
    Shot("batch_size", ("experiment=batch_size",), ("batch_size",)),
    Shot(
        "quickstart",
        ("experiment=quickstart", "log.histograms=true"),
        ("loss_curves", "saturation_dead", "histograms", "decision_boundaries"),
    ),
    Shot("nielsen_ch5", ("experiment=nielsen_ch5",), ("theory_overlay", "speed_of_learning")),
    Shot("glorot_bengio", ("experiment=glorot_bengio",), ("activation_stats", "histograms")),
    Shot("he_depth30", ("experiment=he_depth30",), ("layer_moments", "loss_curves")),
    Shot("selu_selfnorm", ("experiment=selu_selfnorm",), ("layer_moments",)),
    Shot("edge_of_chaos", ("experiment=edge_of_chaos",), ("chi1_growth",)),
    Shot("edge_of_chaos_map", ("experiment=edge_of_chaos_map",), ("trainability",)),
    Shot("noise_scale", ("experiment=noise_scale",), ("steps_vs_batch",)),
    Shot("remedies", ("experiment=remedies",), ("signal_propagation", "final_accuracy")),
)


def image(shot: Shot, figure: str) -> str:
    """The gallery file of one figure of a shot, relative to the project root."""
    return f"docs/gallery/{shot.name}-{figure}.png"


def unknown_figures() -> list[str]:
    """The figure names of ``SHOTS`` that the registry does not know, as ``shot:figure``."""
    known = {kind.name for kind in FIGURES}
    return [f"{s.name}:{f}" for s in SHOTS for f in s.figures if f not in known]


def _run(env: dict[str, str], *args: str) -> None:
    """Run ``python -m ARGS`` as a user would; say how long it took."""
    print("$ python -m " + " ".join(args), flush=True)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", *args], env=env, cwd=PROJECT_ROOT, check=True)
    print(f"({time.monotonic() - started:.0f} s)", flush=True)


def missing_shots(store: Path) -> list[str]:
    """The shots whose experiment the gallery store does not hold (all, without a store)."""
    if not store.is_file():
        return [shot.name for shot in SHOTS]
    with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        try:
            names = {row[0] for row in db.execute("SELECT name FROM experiments")}
        except sqlite3.DatabaseError:
            return [shot.name for shot in SHOTS]
    return [shot.name for shot in SHOTS if shot.name not in names]


def main(argv: Sequence[str] | None = None) -> None:
    """Run every shot's sweep (unless ``--redraw``), plot it, copy its PNGs to docs/gallery/."""
    parser = argparse.ArgumentParser(prog="python -m experiments.figures.gallery")
    parser.add_argument(
        "--redraw", action="store_true", help=f"no sweeps: redraw from {WORK / 'mlflow.db'}"
    )
    redraw = parser.parse_args(argv).redraw
    unknown = unknown_figures()
    if unknown:  # before 12 minutes of sweeps, and before docs/gallery/ is emptied
        sys.exit(f"error: no such figure in experiments.figures.registry: {', '.join(unknown)}")
    store = WORK / "mlflow.db"
    if redraw:
        missing = missing_shots(store)
        if not store.is_file():
            sys.exit(f"error: no gallery store {store}: run `make gallery` first")
        if missing:
            shots = ", ".join(missing)
            sys.exit(f"error: {store} has no runs of the shot(s) {shots}: run `make gallery`")
    else:
        shutil.rmtree(WORK, ignore_errors=True)
        WORK.mkdir(parents=True)
    shutil.rmtree(DOCS, ignore_errors=True)  # no stale image outlives its shot
    DOCS.mkdir(parents=True)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}"}
    started = time.monotonic()
    for shot in SHOTS:
        if not redraw:
            sweep_dir = f"hydra.sweep.dir={WORK / shot.name}"
            # the parent's figures are drawn below, by the same command a user runs
            sweep = (*shot.sweep, sweep_dir, "mlflow.sweep_figures=false")
            _run(env, "experiments.train", "-m", *sweep)
        out = WORK / shot.name / "figures"
        plots = ("--experiment", shot.name, "--out", str(out), "--formats", "png", *shot.plots)
        _run(env, "experiments.plots", *plots)
        for figure in shot.figures:
            shutil.copyfile(out / f"{figure}.png", PROJECT_ROOT / image(shot, figure))
            print(image(shot, figure))
    print(f"gallery: {(time.monotonic() - started) / 60:.1f} min in all", flush=True)


if __name__ == "__main__":
    main()
