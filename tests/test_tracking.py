"""experiments.tracking against real temporary sqlite stores (no mocks).

The first RunTracker starts the writer server, which imports MLflow (≈ 2–3 s); later ones get
a writer forked by it.  The slow tests share runs.
"""

from __future__ import annotations

import math
import os
import signal
import tempfile
import time
from pathlib import Path

import pytest
from joblib import Parallel, delayed
from mlflow import MlflowClient

from experiments import tracking
from experiments.tracking import (
    PROJECT_ROOT,
    NullTracker,
    RunTracker,
    TrackingError,
    _server_socket,
    check_tracking_uri,
    child_runs,
    close_spare_writers,
    default_tracking_uri,
    finish_parent_run,
    prepare_experiment,
    start_parent_run,
    stop_writer_server,
)

STEPS, KEYS = 40, [f"grad_norm/layer_{i:02d}" for i in range(30)]


def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/db/mlflow.db"


def plain_run(uri: str, experiment: dict[str, str], name: str) -> RunTracker:
    """A run with no parent, params or tags."""
    return RunTracker(uri, experiment, name, parent_run_id=None, params={}, tags={})


def history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, key)]


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


def test_sqlite_parent_directory_is_created(tmp_path: Path) -> None:
    check_tracking_uri(f"sqlite:///{tmp_path}/a/b/mlflow.db")
    assert (tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(TrackingError, match="cannot create"):
        check_tracking_uri(f"sqlite:///{tmp_path}/file/mlflow.db")


def test_null_tracker_does_nothing(tmp_path: Path) -> None:
    with NullTracker() as tracker:
        tracker.log_metrics(0, {"loss": 1.0})
        tracker.set_tags({"a": "b"})
        tracker.log_artifacts(tmp_path / "missing")
        tracker.end()
    assert tracker.run_id is None
    assert list(tmp_path.iterdir()) == []


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


def job(uri: str, experiment_id: str, parent: str, index: int, folder: str) -> str:
    """One sweep job, as a Hydra joblib worker would run it."""
    results = Path(folder) / f"job{index}"
    results.mkdir()
    (results / f"result_{index}.txt").write_text(f"job {index}\n")
    params = {"index": str(index)} | {f"p{i:03d}": str(i) for i in range(150)}  # > 100: split
    wait = index % 2 == 0  # both ways of starting
    tags = {"job": str(index), "config_hash": str(index)}
    tracker = RunTracker(
        uri,
        {"id": experiment_id},
        f"job{index}",
        parent_run_id=parent,
        params=params,
        tags=tags,
        wait=wait,
    )
    with tracker:
        for step in range(STEPS):
            tracker.log_metrics(step, {key: step + index / 10 for key in KEYS})
        tracker.log_artifacts(results, "results")
    return tracker.run_id


@pytest.mark.slow
def test_parallel_jobs_on_a_fresh_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri, cwd = store(tmp_path), tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # the jobs' working directory: nothing may land here
    experiment_id = prepare_experiment(uri, "parallel sweep/1")  # once, before the jobs
    parent = start_parent_run(uri, experiment_id, "sweep", {})
    with Parallel(n_jobs=4, backend="loky") as parallel:
        run_ids = parallel(
            delayed(job)(uri, experiment_id, parent, i, str(tmp_path)) for i in range(4)
        )
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
    assert MlflowClient(uri).get_run(interrupted.run_id).info.status == "KILLED"


@pytest.mark.slow
def test_writer_failures_surface_as_tracking_errors(tmp_path: Path) -> None:
    uri = store(tmp_path)
    experiment_id = prepare_experiment(uri, "writer failures")
    tracker = plain_run(uri, {"id": experiment_id}, "lost file")
    tracker.log_metrics(0, {"loss": 1.0})
    tracker.log_artifacts(tmp_path / "deleted-too-early")  # the upload fails in the writer
    with pytest.raises(TrackingError, match="writer of run 'lost file' failed"):
        for step in range(1, 200):  # the error arrives within a few calls
            tracker.log_metrics(step, {"loss": 1.0})
            time.sleep(0.01)
    with pytest.raises(TrackingError, match="failed"):
        tracker.end()
    assert MlflowClient(uri).get_run(tracker.run_id).info.status == "FAILED"

    with pytest.raises(TrackingError, match="No Experiment with id=999"):
        plain_run(uri, {"id": "999"}, "nowhere")

    killed = plain_run(uri, {"id": experiment_id}, "killed writer")
    os.kill(killed._writer_pid, signal.SIGKILL)  # as if the OOM killer took it: no hang
    assert gone(Path(f"/proc/{killed._writer_pid}"), 5)
    started = time.perf_counter()
    with pytest.raises(TrackingError, match=r"writer process died"):
        killed.log_metrics(0, {"loss": 1.0})
    with pytest.raises(TrackingError, match="died"):
        killed.end()
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize(
    "uri", ["http://alice:s3cret@127.0.0.1:5000", "postgresql+psycopg://mlflow:s3cret@db/mlflow"]
)
def test_a_password_in_the_uri_is_refused_without_echoing_it(uri: str) -> None:
    with pytest.raises(TrackingError, match=r"contains a password.*MLFLOW_TRACKING_PASS") as info:
        check_tracking_uri(uri)
    assert "s3cret" not in str(info.value) and ":***@" in str(info.value)


def parent_pid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("PPid:")[1].split()[0])


def threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def gone(path: Path, seconds: float) -> bool:
    """Whether ``path`` disappears within ``seconds``."""
    deadline = time.monotonic() + seconds
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not path.exists()


@pytest.mark.slow
def test_one_writer_server_forks_every_writer_and_leaves_when_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    close_spare_writers()
    stop_writer_server()
    socket_path = _server_socket()
    assert not socket_path.exists()
    monkeypatch.setenv("BPLAB_WRITER_IDLE_SECONDS", "3")
    uri = store(tmp_path)
    experiment_id = prepare_experiment(uri, "writer server")

    def writer(name: str) -> tuple[RunTracker, int]:
        """A run's tracker and its writer's parent (the server), after its first metric."""
        tracker = plain_run(uri, {"id": experiment_id}, name)
        tracker.log_metrics(0, {"loss": 1.0})
        return tracker, parent_pid(tracker._writer_pid)

    first, server = writer("first")
    assert socket_path.exists() and server != os.getpid()
    assert threads(server) == 1  # forking is safe
    first.end()
    close_spare_writers()  # the next run needs a new writer
    second, same_server = writer("second")
    assert same_server == server and second._writer_pid != first._writer_pid
    second.end()
    close_spare_writers()
    client = MlflowClient(uri)
    for tracker in (first, second):
        assert client.get_run(tracker.run_id).info.status == "FINISHED"
        assert history(uri, tracker.run_id, "loss") == [(0, 1.0)]
    assert gone(socket_path, 10) and gone(Path(f"/proc/{server}"), 5)  # idle for 3 s: left

    killed, killed_server = writer("server killed")  # a new server
    os.kill(killed_server, signal.SIGKILL)  # its socket stays behind; its writer works on
    assert gone(Path(f"/proc/{killed_server}"), 5)  # until it has died it still takes connections
    killed.end()
    assert socket_path.exists()
    close_spare_writers()
    after, new_server = writer("after the kill")
    assert new_server != killed_server
    after.end()
    assert client.get_run(after.run_id).info.status == "FINISHED"
    stop_writer_server()
    assert not socket_path.exists() and gone(Path(f"/proc/{new_server}"), 5)


@pytest.mark.slow
def test_writers_take_the_training_process_directory_umask_and_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    close_spare_writers()
    uri = "sqlite:///relative/mlflow.db"
    check_tracking_uri(uri)  # creates relative/ here
    with plain_run(uri, {"name": "here"}, "here"):
        pass  # the writer server runs from now on, with our umask of now
    assert (tmp_path / "relative" / "mlflow.db").is_file()
    assert "Creating initial MLflow database tables" in capfd.readouterr().err
    close_spare_writers()
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "result.txt").write_text("42\n")
    umask = os.umask(0o027)  # a lab's shared store: group may read, others nothing
    try:
        with plain_run(uri, {"name": "here"}, "here") as t:
            t.log_artifacts(tmp_path / "files")
    finally:
        os.umask(umask)
    (uploaded,) = (tmp_path / "relative" / "mlartifacts").rglob("result.txt")
    assert uploaded.read_text() == "42\n"
    assert (uploaded.parent.stat().st_mode & 0o777) == 0o750  # made by the writer


