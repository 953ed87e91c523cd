"""All MLflow code of the suite: store checks, experiments, sweep parent runs, run trackers.

Why a writer process: on the sqlite store MLflow costs ≈ 5.5 ms per ``log_metric`` and still
≈ 0.1 ms of CPU per metric batched, and a depth-16 run logs ~120 metrics per diagnostics step,
so logging in the training process costs 40–200 % of training time; MLflow's async logging is
a thread that fights training for the GIL.  ``RunTracker`` owns a writer process that receives
metrics over a socket and batches them into ``log_batch``; the training process only pickles
and sends (≈ 0.05–0.1 ms per call of 120 metrics).  The writer still needs a free core and
≈ 0.1 ms per metric (≈ 9000 metrics/s here): give training one BLAS thread, and log less
often if the writer falls behind (``end()`` waits).  Writers are forked by a resident writer
server that has imported MLflow (≈ 2 s, paid once, see "Writer processes"); ``mlflow`` is
imported lazily, so a process that only trains never pays that import.

HTTP stores: MLflow retries for minutes by default; ``check_tracking_uri`` sets (only if
unset) ``MLFLOW_HTTP_REQUEST_MAX_RETRIES=2``, ``…_BACKOFF_FACTOR=1`` and ``…_TIMEOUT=10``
so that a lost server surfaces in seconds (writers inherit the environment).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import importlib.util
import os
import posixpath
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from experiments.provenance import PROJECT_ROOT

if TYPE_CHECKING:
    from mlflow.entities import Run

ALLOWED_SCHEMES = ("sqlite", "postgresql", "http", "https")
_ALLOWED = "sqlite:///<path>, postgresql[+driver]://…, http(s)://<server>"
_HTTP_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
_BATCH = 1000  # MLflow's limit of metrics per log_batch
_MIN_BATCH = 100  # about one diagnostics step of a deep net
_LULL_SECONDS = 0.5  # the writer flushes a partial batch after this long without new metrics
_KEY = re.compile(r"[/\w.\- ]{1,250}")  # MLflow's metric-key rule (its ':' fails on Windows)


class TrackingError(RuntimeError):
    """A tracking failure, with a message meant to be shown as is."""


def default_tracking_uri(configured: str | None = None) -> str:
    """``configured`` if given, else $MLFLOW_TRACKING_URI, else the sqlite store at the project
    root (wherever launched)."""
    fallback = f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or fallback


def _sqlite_path(uri: str) -> Path:
    """The db file of ``sqlite:///relative.db`` or ``sqlite:////absolute/path.db``."""
    path = uri.partition(":///")[2].partition("?")[0]
    if not path or path == ":memory:":
        raise TrackingError(f"tracking URI {uri!r}: an in-memory store cannot be shared")
    return Path(path).expanduser().absolute()


def check_tracking_uri(uri: str) -> None:
    """Refuse unsupported stores and unreachable servers within seconds, with one message."""
    head, sep, _ = uri.partition("://")
    scheme = head.lower().split("+")[0] if sep else ""
    if scheme not in ALLOWED_SCHEMES:
        why = " (MLflow ≥ 3.13 refuses the file store)" if scheme in ("", "file") else ""
        raise TrackingError(f"tracking URI {uri!r} is not supported{why}; use {_ALLOWED}")
    password = urllib.parse.urlsplit(uri).password if scheme != "sqlite" else None
    if password:  # it would be printed, and logged as a param when given as mlflow.tracking_uri
        masked = uri.replace(f":{password}@", ":***@", 1)
        raise TrackingError(
            f"tracking URI {masked!r} contains a password: put credentials in "
            "MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (server) or PGPASSWORD / "
            "~/.pgpass (postgresql), never in the URI"
        )
    if scheme == "sqlite":
        parent = _sqlite_path(uri).parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrackingError(f"tracking URI {uri!r}: cannot create {parent} ({e})") from None
    elif scheme in ("http", "https"):
        for key, value in _HTTP_ENV.items():
            os.environ.setdefault(key, value)
        problem = _server_problem(uri)
        if problem:
            raise TrackingError(problem)


