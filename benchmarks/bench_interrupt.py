"""How long Ctrl-C takes on a busy machine, with the MLflow writer far behind.

Each round starts ``python -m experiments.train`` logging every step of a depth-10 net (far
more metrics than the writer can write) while another process keeps one core busy, waits
until the run's first metrics are in the store plus ``--behind`` seconds, sends SIGINT to the
command's process group (as a terminal's Ctrl-C does) and times how long the command takes to
exit.  Prints each round (seconds, the run's status, its ``unwritten_points``) and the median.

    python benchmarks/bench_interrupt.py [--rounds 5] [--behind 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow import MlflowClient

from experiments.tracking.store import prepare_experiment

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["-m", "experiments.train", "train.epochs=100000", "log.every_n_steps=1", "model.depth=10"]
TRAIN.append("allow_large=true")  # far above the metric limit: it is stopped by a signal


def start(command: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
    """A process in its own session, with SIGINT's default action (a background job's
    children inherit it ignored)."""
    return subprocess.Popen(
        command,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **kwargs,  # type: ignore[call-overload]
    )


def one_round(folder: Path, behind: float) -> tuple[float, str, str]:
    """(seconds from SIGINT to exit, run status, unwritten points) of one interrupted run."""
    uri = f"sqlite:///{folder}/mlflow.db"
    experiment = prepare_experiment(uri, "default")
    client = MlflowClient(uri)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    busy = start([sys.executable, "-c", "while True: pass"])
    train = start([sys.executable, *TRAIN], cwd=folder, env=env, stdout=subprocess.DEVNULL)
    try:
        while not [r for r in client.search_runs([experiment]) if r.data.metrics]:
            time.sleep(0.2)
        time.sleep(behind)
        signalled = time.monotonic()
        os.killpg(train.pid, signal.SIGINT)
        train.wait(60)
        seconds = time.monotonic() - signalled
    finally:
        for process in (busy, train):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    (run,) = client.search_runs([experiment])
    return seconds, run.info.status, run.data.tags.get("unwritten_points", "0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--behind", type=float, default=3.0, help="seconds of logging first")
    args = parser.parse_args()
    times = []
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            seconds, status, unwritten = one_round(Path(tmp), args.behind)
        times.append(seconds)
        print(f"round {i + 1}: {seconds:.2f} s, run {status}, unwritten_points {unwritten}")
    print(f"Ctrl-C to exit: median {statistics.median(times):.2f} s, max {max(times):.2f} s")


if __name__ == "__main__":
    main()
