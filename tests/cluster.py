"""Clusters that tests start on this machine, on loopback, and stop whatever happens:
a one-node Slurm cluster (munged, slurmctld, slurmd; Debian's ``slurm-wlm`` and ``munge``)
and a Ray head (the ``ray`` extra).  Everything they write stays in the folder they are given."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# the daemons live in sbin, which a normal user's PATH often lacks
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
SLURM_DAEMONS = ("munged", "slurmctld", "slurmd")
SLURM_CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo")
STARTUP_S = 60  # generous: a busy 2-core machine


def require(available: bool, reason: str) -> None:
    """Skip the test with ``reason`` unless ``available``; in CI (which installs everything
    the cluster tests need, see .ci/run) fail instead, so a cluster test never goes missing."""
    if available:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run this test: {reason}")
    pytest.skip(reason)


def slurm_program(name: str) -> str | None:
    return shutil.which(name, path=SEARCH_PATH)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for(ready: Callable[[], bool], what: str, daemons: list[subprocess.Popen[bytes]]) -> None:
    """Poll ``ready`` until it holds; fail at once if one of ``daemons`` exits meanwhile."""
    deadline = time.monotonic() + STARTUP_S
    while not ready():
        for daemon in daemons:
            if daemon.poll() is not None:
                raise RuntimeError(f"{daemon.args[0]} exited ({daemon.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} after {STARTUP_S} s")
        time.sleep(0.5)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group of ``process`` (a session leader), then SIGKILL to what
    is left of the group."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(15)


@dataclass
class SlurmCluster:
    """A running one-node cluster; its client programs read ``env`` (``SLURM_CONF``)."""

    folder: Path

    @property
    def conf(self) -> Path:
        return self.folder / "slurm.conf"

    @property
    def munge_socket(self) -> Path:
        return self.folder / "munge.socket"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf), "PATH": SEARCH_PATH}

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        """A Slurm client command (squeue, scancel, …) against this cluster."""
        return subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=STARTUP_S
        )

    def log(self, daemon: str) -> str:
        path = self.folder / f"{daemon}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def node_is_idle(self) -> bool:
        return self.run("sinfo", "--noheader", "--format=%t").stdout.strip() == "idle"

    def job_ids(self) -> list[str]:
        return self.run("squeue", "--noheader", "--format=%i").stdout.split()

    def finished_jobs(self) -> list[dict[str, str]]:
        """Once the queue is empty, the jobs slurmctld still remembers (for 300 s after they
        end), each as the ``Key=value`` fields of ``scontrol show job``."""
        wait_for(lambda: not self.job_ids(), "empty Slurm queue", [])
        shown = self.run("scontrol", "show", "job", "--oneliner").stdout.splitlines()
        return [dict(f.split("=", 1) for f in job.split() if "=" in f) for job in shown]

    def cancel_all_jobs(self) -> None:
        """scancel every job, then wait (bounded) until none is left in the queue."""
        deadline = time.monotonic() + 30
        while (jobs := self.job_ids()) and time.monotonic() < deadline:
            self.run("scancel", "--full", *jobs)
            time.sleep(1)

    def kill_leftovers(self) -> None:
        """SIGKILL every process started with this cluster's SLURM_CONF: slurmstepd and job
        steps detach from slurmd's session, so stopping the daemons' groups misses them."""
        mark = f"SLURM_CONF={self.conf}".encode()
        for environ in Path("/proc").glob("[0-9]*/environ"):
            pid = int(environ.parent.name)
            with contextlib.suppress(OSError):
                if pid != os.getpid() and mark in environ.read_bytes().split(b"\0"):
                    os.kill(pid, signal.SIGKILL)


def ctld_local() -> bool:
    """Whether slurmctld may bind to its host name's address alone (NoCtldInAddrAny): when that
    is a loopback address (it is here); else it listens on every address, as by default."""
    try:
        return socket.gethostbyname(socket.gethostname()).startswith("127.")
    except OSError:  # a host name that does not resolve
        return False


def slurm_conf(cluster: SlurmCluster) -> str:
    """One node ``localhost`` with 2 CPUs and 2 GB in a default partition ``debug``; no
    accounting database (so ``sacct`` fails and submitit waits for its result files)."""
    folder = cluster.folder
    user = pwd.getpwuid(os.getuid()).pw_name
    return "\n".join(
        [
            "ClusterName=bplab-test",
            "SlurmctldHost=localhost(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            f"SlurmUser={user}",
            f"SlurmdUser={user}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={cluster.munge_socket}",
            "CommunicationParameters=NoInAddrAny" + (",NoCtldInAddrAny" if ctld_local() else ""),
            f"StateSaveLocation={folder / 'state'}",
            f"SlurmdSpoolDir={folder / 'spool'}",
            f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
            f"SlurmdPidFile={folder / 'slurmd.pid'}",
            f"SlurmctldLogFile={folder / 'slurmctld.log'}",
            f"SlurmdLogFile={folder / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU_Memory",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "ReturnToService=2",
            "NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory=2048 State=UNKNOWN",
            "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


@contextlib.contextmanager
def slurm_cluster(folder: Path) -> Iterator[SlurmCluster]:
    """Start munged (a fresh key, its socket in ``folder``), slurmctld and slurmd, each in a
    session of its own; yield once the node is idle.  On the way out, however the block
    ends: cancel every job, stop the daemons' groups, kill what is left of the jobs."""
    missing = [name for name in SLURM_DAEMONS + SLURM_CLIENTS if slurm_program(name) is None]
    require(not missing, f"needs Slurm and MUNGE (apt-get install slurm-wlm munge): no {missing}")
    cluster = SlurmCluster(folder)
    for sub in ("state", "spool"):
        (folder / sub).mkdir()
    key = folder / "munge.key"
    key.write_bytes(os.urandom(128))
    key.chmod(0o600)
    cluster.conf.write_text(slurm_conf(cluster))
    daemons: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> None:
        with open(folder / f"{name}.out", "wb") as out:
            daemons.append(
                subprocess.Popen(
                    [str(slurm_program(name)), *args],
                    env=cluster.env,
                    cwd=folder,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    up = False
    try:
        start(
            "munged",
            "--foreground",
            "--force",  # else it refuses a socket in a private (0700) folder such as pytest's
            f"--key-file={key}",
            f"--socket={cluster.munge_socket}",
            f"--pid-file={folder / 'munged.pid'}",
            f"--seed-file={folder / 'munged.seed'}",
        )
        wait_for(cluster.munge_socket.exists, "MUNGE socket", daemons)
        start("slurmctld", "-D")
        start("slurmd", "-D", "-N", "localhost")
        wait_for(cluster.node_is_idle, "idle Slurm node", daemons)
        up = True
        yield cluster
    finally:
        if up:  # else there is no job, and no controller to ask
            cluster.cancel_all_jobs()
        for daemon in reversed(daemons):
            stop_group(daemon)
        cluster.kill_leftovers()


RAY_HEAD = ["start", "--head", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=2"]
RAY_HEAD += ["--include-dashboard=false", "--disable-usage-stats"]


@contextlib.contextmanager
def ray_head(workdir: Path) -> Iterator[str]:
    """``ray start --head`` on a free loopback port, its workers running jobs in ``workdir``;
    yields the head's address.  Stops the head's process group and removes its session files
    whatever happens."""
    # Ray's sessions and its "current cluster" file, in a folder short enough for its sockets
    sessions = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    port = free_port()
    ray = str(Path(sys.executable).parent / "ray")
    head = subprocess.Popen(
        [ray, *RAY_HEAD, f"--port={port}", f"--temp-dir={sessions}"],
        cwd=workdir,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop_group(head)
        shutil.rmtree(sessions, ignore_errors=True)