def _server_problem(uri: str) -> str | None:
    """Why the server at ``uri`` cannot take runs (probing /health for ≤ 3 s), or None."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=3):
            pass
    except urllib.error.HTTPError as e:  # it answered: only a server error is fatal
        if e.code >= 500:
            return f"tracking server at {uri} is unhealthy ({e})"
    except (OSError, ValueError) as e:  # refused, timed out, no such host
        reason = e.reason if isinstance(e, urllib.error.URLError) else e
        return f"tracking server at {uri} is not reachable ({reason})"
    return None


def describe_failure(uri: str, error: Exception) -> str:
    """One line for a failed MLflow call: a server that stopped answering is named as such
    (MLflow's own message is a page of retry details)."""
    if uri.lower().startswith("http"):
        problem = _server_problem(uri)
        if problem:
            return problem.replace(" is not reachable", " stopped answering")
    return " ".join(str(error).split())


def mlflow_client(uri: str) -> Any:
    """An MlflowClient for ``uri`` (MLflow is imported on first use: ≈ 2 s)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def prepare_experiment(uri: str, name: str) -> str:
    """Create the store (schema migrations) and the experiment if missing; return its id.

    Call once, in one process, before parallel jobs start: several processes migrating a new
    sqlite DB at once corrupt it.  Sqlite experiments keep artifacts beside the store
    (<db dir>/mlartifacts/<name>), not in ./mlruns of whatever directory a job runs in.
    """
    check_tracking_uri(uri)  # fails in seconds, before MLflow's ≈ 2 s import
    from mlflow.exceptions import MlflowException

    client = mlflow_client(uri)
    location = None
    if uri.lower().startswith("sqlite"):
        folder = re.sub(r"[^\w.\-]+", "_", name).strip("._") or "experiment"
        location = (_sqlite_path(uri).parent / "mlartifacts" / folder).as_uri()
    for attempt in range(5):
        try:
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                return str(client.create_experiment(name, artifact_location=location))
            if experiment.lifecycle_stage != "active":
                raise TrackingError(f"experiment {name!r} is deleted in {uri}: restore or rename")
            return str(experiment.experiment_id)
        except MlflowException as e:  # e.g. created meanwhile by another process: look again
            if attempt == 4:
                raise TrackingError(f"cannot prepare experiment {name!r} in {uri}: {e}") from None
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def start_parent_run(uri: str, experiment_id: str, run_name: str, tags: dict[str, str]) -> str:
    """Create a RUNNING parent run (of a sweep) and return its id."""
    return str(
        mlflow_client(uri).create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
    )


def _children_of(run_id: str) -> str:
    """The MLflow search filter for the child runs of ``run_id``."""
    return f"tags.mlflow.parentRunId = '{run_id}'"


def child_runs(uri: str, parent_run_id: str, experiment_id: str | None = None) -> list[Run]:
    """Runs tagged ``mlflow.parentRunId == parent_run_id``, oldest first (the parent's
    experiment is looked up unless given)."""
    client = mlflow_client(uri)
    if experiment_id is None:
        experiment_id = client.get_run(parent_run_id).info.experiment_id
    order = ["attributes.start_time ASC"]
    return _search_all(
        client.search_runs, [experiment_id], _children_of(parent_run_id), order_by=order
    )


def finish_parent_run(uri: str, run_id: str, config_hashes: list[str]) -> str:
    """End the parent FINISHED iff, for every job (its ``config_hash``), the latest child run of
    that job FINISHED; otherwise FAILED.  Earlier attempts (a job killed, then resumed) do not
    count.  Children still RUNNING (their jobs are over: the writer lost the store before it
    could end them) end FAILED.  Returns the status; a parent that has already ended keeps its
    status.  TrackingError (one line) when the store cannot be reached.
    """
    from mlflow.exceptions import MlflowException

    client = mlflow_client(uri)
    try:
        parent = client.get_run(run_id).info
        if parent.status != "RUNNING":
            return str(parent.status)
        children = child_runs(uri, run_id, parent.experiment_id)
        for child in children:
            if child.info.status == "RUNNING":
                client.set_terminated(child.info.run_id, "FAILED")
        latest = {c.data.tags.get("config_hash"): c.info.status for c in children}
        done = all(latest.get(job) == "FINISHED" for job in config_hashes)
        status = "FINISHED" if done else "FAILED"
        client.set_terminated(run_id, status)
    except MlflowException as e:
        raise TrackingError(describe_failure(uri, e)) from None
    return status


def job_attempts(uri: str, experiment_id: str, config_hashes: set[str]) -> list[Run]:
    """The child runs in the experiment of the jobs with these ``config_hash`` tags, newest
    first."""
    client = mlflow_client(uri)
    newest = ["attributes.start_time DESC"]
    found = _search_all(client.search_runs, [experiment_id], _CHILDREN, order_by=newest)
    return [r for r in found if r.data.tags.get("config_hash") in config_hashes]


def reopen_parent_run(uri: str, run_id: str, tags: dict[str, str], orphans: list[str]) -> None:
    """A resumed sweep: end its ``orphans`` (runs left RUNNING by a killed job) KILLED and set
    the parent RUNNING again, with ``tags``."""
    from mlflow.entities import RunTag

    client = mlflow_client(uri)
    for orphan in orphans:
        client.set_terminated(orphan, "KILLED")
    client.update_run(run_id, status="RUNNING")
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])


def browse_hint(uri: str) -> str:
    """How to look at the runs in ``uri``: the server's own UI, or a local one on the store."""
    if uri.lower().startswith("http"):
        return f"open {uri} in a browser"
    return f"mlflow ui --backend-store-uri {uri}"


# Writer processes ---------------------------------------------------------------------------
#
# A resident writer server imports MLflow once (≈ 2 s) and forks a writer for every training
# process that connects, so a run started after another pays no start-up.  There is one
# server per user, Python environment, Slurm job and version of this file (its socket is
# named after them); it exits when BPLAB_WRITER_IDLE_SECONDS (default 300; 0: at once)
# pass without a new connection.  A writer serves one run after another until its training
# process goes away (a sweep's jobs in one process share it), with that process's
# environment, working directory, umask, CPU affinity (``taskset``, ``srun --cpu-bind``) and
# stderr.
#
# The server runs as ``python -c _SERVE …``, not as a multiprocessing child: "spawn" inside
# a joblib (loky) worker fails ("cannot find context for 'loky'"), daemonic workers may not
# have children, and spawn re-imports the caller's __main__ (the Hydra app, ≈ 0.4 s).

_IDLE_VARIABLE = "BPLAB_WRITER_IDLE_SECONDS"
# Forking is safe in a single-threaded process: no BLAS worker threads, no background thread
# of the jemalloc that pyarrow (imported by MLflow through pandas) brings along.
_SINGLE_THREADED = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "JE_ARROW_MALLOC_CONF": "background_thread:false",
}
_WRITER_MODULES = (
    "mlflow.tracking",
    "mlflow.store.tracking.sqlalchemy_store",  # sqlite, postgresql
    "mlflow.store.tracking.rest_store",  # http
    "mlflow.store.artifact.local_artifact_repo",
    "mlflow.store.artifact.mlflow_artifacts_repo",  # a server's proxied artifacts
)
# sys.path[0] of ``python -c`` is the cwd: the project root replaces it
_SERVE = "import sys; sys.path[0] = sys.argv[3]; from experiments.tracking import _serve; "
_SERVE += "_serve(sys.argv[1], float(sys.argv[2]))"


