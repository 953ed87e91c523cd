"""End to end: `python -m experiments.train` runs and sweeps on a real temporary sqlite store."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

import bpcore
from experiments.diagnostics.history import History
from experiments.server.audit import stored_point_counts
from experiments.tracking.store import prepare_experiment

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
Spawn = Callable[..., "subprocess.Popen[str]"]  # the spawn fixture (conftest.py)
TINY = ["data.n_samples=200", "train.epochs=3", "model.width=8", "log.every_n_steps=5"]
TINY += ["mlflow.run_figures=false", "mlflow.sweep_figures=false"]  # drawn in test_mlflow_ui
ENDLESS = [  # a run that trains until it is stopped: above the size limit, meant
    *("data.n_samples=200", "train.epochs=100000", "model.width=8", "log.every_n_steps=5"),
    "allow_large=true",
]


def run_train(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m experiments.train ARGS`` from tmp_path, logging to tmp_path/mlflow.db."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    return subprocess.run(
        [sys.executable, "-m", "experiments.train", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def client(tmp_path: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")


def runs(tmp_path: Path, experiment: str) -> list:
    c = client(tmp_path)
    exp = c.get_experiment_by_name(experiment)
    return [] if exp is None else c.search_runs([exp.experiment_id], max_results=1000)


def test_single_run_layout(tmp_path: Path) -> None:
    done = run_train(tmp_path, *TINY)
    assert done.returncode == 0, done.stderr
    assert "tanh-d3-w8-b32-s0: val/loss" in done.stdout
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path}/mlflow.db" in done.stdout
    (run,) = runs(tmp_path, "default")
    link = f"/#/experiments/{run.info.experiment_id}/runs?workflowType=machine_learning"
    assert f"then open http://127.0.0.1:5000{link}" in done.stdout
    assert run.info.status == "FINISHED" and run.info.run_name == "tanh-d3-w8-b32-s0"
    assert "mlflow.parentRunId" not in run.data.tags
    assert run.data.params["model.depth"] == "3" and run.data.params["data.n_samples"] == "200"
    assert run.data.tags["diverged"] == "false"
    assert (
        len(run.data.tags["mlflow.source.git.commit"]) == 40 and "git_commit" not in run.data.tags
    )
    metrics = run.data.metrics
    for key in (
        "train/loss",
        "val/loss",
        "val/accuracy",
        "grad_norm/layer_01",
        "grad_norm/output",
        "bias_grad_norm/layer_02",
        "act_mean/layer_01",
        "act_std/layer_03",
        "saturation/layer_03",
        "dead/layer_01",
        "update_ratio/output",
    ):
        assert key in metrics, key
    history = client(tmp_path).get_metric_history(run.info.run_id, "grad_norm/layer_01")
    assert [m.step for m in history] == [0, 5, 10]  # 160 train / 32 = 5 steps × 3 epochs: 0…14
    artifacts = {a.path for a in client(tmp_path).list_artifacts(run.info.run_id)}
    assert artifacts == {"config.yaml", "overrides.yaml", "history.npz", "model.npz"}
    assert (tmp_path / "mlartifacts").is_dir() and not (tmp_path / "mlruns").exists()
    path = client(tmp_path).download_artifacts(run.info.run_id, "history.npz", str(tmp_path))
    _, values = History.load(path).series("grad_norm/layer_01")
    np.testing.assert_array_equal(values, [m.value for m in history])
    model = np.load(
        client(tmp_path).download_artifacts(run.info.run_id, "model.npz", str(tmp_path)),
        allow_pickle=False,
    )
    assert model["W0"].shape == (2, 8)


def test_test_metrics_are_logged_once_at_the_end_from_the_held_out_rows(tmp_path: Path) -> None:
    """test/accuracy is the saved net's accuracy on the rows held out of training and
    validation (the dataset rebuilt from the run's params), logged once at the last step."""
    from experiments.figures.boundaries import load_model, run_dataset

    done = run_train(tmp_path, *TINY, "data.test_fraction=0.3")
    assert done.returncode == 0, done.stderr
    (run,) = runs(tmp_path, "default")
    c = client(tmp_path)
    accuracy = c.get_metric_history(run.info.run_id, "test/accuracy")
    (last_epoch,) = c.get_metric_history(run.info.run_id, "progress/epoch")[-1:]
    assert [m.step for m in accuracy] == [last_epoch.step]
    data = run_dataset(run.data.params)
    assert (len(data.x_test), len(data.x_val)) == (60, 40)  # 0.3 and 0.2 of 200
    net = load_model(c.download_artifacts(run.info.run_id, "model.npz", str(tmp_path)), {})
    predicted = net.forward(data.x_test).argmax(axis=1)
    assert accuracy[0].value == pytest.approx(np.mean(predicted == data.y_test))


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_sweep_nests_runs_under_a_parent(tmp_path: Path, launcher: str) -> None:
    args = ["-m", "activation=relu,tanh", "model.depth=1,2", *TINY, f"hydra/launcher={launcher}"]
    if launcher == "joblib":
        args.append("hydra.launcher.n_jobs=2")
    done = run_train(tmp_path, *args)
    assert done.returncode == 0, done.stderr
    outcome_lines = [line for line in done.stdout.splitlines() if re.match(r"\[\d/4\] ", line)]
    assert len(outcome_lines) == 4 and all("val/loss" in line for line in outcome_lines)
    found = runs(tmp_path, "default")
    parents = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId")]
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.info.run_name.startswith("default-")
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert {c.data.tags["sweep_id"] for c in children} == {parent.info.run_id}
    assert {c.info.run_name for c in children} == {
        "relu-d1 · w8-b32-s0",  # the swept parts first
        "relu-d2 · w8-b32-s0",
        "tanh-d1 · w8-b32-s0",
        "tanh-d2 · w8-b32-s0",
    }
    assert all(c.info.status == "FINISHED" for c in children)


def alembic_head() -> str:
    """The schema revision MLflow's own migration scripts end at."""
    import mlflow.store
    from alembic.script import ScriptDirectory

    migrations = Path(mlflow.store.__file__).parent / "db_migrations"
    return str(ScriptDirectory(str(migrations)).get_current_head())


def test_concurrent_sweeps_and_single_runs_on_a_fresh_store(tmp_path: Path, spawn: Spawn) -> None:
    """Two sweeps and three single runs started at the same moment, from one folder, on a store
    that does not exist yet.  Before: a half-migrated schema (`_alembic_tmp_*` tables left, an
    older revision), runs FAILED with `duplicate column name`, both sweeps' jobs under one
    parent (they shared a sweep folder), sweeps exiting 0."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    tiny = ["data.n_samples=100", "train.epochs=1", "model.depth=1", "model.width=4"]
    train = [sys.executable, "-m", "experiments.train"]
    commands = [[*train, "-m", "activation=relu,tanh", *tiny, f"seed={s}"] for s in (0, 1)]
    commands += [[*train, *tiny, f"seed={seed}"] for seed in (2, 3, 4)]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    processes = [spawn(command, cwd=tmp_path, env=env, **pipes) for command in commands]
    outputs = [process.communicate(timeout=600) for process in processes]
    assert [p.returncode for p in processes] == [0] * 5, [err for _, err in outputs]
    with contextlib.closing(sqlite3.connect(tmp_path / "mlflow.db")) as db:
        (revision,) = db.execute("SELECT version_num FROM alembic_version").fetchall()
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master")]
    assert revision == (alembic_head(),)
    assert "runs" in tables and [t for t in tables if t.startswith("_alembic_tmp")] == []
    found = runs(tmp_path, "default")
    assert len(found) == 2 + 2 * 2 + 3 and {r.info.status for r in found} == {"FINISHED"}
    parents = []
    for seed, (out, _) in enumerate(outputs[:2]):
        match = re.search(r"parent run (\w+)", out)
        assert match, out
        parents.append(match.group(1))
        children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parents[-1]]
        assert {r.info.run_name for r in children} == {
            f"{a} · d1-w4-b32-s{seed}" for a in ("relu", "tanh")
        }
    parentless = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    singles = {r.info.run_name for r in parentless if r.info.run_id not in parents}
    assert singles == {f"tanh-d1-w4-b32-s{seed}" for seed in (2, 3, 4)}


def test_a_second_sweep_in_the_folder_of_a_running_sweep_is_refused(
    tmp_path: Path, spawn: Spawn
) -> None:
    """Before, its jobs and the running sweep's later jobs logged under its parent run."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    prepare_experiment(uri, "default")  # so polling never races the schema migration
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    sweep = [sys.executable, "-m", "experiments.train", "-m", "hydra.sweep.dir=shared"]
    first = spawn([*sweep, "activation=relu,tanh", *ENDLESS], cwd=tmp_path, env=env)
    deadline = time.monotonic() + 120
    while not runs(tmp_path, "default"):  # its parent run: the folder is claimed by then
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.2)
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    second = spawn([*sweep, "activation=sigmoid,elu", *TINY], cwd=tmp_path, env=env, **pipes)
    _, err = second.communicate(timeout=120)
    assert second.returncode == 1
    assert err.strip() == "error: hydra.sweep.dir='shared': a folder that no running sweep uses"
    assert first.poll() is None
    names = {re.split(r"[- ]", r.info.run_name)[0] for r in runs(tmp_path, "default")}
    assert names <= {"default", "relu"}


