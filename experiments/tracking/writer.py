"""The MLflow writer: a child process that writes the runs of one training process.

Why a process: on the sqlite store MLflow costs ≈ 0.1 ms of CPU per metric even batched, and
a depth-16 run logs ~120 metrics per diagnostics step, so writing from the training loop (or
from MLflow's async-logging thread, which holds the same GIL) slows training by a fifth or
more; ``benchmarks/bench_tracking.py`` measures both.  Here the training process only pickles
and sends; the writer batches into ``log_batch`` on the other core.

The first tracked run of a process starts its writer (``experiments.tracking.run``); later
runs of that process (a sweep's jobs) reuse it.  It imports MLflow (≈ 2 s) while training
starts.  Requests arrive on stdin, replies leave on the original stdout (fd 1 then points to
stderr, so nothing MLflow prints can corrupt them):

    ("run", uri, experiment, name, params, tags)  → ("ready", run_id, local artifact folder,
                                                      experiment id)
    ("keys", key_id, keys)                         the keys of later "metrics" with key_id
    ("metrics", key_id, step, timestamp_ms, values)
    ("tags", {key: value})
    ("artifacts", folder)                          upload, then remove, a temporary folder
    ("draw", "module:function")                    once the run has ended FINISHED
    ("end", status, deadline)                      → ("done", unwritten points)
    ("hurry", deadline)                            Ctrl-C while the training side waits

A reader thread takes requests off the pipe as they come, so the training process never
blocks on a full pipe and a deadline is seen at once.  Metrics go out 1000 at a time while
training is ahead, whatever has piled up (≥ 100) once caught up, anything after a lull of
0.5 s, and everything before tags, artifacts and the end.  A ``deadline`` (wall-clock seconds:
the run was interrupted) makes the writer drop what it has not written by then; the run ends
KILLED with the tag ``unwritten_points`` (its ``history.npz`` holds every point).

The writer ignores SIGINT, SIGTERM and SIGHUP: it ends when its training process does (EOF on
stdin, or a new parent process), ending a run still open KILLED after at most KILL_GRACE more
seconds of writing.  Each run it creates gets the tag ``owner`` (``experiments.tracking.owner``):
should both processes die at once, the next command on the store ends the run FAILED.  A
store error is reported as ("error", message); the writer then marks the run FAILED and exits
(the next run starts a new one).

"draw" names a function ``f(artifact folder, params, out folder)`` that writes the run's
figures: after replying "done" the writer calls it on the run's files and logs what it
wrote under ``figures/``, while the training process goes on (a failure only sets the run's
tag ``figures_error``).  The writer imports the function by name: tracking imports nothing
of the figures package.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from experiments.tracking.owner import OWNER_TAG, owner_tag, watch_parent
from experiments.tracking.store import describe_failure, mlflow_client, prepare_experiment
from experiments.tracking.timing import Phases

BATCH = 1000  # MLflow's limit of entries per log_batch
MIN_BATCH = 100  # about one diagnostics step of a deep net
LULL_SECONDS = 0.5  # a partial batch is written after this long without new requests
KILL_GRACE = 2.0  # seconds to go on writing after Ctrl-C, SIGTERM or the end of the process
Message = tuple[Any, ...]
PHASES = Phases()  # the figures' time, with BPLAB_TIMING set (experiments.tracking.timing)


class Inbox:
    """The requests of the training process, read off the pipe by a thread as they arrive.

    ``get`` returns the next request, None at EOF, or ``EMPTY`` after ``timeout`` seconds.
    ``deadline``: the earliest deadline of an "end" or "hurry" request not yet served.
    """

    EMPTY: Message = ("empty",)

    def __init__(self, conn: Connection) -> None:
        self.deadline: float | None = None
        self._queue: queue.SimpleQueue[Message | None] = queue.SimpleQueue()
        threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: Connection) -> None:
        while True:
            try:
                message: Message = conn.recv()
                if message[0] in ("end", "hurry") and message[-1]:
                    self._hurry(message[-1])
            except Exception:  # EOF, or a request cut short by Ctrl-C: the process is leaving
                self.close()
                return
            self._queue.put(message)

    def close(self) -> None:
        """As at EOF: the training process is gone."""
        self._hurry(time.time() + KILL_GRACE)
        self._queue.put(None)

    def _hurry(self, deadline: float) -> None:
        self.deadline = min(self.deadline or deadline, deadline)

    def get(self, timeout: float | None = None) -> Message | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return self.EMPTY

    def empty(self) -> bool:
        return self._queue.empty()

    def late(self) -> bool:
        """Past the deadline of an interrupted run: stop writing metrics."""
        return self.deadline is not None and time.time() >= self.deadline


class Metrics:
    """A run's metrics not yet written, and the count of those dropped after the deadline."""

    def __init__(self, client: Any, run_id: str, inbox: Inbox) -> None:
        from mlflow.entities import Metric

        self._metric = Metric
        self.client, self.run_id, self.inbox = client, run_id, inbox
        self.keys: dict[int, tuple[str, ...]] = {}
        self.pending: list[Any] = []
        self.unwritten = 0

    def add(self, key_id: int, step: int, timestamp: int, values: list[float]) -> None:
        if self.inbox.late():
            self.unwritten += len(values)
            return
        keys = self.keys[key_id]
        self.pending.extend(
            self._metric(k, v, timestamp, step) for k, v in zip(keys, values, strict=True)
        )

    def write(self, everything: bool = False) -> None:
        """Write full batches; with ``everything``, or once the inbox is empty and ≥ MIN_BATCH
        have piled up, the rest too."""
        while self.pending:
            if self.inbox.late():
                self.unwritten += len(self.pending)
                self.pending.clear()
                return
            caught_up = len(self.pending) >= MIN_BATCH and self.inbox.empty()
            if not (len(self.pending) >= BATCH or everything or caught_up):
                return
            self.client.log_batch(self.run_id, metrics=self.pending[:BATCH])
            del self.pending[:BATCH]


