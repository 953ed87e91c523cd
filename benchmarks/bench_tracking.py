"""What tracking costs: a depth-16 run with full diagnostics at the default cadence, with and
without MLflow (embedded sqlite store in a temp dir).

Each round times ``experiments.train.train(cfg)`` untracked (``mlflow.enabled=false``),
tracked with a warm writer (the case of every job after the first in a sweep process) and
tracked cold (a new writer process: its ≈ 2 s MLflow import overlaps training; a single run).
Medians over rounds.  Overhead = (tracked − untracked) / tracked: the share of the tracked run's
wall time that tracking adds, the final flush included.

    python benchmarks/bench_tracking.py [--rounds 3] [--epochs 30 120 480]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from experiments.config import register_configs
from experiments.tracking import close_spare_writers
from experiments.train import train

CONF = Path(__file__).resolve().parents[1] / "conf"


def timed_run(overrides: list[str]) -> tuple[float, int]:
    """Wall seconds of one train() call and the number of optimizer steps it took."""
    cfg = compose(config_name="config", overrides=overrides)
    start = time.perf_counter()
    outcome = train(cfg)
    assert outcome.status == "FINISHED", outcome.error
    assert outcome.last_epoch is not None
    return time.perf_counter() - start, outcome.last_epoch.step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, nargs="+", default=[30, 120, 480])
    args = parser.parse_args()
    register_configs()
    columns = (
        "epochs",
        "steps",
        "metrics",
        "untracked s",
        "warm s",
        "overhead",
        "cold s",
        "overhead",
    )
    header = " ".join(f"{c:>{max(6, len(c))}}" for c in columns)
    with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(str(CONF), version_base="1.3"):
        uri = f"sqlite:///{tmp}/mlflow.db"
        every = compose(config_name="config").log.every_n_steps
        print(f"depth 16, width 32, spirals, batch 32, diagnostics every {every} steps (default)")
        print(header)
        for epochs in args.epochs:
            base = [
                "model.depth=16",
                f"train.epochs={epochs}",
                f"mlflow.tracking_uri={uri}",
            ]
            off, warm, cold = [], [], []
            for _ in range(args.rounds):
                seconds, steps = timed_run([*base, "mlflow.enabled=false"])
                off.append(seconds)
                warm.append(timed_run(base)[0])
                close_spare_writers()
                cold.append(timed_run(base)[0])
            n_metrics = (steps // every + 1) * (7 * 17 - 2 + 1) + epochs * 7
            t_off, t_warm, t_cold = (statistics.median(t) for t in (off, warm, cold))
            print(
                f"{epochs:>6} {steps:>6} {n_metrics:>7} {t_off:>11.2f} {t_warm:>6.2f}"
                f" {100 * (t_warm - t_off) / t_warm:>7.1f}% {t_cold:>6.2f}"
                f" {100 * (t_cold - t_off) / t_cold:>7.1f}%"
            )


if __name__ == "__main__":
    main()
