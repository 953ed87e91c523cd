"""The MLflow store: check a tracking URI, create experiments, open and close a sweep's parent
run, find the runs of a sweep's jobs.  Every function takes the tracking URI; MLflow is
imported on first use (≈ 2 s), so a command that fails a check never pays it.

HTTP stores: MLflow retries for minutes by default; ``check_tracking_uri`` sets (only if
unset) ``MLFLOW_HTTP_REQUEST_MAX_RETRIES=2``, ``…_BACKOFF_FACTOR=1`` and ``…_TIMEOUT=10``
so that a lost server surfaces in seconds (the writer process inherits the environment).
Database stores: MLflow tries to connect 10 times over ≈ 100 s; ``database_problem`` tries
once, for at most ``PGCONNECT_TIMEOUT`` seconds (set to 5 if unset).

Sqlite stores: MLflow creates and migrates a store's schema when a process first opens it, and
that is not safe across processes (two commands started at once left half-migrated schemas).
``mlflow_client`` opens a sqlite store holding ``<db>.lock`` beside it, an flock every process
of the suite takes (training process, writer, sweep callback, plots); it is released when
MLflow is done with the schema, or when the process dies.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import sqlite3
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments import PROJECT_ROOT
from experiments.tracking.owner import OWNER_TAG, owners_gone

if TYPE_CHECKING:
    from mlflow.entities import Run

ALLOWED_SCHEMES = ("sqlite", "postgresql", "http", "https")
_ALLOWED = "sqlite:///<path>, postgresql[+driver]://…, http(s)://<server>"
_HTTP_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
_CHILDREN = "tags.mlflow.parentRunId IS NOT NULL"
_CHECK_URI = "check --tracking-uri or $MLFLOW_TRACKING_URI"
_SQLITE_HEADER = b"SQLite format 3\x00"  # the first bytes of every sqlite database file
LOCK_SECONDS = 60.0  # to wait for another process to create or migrate a sqlite store
NOTE = "mlflow.note.content"  # MLflow's tag for the description of a run or an experiment


class TrackingError(RuntimeError):
    """A tracking failure, with a message meant to be shown as is."""


def default_tracking_uri(configured: str | None = None) -> str:
    """``configured`` if given, else $MLFLOW_TRACKING_URI, else the sqlite store at the project
    root (wherever launched)."""
    fallback = f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or fallback


def sqlite_path(uri: str) -> Path:
    """The db file of ``sqlite:///relative.db`` or ``sqlite:////absolute/path.db``."""
    path = uri.partition(":///")[2].partition("?")[0]
    if not path or path == ":memory:":
        raise TrackingError(f"tracking URI {uri!r}: an in-memory store cannot be shared")
    return Path(path).expanduser().absolute()


def _scheme(uri: str) -> str:
    head, sep, _ = uri.partition("://")
    return head.lower().split("+")[0] if sep else ""


def masked(uri: str) -> str:
    """``uri`` with its password, if any, shown as ***."""
    password = urllib.parse.urlsplit(uri).password if _scheme(uri) != "sqlite" else None
    return uri.replace(f":{password}@", ":***@", 1) if password else uri


def uri_problem(uri: str) -> str | None:
    """What is wrong with ``uri`` as a tracking URI, found without touching anything: a store
    MLflow 3 cannot write (or the file store it refuses), or a password in it; else None."""
    scheme = _scheme(uri)
    if scheme not in ALLOWED_SCHEMES:
        why = " (MLflow ≥ 3.13 refuses the file store)" if scheme in ("", "file") else ""
        return f"not supported{why}; use {_ALLOWED}"
    if masked(uri) != uri:  # it would be printed, and logged as the param mlflow.tracking_uri
        return (
            "contains a password: put credentials in MLFLOW_TRACKING_USERNAME / "
            "MLFLOW_TRACKING_PASSWORD (server) or PGPASSWORD / ~/.pgpass (postgresql), "
            "never in the URI"
        )
    return None


def check_tracking_uri(uri: str) -> None:
    """Refuse a store that cannot take runs within seconds, with one message: ``uri_problem``,
    then make a sqlite store's folder, probe a server or connect to a database once."""
    problem = uri_problem(uri)
    if problem:
        raise TrackingError(f"tracking URI {masked(uri)!r} {problem}")
    scheme = _scheme(uri)
    if scheme == "sqlite":
        path = sqlite_path(uri)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            why = f"cannot create {path.parent} ({e})"
            raise TrackingError(f"tracking URI {uri!r}: {why}") from None
        problem = _sqlite_problem(path)
        problem = problem and f"tracking URI {uri!r}: {problem}"
    elif scheme in ("http", "https"):
        for key, value in _HTTP_ENV.items():
            os.environ.setdefault(key, value)
        problem = _server_problem(uri)
    elif scheme == "postgresql":
        problem = database_problem(uri)
    if problem:
        raise TrackingError(problem)