LAUNCHERS = {"basic": [], "joblib": ["hydra.launcher.n_jobs=2"], "submitit_local": []}


def sweep_children(folder: Path, experiment: str = "default") -> tuple:
    """(the one parent run, its child runs oldest first) of the only sweep in ``experiment``."""
    found = sorted(runs(folder, experiment), key=lambda r: r.info.start_time)
    (parent,) = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == len(found) - 1
    return parent, children


def metric_histories(folder: Path, run_id: str) -> dict[str, list[tuple[int, float]]]:
    c = client(folder)
    return {
        k: [(m.step, m.value) for m in c.get_metric_history(run_id, k)]
        for k in ("val/loss", "grad_norm/layer_02", "update_ratio/layer_01")
    }


def test_every_launcher_gives_the_same_layout_and_metrics(tmp_path: Path) -> None:
    histories = {}
    for launcher, extra in LAUNCHERS.items():
        folder = tmp_path / launcher
        folder.mkdir()
        args = ["-m", "seed=3", "activation=relu,tanh", *TINY, f"hydra/launcher={launcher}"]
        done = run_train(folder, *args, *extra)
        assert done.returncode == 0, done.stderr
        parent, children = sweep_children(folder)
        assert parent.info.status == "FINISHED" and parent.data.tags["n_jobs"] == "2"
        assert [c.info.status for c in children] == ["FINISHED", "FINISHED"]
        histories[launcher] = {
            c.info.run_name: metric_histories(folder, c.info.run_id) for c in children
        }
    assert set(histories["basic"]) == {"relu · d3-w8-b32-s3", "tanh · d3-w8-b32-s3"}
    assert histories["basic"] == histories["joblib"] == histories["submitit_local"]


