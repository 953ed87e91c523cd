"""What tracking costs: a depth-16 run with full diagnostics at the default cadence, with and
without MLflow (an embedded sqlite store in a temp dir, or in ``--store-dir``).

In-process, each round times ``experiments.train.train(cfg)`` untracked
(``mlflow.enabled=false``) and tracked three ways:
- ``sweep job``: the writer of the previous run serves this one (every job after the first
  of a sweep process);
- ``new writer``: a writer freshly forked by the running writer server (a single run started
  after another within BPLAB_WRITER_IDLE_SECONDS);
- ``cold``: the writer server must start and import MLflow (≈ 2 s) first.
Then as commands: ``python -m experiments.train model.depth=16`` untracked, tracked with the
writer server running, and tracked cold.  Reported: medians over interleaved rounds, the
wall-time overhead (tracked − untracked) / tracked, and the time the training process spent
in tracking as a share of the tracked wall time: inside RunTracker calls (pickling, sending,
waiting for the writer at the end) and writing the run's artifact files.

    python benchmarks/bench_tracking.py [--rounds 5] [--epochs 30 120 480] [--store-dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir

from experiments.config import register_configs
from experiments.tracking import RunTracker, close_spare_writers, stop_writer_server
from experiments.train import train

ROOT = Path(__file__).resolve().parents[1]
_in_tracking = [0.0]  # seconds spent in tracking since the last reset
_depth = [0]  # tracking calls nest (an artifact block uploads with log_artifacts): count once


@contextlib.contextmanager
def _counting() -> Iterator[None]:
    """Add the time of the outermost tracking call to _in_tracking."""
    _depth[0] += 1
    start = time.perf_counter()
    try:
        yield
    finally:
        _depth[0] -= 1
        if _depth[0] == 0:
            _in_tracking[0] += time.perf_counter() - start


def _counted(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def timed(*args: Any, **kwargs: Any) -> Any:
        with _counting():
            return method(*args, **kwargs)

    return timed


def _counted_block(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    @contextlib.contextmanager
    def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
        with _counting(), method(*args, **kwargs) as value:
            yield value

    return timed


def count_tracking() -> None:
    """Count the time spent in every RunTracker method the training process calls, the
    artifact block included (waiting for the run, writing its files), in _in_tracking."""
    for name in ("__init__", "log_metrics", "set_tags", "log_artifacts", "end"):
        setattr(RunTracker, name, _counted(getattr(RunTracker, name)))
    RunTracker.artifact_folder = _counted_block(RunTracker.artifact_folder)  # type: ignore[method-assign]


def timed_run(overrides: list[str]) -> tuple[float, float]:
    """Wall seconds of one train() call, and seconds of it in tracking."""
    cfg = compose(config_name="config", overrides=overrides)
    _in_tracking[0] = 0.0
    start = time.perf_counter()
    outcome = train(cfg)
    assert outcome.status == "FINISHED", outcome.error
    return time.perf_counter() - start, _in_tracking[0]


def timed_command(overrides: list[str]) -> tuple[float, float]:
    """Wall seconds of ``python -m experiments.train <overrides>`` (tracking: not measured)."""
    start = time.perf_counter()
    command = [sys.executable, "-m", "experiments.train", *overrides]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start, float("nan")


def enabled(tracked: bool) -> str:
    return f"mlflow.enabled={str(tracked).lower()}"


def cold_start() -> None:
    """No writer and no writer server: the next run starts them."""
    close_spare_writers()
    stop_writer_server()


# How each tracked variant is set up before it is timed.
VARIANTS: dict[str, Callable[[], None]] = {
    "sweep job": lambda: None,
    "new writer": close_spare_writers,
    "cold": cold_start,
}


def rows(
    label: str, rounds: int, run: Callable[[bool], tuple[float, float]], variants: list[str]
) -> list[str]:
    """One line per variant: medians untracked (``run(False)``) and tracked, interleaved."""
    off: list[float] = []
    on: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(rounds):
        off.append(run(False)[0])
        for name in variants:
            VARIANTS[name]()
            on[name].append(run(True))
    t_off = statistics.median(off)
    lines = []
    for name, times in on.items():
        t_on = statistics.median(wall for wall, _ in times)
        spent = statistics.median(tracking for _, tracking in times)
        share = "—" if math.isnan(spent) else f"{1000 * spent:>6.1f} ms {spent / t_on:>6.1%}"
        overhead = (t_on - t_off) / t_on
        lines.append(f"{label}, {name:<12} {t_off:>9.3f} {t_on:>8.3f} {overhead:>+8.1%}  {share}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, nargs="+", default=[30, 120, 480])
    parser.add_argument("--store-dir", help="where the sqlite store goes (default: a temp dir)")
    args = parser.parse_args()
    register_configs()
    count_tracking()
    with (
        tempfile.TemporaryDirectory(dir=args.store_dir) as tmp,
        initialize_config_dir(str(ROOT / "conf"), version_base="1.3"),
    ):
        uri = f"sqlite:///{tmp}/mlflow.db"
        every = compose(config_name="config").log.every_n_steps
        print(f"depth 16, width 32, spirals, batch 32, diagnostics every {every} steps (default)")
        print(f"store {uri}; seconds, medians of {args.rounds} rounds")
        print(f"{'':<28} {'untracked':>9} {'tracked':>8} {'overhead':>8}  in tracking")
        for epochs in args.epochs:
            base = ["model.depth=16", f"train.epochs={epochs}", f"mlflow.tracking_uri={uri}"]
            timed_run(base)  # the store, the experiment and a writer exist from now on

            def in_process(tracked: bool, base: list[str] = base) -> tuple[float, float]:
                return timed_run([*base, enabled(tracked)])

            for line in rows(f"train() {epochs} ep", args.rounds, in_process, list(VARIANTS)):
                print(line, flush=True)

        def command(tracked: bool) -> tuple[float, float]:
            return timed_command(["model.depth=16", f"mlflow.tracking_uri={uri}", enabled(tracked)])

        for line in rows("command 30 ep", args.rounds, command, ["new writer", "cold"]):
            print(line)
    cold_start()


if __name__ == "__main__":
    main()