def _sqlite_problem(path: Path) -> str | None:
    """Why the sqlite store ``path`` cannot take runs, seen without opening it, or None."""
    if not os.access(path.parent, os.W_OK | os.X_OK):  # its lock and journal files go there
        return f"cannot write in {path.parent} (read-only?)"
    if not path.exists():
        return None
    try:  # (closing it would drop this process's sqlite locks: it is never inside a transaction)
        with path.open("r+b") as db:
            head = db.read(len(_SQLITE_HEADER))
    except OSError as e:
        return f"cannot write {path} ({e.strerror})"
    if head and head != _SQLITE_HEADER:  # an empty file is a new database
        return f"{path} is not an SQLite database"
    return None


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


def sqlite_problem(uri: str) -> str | None:
    """Why the sqlite store of ``uri`` cannot be read as an MLflow store (missing, not a
    database, no MLflow tables: MLflow would create them, in whatever file it is), or None.
    Reads only, without MLflow."""
    path = sqlite_path(uri)
    if not path.is_file():
        return f"no MLflow store at {path} (tracking URI {uri})"
    try:
        with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error as e:
        return f"{path} cannot be read as an MLflow store ({e}); {_CHECK_URI}"
    if "experiments" not in tables:
        return f"{path} is not an MLflow store (it has no MLflow tables); {_CHECK_URI}"
    return None


def database_problem(uri: str) -> str | None:
    """Why a ``postgresql://`` store cannot be connected to (one attempt, of at most
    ``PGCONNECT_TIMEOUT`` seconds), or None."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    os.environ.setdefault("PGCONNECT_TIMEOUT", "5")
    try:
        sqlalchemy.create_engine(uri, poolclass=NullPool).connect().close()
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as e:  # ImportError: no such driver
        return f"cannot connect to the MLflow store {masked(uri)}: {describe_failure(uri, e)}"
    return None


def describe_failure(uri: str, error: Exception) -> str:
    """One line for a failed MLflow call: a server that stopped answering is named as such
    (MLflow's own message is a page of retry details); a database error is the driver's
    message, without SQLAlchemy's statement and links."""
    if uri.lower().startswith("http"):
        problem = _server_problem(uri)
        if problem:
            return problem.replace(" is not reachable", " stopped answering")
    cause: BaseException | None = error
    while cause is not None and getattr(cause, "orig", None) is None:  # MLflow wraps SQLAlchemy's
        cause = cause.__cause__ or cause.__context__
    message = " ".join(str(getattr(cause, "orig", None) or error).split())
    if "disk is full" in message or getattr(error, "errno", None) == errno.ENOSPC:
        where = sqlite_path(uri).parent if _scheme(uri) == "sqlite" else "the database server"
        message += f": free space on the disk of {where}, then run again"
    return message


def _below_error(record: logging.LogRecord) -> bool:
    """MLflow logs each failed database call at ERROR with its traceback and SQL (hundreds of
    lines on a full disk); the caller reports the failure in one line (``describe_failure``)."""
    return record.levelno < logging.ERROR


def mlflow_client(uri: str) -> Any:
    """An MlflowClient for ``uri`` (MLflow is imported on first use: ≈ 2 s).  Creating it
    opens the store, which MLflow creates or migrates if needed: a sqlite store's lock is
    held meanwhile (TrackingError if another process holds it for LOCK_SECONDS)."""
    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow.store.db.utils").addFilter(_below_error)
    if _scheme(uri) != "sqlite":
        return MlflowClient(tracking_uri=uri)
    from filelock import FileLock, Timeout  # ≈ 0.1 s: only where MLflow is imported anyway

    path = sqlite_path(uri)
    lock = FileLock(f"{path}.lock")
    try:
        lock.acquire(timeout=LOCK_SECONDS)
    except Timeout:
        why = f"another process has held its lock for {LOCK_SECONDS:.0f} s"
        raise TrackingError(f"cannot open the store {path}: {why}") from None
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):  # a folder we cannot write in:
            return MlflowClient(tracking_uri=uri)  # we cannot create or migrate the store either
        raise TrackingError(f"cannot lock the store {path}: {e}") from None
    try:
        return MlflowClient(tracking_uri=uri)
    finally:
        lock.release()


