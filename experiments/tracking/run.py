"""One MLflow run as the training process sees it: metrics are handed to a writer, never written.

    with RunTracker(uri, {"name": "default"}, "relu-d8-w32-b32-s0", parent_run_id=None,
                    params=params, tags=tags) as tracker:
        tracker.log_metrics(step, {"grad_norm/layer_01": 0.3})
        with tracker.artifact_folder() as folder:
            ...  # the run's files

The run ends FINISHED, FAILED (an exception; its message in the tag ``error``) or KILLED
(Ctrl-C, or SIGTERM turned into KeyboardInterrupt): then the writer gets ``KILL_GRACE`` seconds
to write what it has, and the command returns within about that long however far behind the
writer is (see ``experiments.tracking.writer`` for what happens to the rest).

The writer is a child process of this process (``python -m experiments.tracking.writer``),
started by its first run and reused by the next ones; it exits when this process does, so no
process of ours outlives the command.  It uses only pipes and ``subprocess``: Linux and macOS.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any

from experiments import PROJECT_ROOT
from experiments.tracking.provenance import source_tags
from experiments.tracking.store import TrackingError, check_tracking_uri, fail_run
from experiments.tracking.writer import KILL_GRACE

READY_SECONDS = 60.0  # for the writer to import MLflow and create the run
WRITER_DIED = "MLflow writer process died"
_KEY = re.compile(r"[/\w.\- ]{1,250}")  # MLflow's metric-key rule (its ':' fails on Windows)
# sys.path[0] of ``python -c`` is the working directory: the project root replaces it
_START = "import sys; sys.path[0] = sys.argv[1]; from experiments.tracking.writer import main; "
_START += "main()"


class Writer:
    """This process's writer child and the two pipes to it."""

    def __init__(self) -> None:
        to_writer, requests = os.pipe()
        replies, from_writer = os.pipe()
        self.owner = os.getpid()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _START, str(PROJECT_ROOT)],
                stdin=to_writer,
                stdout=from_writer,
            )
        except OSError as e:
            raise TrackingError(f"cannot start the MLflow writer: {e}") from None
        finally:
            os.close(to_writer)
            os.close(from_writer)
        self.requests = Connection(requests, readable=False)
        self.replies = Connection(replies, writable=False)

    def alive(self) -> bool:
        return self.owner == os.getpid() and self.process.poll() is None

    def close(self) -> None:
        """Let the writer go: at EOF it finishes what it has and exits."""
        self.requests.close()
        self.replies.close()


_writer: Writer | None = None


def writer() -> Writer:
    """This process's writer, started if there is none (or it died, or this is a fork)."""
    global _writer
    if _writer is None or not _writer.alive():
        if _writer is not None and _writer.owner == os.getpid():
            _writer.close()
        _writer = Writer()
    return _writer


def close_writer() -> None:
    """Let this process's writer exit (the next run starts a new one)."""
    global _writer
    if _writer is not None and _writer.owner == os.getpid():
        _writer.close()
    _writer = None