def read_only(folder: Path) -> list[str]:
    """The prefix of a command that sees ``folder`` read-only.  Root writes whatever the
    permissions say: for root the folder is bind-mounted read-only."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return []
    return mounted(folder, 'mount -o bind,ro "$0" "$0"', "make a folder read-only")


def mounted(folder: Path, mount: str, purpose: str) -> list[str]:
    """The prefix of a command that runs after the shell command ``mount`` ($0: ``folder``), in
    a mount namespace of its own, gone with it: root on Linux only (skipped elsewhere)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip(f"needs root and `unshare -m` (Linux) to {purpose}")
    if subprocess.run(["unshare", "-m", "true"]).returncode:
        pytest.skip(f"`unshare -m` fails here: no way to {purpose}")
    return ["unshare", "-m", "sh", "-c", f'{mount} && exec "$@"', str(folder)]


def test_a_full_disk_is_reported_in_a_few_lines(tmp_path: Path, spawn: Spawn) -> None:
    """The store on a 1 MiB file system that fills up while the run logs every step.  Before:
    636 lines of SQL and tracebacks."""
    folder = tmp_path / "store"
    folder.mkdir()
    prefix = mounted(folder, 'mount -t tmpfs -o size=1m tmpfs "$0"', "fill a small disk")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db"}
    command = [*prefix, sys.executable, "-m", "experiments.train", *TINY, "train.epochs=200"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    process = spawn([*command, "log.every_n_steps=1"], cwd=tmp_path, env=env, **pipes)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 1, err
    out += err
    assert len(out.splitlines()) <= 5 and "Traceback" not in out and "SQL" not in out, out
    assert f"database or disk is full: free space on the disk of {folder}, then run" in out
    assert "tanh-d3-w8-b32-s0: FAILED (No space left on device)" in out


@pytest.mark.parametrize(
    ("store", "message"),
    [
        ("garbage", "mlflow.db is not an SQLite database"),
        (
            "corrupt",  # passes the header check; MLflow's open fails
            "the sweep could not start: DatabaseError: (sqlite3.DatabaseError) file is not a",
        ),
        ("read-only folder", "(read-only?)"),
    ],
)
def test_a_sweep_whose_store_cannot_be_opened_stops_before_any_job(
    tmp_path: Path, spawn: Spawn, store: str, message: str
) -> None:
    """Before: Hydra turned the error into a warning, every job ran without a parent and
    FAILED, the sweep exited 0 (a read-only folder: after 5 minutes of retries)."""
    folder = tmp_path / "store"
    folder.mkdir()
    db, prefix = folder / "mlflow.db", []
    if store == "garbage":
        db.write_bytes(b"\x93 not a database " * 200)
    elif store == "corrupt":
        db.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4096)
    else:
        prefix = read_only(folder)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    command = [*prefix, sys.executable, "-m", "experiments.train", "-m", "activation=relu,tanh"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    started = time.monotonic()
    process = spawn([*command, *TINY], cwd=tmp_path, env=env, **pipes)
    out, err = process.communicate(timeout=300)
    assert time.monotonic() - started < 30
    assert process.returncode == 1
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and message in line
    assert "Launching" not in out + err and "[1/" not in out
    assert store != "read-only folder" or not db.exists()


def test_bad_value_in_one_job_creates_nothing(tmp_path: Path) -> None:
    done = run_train(tmp_path, "-m", "model.depth=2,0", *TINY)
    assert done.returncode != 0
    assert "model.depth=0: an integer ≥ 1 (in the sweep job model.depth=0" in done.stderr
    assert "Traceback" not in done.stderr
    assert runs(tmp_path, "default") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["mlflow.experiment_name=a,b"], "mlflow.experiment_name='a sweep': one value for all"),
        (["mlflow.resume=true,false"], "mlflow.resume='a sweep': one value for all jobs"),
        (
            ["mlflow.resume=true", "mlflow.enabled=false"],
            "mlflow.resume=True: needs mlflow.enabled",
        ),
    ],
)
def test_sweep_wide_mlflow_settings(tmp_path: Path, args: list[str], message: str) -> None:
    done = run_train(tmp_path, "-m", *args, *TINY)
    assert done.returncode != 0 and message in done.stderr
    assert runs(tmp_path, "a") == runs(tmp_path, "b") == runs(tmp_path, "default") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["activation=swishy"], "Could not find 'activation/swishy'"),
        (["model.depth=0"], "model.depth=0: an integer ≥ 1"),
        (["model.width=-3"], "model.width=-3"),
        (["optim.lr=0"], "optim.lr=0"),
        (["train.batch_size=0"], "train.batch_size=0"),
        (["train.batch_size=100000"], "train.batch_size=100000"),
        (["data=imagenet"], "Could not find 'data/imagenet'"),
        (["mlflow.tracking_uri=file:///tmp/x"], "mlflow.tracking_uri='file:///tmp/x'"),
        (["mlflow.resume=true"], "mlflow.resume=True: resumes a sweep: add -m"),
        (["+model.dept=3"], "model.dept=3: no such key; did you mean model.depth?"),
        (["+modle.depth=3"], "modle={'depth': 3}: no such key; did you mean model?"),
        (["activation=leaky_relu", "activation.alpha=nan"], "activation.alpha=nan: a finite"),
        (["activation=elu", "activation.alpha=inf"], "activation.alpha=inf: a finite number"),
        (["model.width=1000000"], "model.width=1000000: the run would need ≈"),
        (["model.depth=100000"], "model.depth=100000: the run would need ≈"),
        (  # before: numpy's MemoryError, a 27-line traceback
            ["model.width=1000000", "allow_large=true"],
            "error: model.width=1000000: out of memory (Unable to allocate 7.28 TiB for an",
        ),
        (["mlflow.experiment_name=''"], "mlflow.experiment_name='': a name that is not empty"),
        (  # nothing listens on port 1; before: trained, then 47 lines of retries after 60 s
            ["mlflow.tracking_uri='postgresql://u@127.0.0.1:1/db'"],
            "error: cannot connect to the MLflow store postgresql://u@127.0.0.1:1/db: connection",
        ),
    ],
)
def test_bad_overrides_fail_cleanly(tmp_path: Path, args: list[str], message: str) -> None:
    done = run_train(tmp_path, *args)
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert runs(tmp_path, "default") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs=0: an"),
        (["activation=relu,tanh", "+model.dept=3"], "model.dept=3: no such key; did you mean"),
        (["mlflow.experiment_name=''"], "mlflow.experiment_name='': a name that is not empty"),
    ],
)
def test_a_sweep_refused_before_it_starts_says_why_in_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    done = run_train(tmp_path, "-m", *args, *TINY)
    assert done.returncode == 1
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "multirun").exists()