def prepare_experiment(uri: str, name: str) -> str:
    """Create the store (schema migrations) and the experiment if missing; return its id.

    Safe in several processes at once: the store is created under its lock (``mlflow_client``),
    and an experiment another process created meanwhile is looked up again.  Sqlite experiments
    keep artifacts beside the store (<db dir>/mlartifacts/<name>), not in ./mlruns of whatever
    directory a job runs in.
    """
    check_tracking_uri(uri)  # fails in seconds, before MLflow's ≈ 2 s import
    from mlflow.exceptions import MlflowException

    client = mlflow_client(uri)
    end_orphaned_runs(client)
    location = None
    if uri.lower().startswith("sqlite"):
        folder = re.sub(r"[^\w.\-]+", "_", name).strip("._") or "experiment"
        location = (sqlite_path(uri).parent / "mlartifacts" / folder).as_uri()
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


def end_orphaned_runs(client: Any) -> None:
    """End FAILED, with the tag ``error``, every RUNNING run of the store whose processes have
    all died on this host (``experiments.tracking.owner``): no one else would ever end it.  A
    store this process cannot write keeps them."""
    from mlflow.exceptions import MlflowException

    experiments = [e.experiment_id for e in search_all(client.search_experiments)]
    running = f"attributes.status = 'RUNNING' and tags.{OWNER_TAG} IS NOT NULL"
    found = search_all(client.search_runs, experiments, running) if experiments else []
    for run in found:
        owner = run.data.tags[OWNER_TAG]
        if not owners_gone(owner):
            continue
        why = f"the processes of the run ({owner}) died while it was RUNNING; ended FAILED"
        with contextlib.suppress(MlflowException):
            client.set_tag(run.info.run_id, "error", f"{why} by the next command on the store")
            client.set_terminated(run.info.run_id, "FAILED")


def start_parent_run(uri: str, experiment_id: str, run_name: str, tags: dict[str, str]) -> str:
    """Create a RUNNING parent run (of a sweep) and return its id."""
    return str(
        mlflow_client(uri).create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
    )


def fail_run(uri: str, run_id: str, error: str) -> None:
    """End a run FAILED with the tag ``error`` (its writer is gone); TrackingError (one line)
    when the store cannot be reached."""
    from mlflow.exceptions import MlflowException

    try:
        set_tags(uri, run_id, {"error": error})
        mlflow_client(uri).set_terminated(run_id, "FAILED")
    except MlflowException as e:
        raise TrackingError(describe_failure(uri, e)) from None


def children_of(run_id: str) -> str:
    """The MLflow search filter for the child runs of ``run_id``."""
    return f"tags.mlflow.parentRunId = '{run_id}'"


def child_runs(uri: str, parent_run_id: str, experiment_id: str | None = None) -> list[Run]:
    """Runs tagged ``mlflow.parentRunId == parent_run_id``, oldest first (the parent's
    experiment is looked up unless given)."""
    client = mlflow_client(uri)
    if experiment_id is None:
        experiment_id = client.get_run(parent_run_id).info.experiment_id
    order = ["attributes.start_time ASC"]
    return search_all(
        client.search_runs, [experiment_id], children_of(parent_run_id), order_by=order
    )


def finish_parent_run(
    uri: str, run_id: str, config_hashes: list[str], cut_short: bool = False
) -> str:
    """End the parent FINISHED iff, for every job (its ``config_hash``), the latest child run of
    that job FINISHED; otherwise FAILED, or KILLED if the sweep was ``cut_short`` (Ctrl-C,
    SIGTERM, a crash of the launching process).  Earlier attempts (a job killed, then resumed)
    do not count.  Children still RUNNING (their jobs are over: the writer lost the store, or
    was killed with its worker, before it could end them) end FAILED, or KILLED if
    ``cut_short``, with the tag ``error``.  Returns the status; a parent that has already
    ended keeps its status.  TrackingError (one line) when the store cannot be reached.
    """
    from mlflow.exceptions import MlflowException

    client = mlflow_client(uri)
    try:
        parent = client.get_run(run_id).info
        if parent.status != "RUNNING":
            return str(parent.status)
        children = child_runs(uri, run_id, parent.experiment_id)
        unfinished = "KILLED" if cut_short else "FAILED"
        why = "the sweep was interrupted" if cut_short else "its job ended without ending it"
        for child in children:
            if child.info.status == "RUNNING":
                client.set_tag(child.info.run_id, "error", f"still RUNNING at the end: {why}")
                client.set_terminated(child.info.run_id, unfinished)
        latest = {c.data.tags.get("config_hash"): c.info.status for c in children}
        done = all(latest.get(job) == "FINISHED" for job in config_hashes)
        status = "FINISHED" if done else unfinished
        client.set_terminated(run_id, status)
    except MlflowException as e:
        raise TrackingError(describe_failure(uri, e)) from None
    return status