def cpus_of(pid: int) -> set[int]:
    return os.sched_getaffinity(pid)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_writers_take_the_cpus_of_the_training_process(tmp_path: Path) -> None:
    uri = store(tmp_path)
    with plain_run(uri, {"name": "cpus"}, "all") as t:
        assert cpus_of(t._writer_pid) == os.sched_getaffinity(0)  # the server runs from now on
    close_spare_writers()
    everywhere = os.sched_getaffinity(0)
    one = {min(everywhere)}
    os.sched_setaffinity(0, one)  # taskset -c / srun --cpu-bind for this process only
    try:
        with plain_run(uri, {"name": "cpus"}, "one") as t:
            assert cpus_of(t._writer_pid) == one
    finally:
        os.sched_setaffinity(0, everywhere)
    close_spare_writers()
    with plain_run(uri, {"name": "cpus"}, "all again") as t:
        assert cpus_of(t._writer_pid) == everywhere
    close_spare_writers()


@pytest.mark.parametrize("idle", ["soon", "-1", "inf"])
def test_a_bad_writer_idle_time_is_refused(idle: str, monkeypatch: pytest.MonkeyPatch) -> None:
    close_spare_writers()
    monkeypatch.setenv("BPLAB_WRITER_IDLE_SECONDS", idle)
    with pytest.raises(TrackingError, match=rf"BPLAB_WRITER_IDLE_SECONDS='{idle}'.*seconds ≥ 0"):
        plain_run("sqlite:///x.db", {"id": "0"}, "r")


def test_a_writer_server_that_cannot_start_is_reported_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    close_spare_writers()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # a folder of our own: no server
    monkeypatch.setattr(tracking, "_SERVE", "import sys; sys.exit('no MLflow here')")
    with pytest.raises(TrackingError, match=r"writer server did not start \(see .*\.log\)") as e:
        RunTracker(store(tmp_path), {"id": "0"}, "r", parent_run_id=None, params={}, tags={})
    log = Path(str(e.value).split("(see ")[1].rstrip(")"))
    assert log.read_text().strip() == "no MLflow here"


def test_a_stop_while_the_server_forks_a_writer_stops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer of a stop request signals the server at once, while it may still be in
    os.fork(): there a raised exception was swallowed and the server lived on."""
    close_spare_writers()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # a server of our own
    stop_in_fork = "os.register_at_fork(after_in_parent=lambda: os.kill(os.getpid(), 15))"
    monkeypatch.setattr(tracking, "_SERVE", f"import os; {stop_in_fork}; {tracking._SERVE}")
    uri = store(tmp_path)
    with plain_run(uri, {"name": "x"}, "r") as t:
        t.log_metrics(0, {"loss": 1.0})
    assert gone(_server_socket(), 10)  # stopped as it forked this run's writer
    assert history(uri, t.run_id, "loss") == [(0, 1.0)]  # which finished the run
    close_spare_writers()


def test_a_shared_writer_folder_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    close_spare_writers()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    folder = tmp_path / f"bplab-writers-{os.getuid()}"
    folder.mkdir()
    folder.chmod(0o755)  # others could connect and read what a writer is sent
    with pytest.raises(TrackingError, match="is not private to you"):
        RunTracker(store(tmp_path), {"id": "0"}, "r", parent_run_id=None, params={}, tags={})


def test_each_slurm_job_gets_its_own_writer_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    here = _server_socket()
    monkeypatch.setenv("SLURM_JOB_ID", "101")
    first = _server_socket()
    monkeypatch.setenv("SLURM_JOB_ID", "102")  # the next task of an array, maybe on this node
    assert len({here, first, _server_socket()}) == 3