def _wake(signum: int, frame: object) -> None:
    """The writer server's SIGTERM handler: the signal's byte on the wake-up pipe stops it."""


def _serve(path: str, idle: float) -> None:
    """The writer server: listen on ``path``, import MLflow, fork a writer per connection."""
    socket_path = Path(path)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)  # the starter holds the lock and has removed a stale socket
    listener.listen(64)
    if os.fork():  # the starter waits for this exit: connections queue from now on
        os._exit(0)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps finished writers
    # SIGTERM (a stop request) wakes the loop below through a pipe.  A handler that raised
    # instead could raise inside os.fork()'s at-fork hooks, which swallow exceptions: the
    # writer of a stop request signals at once, so the server lived on.
    wake = os.pipe()
    os.set_blocking(wake[1], False)
    signal.set_wakeup_fd(wake[1])
    signal.signal(signal.SIGTERM, _wake)
    for module in _WRITER_MODULES:  # imported once, for every writer
        importlib.import_module(module)
    while select.select([listener, wake[0]], [], [], idle)[0] == [listener]:
        _fork_writer(listener, wake)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stopped, or idle: leaving
    with _locked(socket_path):  # nobody connects while the server leaves
        socket_path.unlink(missing_ok=True)
        socket_path.with_suffix(".log").unlink(missing_ok=True)  # kept only if it failed
    listener.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:  # serve whoever connected before the unlink
            _fork_writer(listener, wake)
    os._exit(0)  # skip the ≈ 0.7 s teardown of MLflow's modules