def test_max_steps_inside_the_first_epoch_finishes_with_the_losses_at_the_stop(
    tmp_path: Path,
) -> None:
    """120 training rows in batches of 32: 4 steps an epoch; 3 steps end inside the first."""
    done = run_train(tmp_path, *TINY, "train.max_steps=3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("tanh-d3-w8-b32-s0: val/loss")
    (run,) = runs(tmp_path, "default")
    assert run.info.status == "FINISHED"
    c = client(tmp_path)
    for key in ("train/loss", "val/loss", "val/accuracy", "test/accuracy"):
        assert [m.step for m in c.get_metric_history(run.info.run_id, key)] == [3], key
    done = run_train(tmp_path, "-m", "seed=0,1", *TINY, "train.max_steps=3")
    assert done.returncode == 0, done.stderr
    assert re.search(r"\[2/2\] s1 · tanh-d3-w8-b32: val/loss", done.stdout)


def test_divergence_ends_finished_and_the_sweep_goes_on(tmp_path: Path) -> None:
    args = ["optim.lr=0.01,1e5", "data=teacher", "activation=relu", "init=he_normal"]
    done = run_train(tmp_path, "-m", *args, *TINY, "train.batch_size=16", "train.epochs=20")
    assert done.returncode == 0, done.stderr
    assert "diverged at step" in done.stdout
    children = [r for r in runs(tmp_path, "default") if r.data.tags.get("mlflow.parentRunId")]
    assert sorted(r.data.tags["diverged"] for r in children) == ["false", "true"]
    (diverged,) = [r for r in children if r.data.tags["diverged"] == "true"]
    assert diverged.info.status == "FINISHED" and int(diverged.data.tags["diverged_at_step"]) >= 0


def session_processes(sid: int) -> list[str]:
    """The processes still alive in session ``sid`` (``ps`` on Linux and macOS)."""
    table = subprocess.run(["ps", "-eo", "sess=,stat=,args="], capture_output=True, text=True)
    rows = [line.split(None, 2) for line in table.stdout.splitlines()]
    return [row[2] for row in rows if len(row) == 3 and row[0] == str(sid) and row[1][0] != "Z"]


def left_alive_after(sid: int, seconds: float = 10) -> list[str]:
    """The processes of session ``sid`` still alive once they had ``seconds`` to exit."""
    deadline = time.monotonic() + seconds
    while session_processes(sid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return session_processes(sid)


@pytest.mark.parametrize("group", [False, True], ids=["SIGTERM", "Ctrl-C"])
def test_a_signal_ends_the_run_killed_within_5_s_on_a_busy_machine(
    tmp_path: Path, group: bool, spawn: Spawn
) -> None:
    """SIGTERM to the process, or SIGINT to its process group as a terminal's Ctrl-C sends it,
    while it logs every step (far more than the writer can write) and another process keeps
    a core busy: back within 5 s, the run KILLED with the points written so far, the rest
    counted in a tag and all of them in history.npz, and no process left behind."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    prepare_experiment(uri, "default")  # so polling never races a migration
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    train = [sys.executable, "-m", "experiments.train", "train.epochs=100000"]
    train += ["log.every_n_steps=1", "model.depth=10", "allow_large=true"]  # meant: stopped
    spawn([sys.executable, "-c", "while True: pass"], stdout=subprocess.DEVNULL)  # a busy core
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    process = spawn(train, cwd=tmp_path, env=env, **pipes)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = runs(tmp_path, "default")
        if found and "grad_norm/layer_01" in found[0].data.metrics:
            break
        assert process.poll() is None, process.communicate()
        time.sleep(0.5)
    time.sleep(3.0)  # the writer falls far behind
    signalled = time.monotonic()
    if group:
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGTERM)
    process.wait(30)
    latency = time.monotonic() - signalled
    assert process.returncode == 128 + (signal.SIGINT if group else signal.SIGTERM)
    assert latency < 5, f"back after {latency:.1f} s"
    name = "SIGINT" if group else "SIGTERM"
    assert (
        process.communicate()[1]
        .strip()
        .endswith(f"stopped by {name}: a run in progress ended KILLED")
    )
    assert left_alive_after(process.pid) == []
    (run,) = runs(tmp_path, "default")
    assert run.info.status == "KILLED"
    points = client(tmp_path).get_metric_history(run.info.run_id, "grad_norm/layer_01")
    assert len(points) > 10 and [m.step for m in points] == list(range(len(points)))
    path = client(tmp_path).download_artifacts(run.info.run_id, "history.npz", str(tmp_path))
    history = History.load(path)
    sent = sum(len(history.series(key)[0]) for key in history.keys)
    stored = sum(stored_point_counts(uri, [run.info.run_id]).values())
    unwritten = int(run.data.tags["unwritten_points"])
    assert unwritten > 0  # the writer was behind: every point is accounted for
    assert 0 <= sent - (stored + unwritten) <= len(history.keys)  # ≤ one record in flight


def test_a_second_ctrl_c_does_not_break_the_cleanup(tmp_path: Path, spawn: Spawn) -> None:
    """Ctrl-C twice: the second while the first one's cleanup (the parent run's end) runs.
    Before: "Exception ignored in atexit callback … KeyboardInterrupt", the parent left
    RUNNING or the command dead of SIGINT; the child ended without an ``error`` tag."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    prepare_experiment(uri, "default")  # so polling never races the schema migration
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    command = [sys.executable, "-m", "experiments.train", "-m", "activation=relu", *ENDLESS]
    pipes = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    process = spawn(command, cwd=tmp_path, env=env, **pipes)
    deadline = time.monotonic() + 120
    while not any("train/loss" in r.data.metrics for r in runs(tmp_path, "default")):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGINT)
    assert process.stderr is not None
    lines = []
    while not lines or not lines[-1].startswith("stopped by SIGINT"):  # the cleanup begins
        lines.append(process.stderr.readline())
        assert lines[-1], lines
    os.killpg(process.pid, signal.SIGINT)
    err = "".join(lines) + process.communicate(timeout=60)[1]
    assert process.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    parent, (child,) = sweep_children(tmp_path)
    assert (parent.info.status, child.info.status) == ("KILLED", "KILLED")
    assert child.data.tags["error"] == "stopped by SIGINT"


