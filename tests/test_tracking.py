"""experiments.tracking against real temporary sqlite stores (no mocks).

The first run of a process starts its writer, a child process that imports MLflow (≈ 2–3 s);
later runs of the process reuse it.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from joblib import Parallel, delayed
from mlflow import MlflowClient

from experiments import PROJECT_ROOT
from experiments.server.audit import stored_point_counts
from experiments.tracking import store as store_module
from experiments.tracking.run import KILL_GRACE, RunTracker, close_writer, writer
from experiments.tracking.store import (
    TrackingError,
    check_tracking_uri,
    child_runs,
    default_tracking_uri,
    finish_parent_run,
    prepare_experiment,
    start_parent_run,
)

Spawn = Callable[..., "subprocess.Popen[str]"]  # the spawn fixture (conftest.py)
STEPS, KEYS = 40, [f"grad_norm/layer_{i:02d}" for i in range(30)]


def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/db/mlflow.db"


def plain_run(uri: str, experiment: dict[str, str], name: str) -> RunTracker:
    """A run with no parent, params or tags."""
    return RunTracker(uri, experiment, name, parent_run_id=None, params={}, tags={})


def history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, key)]


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (``ps`` works on Linux and macOS)."""
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True)
    return state.returncode == 0 and not state.stdout.strip().startswith("Z")


def gone(pid: int, seconds: float) -> bool:
    """Whether process ``pid`` is gone within ``seconds``."""
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


@pytest.mark.parametrize(
    "uri", ["file:/tmp/mlruns", "file:///tmp/mlruns", "/tmp/mlruns", "foo://x"]
)
def test_bad_uri_names_the_allowed_schemes(uri: str) -> None:
    with pytest.raises(TrackingError, match=r"not supported.*sqlite.*postgresql.*http") as info:
        check_tracking_uri(uri)
    assert repr(uri) in str(info.value)
    assert ("file store" in str(info.value)) == (uri != "foo://x")


def test_unreachable_server_fails_within_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.setenv(key, "x")  # so that teardown restores the original state
        monkeypatch.delenv(key)
    started = time.perf_counter()
    with pytest.raises(TrackingError, match=r"tracking server at http://127.0.0.1:9 is not reach"):
        check_tracking_uri("http://127.0.0.1:9")
    assert time.perf_counter() - started < 10
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"  # later failures surface fast
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "10"


def test_default_uri_is_the_project_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_tracking_uri() == f"sqlite:///{PROJECT_ROOT}/mlflow.db"
    assert (PROJECT_ROOT / "pyproject.toml").is_file() and PROJECT_ROOT.is_absolute()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://example.org")
    assert default_tracking_uri() == "http://example.org"


def test_a_file_that_is_no_sqlite_database_is_refused_before_mlflow_opens_it(
    tmp_path: Path,
) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\x93 not a database " * 100)
    with pytest.raises(TrackingError, match=r"garbage.db is not an SQLite database"):
        check_tracking_uri(f"sqlite:///{garbage}")
    (tmp_path / "empty.db").touch()  # sqlite makes an empty file a new database
    check_tracking_uri(f"sqlite:///{tmp_path}/empty.db")
    (tmp_path / "folder.db").mkdir()
    with pytest.raises(TrackingError, match=r"cannot write .*folder.db \(Is a directory\)"):
        check_tracking_uri(f"sqlite:///{tmp_path}/folder.db")


