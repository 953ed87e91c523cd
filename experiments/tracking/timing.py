"""Where a sweep's time goes: wall and CPU seconds per phase, off unless ``BPLAB_TIMING`` names
a file (``benchmarks/bench_sweep.py`` sets it).

    BPLAB_TIMING=/tmp/t.jsonl python -m experiments.train -m experiment=quickstart

Each run appends one JSON line ``{"role": "run", "pid": …, "phases": {phase: [wall, cpu]}}``
(the training app's phases: steps, evaluation, diagnostics, …; and the process's CPU seconds
so far), each MLflow writer one line ``{"role": "writer", …}`` as it exits (its figures).
Phases are exclusive: time in a phase entered inside another (tracking inside diagnostics)
counts to the inner one.
Off, a phase costs one ``if``; on, two clock reads per entry (< 1 µs).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

FILE = os.environ.get("BPLAB_TIMING", "")  # read once, at import


class Phases:
    """Accumulated [wall, cpu] seconds per phase name, exclusive of nested phases."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}
        self._stack: list[str] = []
        self._since = (0.0, 0.0)

    def _charge(self) -> None:
        """Add the time since the last switch to the phase on top of the stack."""
        now = (time.perf_counter(), time.process_time())
        if self._stack:
            spent = self.seconds.setdefault(self._stack[-1], [0.0, 0.0])
            spent[0] += now[0] - self._since[0]
            spent[1] += now[1] - self._since[1]
        self._since = now

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        """Time the block as ``phase`` (a no-op unless timing is on)."""
        if not FILE:
            yield
            return
        self._charge()
        self._stack.append(phase)
        try:
            yield
        finally:
            self._charge()
            self._stack.pop()

    def timed(self, phase: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function``, timed as ``phase`` on every call."""

        @functools.wraps(function)
        def timed_call(*args: Any, **kwargs: Any) -> Any:
            with self(phase):
                return function(*args, **kwargs)

        return timed_call

    def save(self, role: str, **extra: Any) -> None:
        """Append this process's phases as one line to the timing file; start afresh."""
        if not FILE:
            return
        line = {"role": role, "pid": os.getpid(), "phases": self.seconds, **extra}
        line["process_cpu"] = time.process_time()  # since the process started: with start-up
        with open(FILE, "a") as out:  # one write of one line: parallel processes' lines stay whole
            out.write(json.dumps(line) + "\n")
        self.seconds = {}