def local_folder(artifact_uri: str, tracking_uri: str) -> str | None:
    """The run's artifact folder if MLflow keeps its artifacts on this machine, else None."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    repository = get_artifact_repository(artifact_uri, tracking_uri=tracking_uri)
    if not isinstance(repository, LocalArtifactRepository):
        return None
    return str(Path(repository.artifact_dir).absolute())


def end_run(metrics: Metrics, status: str) -> None:
    """Write what is left (until the deadline), then end the run: KILLED if points are missing
    (a run that lost points never counts as FINISHED), with their number as a tag."""
    metrics.write(everything=True)
    if metrics.unwritten:
        status = "KILLED"
        metrics.client.set_tag(metrics.run_id, "unwritten_points", str(metrics.unwritten))
    metrics.client.set_terminated(metrics.run_id, status)


def draw_figures(
    client: Any, run_id: str, target: str, folder: str, params: dict[str, str]
) -> None:
    """Call ``target`` ("module:function") on the ended run's artifact ``folder`` and log the
    figures it writes under ``figures/``; a failure becomes the tag ``figures_error``."""
    try:
        with PHASES("figures"):
            module, _, name = target.partition(":")
            draw = getattr(importlib.import_module(module), name)
            with tempfile.TemporaryDirectory(prefix="bplab-figures-") as out:
                draw(Path(folder), params, Path(out))
                client.log_artifacts(run_id, out, "figures")
    except Exception as e:
        with contextlib.suppress(Exception):
            client.set_tag(run_id, "figures_error", f"{type(e).__name__}: {e}"[:5000])


@functools.cache
def _owner(*pids: int) -> str:
    """The ``owner`` tag, read once per writer (it runs ``ps``): its processes stay the same."""
    return owner_tag(*pids)


def write_run(request: Message, inbox: Inbox, reply: Connection) -> bool:
    """Create one run and write it until its "end"; False: stop serving (EOF or an error)."""
    from mlflow.entities import Param, RunTag

    uri, experiment, name, params, tags = request
    run_id = uploaded = None
    ended = False
    try:
        client = mlflow_client(uri)
        experiment_id = experiment.get("id") or prepare_experiment(uri, experiment["name"])
        tags |= {OWNER_TAG: _owner(os.getppid(), os.getpid())}  # training process, writer
        info = client.create_run(experiment_id, run_name=name, tags=tags).info
        run_id = info.run_id
        client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
        folder = local_folder(info.artifact_uri, uri)
        reply.send(("ready", run_id, folder, experiment_id))
        metrics = Metrics(client, run_id, inbox)
        drawing = ""  # "module:function" drawing the run's figures once it has ended
        while True:
            message = inbox.get(timeout=LULL_SECONDS if metrics.pending else None)
            if message is None:  # the training process is gone
                gone = "its training process stopped before it ended the run"
                client.set_tag(run_id, "error", gone)
                end_run(metrics, "KILLED")
                return False
            kind, *args = message
            if kind == "keys":
                metrics.keys[args[0]] = args[1]
            elif kind == "metrics":
                metrics.add(*args)
                metrics.write()
            elif kind == "empty":  # a lull
                metrics.write(everything=True)
            elif kind == "tags":
                metrics.write(everything=True)
                client.log_batch(run_id, tags=[RunTag(k, v) for k, v in args[0].items()])
            elif kind == "draw":
                drawing = args[0]
            elif kind == "artifacts":
                metrics.write(everything=True)
                client.log_artifacts(run_id, args[0])
                if drawing and folder is None:  # a server's store: kept for the figures
                    uploaded = folder = args[0]
                else:
                    shutil.rmtree(args[0], ignore_errors=True)
            elif kind == "end":
                end_run(metrics, args[0])
                ended = True  # a training process gone before it reads "done" changes nothing
                reply.send(("done", metrics.unwritten))
                inbox.deadline = None  # served: the next run has all the time it needs
                finished = args[0] == "FINISHED" and not metrics.unwritten
                if drawing and finished and folder is not None:
                    draw_figures(client, run_id, drawing, folder, params)
                if uploaded is not None:
                    shutil.rmtree(uploaded, ignore_errors=True)
                return True
    except Exception as e:
        if run_id is not None and not ended:
            with contextlib.suppress(Exception):  # the store is gone: the next sweep ends it
                client.set_terminated(run_id, "FAILED")
        why = describe_failure(uri, e)
        with contextlib.suppress(OSError):  # nobody listens any more
            reply.send(("error", f"MLflow writer of run {name!r} failed: {why}"))
        return False


def main() -> None:
    """Serve the runs of the training process on stdin/stdout until it goes away."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    replies = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)  # anything printed goes to stderr, never into the replies
    inbox = Inbox(Connection(os.dup(0), writable=False))
    watch_parent(inbox.close)  # its end of the pipe may live on in a process it started
    import mlflow.tracking  # noqa: F401  (the ≈ 2 s import, while the first run trains)

    while (message := inbox.get()) is not None:
        if message[0] == "run" and not write_run(message[1:], inbox, replies):
            break  # anything else between runs (a late "hurry") needs nothing
    PHASES.save("writer")
    sys.stderr.flush()
    os._exit(0)  # every write is committed: skip the ≈ 0.7 s teardown of MLflow's modules
