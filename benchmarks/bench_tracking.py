"""What tracking costs: a depth-16 run with full diagnostics at the default cadence, with and
without MLflow (an embedded sqlite store in a temp dir, or in ``--store-dir``).

In-process, each round times ``experiments.app.train.train(cfg)`` untracked
(``mlflow.enabled=false``) and tracked three ways:
- ``sweep job``: the writer child of an earlier run serves this one (every job after the
  first that a sweep process runs);
- ``new writer``: the run starts a writer child, which imports MLflow while training runs
  (the first run of a process: a single command, or a sweep's first job);
- ``mlflow async``: the candidate without a writer process: MLflow's own asynchronous logging
  (``log_batch(..., synchronous=False)``, a thread of the training process), in a process that
  has imported MLflow already.
Then as commands: ``python -m experiments.train model.depth=16`` untracked and tracked.
Reported: medians over interleaved rounds, the wall-time overhead (tracked − untracked) /
tracked, and the time the training process spent in tracking as a share of the tracked wall
time: inside the tracker's calls (handing metrics over, waiting for the writer at the end) and
writing the run's artifact files.

    python benchmarks/bench_tracking.py [--rounds 5] [--epochs 30 120] [--store-dir DIR]
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

from experiments.app import train as app
from experiments.app.schema import register_configs
from experiments.tracking.run import RunTracker, close_writer
from experiments.tracking.store import mlflow_client, prepare_experiment

ROOT = Path(__file__).resolve().parents[1]
_in_tracking = [0.0]  # seconds spent in tracking since the last reset
_depth = [0]  # tracking calls nest (the artifact block sends the upload): count once


class AsyncTracker:
    """The candidate: RunTracker's interface on MLflow's asynchronous logging, in-process."""

    def __init__(self, uri: str, experiment: dict[str, str], run_name: str, **run: Any) -> None:
        from mlflow.entities import Param, RunTag

        self.client = mlflow_client(uri)
        experiment_id = experiment.get("id") or prepare_experiment(uri, experiment["name"])
        tags = dict(run["tags"])
        info = self.client.create_run(experiment_id, run_name=run_name, tags=tags).info
        self.run_id = info.run_id
        self.folder = Path(info.artifact_uri.removeprefix("file://"))
        params = [Param(k, str(v)) for k, v in run["params"].items()]
        self.client.log_batch(self.run_id, params=params, synchronous=False)
        self._tag = RunTag

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch, synchronous=False)

    def set_tags(self, tags: dict[str, str]) -> None:
        batch = [self._tag(k, v) for k, v in tags.items()]
        self.client.log_batch(self.run_id, tags=batch, synchronous=False)

    @contextlib.contextmanager
    def artifact_folder(self, wait: float = 0) -> Iterator[Path]:
        self.folder.mkdir(parents=True, exist_ok=True)
        yield self.folder

    def end(self) -> None:
        import mlflow

        mlflow.flush_async_logging()
        self.client.set_terminated(self.run_id, "FINISHED")

    def __enter__(self) -> AsyncTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.end()


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


def count_tracking(tracker: type[Any]) -> None:
    """Count the time spent in every tracker method the training process calls (creating
    the run, handing metrics over, the end), the artifact block included, in _in_tracking."""
    for name in ("__init__", "log_metrics", "set_tags", "__exit__"):
        setattr(tracker, name, _counted(getattr(tracker, name)))
    tracker.artifact_folder = _counted_block(tracker.artifact_folder)


def timed_run(overrides: list[str], tracker: type[Any] = RunTracker) -> tuple[float, float]:
    """Wall seconds of one train() call with ``tracker`` as the run's tracker, and seconds of
    it in tracking."""
    cfg = compose(config_name="config", overrides=overrides)
    _in_tracking[0] = 0.0
    app.RunTracker = tracker  # type: ignore[misc]
    try:
        start = time.perf_counter()
        outcome = app.train(cfg)
        wall = time.perf_counter() - start
    finally:
        app.RunTracker = RunTracker  # type: ignore[misc]
    assert outcome.status == "FINISHED", outcome.error
    return wall, _in_tracking[0]


def timed_command(overrides: list[str]) -> tuple[float, float]:
    """Wall seconds of ``python -m experiments.train <overrides>`` (tracking: not measured)."""
    start = time.perf_counter()
    command = [sys.executable, "-m", "experiments.train", *overrides]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start, float("nan")


def enabled(tracked: bool) -> str:
    return f"mlflow.enabled={str(tracked).lower()}"


# How each tracked variant runs: (set-up before the round, tracker class)
VARIANTS: dict[str, tuple[Callable[[], None], type[Any]]] = {
    "sweep job": (lambda: None, RunTracker),
    "new writer": (close_writer, RunTracker),
    "mlflow async": (lambda: None, AsyncTracker),
}


def rows(
    label: str,
    rounds: int,
    run: Callable[[bool, type[Any]], tuple[float, float]],
    variants: list[str],
) -> list[str]:
    """One line per variant: medians untracked and tracked, interleaved round by round."""
    off: list[float] = []
    on: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(rounds):
        off.append(run(False, RunTracker)[0])
        for name in variants:
            setup, tracker = VARIANTS[name]
            setup()
            on[name].append(run(True, tracker))
    t_off = statistics.median(off)
    lines = []
    for name, times in on.items():
        t_on = statistics.median(wall for wall, _ in times)
        spent = statistics.median(tracking for _, tracking in times)
        share = "—" if math.isnan(spent) else f"{1000 * spent:>7.1f} ms {spent / t_on:>6.1%}"
        overhead = (t_on - t_off) / t_on
        lines.append(f"{label}, {name:<13} {t_off:>9.3f} {t_on:>8.3f} {overhead:>+8.1%}  {share}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, nargs="+", default=[30, 120])
    parser.add_argument("--store-dir", help="where the sqlite store goes (default: a temp dir)")
    args = parser.parse_args()
    register_configs()
    count_tracking(RunTracker)
    count_tracking(AsyncTracker)
    with (
        tempfile.TemporaryDirectory(dir=args.store_dir) as tmp,
        initialize_config_dir(str(ROOT / "conf"), version_base="1.3"),
    ):
        uri = f"sqlite:///{tmp}/mlflow.db"
        every = compose(config_name="config").log.every_n_steps
        print(f"depth 16, width 32, spirals, batch 32, diagnostics every {every} steps (default)")
        print(f"store {uri}; seconds, medians of {args.rounds} rounds")
        print(f"{'':<29} {'untracked':>9} {'tracked':>8} {'overhead':>8}  in tracking")
        for epochs in args.epochs:
            base = ["model.depth=16", f"train.epochs={epochs}", f"mlflow.tracking_uri={uri}"]
            timed_run(base)  # the store, the experiment and a writer exist from now on
            timed_run(base, AsyncTracker)  # this process has imported MLflow

            def in_process(
                tracked: bool, tracker: type[Any], base: list[str] = base
            ) -> tuple[float, float]:
                return timed_run([*base, enabled(tracked)], tracker)

            for line in rows(f"train() {epochs} ep", args.rounds, in_process, list(VARIANTS)):
                print(line, flush=True)

        def command(tracked: bool, tracker: type[Any]) -> tuple[float, float]:
            return timed_command(["model.depth=16", f"mlflow.tracking_uri={uri}", enabled(tracked)])

        for line in rows("command 30 ep", args.rounds, command, ["new writer"]):
            print(line)


if __name__ == "__main__":
    main()