HOLD = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_sqlite_store_is_opened_under_its_lock(
    tmp_path: Path, spawn: Spawn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another process holds ``<db>.lock`` the store is not touched: opening it fails
    in one line after LOCK_SECONDS; once that process is killed (it never released the lock),
    the store opens."""
    uri, db = store(tmp_path), tmp_path / "db" / "mlflow.db"
    db.parent.mkdir()
    holder = spawn([sys.executable, "-c", HOLD, f"{db}.lock"], stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    monkeypatch.setattr(store_module, "LOCK_SECONDS", 1.0)
    started = time.monotonic()
    with pytest.raises(TrackingError, match=r"mlflow.db: another process has held its lock"):
        prepare_experiment(uri, "locked")
    assert 1.0 <= time.monotonic() - started < 5
    assert not db.exists()
    holder.kill()
    holder.wait(10)
    assert prepare_experiment(uri, "locked") == prepare_experiment(uri, "locked")
    assert db.is_file()


def test_sqlite_parent_directory_is_created(tmp_path: Path) -> None:
    check_tracking_uri(f"sqlite:///{tmp_path}/a/b/mlflow.db")
    assert (tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(TrackingError, match="cannot create"):
        check_tracking_uri(f"sqlite:///{tmp_path}/file/mlflow.db")


@pytest.mark.parametrize(
    "uri", ["http://alice:s3cret@127.0.0.1:5000", "postgresql+psycopg://mlflow:s3cret@db/mlflow"]
)
def test_a_password_in_the_uri_is_refused_without_echoing_it(uri: str) -> None:
    with pytest.raises(TrackingError, match=r"contains a password.*MLFLOW_TRACKING_PASS") as info:
        check_tracking_uri(uri)
    assert "s3cret" not in str(info.value) and ":***@" in str(info.value)


def test_finish_parent_run_needs_every_jobs_latest_run_finished(tmp_path: Path) -> None:
    uri = store(tmp_path)
    experiment_id = prepare_experiment(uri, "nesting")
    assert prepare_experiment(uri, "nesting") == experiment_id  # existing: same id
    client = MlflowClient(uri)

    def parent_with(attempts: list[tuple[str, str]]) -> str:
        """A parent run with one child per (job, status), started in that order."""
        parent = start_parent_run(uri, experiment_id, "sweep", {"sweep": "x"})
        for start_time, (job, status) in enumerate(attempts, 1):
            tags = {"mlflow.parentRunId": parent, "config_hash": job}
            run = client.create_run(experiment_id, start_time=start_time, tags=tags)
            if status != "RUNNING":
                client.set_terminated(run.info.run_id, status)
        return parent

    ok = parent_with([("a", "FINISHED"), ("b", "FINISHED"), ("c", "FINISHED")])
    one_failed = parent_with([("a", "FINISHED"), ("b", "FAILED")])
    too_few = parent_with([("a", "FINISHED")])
    resumed = parent_with([("a", "FINISHED"), ("b", "KILLED"), ("b", "FINISHED")])
    resumed_in_vain = parent_with([("a", "FINISHED"), ("b", "FINISHED"), ("b", "FAILED")])
    orphan = parent_with([("a", "RUNNING")])
    assert client.get_run(ok).info.status == "RUNNING"
    assert finish_parent_run(uri, ok, ["a", "b", "c"]) == "FINISHED"
    assert finish_parent_run(uri, ok, ["a", "b", "c"]) == "FINISHED"  # idempotent
    assert finish_parent_run(uri, one_failed, ["a", "b"]) == "FAILED"
    assert finish_parent_run(uri, too_few, ["a", "b"]) == "FAILED"
    assert finish_parent_run(uri, resumed, ["a", "b"]) == "FINISHED"
    assert finish_parent_run(uri, resumed_in_vain, ["a", "b"]) == "FAILED"
    assert [client.get_run(r).info.status for r in (ok, one_failed, too_few)] == [
        "FINISHED",
        "FAILED",
        "FAILED",
    ]
    assert len(child_runs(uri, ok)) == 3 and len(child_runs(uri, too_few)) == 1
    assert finish_parent_run(uri, orphan, ["a"]) == "FAILED"  # a writer lost the store mid-run
    assert [c.info.status for c in child_runs(uri, orphan)] == ["FAILED"]
    cut = parent_with([("a", "FINISHED"), ("b", "RUNNING")])  # Ctrl-C; c never started
    assert finish_parent_run(uri, cut, ["a", "b", "c"], cut_short=True) == "KILLED"
    assert [c.info.status for c in child_runs(uri, cut)] == ["FINISHED", "KILLED"]


def job(uri: str, experiment_id: str, parent: str, index: int, folder: str) -> tuple[str, int]:
    """One sweep job, as a Hydra joblib worker would run it: (run id, writer pid)."""
    results = Path(folder) / f"job{index}"
    results.mkdir()
    (results / f"result_{index}.txt").write_text(f"job {index}\n")
    params = {"index": str(index)} | {f"p{i:03d}": str(i) for i in range(150)}  # > 100: split
    tags = {"job": str(index), "config_hash": str(index)}
    experiment = {"id": experiment_id}
    tracker = RunTracker(
        uri, experiment, f"job{index}", parent_run_id=parent, params=params, tags=tags
    )
    with tracker:
        for step in range(STEPS):
            tracker.log_metrics(step, {key: step + index / 10 for key in KEYS})
        with tracker.artifact_folder() as run_folder:
            (run_folder / "results").mkdir()
            (run_folder / "results" / f"result_{index}.txt").write_text(f"job {index}\n")
    return tracker.run_id, writer().process.pid


@pytest.mark.slow
def test_parallel_jobs_on_a_fresh_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri, cwd = store(tmp_path), tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # the jobs' working directory: nothing may land here
    experiment_id = prepare_experiment(uri, "parallel sweep/1")  # once, before the jobs
    parent = start_parent_run(uri, experiment_id, "sweep", {})
    with Parallel(n_jobs=2, backend="loky") as parallel:
        done = parallel(
            delayed(job)(uri, experiment_id, parent, i, str(tmp_path)) for i in range(4)
        )
    run_ids, writers = zip(*done, strict=True)
    assert len(set(writers)) <= 2  # one writer per worker process, reused by its later jobs
    assert finish_parent_run(uri, parent, ["0", "1", "2", "3"]) == "FINISHED"
    children = child_runs(uri, parent)
    assert sorted(r.info.run_id for r in children) == sorted(run_ids)
    for i, run in enumerate(sorted(children, key=lambda r: int(r.data.params["index"]))):
        assert run.info.status == "FINISHED"
        assert len(run.data.params) == 151 and run.data.tags["job"] == str(i)
        for key in (KEYS[0], KEYS[-1]):
            assert history(uri, run.info.run_id, key) == [(s, s + i / 10) for s in range(STEPS)]
        uploaded = (
            Path(run.info.artifact_uri.removeprefix("file://")) / "results" / f"result_{i}.txt"
        )
        assert uploaded.read_text() == f"job {i}\n"
        assert uploaded.is_relative_to(tmp_path / "db" / "mlartifacts" / "parallel_sweep_1")
    assert list(cwd.iterdir()) == []


def test_runs_of_a_process_share_one_writer_child(tmp_path: Path) -> None:
    uri = store(tmp_path)
    close_writer()
    with plain_run(uri, {"name": "shared"}, "first") as first:
        first.log_metrics(0, {"loss": 1.0})
    pid = writer().process.pid
    with plain_run(uri, {"name": "shared"}, "second") as second:
        second.log_metrics(0, {"loss": 2.0})
    assert writer().process.pid == pid and alive(pid)
    ppid = subprocess.run(["ps", "-o", "ppid=", "-p", str(pid)], capture_output=True, text=True)
    assert int(ppid.stdout) == os.getpid()  # a child of the training process, no daemon
    assert history(uri, first.run_id, "loss") == [(0, 1.0)]
    assert history(uri, second.run_id, "loss") == [(0, 2.0)]
    close_writer()
    assert gone(pid, 10)  # EOF on its pipe: it leaves


def test_a_local_store_gets_the_run_files_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_copy(**kwargs: object) -> str:
        raise AssertionError("a temporary folder for a local store")

    uri = store(tmp_path)
    with plain_run(uri, {"name": "files"}, "in place") as t:
        monkeypatch.setattr(tempfile, "mkdtemp", no_copy)
        with t.artifact_folder() as folder:
            (folder / "result.txt").write_text("42\n")
        assert (folder / "result.txt").is_file()  # before the run ends: written there
    run = MlflowClient(uri).get_run(t.run_id)
    assert folder == Path(run.info.artifact_uri.removeprefix("file://"))
    assert folder.is_relative_to(tmp_path / "db" / "mlartifacts" / "files")
    assert [a.path for a in MlflowClient(uri).list_artifacts(t.run_id)] == ["result.txt"]


@pytest.mark.slow
def test_exception_fails_the_run_and_keeps_its_metrics(tmp_path: Path) -> None:
    uri = store(tmp_path)
    experiment_id = prepare_experiment(uri, "failures")
    tracker = RunTracker(
        uri, {"id": experiment_id}, "crash", parent_run_id=None, params={"lr": "0.1"}, tags={}
    )
    with pytest.raises(ZeroDivisionError), tracker:
        for step in range(5):
            tracker.log_metrics(step, {"loss": 1 / (step + 1), "odd": float("nan")})
        tracker.log_metrics(5, {"odd": float("inf"), "neg": -math.inf})
        with pytest.raises(TrackingError, match="invalid metric key"):
            tracker.log_metrics(6, {"bad key!": 1.0})
        tracker.set_tags({"stage": "training"})
        _ = 1 / 0
    run = MlflowClient(uri).get_run(tracker.run_id)
    assert run.info.status == "FAILED"
    assert run.data.params == {"lr": "0.1"} and run.data.tags["stage"] == "training"
    assert run.data.tags["error"] == "ZeroDivisionError: division by zero"
    assert history(uri, tracker.run_id, "loss") == [(s, 1 / (s + 1)) for s in range(5)]
    odd = history(uri, tracker.run_id, "odd")
    assert all(math.isnan(v) for _, v in odd[:5]) and odd[5] == (5, 1.7976931348623157e308)
    assert history(uri, tracker.run_id, "neg") == [(5, -1.7976931348623157e308)]
    with pytest.raises(TrackingError, match="already ended"):
        tracker.log_metrics(7, {"loss": 0.0})
    tracker.end()  # idempotent

    interrupted = plain_run(uri, {"id": experiment_id}, "ctrl-c")
    with pytest.raises(KeyboardInterrupt), interrupted:
        interrupted.log_metrics(0, {"loss": 1.0})
        raise KeyboardInterrupt
    run = MlflowClient(uri).get_run(interrupted.run_id)
    assert run.info.status == "KILLED" and "unwritten_points" not in run.data.tags
    assert history(uri, interrupted.run_id, "loss") == [(0, 1.0)]


@pytest.mark.slow
def test_ctrl_c_ends_a_run_within_the_grace_time_however_far_behind_the_writer_is(
    tmp_path: Path,
) -> None:
    """Far more metrics than the writer can write in KILL_GRACE seconds (≈ 10k/s): the run ends
    KILLED in time, and the points it stored plus the ``unwritten_points`` tag are all sent."""
    uri = store(tmp_path)
    experiment_id = prepare_experiment(uri, "behind")
    tracker = plain_run(uri, {"id": experiment_id}, "behind")
    _ = tracker.run_id  # the writer has started
    keys = [f"grad_norm/layer_{i:02d}" for i in range(100)]
    steps = 3000  # 300 000 points: ≈ 30 s of writing
    with pytest.raises(KeyboardInterrupt), tracker:
        for step in range(steps):
            tracker.log_metrics(step, dict.fromkeys(keys, float(step)))
        started = time.monotonic()
        raise KeyboardInterrupt
    waited = time.monotonic() - started
    assert waited < KILL_GRACE + 1.5
    run = MlflowClient(uri).get_run(tracker.run_id)
    assert run.info.status == "KILLED"
    stored = sum(stored_point_counts(uri, [tracker.run_id]).values())
    unwritten = int(run.data.tags["unwritten_points"])
    assert unwritten > 0 and stored + unwritten == steps * len(keys)


@pytest.mark.slow
def test_writer_failures_surface_as_tracking_errors(tmp_path: Path) -> None:
    uri = store(tmp_path)
    experiment_id = prepare_experiment(uri, "writer failures")
    with pytest.raises(TrackingError, match="No Experiment with id=999"):
        nowhere = plain_run(uri, {"id": "999"}, "nowhere")
        _ = nowhere.run_id

    killed = plain_run(uri, {"id": experiment_id}, "killed writer")
    _ = killed.run_id
    process = writer().process
    process.kill()  # as if the OOM killer took it: no hang
    process.wait(5)
    pid = process.pid
    started = time.perf_counter()
    with pytest.raises(TrackingError, match=r"writer process died"):
        killed.log_metrics(0, {"loss": 1.0})
    with pytest.raises(TrackingError, match="died"):
        killed.end()
    assert time.perf_counter() - started < 5
    run = MlflowClient(uri).get_run(killed.run_id)  # ended by the training process itself
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "MLflow writer process died"
    with plain_run(uri, {"id": experiment_id}, "after") as after:  # a new writer
        after.log_metrics(0, {"loss": 1.0})
    assert writer().process.pid != pid
    assert MlflowClient(uri).get_run(after.run_id).info.status == "FINISHED"


CHILD = """
import os, sys
from experiments.tracking.run import RunTracker, writer
tracker = RunTracker(sys.argv[1], {"name": "orphan"}, "gone", parent_run_id=None, params={},
                     tags={})
for step in range(50):
    tracker.log_metrics(step, {"loss": float(step)})
print(tracker.run_id, writer().process.pid, flush=True)
os.kill(os.getpid(), 9)
"""


@pytest.mark.slow
def test_a_killed_training_process_takes_its_writer_with_it(tmp_path: Path) -> None:
    """kill -9 of the training process: its writer ends the run KILLED with every point it
    was sent, and exits (nothing outlives the command)."""
    uri = store(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, uri], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    run_id, pid = done.stdout.split()
    assert gone(int(pid), 10)
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.status == "KILLED"
    assert history(uri, run_id, "loss") == [(s, float(s)) for s in range(50)]


PORTABLE = """
import multiprocessing, os, sys
multiprocessing.set_start_method("spawn")  # macOS's default
for name in ("sched_getaffinity", "sched_setaffinity"):  # absent on macOS
    if hasattr(os, name):
        delattr(os, name)
from hydra import compose, initialize_config_dir
from experiments.app.schema import register_configs
from experiments.app.train import train
register_configs()
with initialize_config_dir(config_dir=sys.argv[1], version_base="1.3"):
    overrides = ["train.epochs=2", "data.n_samples=200", "mlflow.tracking_uri=" + sys.argv[2]]
    cfg = compose("config", overrides)
outcome = train(cfg)
print(outcome.status)
"""


@pytest.mark.slow
def test_a_tracked_run_needs_no_linux_only_call(tmp_path: Path) -> None:
    uri = store(tmp_path)
    conf = str(PROJECT_ROOT / "conf")
    done = subprocess.run(
        [sys.executable, "-c", PORTABLE, conf, uri], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "FINISHED", done.stderr
    (run,) = MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_experiment_by_name("default").experiment_id]
    )
    assert run.info.status == "FINISHED" and "val/loss" in run.data.metrics


@pytest.mark.slow
def test_the_writer_works_in_the_training_process_directory_and_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    close_writer()  # a writer started here, now
    uri = "sqlite:///relative/mlflow.db"
    with plain_run(uri, {"name": "here"}, "here") as t:
        t.log_metrics(0, {"loss": 1.0})
    assert (tmp_path / "relative" / "mlflow.db").is_file()
    assert "Creating initial MLflow database tables" in capfd.readouterr().err
    assert history(f"sqlite:///{tmp_path}/relative/mlflow.db", t.run_id, "loss") == [(0, 1.0)]
    close_writer()


def test_a_run_ended_before_its_training_process_died_keeps_its_status(tmp_path: Path) -> None:
    """The writer ends the run, then cannot tell the (killed) training process: the run stays
    as ended (KILLED when points past the deadline were lost), not FAILED."""
    import multiprocessing.connection

    from experiments.tracking.writer import Inbox, write_run

    class GoneAfterReady:
        """The training process's end of the replies: it reads "ready", then dies."""

        def __init__(self) -> None:
            self.sent: list[object] = []

        def send(self, message: object) -> None:
            if self.sent:
                raise BrokenPipeError(32, "Broken pipe")
            self.sent.append(message)

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    requests, inbox_end = multiprocessing.Pipe()
    requests.send(("keys", 0, ("loss",)))
    requests.send(("metrics", 0, 1, 0, [0.5]))
    requests.send(("end", "FINISHED", time.time() - 1))  # past its deadline: the point is lost
    inbox = Inbox(inbox_end)
    request = (uri, {"name": "default"}, "gone", {}, {})
    assert write_run(request, inbox, GoneAfterReady()) is False  # type: ignore[arg-type]
    (run,) = MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_experiment_by_name("default").experiment_id]
    )
    lost = run.data.tags.get("unwritten_points")  # "1" unless the point beat the deadline
    assert run.info.status == ("KILLED" if lost else "FINISHED")