def _fork_writer(listener: socket.socket, wake: tuple[int, int]) -> None:
    """Accept one connection and fork a writer for it."""
    sock, _ = listener.accept()
    server = os.getpid()
    if os.fork() == 0:
        listener.close()
        signal.set_wakeup_fd(-1)
        for fd in wake:
            os.close(fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _writer(sock, server)
    sock.close()


def _writer(sock: socket.socket, server: int) -> None:
    """Take on the training process's stderr, environment, directory, umask and CPUs; serve
    its runs."""
    try:
        _, fds, _, _ = socket.recv_fds(sock, 1, 1)
        os.dup2(fds[0], 2)
        os.close(fds[0])
        conn = Connection(sock.detach())
        request, caller = conn.recv()
        if request == "stop":
            if os.getppid() == server:  # not if it left meanwhile (our parent is then init)
                os.kill(server, signal.SIGTERM)
            return
        os.environ.clear()
        os.environ.update(caller["environment"])
        os.umask(caller["umask"])
        with contextlib.suppress(OSError):  # CPUs outside the server's cgroup: keep its own
            os.sched_setaffinity(0, caller["cpus"])
        with contextlib.suppress(OSError):
            os.chdir(caller["cwd"])
        while _write_run(conn):
            pass
    except (EOFError, OSError, ValueError):  # the training process went away early
        pass
    finally:  # every write is committed: skip the teardown of MLflow's modules
        sys.stderr.flush()
        os._exit(0)


def _server_socket() -> Path:
    """The writer server's socket for this user, Python environment, MLflow install, Slurm
    job and version of this file."""
    folder = Path(tempfile.gettempdir()) / f"bplab-writers-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise TrackingError(f"{folder} is not private to you (mode 700): remove it")
    spec = importlib.util.find_spec("mlflow")
    installed = Path(spec.origin).stat().st_mtime_ns if spec and spec.origin else 0
    # a Slurm job's processes are killed when it ends: its writers must not serve other jobs
    job = os.environ.get("SLURM_JOB_ID", "")
    identity = f"{Path(sys.prefix).resolve()}|{PROJECT_ROOT}|{installed}|{job}|".encode()
    digest = hashlib.sha256(identity + Path(__file__).read_bytes()).hexdigest()
    return folder / f"{digest[:16]}.sock"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold the writer server's lock: one starts it, one stops it, at a time."""
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _connect(path: Path) -> socket.socket | None:
    """A connection to the server at ``path``, or None if none runs there."""
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.connect(str(path))
        return sock
    except FileNotFoundError:
        pass
    except ConnectionRefusedError:  # a server that was killed left its socket
        path.unlink(missing_ok=True)
    sock.close()
    return None


def _idle_seconds() -> float:
    raw = os.environ.get(_IDLE_VARIABLE, "300")
    try:
        idle = float(raw)
    except ValueError:
        idle = -1.0
    if not 0 <= idle < float("inf"):
        raise TrackingError(f"{_IDLE_VARIABLE}={raw!r}: use a number of seconds ≥ 0")
    return idle


def _new_writer() -> Connection:
    """A writer forked for this process by the writer server, which is started if needed."""
    idle = _idle_seconds()
    path = _server_socket()
    with _locked(path):
        sock = _connect(path)
        if sock is None:
            log = path.with_suffix(".log")
            with open(log, "wb") as stderr:
                command = [sys.executable, "-c", _SERVE, str(path), str(idle), str(PROJECT_ROOT)]
                try:
                    subprocess.run(
                        command,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=stderr,
                        env=os.environ | _SINGLE_THREADED,
                        cwd="/",
                        start_new_session=True,  # a Ctrl-C of our process group spares it
                        timeout=60,
                        check=False,
                    )
                except (OSError, subprocess.TimeoutExpired) as e:
                    raise TrackingError(f"cannot start the MLflow writer server: {e}") from None
            sock = _connect(path)
            if sock is None:
                raise TrackingError(f"the MLflow writer server did not start (see {log})")
    umask = os.umask(0o077)  # reading it means setting it
    os.umask(umask)
    caller = {
        "environment": dict(os.environ),
        "cwd": os.getcwd(),
        "umask": umask,
        "cpus": os.sched_getaffinity(0),
    }
    return _handshake(sock, ("serve", caller))


def _handshake(sock: socket.socket, request: tuple[str, dict[str, Any]]) -> Connection:
    """Send our stderr (the writer writes its warnings where we do) and ``request``."""
    socket.send_fds(sock, [b"."], [2])
    conn = Connection(sock.detach())
    conn.send(request)
    return conn


def stop_writer_server() -> None:
    """Stop this checkout's writer server (writers serving runs finish them)."""
    path = _server_socket()
    with _locked(path):
        sock = _connect(path)
        if sock is None:
            return
        _handshake(sock, ("stop", {})).close()
    deadline = time.monotonic() + 60  # a server still importing MLflow answers after it
    while path.exists():  # it removes its socket as it leaves
        if time.monotonic() > deadline:
            raise TrackingError(f"the MLflow writer server at {path} did not stop in 60 s")
        time.sleep(0.05)


def _write_run(conn: Connection) -> bool:
    """Create one run, batch its metrics into log_batch until told to end; False: stop serving."""
    try:
        uri, experiment, run_name, params, tags = conn.recv()
    except EOFError:
        return False
    run_id, gone = None, False
    try:
        from mlflow.entities import Metric, Param, RunTag

        client = mlflow_client(uri)
        experiment_id = experiment.get("id") or prepare_experiment(uri, experiment["name"])
        info = client.create_run(experiment_id, run_name=run_name, tags=tags).info
        run_id = info.run_id
        client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
        conn.send(("ready", (run_id, os.getpid(), _local_folder(info.artifact_uri, uri))))
        pending: list[Metric] = []
        keys: tuple[str, ...] = ()
        # A log_batch call costs ≈ 8 ms plus ≈ 0.075 ms per metric.  Write a full batch when
        # training is ahead, ≥ _MIN_BATCH metrics when caught up (little is left to write
        # when the run ends), anything after a lull, and all before tags, artifacts or the end.
        while True:
            caught_up = len(pending) >= _MIN_BATCH and not conn.poll(0)
            if len(pending) >= _BATCH or caught_up or (pending and not conn.poll(_LULL_SECONDS)):
                client.log_batch(run_id, metrics=pending[:_BATCH])
                del pending[:_BATCH]
                continue
            try:
                kind, *args = conn.recv()
            except EOFError:  # the training process vanished without end()
                kind, args, gone = "end", ["KILLED"], True
            if kind == "metrics":
                step, timestamp, new_keys, values = args
                keys = keys if new_keys is None else new_keys
                pending.extend(
                    Metric(k, v, timestamp, step) for k, v in zip(keys, values, strict=True)
                )
                continue
            new_tags = [RunTag(k, v) for k, v in args[0].items()] if kind == "tags" else []
            _log_batches(client, run_id, pending, new_tags)
            pending.clear()
            if kind == "artifacts":
                if not Path(args[0]).is_dir():  # MLflow would upload nothing, silently
                    raise FileNotFoundError(f"artifact folder {args[0]} is gone")
                client.log_artifacts(run_id, *args)
            elif kind == "end":
                client.set_terminated(run_id, args[0])
                with contextlib.suppress(OSError):  # nobody listens after EOF
                    conn.send(("done", None))
                return not gone
    except Exception as e:
        if run_id is not None:
            with contextlib.suppress(Exception):
                client.set_terminated(run_id, "FAILED")
        with contextlib.suppress(OSError):
            why = describe_failure(uri, e)
            conn.send(("error", f"MLflow writer of run {run_name!r} failed: {why}"))
    return False


def _local_folder(artifact_uri: str, tracking_uri: str) -> str | None:
    """The run's artifact folder if MLflow keeps its artifacts on this machine, else None."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    repository = get_artifact_repository(artifact_uri, tracking_uri=tracking_uri)
    if not isinstance(repository, LocalArtifactRepository):
        return None
    return str(Path(repository.artifact_dir).absolute())


def _log_batches(client: Any, run_id: str, metrics: list[Any], tags: list[Any]) -> None:
    """As few log_batch calls as MLflow's limit of 1000 entries per call allows."""
    while len(metrics) + len(tags) > _BATCH:
        client.log_batch(run_id, metrics=metrics[:_BATCH])
        metrics = metrics[_BATCH:]
    if metrics or tags:
        client.log_batch(run_id, metrics=metrics, tags=tags)


# Writers whose run ended cleanly, kept for the next run of this process.
_SPARE_WRITERS: list[Connection] = []


def _writer_connection() -> Connection:
    """A spare writer of this process if one is alive, else a new one."""
    while _SPARE_WRITERS:
        conn = _SPARE_WRITERS.pop()
        if not conn.poll():  # a live writer is silent; a dead one's socket reads EOF
            return conn
        conn.close()
    return _new_writer()


def close_spare_writers() -> None:
    """Let this process's idle writers exit (the next run gets a new one)."""
    while _SPARE_WRITERS:
        _SPARE_WRITERS.pop().close()


class RunTracker:
    """One MLflow run, written by a separate process; this side only pickles and sends.

    ``wait=False`` returns at once and lets training overlap the writer's start-up (≈ 0.2 s
    to create the run; ≈ 2 s more when the writer server must start and import MLflow);
    ``run_id`` then waits for it when first read, and a start-up error surfaces at the next
    call.  ``experiment`` is ``{"id": …}``, or ``{"name": …}`` for the writer to prepare it
    (a single run: this process then never imports MLflow).
    """

    def __init__(
        self,
        uri: str,
        experiment: dict[str, str],
        run_name: str,
        *,
        parent_run_id: str | None,
        params: dict[str, str],
        tags: dict[str, str],
        wait: bool = True,
    ) -> None:
        check_tracking_uri(uri)
        tags = {"mlflow.source.name": sys.argv[0], "mlflow.source.type": "LOCAL", **tags}
        if parent_run_id is not None:
            tags["mlflow.parentRunId"] = parent_run_id
        params = {k: str(v) for k, v in params.items()}
        self._run_name, self._run_id, self._error = run_name, "", ""
        self._ended = False
        self._keys: tuple[str, ...] = ()  # the keys of the last log_metrics
        self._checked: set[str] = set()  # valid metric keys
        self._backlog: list[tuple[object, ...]] = []
        self._writer_pid = 0
        self._local_artifacts: str | None = None  # the run's artifact folder in a local store
        self._uploads: list[Path] = []  # temporary folders the writer uploads before end()
        self._conn = _writer_connection()
        self._conn.send((uri, experiment, run_name, params, tags))
        atexit.register(self._at_exit)
        if wait:
            _ = self.run_id

    def _wait_ready(self) -> None:
        if not self._run_id and not self._error:
            if self._conn.poll(60):
                self._receive()
            else:
                self._error = f"MLflow writer of run {self._run_name!r} did not start in 60 s"

    @property
    def run_id(self) -> str:
        """The run's id, waiting (≤ 60 s) for the writer to create the run."""
        self._wait_ready()
        if not self._run_id:
            with contextlib.suppress(TrackingError):
                self.end()  # stops the writer
            raise TrackingError(self._error)
        return self._run_id

    def _receive(self) -> str:
        """Take one report of the writer: its run id, an error (a closed pipe included), done."""
        try:
            kind, value = self._conn.recv()
        except (EOFError, OSError):
            kind, value = "error", "MLflow writer process died"
        if kind == "ready":
            self._run_id, self._writer_pid, self._local_artifacts = value
        elif kind == "error":
            self._error = self._error or str(value)
        return str(kind)

    def _send(self, message: tuple[object, ...]) -> None:
        if self._ended:
            raise TrackingError(f"run {self._run_name!r} has already ended")
        while not self._error and self._conn.poll():  # a report, or EOF if the writer died
            self._receive()
        if self._error:
            raise TrackingError(self._error)
        self._backlog.append(message)
        if not self._run_id:  # the writer is starting: queue here, a socket holds ~100 messages
            return
        try:
            for queued in self._backlog:
                self._conn.send(queued)
        except OSError:
            self._receive()
            raise TrackingError(self._error) from None
        self._backlog.clear()

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        """Queue metrics for the writer; NaN is kept, MLflow stores ±inf as ±1.797e308."""
        keys = tuple(metrics)
        if keys != self._keys:  # other keys than last time: send them, check new ones
            for key in set(keys) - self._checked:
                if not _KEY.fullmatch(key) or posixpath.normpath(key) != key or key[0] == "/":
                    raise TrackingError(f"invalid metric key {key!r}: use [/\\w.\\- ], ≤ 250 chars")
                self._checked.add(key)
        values = [float(v) for v in metrics.values()]
        new_keys = keys if keys != self._keys else None
        self._send(("metrics", int(step), int(time.time() * 1000), new_keys, values))
        self._keys = keys

    def set_tags(self, tags: dict[str, str]) -> None:
        self._send(("tags", {k: str(v) for k, v in tags.items()}))

    def log_artifacts(self, folder: str | Path, artifact_path: str | None = None) -> None:
        """Upload the files in ``folder`` (one store call); the writer does it later, so the
        files must stay in place until ``end()``."""
        self._send(("artifacts", str(Path(folder).absolute()), artifact_path))

    @contextlib.contextmanager
    def artifact_folder(self) -> Iterator[Path]:
        """A folder for the run's files.  In a local artifact store it is the run's own
        folder: files are written in place, never copied.  Otherwise it is a temporary
        folder, uploaded by the writer when the block exits and removed at ``end()``."""
        _ = self.run_id  # the writer has reported where the run's artifacts live
        if self._local_artifacts:
            folder = Path(self._local_artifacts)
            folder.mkdir(parents=True, exist_ok=True)
            yield folder
            return
        folder = Path(tempfile.mkdtemp(prefix="bplab-artifacts-"))
        self._uploads.append(folder)
        yield folder
        self.log_artifacts(folder)

    def end(self, status: str = "FINISHED") -> None:
        """Flush, mark the run ``status`` and stop the writer; TrackingError if a write failed.

        After a failure the writer has already tried to mark the run FAILED.
        """
        if self._ended:
            return
        reply = ""
        try:
            self._wait_ready()
            self._send(("end", status))
            while (reply := self._receive()) not in ("done", "error"):  # dead writer: EOF
                pass
        except TrackingError:
            pass
        finally:
            self._ended = True
            atexit.unregister(self._at_exit)
            for folder in self._uploads:  # uploaded, or the run failed
                shutil.rmtree(folder, ignore_errors=True)
            if reply == "done" and not self._error:
                _SPARE_WRITERS.append(self._conn)  # serves this process's next run
            else:
                self._conn.close()  # EOF: the writer exits
        if self._error:
            raise TrackingError(self._error)

    def _at_exit(self) -> None:
        with contextlib.suppress(TrackingError):
            self.end("FAILED")  # the interpreter exits without end(): something went wrong

    def __enter__(self) -> RunTracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Never swallows the exception: the run ends KILLED (Ctrl-C, or SystemExit with a
        signal's code ≥ 128), FINISHED (SystemExit 0) or FAILED."""
        if exc is None:
            return self.end()
        code = exc.code if isinstance(exc, SystemExit) else 1
        if isinstance(exc, KeyboardInterrupt) or (isinstance(code, int) and code >= 128):
            status = "KILLED"
        else:
            status = "FINISHED" if code in (None, 0) else "FAILED"
        try:
            if status == "FAILED":
                self.set_tags({"error": f"{type(exc).__name__}: {exc}"[:5000]})
            self.end(status)
        except TrackingError as e:  # do not mask the exception on its way up (nor repeat it)
            if str(e) != str(exc):
                print(f"tracking: {e}", file=sys.stderr)


class NullTracker:
    """The RunTracker interface, doing nothing (mlflow.enabled=false)."""

    run_id: str | None = None

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_artifacts(self, folder: str | Path, artifact_path: str | None = None) -> None:
        pass

    def end(self, status: str = "FINISHED") -> None:
        pass

    def __enter__(self) -> NullTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


# Reading runs back (figures) ------------------------------------------------------------------

_FINISHED = "attributes.status = 'FINISHED'"
_PARENTLESS = "tags.mlflow.parentRunId IS NULL"
_CHILDREN = "tags.mlflow.parentRunId IS NOT NULL"


def _search_all(search: Any, *args: Any, **kwargs: Any) -> list[Any]:
    """Every page of an MLflow search."""
    items: list[Any] = []
    token = None
    while True:
        page = search(*args, page_token=token, **kwargs)
        items.extend(page)
        token = page.token
        if not token:
            return items


def _latest_sweep(client: Any, experiment_ids: list[str]) -> Run | None:
    """The most recently started run without a parent that has children."""
    order = ["attributes.start_time DESC"]
    for run in _search_all(client.search_runs, experiment_ids, _PARENTLESS, order_by=order):
        if client.search_runs(
            [run.info.experiment_id], _children_of(run.info.run_id), max_results=1
        ):
            return run  # type: ignore[no-any-return]
    return None


def _check_store_exists(uri: str) -> None:
    """A sqlite store must exist (MLflow would create an empty one); a server must answer."""
    if uri.lower().startswith("sqlite:"):
        path = _sqlite_path(uri)
        if not path.is_file():
            raise TrackingError(f"no MLflow store at {path} (tracking URI {uri})")
        return
    check_tracking_uri(uri)


def select_runs(
    uri: str, experiment: str | None, sweep: str | None, where: str
) -> tuple[str, str | None, list[Run]]:
    """(experiment name, shared parent run id or None, FINISHED runs with a config) for a sweep
    id, an experiment's most recent sweep, or the store's most recent sweep; ``where`` is an
    MLflow search filter on top.  TrackingError when nothing matches."""
    from mlflow.exceptions import MlflowException

    _check_store_exists(uri)
    client = mlflow_client(uri)
    found = None
    if sweep:
        try:
            parent = client.get_run(sweep)
        except MlflowException:
            raise TrackingError(f"no run {sweep!r} in {uri}") from None
        what = f"sweep {sweep}"
    elif experiment:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise TrackingError(f"no experiment {experiment!r} in {uri}")
        parent = None if where else _latest_sweep(client, [found.experiment_id])
        what = f"experiment {experiment!r}"
        if not where:
            if parent is None:
                raise TrackingError(
                    f"experiment {experiment!r} in {uri} has no sweep; use --filter"
                )
            what += f" (its most recent sweep, {parent.info.run_id})"
    else:
        all_ids = [e.experiment_id for e in _search_all(client.search_experiments)]
        parent = _latest_sweep(client, all_ids)
        if parent is None:
            raise TrackingError(f"no sweep (a parent run with child runs) in {uri}")
        what = f"the most recent sweep ({parent.info.run_id})"
    base = _children_of(parent.info.run_id) if parent else ""
    if parent is not None:
        experiment_id = parent.info.experiment_id
    else:  # --experiment with --filter: all of the experiment's runs
        assert found is not None
        experiment_id = found.experiment_id
    query = " and ".join(q for q in (base, _FINISHED, where) if q)
    try:
        order = ["attributes.start_time"]
        runs = _search_all(client.search_runs, [experiment_id], query, order_by=order)
    except MlflowException as e:
        raise TrackingError(f"bad --filter {where!r} for {uri}: {e.message}") from None
    runs = [r for r in runs if r.data.params]  # a parent run has no config
    if not runs:
        having = f" matching {where!r}" if where else ""
        raise TrackingError(f"no FINISHED runs in {uri} for {what}{having}")
    parents = {r.data.tags.get("mlflow.parentRunId") for r in runs}
    parent_id = parents.pop() if len(parents) == 1 else None
    return client.get_experiment(experiment_id).name, parent_id, runs


def fetch_artifact(uri: str, artifact_uri: str, name: str, folder: Path) -> str:
    """Download one artifact of a run into ``folder``, from the run's artifact URI (the run-id
    form queries the run twice more and looks for logged models: 10x slower for 100 runs)."""
    from mlflow.artifacts import download_artifacts

    folder.mkdir(parents=True, exist_ok=True)
    source = f"{artifact_uri}/{name}"
    return str(download_artifacts(artifact_uri=source, dst_path=str(folder), tracking_uri=uri))


def log_files(uri: str, run_id: str, paths: list[Path], folder: str) -> None:
    """Log ``paths`` as artifacts of ``run_id`` under ``folder``."""
    client = mlflow_client(uri)
    try:
        for path in paths:
            client.log_artifact(run_id, str(path), folder)
    except Exception as e:
        raise TrackingError(f"cannot log the files to run {run_id}: {e}") from None
