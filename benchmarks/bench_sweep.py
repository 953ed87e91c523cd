"""Where a sweep's wall time goes, in one process ("basic") and with joblib's 2 workers.

Each round runs the same sweep once per launcher, interleaved, as a command into a fresh sqlite
store, with ``BPLAB_TIMING`` set (``experiments.tracking.timing``): every run reports the wall
and CPU seconds of its phases, every MLflow writer its figures.  Reported per launcher: the
median wall time, and the median share of it in each phase —

- steps: ``bpcore.train_step`` (forward, backward, update);
- evaluation: the epoch's train/val losses, the untrained net's and the test split's;
- diagnostics: the callbacks (per-layer norms, signal propagation, profiles);
- batching: the rest of ``bpcore.fit`` (shuffling, slicing the batches, step reports);
- tracking: handing metrics to the writer, the run's tags and files, waiting for its end;
- setup: composing nothing, building the job (data set, net, optimizer) from its config;
- start-up and launcher: the rest — imports, Hydra, checking every job, the parent run,
  starting the workers and writers, the summary at the end.

With joblib the phases of both workers are summed, so shares are of 2 × wall (worker-seconds).
Figures are drawn by the writers, off the training path: their CPU seconds are reported apart.

The default sweep is a scaled-down copy of the ``activations`` preset with the same per-run
shape (circles, SGD at lr 0.1, xavier_normal, 10 epochs, diagnostics every 10 steps, depth
3, 10, 20; 4 activations, 1 seed: 12 runs, basic sweeper instead of the tuning one);
``-- experiment=activations`` runs a preset itself.

``--run-figures both`` adds, in the same rounds, each launcher with ``mlflow.run_figures=false``
and reports what the per-run figures add to the wall time.

    python benchmarks/bench_sweep.py [--rounds 3] [--run-figures on|off|both] [-- overrides]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ACTIVATIONS_SHAPE = [
    "data=circles",
    "init=xavier_normal",
    "optim=sgd",
    "optim.lr=0.1",
    "train.epochs=10",
    "log.every_n_steps=10",
    "activation=tanh,relu,sigmoid,elu",
    "model.depth=3,10,20",
]
LAUNCHERS = {  # joblib with 1 job runs the jobs one after another in the launching process, like
    # the basic launcher, and overrides a preset's joblib launcher (its n_jobs) where basic cannot
    "basic": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=1"],
    "joblib-2": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
}
PHASES = ["steps", "evaluation", "diagnostics", "batching", "tracking", "setup"]
REST = "start-up and launcher"


def run_sweep(overrides: list[str]) -> tuple[float, list[dict[str, Any]], float]:
    """Run the sweep into a fresh store: (wall seconds, the timing lines, load average)."""
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        timing = Path(tmp, "timing.jsonl")
        command = [sys.executable, "-m", "experiments.train", "-m", *overrides]
        command += [f"mlflow.tracking_uri=sqlite:///{tmp}/mlflow.db", "mlflow.sweep_figures=false"]
        command += [f"hydra.sweep.dir={tmp}/multirun"]
        env = os.environ | {"BPLAB_TIMING": str(timing)}
        started, before = time.perf_counter(), _children_cpu()
        done = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode:
            sys.exit(f"sweep failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        lines = [json.loads(line) for line in timing.read_text().splitlines()]
    # the command and the processes it waited for (its workers); the writers report their own
    lines.append({"role": "command", "phases": {}, "process_cpu": _children_cpu() - before})
    return wall, lines, os.getloadavg()[0]


def _children_cpu() -> float:
    """CPU seconds of the children this process has waited for, and of theirs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def split(wall: float, workers: int, lines: list[dict[str, Any]]) -> dict[str, float]:
    """Each phase's share of the workers' wall time (``workers`` × wall), and the rest's;
    the writers' figure CPU seconds per run (``figures cpu/run``)."""
    seconds: dict[str, float] = defaultdict(float)
    cpu: dict[str, float] = defaultdict(float)
    runs = [line for line in lines if line["role"] == "run"]
    for line in runs:
        for phase, (phase_wall, phase_cpu) in line["phases"].items():
            seconds[phase] += phase_wall
            cpu[phase] += phase_cpu
    shares = {phase: seconds[phase] / (workers * wall) for phase in PHASES}
    shares[REST] = 1 - sum(shares.values())
    for phase in PHASES:
        shares[f"{phase} cpu/run"] = cpu[phase] / max(len(runs), 1)
    last = {line["pid"]: line["process_cpu"] for line in runs}  # each training process's CPU
    shares["training processes cpu/run"] = sum(last.values()) / max(len(runs), 1)
    writers = [line for line in lines if line["role"] == "writer"]
    figures = sum(line["phases"].get("figures", [0, 0])[1] for line in writers)
    shares["figures cpu/run"] = figures / max(len(runs), 1)
    shares["writers cpu/run"] = sum(w["process_cpu"] for w in writers) / max(len(runs), 1)
    command = next(line["process_cpu"] for line in lines if line["role"] == "command")
    shares["launcher and workers cpu/run"] = command / max(len(runs), 1)
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--run-figures", choices=["on", "off", "both"], default="on")
    parser.add_argument("overrides", nargs="*", help="replace the default sweep's overrides")
    args = parser.parse_args()
    sweep = args.overrides or ACTIVATIONS_SHAPE
    variants = {
        f"{launcher}{suffix}": [*choice, f"mlflow.run_figures={figures}"]
        for launcher, choice in LAUNCHERS.items()
        for suffix, figures in [("", "true"), (" no figures", "false")]
        if args.run_figures == "both" or (args.run_figures == "on") == (figures == "true")
    }
    walls: dict[str, list[float]] = defaultdict(list)
    shares: dict[str, list[dict[str, float]]] = defaultdict(list)
    for round_ in range(args.rounds):
        for variant, choice in variants.items():
            wall, lines, load = run_sweep([*sweep, *choice])
            walls[variant].append(wall)
            shares[variant].append(split(wall, 2 if "joblib" in variant else 1, lines))
            print(f"round {round_ + 1} {variant}: {wall:.1f} s (load {load:.2f})", flush=True)
    print(f"\nsweep: {' '.join(sweep)}")
    print(f"| | {' | '.join(variants)} |\n|---|" + "---:|" * len(variants))
    medians = [f"{statistics.median(walls[variant]):.1f} s" for variant in variants]
    print(f"| wall time (median) | {' | '.join(medians)} |")
    cpu_keys = [f"{phase} cpu/run" for phase in PHASES] + ["training processes cpu/run"]
    cpu_keys += ["launcher and workers cpu/run", "figures cpu/run", "writers cpu/run"]
    for key in [*PHASES, REST, *cpu_keys]:
        values = [statistics.median(s[key] for s in shares[variant]) for variant in variants]
        cells = [f"{v:.2f} s" if "cpu" in key else f"{100 * v:.0f}%" for v in values]
        print(f"| {key} | {' | '.join(cells)} |")
    print()
    for slower, faster, what in _ratios(variants):
        ratio = statistics.median(a / b for a, b in zip(walls[slower], walls[faster], strict=True))
        print(f"{what}: {ratio:.2f}x ({slower} / {faster}, median of per-round ratios)")


def _ratios(variants: dict[str, list[str]]) -> list[tuple[str, str, str]]:
    """The pairs of variants worth a ratio: basic against joblib, figures on against off."""
    pairs = [
        (f"basic{s}", f"joblib-2{s}", f"joblib with 2 workers faster{s}")
        for s in ["", " no figures"]
    ]
    pairs += [
        (launcher, f"{launcher} no figures", f"wall time with the per-run figures, {launcher}")
        for launcher in LAUNCHERS
    ]
    return [(a, b, what) for a, b, what in pairs if a in variants and b in variants]


if __name__ == "__main__":
    main()