def test_sigterm_stops_a_parallel_sweep_with_143_and_leaves_nothing_running(
    tmp_path: Path, spawn: Spawn
) -> None:
    """SIGTERM to the launching process of a joblib sweep, as a service manager or `kill` sends
    it: exit status 143, the parent and the jobs' runs KILLED, no process left.  Before: the
    process died of the signal at once, its parent run stayed RUNNING and its workers trained
    on."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    prepare_experiment(uri, "default")  # so polling never races the schema migration
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    args = ["-m", "activation=relu,tanh", *ENDLESS]
    args += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    process = spawn(
        [sys.executable, "-m", "experiments.train", *args], cwd=tmp_path, env=env, **pipes
    )
    deadline = time.monotonic() + 180
    while sum("train/loss" in r.data.metrics for r in runs(tmp_path, "default")) < 2:
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM: a run in progress ended KILLED" in err
    assert left_alive_after(process.pid) == []
    parent, children = sweep_children(tmp_path)
    assert parent.info.status == "KILLED" and len(children) == 2
    assert [c.info.status for c in children] == ["KILLED", "KILLED"]
    assert all(c.data.tags["error"] for c in children)  # whichever process ended it says why


def test_no_process_of_a_killed_parallel_sweep_outlives_it(tmp_path: Path, spawn: Spawn) -> None:
    """kill -9 of the launching process of a joblib sweep while one worker trains and the other
    waits for a job.  Before: a worker, its writer and two resource trackers were alive 20
    minutes later (the idle worker for 5).  Now every one is gone within a minute, the job's
    run ended KILLED."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    prepare_experiment(uri, "default")  # so polling never races the schema migration
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    args = ["-m", "activation=tanh", *ENDLESS, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    command = [sys.executable, "-m", "experiments.train", *args]
    process = spawn(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not any("train/loss" in r.data.metrics for r in runs(tmp_path, "default")):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.5)
    process.kill()
    process.wait(60)
    assert left_alive_after(process.pid, 60) == []
    _, (child,) = sweep_children(tmp_path)
    assert child.info.status == "KILLED"


def test_a_run_whose_writer_is_killed_ends_failed(tmp_path: Path, spawn: Spawn) -> None:
    """kill -9 of the writer child, as the OOM killer might.  Before: the command said FAILED
    and exited 1, but the run stayed RUNNING in the store."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    prepare_experiment(uri, "default")  # so polling never races the schema migration
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    command = [sys.executable, "-m", "experiments.train", *ENDLESS]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    process = spawn(command, cwd=tmp_path, env=env, **pipes)
    deadline = time.monotonic() + 120
    while not any("train/loss" in r.data.metrics for r in runs(tmp_path, "default")):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.5)
    table = subprocess.run(["ps", "-wweo", "pid=,ppid=,args="], capture_output=True, text=True)
    rows = [line.split(None, 2) for line in table.stdout.splitlines()]
    (writer,) = [int(r[0]) for r in rows if r[1] == str(process.pid) and "tracking.writer" in r[2]]
    os.kill(writer, signal.SIGKILL)
    killed = time.monotonic()
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    assert "tanh-d3-w8-b32-s0: FAILED (MLflow writer process died)" in out
    assert time.monotonic() - killed < 30
    (run,) = runs(tmp_path, "default")
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "TrackingError: MLflow writer process died"


def test_the_next_command_ends_the_runs_whose_processes_all_died(
    tmp_path: Path, spawn: Spawn
) -> None:
    """kill -9 of a training process and its writer at once (its process group).  Before: the
    run stayed RUNNING for ever.  Now the next command on the store ends it FAILED, saying why;
    a run of a live process (this one), of another host or without an owner is left alone,
    and one whose pid lives on in a process started later (pid reuse) is ended."""
    from experiments.tracking.owner import owner_tag

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    experiment_id = prepare_experiment(uri, "default")
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    command = [sys.executable, "-m", "experiments.train", *ENDLESS, "seed=1"]
    killed = spawn(command, cwd=tmp_path, env=env)
    deadline = time.monotonic() + 120
    while not runs(tmp_path, "default"):
        assert time.monotonic() < deadline and killed.poll() is None
        time.sleep(0.2)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(60)
    host = socket.gethostname()
    owners = {
        "alive": owner_tag(os.getpid()),
        "elsewhere": "another-host 1@1",
        "reused": f"{host} {os.getpid()}@1",
        "unowned": None,
    }
    c = client(tmp_path)
    for name, owner in owners.items():
        tags = {} if owner is None else {"owner": owner}
        c.create_run(experiment_id, run_name=name, tags=tags)
    done = run_train(tmp_path, *TINY)
    assert done.returncode == 0, done.stderr
    found = {r.info.run_name: r for r in runs(tmp_path, "default")}
    statuses = {name: run.info.status for name, run in found.items()}
    assert statuses == {
        "tanh-d3-w8-b32-s1": "FAILED",  # killed with its writer
        "tanh-d3-w8-b32-s0": "FINISHED",  # the next command
        "alive": "RUNNING",
        "elsewhere": "RUNNING",
        "reused": "FAILED",
        "unowned": "RUNNING",
    }
    error = found["tanh-d3-w8-b32-s1"].data.tags["error"]
    assert error.startswith(f"the processes of the run ({host} {killed.pid}@")
    assert error.endswith("while it was RUNNING; ended FAILED by the next command on the store")


def test_no_process_outlives_a_sweep(tmp_path: Path, spawn: Spawn) -> None:
    """A joblib sweep's workers and their writers are gone within 10 s of the command."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = ["-m", "activation=relu,tanh", *TINY, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    command = [sys.executable, "-m", "experiments.train", *args]
    process = spawn(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE)
    assert process.wait(300) == 0
    assert left_alive_after(process.pid) == []
    parent, children = sweep_children(tmp_path)
    assert parent.info.status == "FINISHED" and len(children) == 2


def test_an_exception_ends_the_run_failed_with_the_error(
    tmp_path: Path, compose_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: training raises; the run ends FAILED, the error is a tag, nothing hangs."""
    from experiments.app import train as app

    def broken_fit(*args: object, **kwargs: object) -> None:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(app.bpcore, "fit", broken_fit)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    outcome = app.train(compose_config([*TINY, f"mlflow.tracking_uri={uri}"]))
    assert outcome.status == "FAILED" and "injected fault" in (outcome.error or "")
    (run,) = runs(tmp_path, "default")
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "RuntimeError: injected fault"


FAULTY_RELU = """
import sys
import bpcore
from experiments.app import train
fit = bpcore.fit
def faulty(net, *args, **kwargs):
    if net.hidden_activations[0].name == "relu":
        raise RuntimeError("injected fault")
    return fit(net, *args, **kwargs)
bpcore.fit = faulty
sys.argv[0] = "train"
train.main()
"""


def test_an_untracked_sweep_with_a_failed_job_exits_1(tmp_path: Path) -> None:
    """Fault injection in one job of a sweep with ``mlflow.enabled=false``.  Before: exit 0 (a
    tracked sweep learns of the failure from its store, an untracked one did not)."""
    args = ["-m", "activation=relu,tanh", *TINY, "mlflow.enabled=false"]
    done = subprocess.run(
        [sys.executable, "-c", FAULTY_RELU, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    assert "[1/?] relu-d3-w8-b32-s0: FAILED (RuntimeError('injected fault'))" in done.stdout
    assert "[2/?] tanh-d3-w8-b32-s0: val/loss" in done.stdout
    assert done.stderr == "sweep ended FAILED: not every job finished (see the lines above)\n"
    assert not (tmp_path / "mlflow.db").exists()


def test_tracking_disabled_trains_and_logs_nothing(tmp_path: Path, compose_config) -> None:
    from experiments.app import train as app

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = compose_config([*TINY, "mlflow.enabled=false", f"mlflow.tracking_uri={uri}"])
    outcome = app.train(cfg, progress=True)
    assert outcome.status == "FINISHED" and outcome.last_epoch is not None
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlartifacts").exists()


def test_progress_bar_redraws_one_line_per_epoch(capsys: pytest.CaptureFixture[str]) -> None:
    from experiments.app.progress import ProgressBar

    bar = ProgressBar(epochs=4, name="relu-d2", width=8)
    for epoch in range(1, 5):
        bar.on_epoch_end(
            bpcore.EpochReport(epoch, 10 * epoch, 320 * epoch, 0.1, 0.5, 0.6, None, None)
        )
    err = capsys.readouterr().err
    assert err.count("\r") == 4 and err.endswith("\n") and err.count("\n") == 1
    assert "relu-d2 [##------] epoch 1/4  train loss 0.5  val loss 0.6" in err
    assert "[########] epoch 4/4" in err


def test_resume_reruns_only_the_jobs_that_did_not_finish(tmp_path: Path, spawn: Spawn) -> None:
    """SIGKILL in the second of three jobs (a preempted node); the resumed sweep skips the
    FINISHED job, runs the killed one and the one never started, under the same parent."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    prepare_experiment(uri, "default")  # so polling never races the schema migration
    sweep = ["-m", "train.epochs=3,1000,4", "data.n_samples=200", "model.width=8"]
    # batch 1: the second job trains 120,000 steps (seconds), still training when it is seen
    sweep += ["train.batch_size=1", "optim.lr=0.01", "log.every_n_steps=1000"]
    names = [f"epochs={epochs} · tanh-d3-w8-b1-s0" for epochs in (3, 1000, 4)]
    log = tmp_path / "killed.log"
    with log.open("w") as out:
        command = [sys.executable, "-m", "experiments.train", *sweep]
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
        process = spawn(command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while names[1] not in {r.info.run_name for r in runs(tmp_path, "default")}:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.2)
    process.kill()
    process.wait(timeout=60)
    while any(c.info.status == "RUNNING" for c in sweep_children(tmp_path)[1]):
        assert time.monotonic() < deadline  # the killed job's writer ends its run KILLED
        time.sleep(0.2)
    parent, children = sweep_children(tmp_path)
    assert parent.info.status == "RUNNING"  # nobody closed it
    statuses = {c.info.run_name: c.info.status for c in children}
    assert statuses == {names[0]: "FINISHED", names[1]: "KILLED"}, log.read_text()
    (first,) = [c for c in children if c.info.run_name == names[0]]
    before = metric_histories(tmp_path, first.info.run_id)

    done = run_train(tmp_path, *sweep, "mlflow.resume=true")
    assert done.returncode == 0, done.stderr
    assert f"resuming sweep {parent.info.run_id}: 1 of 3 jobs already FINISHED" in done.stdout
    assert f"[1/3] skipped: already FINISHED as run {names[0]}" in done.stdout
    resumed, children = sweep_children(tmp_path)
    assert resumed.info.run_id == parent.info.run_id and resumed.info.status == "FINISHED"
    attempts = {
        name: [c.info.status for c in children if c.info.run_name == name] for name in names
    }
    assert attempts == {
        names[0]: ["FINISHED"],
        names[1]: ["KILLED", "FINISHED"],
        names[2]: ["FINISHED"],
    }
    (again,) = [c for c in children if c.info.run_name == names[0]]
    assert again.info.run_id == first.info.run_id and again.info.end_time == first.info.end_time
    assert metric_histories(tmp_path, first.info.run_id) == before
    hashes = {c.info.run_name: c.data.tags["config_hash"] for c in children}
    assert len(set(hashes.values())) == 3


EVIL = {  # each writes the file {out} through numpy's savetxt, reached through bpcore
    "hydra.callbacks.evil._target_": """# @package _global_
hydra:
  callbacks:
    evil:
      _target_: bpcore.datasets.np.savetxt
      _args_: [{out}, []]
      header: echo PWNED
      comments: ''
""",
    "hydra.job_logging.handlers.evil.()": """# @package _global_
hydra:
  job_logging:
    handlers:
      evil:
        "()": bpcore.datasets.np.savetxt
        fname: {out}
        X: []
        header: echo PWNED
        comments: ''
""",
}


ROUTES = ["override", "config_dir", "searchpath", "swept"]


@pytest.mark.parametrize(
    ("key", "route"),
    [(k, r) for k in EVIL for r in ROUTES if r != "override" or "()" not in k],  # no () key
)
def test_a_foreign_callable_is_refused_before_hydra_calls_it(
    tmp_path: Path, route: str, key: str
) -> None:
    """From the command line (whose grammar has no key ``()``), a preset in --config-dir or
    hydra.searchpath, or a preset chosen by a sweep (composed per job only): refused in one
    line, nothing written."""
    out = tmp_path / "pwned.txt"
    (tmp_path / "mine" / "experiment").mkdir(parents=True)
    (tmp_path / "mine" / "experiment" / "evil.yaml").write_text(EVIL[key].format(out=out))
    routes = {
        "override": [
            "+hydra.callbacks.evil._target_=bpcore.datasets.np.savetxt",
            f"+hydra.callbacks.evil._args_=[{out},[]]",
            "+hydra.callbacks.evil.header=PWNED",
        ],
        "config_dir": ["--config-dir", str(tmp_path / "mine"), "experiment=evil"],
        "searchpath": [f"hydra.searchpath=[file://{tmp_path / 'mine'}]", "experiment=evil"],
        "swept": ["--config-dir", str(tmp_path / "mine"), "experiment=quickstart,evil"],
    }
    done = run_train(tmp_path, "-m", *routes[route], *TINY)
    assert done.returncode == 1 and not out.exists()
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {key}='bpcore.datasets.np.savetxt': "), line
    assert "would call it; allowed: " in line
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "multirun").exists()


def test_console_script_runs_from_any_directory(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "bplab-train"
    done = subprocess.run(
        [str(script), *TINY, "mlflow.enabled=false"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("tanh-d3-w8-b32-s0: val/loss")


def test_resume_continues_the_sweep_that_ran_most_of_the_jobs(tmp_path: Path) -> None:
    from experiments.app.sweep import _resume

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    experiment_id = prepare_experiment(uri, "default")
    c = client(tmp_path)

    def sweep(jobs: list[tuple[str, str]], start: int) -> tuple[str, dict[str, str]]:
        """A FAILED parent run with a child per (config hash, status): (parent, hash → run)."""
        parent = c.create_run(experiment_id, start_time=start).info.run_id
        children = {}
        for i, (job, status) in enumerate(jobs, 1):
            tags = {"mlflow.parentRunId": parent, "config_hash": job}
            children[job] = c.create_run(experiment_id, start_time=start + i, tags=tags).info.run_id
            if status != "RUNNING":
                c.set_terminated(children[job], status)
        c.set_terminated(parent, "FAILED")
        return parent, children

    first, ran = sweep([("a", "FINISHED"), ("b", "FAILED"), ("c", "RUNNING")], start=1000)
    later, _ = sweep([("a", "FINISHED"), ("x", "FINISHED")], start=2000)  # one job in common
    finished = {"a": c.get_run(ran["a"]).info.run_name}
    assert _resume(uri, experiment_id, ["a", "b", "c"], {"n_jobs": "3"}) == (first, finished)
    assert c.get_run(first).info.status == "RUNNING" and c.get_run(later).info.status == "FAILED"
    assert c.get_run(first).data.tags["n_jobs"] == "3"
    assert [c.get_run(ran[job]).info.status for job in "abc"] == ["FINISHED", "FAILED", "KILLED"]
    assert _resume(uri, experiment_id, ["y"], {}) is None