def job_attempts(uri: str, experiment_id: str, config_hashes: set[str]) -> list[Run]:
    """The child runs in the experiment of the jobs with these ``config_hash`` tags, newest
    first."""
    client = mlflow_client(uri)
    newest = ["attributes.start_time DESC"]
    found = search_all(client.search_runs, [experiment_id], _CHILDREN, order_by=newest)
    return [r for r in found if r.data.tags.get("config_hash") in config_hashes]


def reopen_parent_run(uri: str, run_id: str, tags: dict[str, str], orphans: list[str]) -> None:
    """A resumed sweep: end its ``orphans`` (runs left RUNNING by a killed job) KILLED and set
    the parent RUNNING again, with ``tags`` (and without the ``error`` of a parent that
    ``end_orphaned_runs`` ended)."""
    client = mlflow_client(uri)
    for orphan in orphans:
        client.set_terminated(orphan, "KILLED")
    if "error" in client.get_run(run_id).data.tags:
        client.delete_tag(run_id, "error")
    client.update_run(run_id, status="RUNNING")
    set_tags(uri, run_id, tags)


def log_text(uri: str, run_id: str, text: str, path: str) -> None:
    """Log ``text`` as the artifact file ``path`` of the run."""
    mlflow_client(uri).log_text(run_id, text, path)


def log_metrics(uri: str, run_id: str, metrics: dict[str, float]) -> None:
    """Log ``metrics`` to the run at step 0 (one call)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(k, v, now, 0) for k, v in metrics.items()]
    mlflow_client(uri).log_batch(run_id, metrics=batch)


def set_tags(uri: str, run_id: str, tags: dict[str, str]) -> None:
    """Set the run's ``tags`` (one call)."""
    from mlflow.entities import RunTag

    mlflow_client(uri).log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])


LOCAL_UI = "http://127.0.0.1:5000"  # where ``mlflow ui`` serves by default


def runs_url(ui: str, experiment_id: str) -> str:
    """The runs table of an experiment in MLflow's UI at ``ui`` (MLflow 3.17 opens in its GenAI
    mode, on a traces overview, unless the link asks for the runs)."""
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def browse_hint(uri: str, experiment_id: str) -> str:
    """How to look at the experiment's runs in ``uri``: the server's own UI, or a local one on
    the store, opened on the runs table."""
    if uri.lower().startswith("http"):
        return f"open {runs_url(uri, experiment_id)}"
    return f"mlflow ui --backend-store-uri {uri}\n  then open {runs_url(LOCAL_UI, experiment_id)}"


def describe_experiment(uri: str, experiment_id: str, text: str) -> None:
    """Give the experiment the description ``text`` (MLflow's experiment tag
    ``mlflow.note.content``) unless it has one: a description edited in the UI is kept."""
    client = mlflow_client(uri)
    if NOTE in client.get_experiment(experiment_id).tags:
        return
    try:
        client.set_experiment_tag(experiment_id, NOTE, text)
    except Exception:  # a command started at the same moment set it first (a UNIQUE conflict)
        if NOTE not in client.get_experiment(experiment_id).tags:
            raise


def search_all(search: Any, *args: Any, **kwargs: Any) -> list[Any]:
    """Every page of an MLflow search (``client.search_runs`` or ``search_experiments``)."""
    items: list[Any] = []
    token = None
    while True:
        page = search(*args, page_token=token, **kwargs)
        items.extend(page)
        token = page.token
        if not token:
            return items


def fetch_artifact(uri: str, artifact_uri: str, name: str, folder: Path) -> str:
    """Download one artifact of a run into ``folder``, from the run's artifact URI (the run-id
    form queries the run twice more and looks for logged models: 10x slower for 100 runs)."""
    from mlflow.artifacts import download_artifacts

    folder.mkdir(parents=True, exist_ok=True)
    source = f"{artifact_uri}/{name}"
    return str(download_artifacts(artifact_uri=source, dst_path=str(folder), tracking_uri=uri))
