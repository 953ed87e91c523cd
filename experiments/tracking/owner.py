"""The processes that own a run, and whether they are still alive.

Each run records its owners in the tag ``owner``: the host, then ``pid@start time`` of every
process that can end the run (a job's training process and its MLflow writer; a sweep's
launching process for the parent run).  When all of them are gone (kill -9 of both, a crash),
the run would stay RUNNING forever; the next command on the store ends it FAILED
(``experiments.tracking.store.end_orphaned_runs``).  A pid counts as the same process only if
its start time matches (pids are reused); a run of another host is never judged from here.

``watch_parent`` is how a process notices that the process that started it died (kill -9
gives no signal to its children): it polls ``os.getppid()``, which Linux and macOS both
change when the parent goes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

OWNER_TAG = "owner"
POLL_SECONDS = 1.0  # how often a watching process looks at its parent
# ps prints the start time to the second, from the boot time, which the kernel may report a
# second apart from one read to the next
SAME_START_SECONDS = 1


def owner_tag(*pids: int) -> str:
    """The ``owner`` tag of a run that the processes ``pids`` (of this host) can end."""
    started = start_times(pids)
    return " ".join([socket.gethostname(), *(f"{pid}@{started[pid]}" for pid in started)])


def start_times(pids: tuple[int, ...] | list[int]) -> dict[int, int]:
    """The start time (Unix seconds) of each of ``pids`` that is alive and no zombie, from
    ``ps`` (Linux and macOS; the C locale and UTC, so that every process reads the same)."""
    env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}
    command = ["ps", "-o", "pid=,stat=,lstart=", "-p", ",".join(map(str, pids))]
    try:
        table = subprocess.run(command, capture_output=True, text=True, env=env).stdout
    except OSError:  # no ps: nothing can be told
        return {}
    started = {}
    for line in table.splitlines():
        pid, stat, *start = line.split()
        if not stat.startswith("Z"):
            when = datetime.strptime(" ".join(start), "%a %b %d %H:%M:%S %Y")
            started[int(pid)] = int(when.replace(tzinfo=UTC).timestamp())
    return started


def owners_gone(tag: str) -> bool:
    """Whether every process of an ``owner`` tag has died, judged on its own host only (a tag
    that does not parse: no)."""
    host, *processes = tag.split() or [""]
    try:
        owners = {int(pid): int(started) for pid, started in (p.split("@") for p in processes)}
    except ValueError:
        return False
    if host != socket.gethostname() or not owners:
        return False
    alive = start_times(list(owners))
    return not any(
        abs(alive[pid] - started) <= SAME_START_SECONDS
        for pid, started in owners.items()
        if pid in alive
    )


def watch_parent(on_death: Callable[[], None], parent: int | None = None) -> None:
    """Call ``on_death`` (in a daemon thread) once this process's parent has died.
    ``parent``: the pid to watch; default: the current parent."""
    watched = os.getppid() if parent is None else parent

    def watch() -> None:
        while os.getppid() == watched:
            time.sleep(POLL_SECONDS)
        on_death()

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()
