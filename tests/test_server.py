"""The tracking server end to end: a real PostgreSQL cluster and ``mlflow server`` on loopback
(started by experiments.server on free ports in a temporary folder), sweeps against it, the
server killed mid-sweep, and an unreachable tracking URI."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from experiments.server import service as server
from experiments.server.audit import audit_sweep
from experiments.tracking.run import RunTracker
from experiments.tracking.store import child_runs

# one worker runs the module, so its server starts once under `pytest -n 2 --dist loadgroup`
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("tracking_server")]
Spawn = Callable[..., "subprocess.Popen[str]"]  # the spawn fixture (conftest.py)
TINY = ["data.n_samples=200", "train.epochs=3", "model.width=8", "log.every_n_steps=5"]
TINY += ["mlflow.run_figures=false", "mlflow.sweep_figures=false"]  # drawn in test_mlflow_ui


@pytest.fixture(scope="module")
def tracking_server() -> Iterator[Path]:
    """The folder of a PostgreSQL-backed MLflow server for this module's tests (PGPASSFILE
    lets them read its database)."""
    if server.postgres_bin() is None:
        reason = "PostgreSQL's server programs (initdb, pg_ctl) are not installed"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: .ci/run must install the postgresql package")
        pytest.skip(f"{reason}: apt-get install postgresql")
    with server.temporary(workers=1) as (folder, _):
        yield folder


def state_of(folder: Path) -> server.ServerState:
    state = server.ServerState.load(folder)
    assert state is not None
    return state


def sweep(
    spawn: Spawn, cwd: Path, uri: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """``python -m experiments.train -m ARGS`` on 2 joblib workers, logging to ``uri``."""
    command = [sys.executable, "-m", "experiments.train", "-m", *args]
    command += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    environment = {**os.environ, "MLFLOW_TRACKING_URI": uri, **(env or {})}
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}
    return spawn(command, cwd=cwd, env=environment, **pipes)


def parent_of(output: str) -> str:
    found = re.search(r"parent run (\w{32})", output)
    assert found, output
    return found.group(1)


def test_server_is_loopback_only_and_keeps_its_password_off_command_lines(
    tracking_server: Path,
) -> None:
    folder, state = tracking_server, state_of(tracking_server)
    assert state.host == "127.0.0.1"
    assert server.start(folder) == state  # idempotent: already running
    assert server.running(folder) == state
    pgpass = folder / "pgpass"
    assert pgpass.stat().st_mode & 0o777 == 0o600
    password = pgpass.read_text().strip().rsplit(":", 1)[1]
    command = Path(f"/proc/{state.pid}/cmdline").read_bytes().decode().split("\0")
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert "--backend-store-uri" in command and password not in " ".join(command)
    assert password not in (folder / "mlflow.log").read_text()
    conf = (folder / "pgdata" / "postgresql.conf").read_text()
    assert "listen_addresses = '127.0.0.1'" in conf


def test_parallel_sweep_arrives_whole_and_logs_no_secret(
    tracking_server: Path, tmp_path: Path, spawn: Spawn
) -> None:
    state = state_of(tracking_server)
    uri = state.uri
    secret = secrets.token_hex(12)
    credentials = {"MLFLOW_TRACKING_USERNAME": f"user-{secret}", "MLFLOW_TRACKING_PASSWORD": secret}
    job = sweep(spawn, tmp_path, uri, "seed=0,1", "activation=relu,tanh", *TINY, env=credentials)
    output, _ = job.communicate(timeout=300)
    assert job.returncode == 0, output
    assert secret not in output and "Traceback" not in output
    assert f"open {uri}/#/experiments/" in output and "workflowType=machine_learning" in output
    parent = parent_of(output)
    audit = audit_sweep(uri, server.store_uri(state.pg_port), parent, 4)
    assert audit.lost_runs == 0 and audit.not_finished == []
    assert audit.lost_points == 0 and audit.stored_points == audit.expected_points > 4 * 30
    client = MlflowClient(uri)
    assert client.get_run(parent).info.status == "FINISHED"
    for run in [client.get_run(parent), *child_runs(uri, parent)]:
        values = [*run.data.params.values(), *run.data.tags.values()]
        assert not [v for v in values if secret in v], run.info.run_name
    assert not list(tmp_path.glob("mlruns")) and not list(tmp_path.glob("mlartifacts"))


def test_run_files_go_up_through_the_server(tracking_server: Path, tmp_path: Path) -> None:
    uri = state_of(tracking_server).uri
    with RunTracker(uri, {"name": "uploads"}, "up", parent_run_id=None, params={}, tags={}) as t:
        with t.artifact_folder() as folder:
            (folder / "result.txt").write_text("42\n")
        assert not folder.is_relative_to(tracking_server)  # a temporary folder, uploaded
    assert not folder.exists()  # removed once the run ended
    client = MlflowClient(uri)
    assert client.get_run(t.run_id).info.artifact_uri.startswith("mlflow-artifacts:")
    downloaded = client.download_artifacts(t.run_id, "result.txt", str(tmp_path))
    assert Path(downloaded).read_text() == "42\n"


def test_server_killed_mid_sweep(tracking_server: Path, tmp_path: Path, spawn: Spawn) -> None:
    """The job in flight fails with one line, the rest fail fast, the sweep says so and exits
    non-zero; after a restart, the runs that finished before the kill are whole."""
    folder, state = tracking_server, state_of(tracking_server)
    uri = state.uri
    job = sweep(spawn, tmp_path, uri, "seed=0,1,2,3", "data.n_samples=1000", "train.epochs=20",
                "model.width=8", "log.every_n_steps=5")  # fmt: skip
    assert job.stdout is not None
    lines = []
    for line in job.stdout:  # kill the server as soon as the first job has finished
        lines.append(line)
        if re.match(r"\[\d/4\] .*val/loss", line):
            break
    server.stop_server(folder, signal.SIGKILL)
    killed = time.monotonic()
    rest, _ = job.communicate(timeout=120)
    seconds = time.monotonic() - killed
    output = "".join(lines) + rest
    assert job.returncode != 0 and seconds < 60, output
    assert "Traceback" not in output
    outcomes = [line for line in output.splitlines() if re.match(r"\[\d/4\] ", line)]
    assert len(outcomes) == 4, output
    named = [re.match(r"\[\d/4\] (.+?): ", line) for line in outcomes if "val/loss" in line]
    finished = [match.group(1) for match in named if match]  # names have spaces: "s1 · tanh…"
    failed = [line for line in outcomes if "val/loss" not in line]
    assert finished and failed
    for line in failed:
        assert re.search(
            rf"FAILED \(.*tracking server at {uri} (stopped answering|is not reach)", line
        )
    parent = parent_of(output)
    assert f"parent run {parent}: cannot be ended: tracking server at {uri}" in output
    assert output.rstrip().endswith(
        "sweep ended FAILED: not every job finished (see the lines above)"
    )

    restarted = server.start(folder, port=state.port, pg_port=state.pg_port, workers=1)
    assert restarted.uri == uri
    done = {run.info.run_name for run in child_runs(uri, parent) if run.info.status == "FINISHED"}
    audit = audit_sweep(uri, server.store_uri(restarted.pg_port), parent, len(done))
    assert set(finished) <= done  # every run reported finished is FINISHED in the store
    # A job in flight whose run's end reached the server just before it died reports FAILED
    # (nothing confirmed the end) while the store has it FINISHED, and whole (audited below).
    in_flight = sum("stopped answering" in line for line in failed)
    assert len(done - set(finished)) <= in_flight
    assert audit.lost_points == 0 and audit.stored_points == audit.expected_points > 0


@pytest.mark.parametrize(
    ("multirun", "silent"),
    [(False, False), (True, False), (False, True)],
    ids=["run-refused", "sweep-refused", "run-silent-server"],
)
def test_unreachable_server_fails_fast_before_training(
    tmp_path: Path, multirun: bool, silent: bool
) -> None:
    """Nothing listening (refused at once), or a server that accepts and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        if silent:
            listener.listen()  # the kernel accepts connections; nobody ever reads them
        uri = f"http://127.0.0.1:{listener.getsockname()[1]}"
        command = [sys.executable, "-m", "experiments.train", *(["-m"] if multirun else [])]
        started = time.monotonic()
        done = subprocess.run(
            [*command, *TINY],
            cwd=tmp_path,
            env={**os.environ, "MLFLOW_TRACKING_URI": uri},
            capture_output=True,
            text=True,
            timeout=60,
        )
        seconds = time.monotonic() - started
    # before: MLflow's retries took 60 s; a few seconds when quiet, 13 s seen on a loaded machine
    assert seconds < 30 and done.returncode == 1
    reason = "timed out" if silent else "[Errno 111] Connection refused"
    assert done.stderr.strip() == f"error: tracking server at {uri} is not reachable ({reason})"
    assert "val/loss" not in done.stdout and "parent run" not in done.stdout
    assert not {"mlflow.db", "mlruns", "mlartifacts"} & {p.name for p in tmp_path.iterdir()}