class RunTracker:
    """One MLflow run, written by this process's writer; this side only pickles and sends.

    Returns at once: the writer creates the run while training starts.  ``run_id`` waits for
    it (≤ READY_SECONDS); a writer's error surfaces as a TrackingError at the next call.
    ``experiment`` is ``{"id": …}``, or ``{"name": …}`` for the writer to create it if missing
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
    ) -> None:
        check_tracking_uri(uri)
        tags = {**source_tags(), **tags}
        if parent_run_id is not None:
            tags["mlflow.parentRunId"] = parent_run_id
        self.run_name = run_name
        self._uri = uri
        self._run_id = ""
        self.experiment_id = ""  # once the writer has created the run
        self._artifact_dir: str | None = None  # the run's folder in a local artifact store
        self._error = ""
        self._done = self._ended = False
        self._key_ids: dict[tuple[str, ...], int] = {}
        self._writer = writer()
        request = (uri, experiment, run_name, {k: str(v) for k, v in params.items()}, tags)
        self._send(("run", *request))

    @property
    def run_id(self) -> str:
        """The run's id, once the writer has created the run."""
        self._wait(lambda: bool(self._run_id), READY_SECONDS)
        if not self._run_id:
            raise TrackingError(self._error or f"MLflow writer did not start in {READY_SECONDS} s")
        return self._run_id

    def _receive(self) -> None:
        """Take one reply of the writer (EOF: it died)."""
        try:
            kind, *value = self._writer.replies.recv()
        except (EOFError, OSError):
            kind, value = "error", [WRITER_DIED]
        if kind == "ready":
            self._run_id, self._artifact_dir, self.experiment_id = value
        elif kind == "done":
            self._done = True
        else:  # the writer exits after an error: the next run needs a new one
            self._error = self._error or str(value[0])
            close_writer()

    def _wait(self, until: Any, seconds: float | None) -> None:
        """Take replies until ``until()``, an error, or ``seconds`` (None: no limit) pass."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while not until() and not self._error:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            if self._writer.replies.poll(left):
                self._receive()

    def _send(self, message: tuple[Any, ...]) -> None:
        if self._ended:
            raise TrackingError(f"run {self.run_name!r} has already ended")
        while not self._error and self._writer.replies.poll():
            self._receive()
        if self._error:
            raise TrackingError(self._error)
        try:
            self._writer.requests.send(message)
        except OSError:
            self._error = WRITER_DIED
            raise TrackingError(self._error) from None

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        """Hand metrics to the writer; NaN is kept, MLflow stores ±inf as ±1.797e308."""
        keys = tuple(metrics)
        key_id = self._key_ids.get(keys)
        if key_id is None:  # keys not seen in this run: check them, send them once
            for key in keys:
                if not _KEY.fullmatch(key) or posixpath.normpath(key) != key or key[0] == "/":
                    raise TrackingError(f"invalid metric key {key!r}: use [/\\w.\\- ], ≤ 250 chars")
            key_id = self._key_ids[keys] = len(self._key_ids)
            self._send(("keys", key_id, keys))
        values = [float(v) for v in metrics.values()]
        self._send(("metrics", key_id, int(step), int(time.time() * 1000), values))

    def set_tags(self, tags: dict[str, str]) -> None:
        self._send(("tags", {k: str(v) for k, v in tags.items()}))

    def draw_after_end(self, target: str) -> None:
        """Have the writer call ``target`` ("module:function", see
        ``experiments.tracking.writer``) on the run's files once it has ended FINISHED, and
        log the figures it writes: off the training path.  Send before ``artifact_folder``."""
        self._send(("draw", target))

    @contextlib.contextmanager
    def artifact_folder(self, wait: float = READY_SECONDS) -> Iterator[Path]:
        """A folder for the run's files.  In a local artifact store it is the run's own
        folder: files are written in place.  Otherwise a temporary folder that the writer
        uploads, then removes, when the block exits.  ``wait``: seconds to wait for the run."""
        self._wait(lambda: bool(self._run_id), wait)
        if not self._run_id:
            raise TrackingError(self._error or f"run {self.run_name!r} not created in {wait} s")
        if self._artifact_dir:
            folder = Path(self._artifact_dir)
            folder.mkdir(parents=True, exist_ok=True)
            yield folder
            return
        folder = Path(tempfile.mkdtemp(prefix="bplab-artifacts-"))
        try:
            yield folder
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self._send(("artifacts", str(folder)))

    def end(self, status: str = "FINISHED", grace: float | None = None, error: str = "") -> None:
        """Mark the run ``status`` once the writer has written everything (``grace``: what it
        can in that many seconds), with the tag ``error`` if given; TrackingError if a write
        failed.  Ctrl-C while waiting gives the writer KILL_GRACE seconds and ends the run
        KILLED.  If the writer died (killed, out of memory) the run is still open: this
        process ends it FAILED itself (importing MLflow: ≈ 2 s)."""
        if self._ended:
            return
        deadline = None if grace is None else time.time() + grace
        try:
            if error:
                self._send(("tags", {"error": error}))
            self._send(("end", status, deadline))
            self._ended = True
            self._wait(lambda: self._done, None if grace is None else grace + 1)
        except KeyboardInterrupt:
            with contextlib.suppress(OSError):
                self._writer.requests.send(("hurry", time.time() + KILL_GRACE))
            self._wait(lambda: self._done, KILL_GRACE + 1)
            raise
        finally:
            self._ended = True
            if not self._done:  # it died, failed or is still writing: the next run needs another
                close_writer()
                if self._error == WRITER_DIED and self._run_id:
                    self._fail_here(error or WRITER_DIED)
        if self._error:
            raise TrackingError(self._error)

    def _fail_here(self, error: str) -> None:
        """End the run FAILED from this process: its writer died with it open."""
        try:
            fail_run(self._uri, self._run_id, error)
        except TrackingError as e:
            self._error += f"; the run is left RUNNING ({e})"

    def __enter__(self) -> RunTracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Never swallows the exception: the run ends KILLED (Ctrl-C, or SystemExit with a
        signal's code ≥ 128), FINISHED (SystemExit 0) or FAILED; the tag ``error`` says why
        (``stopped by SIGINT``)."""
        if exc is None:
            return self.end()
        code = exc.code if isinstance(exc, SystemExit) else 1
        if isinstance(exc, KeyboardInterrupt):
            status, grace, error = "KILLED", KILL_GRACE, f"stopped by {exc or 'KeyboardInterrupt'}"
        elif isinstance(code, int) and code >= 128:
            status, grace, error = "KILLED", KILL_GRACE, f"stopped: exit status {code}"
        else:
            status, grace = ("FINISHED" if code in (None, 0) else "FAILED"), None
            error = f"{type(exc).__name__}: {exc}"[:5000] if status == "FAILED" else ""
        try:
            self.end(status, grace, error)
        except TrackingError as e:  # do not mask the exception on its way up (nor repeat it)
            if str(e) != str(exc):
                print(f"tracking: {e}", file=sys.stderr)
