"""Regenerating the figures of a 100-run sweep: the whole command, and the read it rests on.

Builds a 100-run sweep once (5 activations × depth 2 … 32 × 4 seeds, full diagnostics) in a
temporary sqlite store, then times:

- ``python -m experiments.plots`` end to end (a fresh process: imports, one search, one
  ``history.npz`` download per run, every figure in PNG and PDF, logging them to the parent);
- the read it rests on (``read_histories``: one download per run) against the read it replaces
  (one ``get_metric_history`` call per metric key per run), measured in the same process.

Medians over rounds; the budget is 20 s for the whole command on 2 cores.

    python benchmarks/bench_plots.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEP = [
    "activation=relu,tanh,sigmoid,gelu,selu",
    "model.depth=2,4,8,16,32",
    "seed=0,1,2,3",
    "data.n_samples=400",
    "train.epochs=10",
    "log.every_n_steps=10",
    "mlflow.experiment_name=bench_plots",
]
BUDGET_SECONDS = 20.0


def timed(args: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", *args], env=env, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def reads(uri: str) -> tuple[float, float, int, int]:
    """(seconds of read_histories, of the per-key reads, runs, metric keys) in this process."""
    from mlflow import MlflowClient

    from experiments.figures.runs import read_histories, select

    selection = select(uri, "bench_plots", None, "")
    start = time.perf_counter()
    histories = read_histories(uri, selection.runs)
    ours = time.perf_counter() - start
    client = MlflowClient(uri)
    n_keys = 0
    start = time.perf_counter()
    for run in selection.runs:
        for key in histories[run.run_id].keys:
            client.get_metric_history(run.run_id, key)
            n_keys += 1
    return ours, time.perf_counter() - start, len(histories), n_keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
        print("building the 100-run sweep …", flush=True)
        built = timed(["experiments.train", "-m", *SWEEP], env, folder)
        print(f"  {built:.0f} s")
        plots = ["experiments.plots", "--experiment", "bench_plots", "--out", "figs"]
        walls = [timed(plots, env, folder) for _ in range(args.rounds)]
        figures = len(list((folder / "figs").glob("*.p*")))
        ours, per_key, n_runs, n_keys = reads(uri)
    wall = statistics.median(walls)
    print(f"\n{n_runs} runs, {figures} figure files (png + pdf), medians of {args.rounds} rounds")
    print(f"python -m experiments.plots, end to end: {wall:.1f} s (budget {BUDGET_SECONDS:.0f} s)")
    print(f"  rounds: {', '.join(f'{w:.1f}' for w in walls)} s")
    print(f"read: one history.npz per run: {ours:.2f} s")
    print(f"read: get_metric_history per key ({n_keys} calls): {per_key:.1f} s")
    print(f"  ratio: {per_key / ours:.0f}x")


if __name__ == "__main__":
    main()
