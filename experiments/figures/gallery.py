"""Regenerate the README's figure gallery, ``docs/gallery/*.png``, from real sweeps.

    python -m experiments.figures.gallery    # or: make gallery  (≈ 12 min on 2 cores)

Checks first that every figure a shot names is in ``experiments.figures.registry``; then runs
each sweep of ``SHOTS`` with ``python -m experiments.train -m`` into its own store,
``outputs/gallery/mlflow.db`` (browse it with ``mlflow ui``), draws its figures with
``python -m experiments.plots`` into ``outputs/gallery/<name>/`` and copies the ones the README
shows to ``docs/gallery/<sweep>-<figure>.png``.  The commands are exactly a user's: nothing
here draws by itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

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
    Shot("edge_of_chaos", ("experiment=edge_of_chaos",), ("chi1_growth", "trainability")),
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
    print("$ python -m " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", *args], env=env, cwd=PROJECT_ROOT, check=True)


def main() -> None:
    """Run every shot's sweep, plot it, copy its PNGs to docs/gallery/."""
    unknown = unknown_figures()
    if unknown:  # before 12 minutes of sweeps, and before docs/gallery/ is emptied
        sys.exit(f"error: no such figure in experiments.figures.registry: {', '.join(unknown)}")
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    shutil.rmtree(DOCS, ignore_errors=True)  # no stale image outlives its shot
    DOCS.mkdir(parents=True)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{WORK / 'mlflow.db'}"}
    for shot in SHOTS:
        _run(env, "experiments.train", "-m", *shot.sweep, f"hydra.sweep.dir={WORK / shot.name}")
        out = WORK / shot.name / "figures"
        plots = ("--experiment", shot.name, "--out", str(out), "--formats", "png", *shot.plots)
        _run(env, "experiments.plots", *plots)
        for figure in shot.figures:
            shutil.copyfile(out / f"{figure}.png", PROJECT_ROOT / image(shot, figure))
            print(image(shot, figure))


if __name__ == "__main__":
    main()
