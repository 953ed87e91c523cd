"""Two-stage sweeps end to end (``hydra/sweeper=tune``) on a real temporary sqlite store: the
lr grid, the choice read back from MLflow, the reported seeds, the summary, resume."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow import MlflowClient

from experiments.tracking.store import prepare_experiment

pytestmark = pytest.mark.slow
Spawn = Callable[..., "subprocess.Popen[str]"]  # the spawn fixture (conftest.py)
TINY = ["data.n_samples=200", "train.epochs=4", "model.width=8", "log.every_n_steps=5"]
TINY += ["mlflow.run_figures=false", "mlflow.sweep_figures=false"]  # drawn in test_mlflow_ui
# lr 1e-5 barely moves, 0.3 learns, 1e4 blows up: the choice is 0.3 for every config
TUNE = [
    "hydra/sweeper=tune",
    "hydra.sweeper.lrs=[1e-5,0.3,1e4]",
    "hydra.sweeper.tune_seeds=[100,101]",
]
TUNE += ["hydra.sweeper.seeds=[0,1,2]", "data=teacher", "optim=sgd", "train.batch_size=16"]


def run_train(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db"}
    command = [sys.executable, "-m", "experiments.train", "-m", *args]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)


def children(folder: Path) -> tuple[object, list[object]]:
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    experiment = client.get_experiment_by_name("default")
    found = client.search_runs([experiment.experiment_id], max_results=1000)
    (parent,) = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    return parent, [r for r in found if r.data.tags.get("mlflow.parentRunId")]


def test_each_config_gets_the_lr_with_the_best_mean_validation_loss(tmp_path: Path) -> None:
    done = run_train(tmp_path, "activation=relu,tanh", *TINY, *TUNE)
    assert done.returncode == 0, done.stderr
    parent, runs = children(tmp_path)
    tuned = [r for r in runs if r.data.tags["stage"] == "tune"]
    final = [r for r in runs if r.data.tags["stage"] == "final"]
    assert len(tuned) == 2 * 3 * 2 and len(final) == 2 * 3
    assert parent.info.status == "FINISHED" and parent.data.tags["n_jobs"] == "18"
    for activation in ("relu", "tanh"):  # the choice, recomputed from the stage-1 runs
        mine = [r for r in tuned if r.data.params["activation.name"] == activation]
        by_lr: dict[float, list[float]] = {}
        for r in mine:
            diverged = r.data.tags["diverged"] == "true"
            loss = float("inf") if diverged else r.data.metrics["val/loss"]
            by_lr.setdefault(float(r.data.params["optim.lr"]), []).append(loss)
        best = min(by_lr, key=lambda lr: (statistics.mean(by_lr[lr]), lr))
        assert best == 0.3 and min(by_lr[1e4]) > 1e3  # lr 1e4 blew up (diverged or not)
        reported = [r for r in final if r.data.params["activation.name"] == activation]
        assert {float(r.data.params["optim.lr"]) for r in reported} == {best}
        assert sorted(r.data.params["seed"] for r in reported) == ["0", "1", "2"]
        assert parent.data.tags[f"lr/activation:{activation}"] == "0.3"
        assert f"chosen lr 0.3 for activation={activation}" in done.stdout
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    files = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"lr_selection.csv", "summary.md", "summary.csv"} <= files
    table = client.download_artifacts(parent.info.run_id, "summary.md", str(tmp_path))
    rows = [line for line in Path(table).read_text().splitlines() if line.startswith("| activ")]
    assert len(rows) == 2 and all(" | 0.3 | " in row and " | 3 | 0 | " in row for row in rows)
    assert rows[0] in done.stdout  # the same table, printed

    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    plots = [sys.executable, "-m", "experiments.plots", "--out", "figs", "--formats", "png"]
    drawn = subprocess.run(plots, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert drawn.returncode == 0, drawn.stderr
    manifest = json.loads((tmp_path / "figs" / "manifest.json").read_text())["figures"]
    ids = {name: {run["id"] for run in entry["runs"]} for name, entry in manifest.items()}
    assert ids["lr_sensitivity.png"] == {r.info.run_id for r in tuned}  # the lr grid
    assert ids["gradient_flow.png"] == {r.info.run_id for r in final}  # the chosen lrs only
    assert rows[0] in drawn.stdout  # the plots command prints the same table


def test_a_sweep_killed_between_the_stages_resumes_without_rerunning_stage_1(
    tmp_path: Path, spawn: Spawn
) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    prepare_experiment(uri, "default")  # so polling never races the schema migration
    args = ["activation=relu", *TINY, *TUNE]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    command = [sys.executable, "-m", "experiments.train", "-m", *args]
    process = spawn(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("default").experiment_id
    deadline = time.monotonic() + 300
    while True:  # until stage 1's six runs have FINISHED
        found = client.search_runs([experiment], "tags.stage = 'tune'")
        if sum(r.info.status == "FINISHED" for r in found) == 6:
            break
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.1)
    process.kill()
    process.wait(60)
    first = {r.info.run_id for r in client.search_runs([experiment], "tags.stage = 'tune'")}

    done = run_train(tmp_path, *args, "mlflow.resume=true")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("skipped: already FINISHED") >= 6
    parent, runs = children(tmp_path)
    assert {r.info.run_id for r in runs if r.data.tags["stage"] == "tune"} == first
    final = [r for r in runs if r.data.tags["stage"] == "final" and r.info.status == "FINISHED"]
    assert sorted(r.data.params["seed"] for r in final) == ["0", "1", "2"]
    assert parent.info.status == "FINISHED"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["optim.lr=0.1,0.2"], "optim.lr='0.1': set by hydra/sweeper=tune"),
        (["seed=1,2"], "seed='1': set by hydra/sweeper=tune"),
        (["mlflow.enabled=false"], "mlflow.enabled=False: true with hydra/sweeper=tune, which"),
        (["hydra.sweeper.lrs=[0.1,-1]"], "hydra.sweeper.lrs=[0.1, -1.0]: positive finite"),
    ],
)
def test_what_the_tuning_sweeper_sets_itself_is_refused(
    tmp_path: Path, args: list[str], message: str
) -> None:
    done = run_train(tmp_path, *TINY, "hydra/sweeper=tune", *args)
    assert done.returncode == 1 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
