"""Soak test of tracking: one sweep of WORKERS parallel joblib workers × RUNS short runs each,
into the embedded sqlite store and into the PostgreSQL-backed server (experiments.server,
started on free loopback ports in a temporary folder and stopped afterwards).

Counts lost runs (jobs without a FINISHED child run), lost metric points (each run's
history.npz against the points in the store) and "database is locked" messages in the sweep's
output, and prints one table row per store.

    python benchmarks/soak.py [--workers 8] [--runs 50] [--stores sqlite server]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from experiments.server import service as server
from experiments.server.audit import audit_sweep

# short runs: 12 optimizer steps, diagnostics every 4 (≈ 130 metric points per run)
RUN = ["data.n_samples=200", "train.epochs=3", "model.width=8", "log.every_n_steps=4"]
HEADER = (
    "| store | runs | FINISHED | lost runs | metric points sent | stored | lost points "
    '| "database is locked" | wall time | exit |'
)


def soak(uri: str, store_uri: str, workers: int, runs: int, folder: Path) -> str:
    """Run the sweep against ``uri``; one Markdown table row of what arrived."""
    jobs = workers * runs
    command = [sys.executable, "-m", "experiments.train", "-m", f"seed=range(0,{jobs})", *RUN]
    command += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={workers}"]
    started = time.monotonic()
    done = subprocess.run(
        command,
        cwd=folder,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri},
        capture_output=True,
        text=True,
    )
    seconds = time.monotonic() - started
    output = done.stdout + done.stderr
    (folder / "soak.log").write_text(output)
    locked = len(re.findall("database is locked", output, re.IGNORECASE))
    found = re.search(r"parent run (\w{32})", output)
    if found is None:
        sys.exit(f"the sweep into {uri} created no parent run; its output:\n{output[-3000:]}")
    audit = audit_sweep(uri, store_uri, found.group(1), jobs)
    for line in audit.not_finished:
        print(f"  not finished: {line}", file=sys.stderr)
    store = "server (PostgreSQL)" if uri.startswith("http") else "sqlite (embedded)"
    return (
        f"| {store} | {jobs} | {audit.finished_runs} | {audit.lost_runs} "
        f"| {audit.expected_points} | {audit.stored_points} | {audit.lost_points} | {locked} "
        f"| {seconds:.0f} s | {done.returncode} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--runs", type=int, default=50, help="runs per worker")
    parser.add_argument(
        "--stores", nargs="+", choices=["sqlite", "server"], default=["sqlite", "server"]
    )
    args = parser.parse_args()
    rows = []
    for store in args.stores:
        with tempfile.TemporaryDirectory(prefix="bplab-soak-") as tmp:
            folder = Path(tmp)
            if store == "sqlite":
                uri = f"sqlite:///{folder}/mlflow.db"
                rows.append(soak(uri, uri, args.workers, args.runs, folder))
                continue
            with server.temporary() as (_, state):  # PGPASSFILE: the audit reads its database
                store_uri = server.store_uri(state.pg_port)
                rows.append(soak(state.uri, store_uri, args.workers, args.runs, folder))
    print(f"{args.workers} parallel workers × {args.runs} runs each ({os.cpu_count()} cores)")
    print(HEADER)
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
