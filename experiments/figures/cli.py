"""Figures for write-ups, regenerated from MLflow in one command.

    python -m experiments.plots                           # the most recent sweep
    python -m experiments.plots --experiment activations  # that experiment's most recent sweep
    python -m experiments.plots --sweep RUN_ID --filter "params.model.depth = '10'"

Reads the FINISHED runs' params and tags (one search) and each run's ``history.npz`` (one
download per run); draws every figure the runs can show in worker processes (those that need
no runs while MLflow is still loading); writes ``<out>/<name>.{png,pdf}``, the sweep's
summary table (``summary.md``, ``summary.csv``, also printed) and ``manifest.json`` (per
file: its caption, runs and metric keys; the selection and git commit) and logs them to the
sweep's parent run under ``figures/``.  A tuned sweep's figures show its reported (final)
runs; its tuning runs are in ``lr_sensitivity``.  Same runs, same PDF and SVG bytes.
The figures: ``experiments.figures.registry``; their look: ``experiments.figures.style``.

A figure that fails is named on stderr, with its error, and the others are still written.
Exit status: 0 every figure written and logged; 1 an error, said in one line on stderr (no
such store or runs, a store that cannot be read, a figure not drawn, the files not logged);
2 a bad argument.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from experiments.comparison import summary
from experiments.diagnostics.history import HISTORY_FILE
from experiments.figures import style
from experiments.figures.common import Data, RunInfo, config_keys, panel_runs, record_of
from experiments.figures.registry import FIGURES, chosen, figure
from experiments.figures.runs import (
    check_store,
    log_files,
    read_classifiers,
    read_histories,
    select,
)
from experiments.tracking.provenance import git_commit
from experiments.tracking.store import TrackingError, default_tracking_uri

MAX_PANELS = 16  # one-panel-per-config figures: at most this many panels (4 × 4)

Drawn = tuple[dict[str, bytes], list[RunInfo], list[str]]  # files by format, runs, keys


def draw(name: str, data: Data, formats: list[str]) -> Drawn:
    """One figure, drawn in a worker process (a module-level function: any start method)."""
    style.apply()
    fig, shown, used = figure(name).draw(data)
    return style.render(fig, formats), shown, used


def _log_to_parent(uri: str, parent: str | None, paths: list[Path], where: str) -> None:
    """Log the files under ``figures/`` of the parent run; a --filter selection under
    ``figures/filter-<hash>/`` so that it does not replace the whole sweep's figures."""
    if parent is None:
        print("note: the runs share no parent run: files not logged to MLflow", file=sys.stderr)
        return
    folder = "figures"
    if where:
        folder += f"/filter-{hashlib.sha1(where.encode()).hexdigest()[:8]}"
    try:
        log_files(uri, parent, paths, folder)
    except TrackingError as e:
        sys.exit(f"error: {e} (the files are in {paths[0].parent})")
    print(f"logged {len(paths)} files to run {parent} (artifacts: {folder}/)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.plots",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--experiment", help="an MLflow experiment: its most recent sweep")
    which.add_argument("--sweep", metavar="RUN_ID", help="a sweep's parent run id")
    parser.add_argument("--filter", default="", help="an MLflow search filter on top")
    parser.add_argument("--out", help="output folder (default: figures/<experiment>/)")
    parser.add_argument("--formats", default="png,pdf", help="of png,pdf,svg (default png,pdf)")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else mlflow.db")
    parser.add_argument(
        "--target-loss",
        type=float,
        help="train loss for the steps-to-target panel (default: one half of the configs reach)",
    )
    args = parser.parse_args(argv)
    args.formats = list(dict.fromkeys(f.strip().lower() for f in args.formats.split(",")))
    if not set(args.formats) <= set(style.FORMATS):
        parser.error(f"--formats {','.join(args.formats)}: choose from {','.join(style.FORMATS)}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Select runs, draw every figure, write the manifest, log the files to the parent run."""
    args = parse_args(argv)
    uri = default_tracking_uri(args.tracking_uri)
    try:
        check_store(uri)
    except TrackingError as e:
        sys.exit(f"error: {e}")
    # The workers start now, before MLflow is imported (forked on Linux, spawned on macOS: each
    # task is ``draw`` and its arguments, pickled); figures that need no runs start drawing now.
    with ProcessPoolExecutor(max(1, min(3, os.cpu_count() or 1))) as pool:
        no_runs = Data([], {}, [], [])
        futures: dict[str, Future[Drawn]] = {
            kind.name: pool.submit(draw, kind.name, no_runs, args.formats)
            for kind in FIGURES
            if not kind.needs_runs
        }
        selection = select(uri, args.experiment, args.sweep, args.filter)
        histories = read_histories(uri, selection.runs)
        found = [r for r in selection.runs if r.run_id in histories]
        if not found:
            sys.exit(f"error: none of the {len(selection.runs)} selected runs has a {HISTORY_FILE}")
        runs, tuning = Data.split(found)
        keys = config_keys(runs)
        panels, note = panel_runs(runs, keys, MAX_PANELS)
        if note:
            print(
                f"note: one-panel-per-config figures: {note} (narrow with --filter)",
                file=sys.stderr,
            )
        models = read_classifiers(uri, [run for _, run in panels])
        data = Data(runs, histories, keys, panels, models, args.target_loss, tuning)
        names = chosen(data)
        for name in names:
            if name not in futures:  # not drawn already
                futures[name] = pool.submit(draw, name, data, args.formats)
        drawn: dict[str, Drawn] = {}
        failed: dict[str, str] = {}  # by figure: its error
        for name in names:
            try:
                drawn[name] = futures[name].result()
            except Exception as e:  # a bug, or runs it cannot draw: the other figures still are
                failed[name] = f"{type(e).__name__}: {' '.join(str(e).split())}"
                print(f"error: figure {name} not drawn: {failed[name]}", file=sys.stderr)
    folder = re.sub(r"[^\w.\-]+", "_", selection.experiment).strip("._") or "experiment"
    out = Path(args.out) if args.out else Path("figures", folder)
    out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, dict[str, object]] = {}
    written: list[Path] = []
    for name, (files, shown, used) in drawn.items():
        for fmt, content in files.items():
            written.append(out / f"{name}.{fmt}")
            written[-1].write_bytes(content)
            runs_shown = [{"id": r.run_id, "name": r.name} for r in shown]
            caption = figure(name).caption
            figures[written[-1].name] = {
                "caption": caption,
                "runs": runs_shown,
                "metric_keys": used,
            }
            print(written[-1])
    selected = {"tracking_uri": uri, "experiment": args.experiment, "sweep": args.sweep}
    resolved = {"experiment": selection.experiment, "sweep": selection.parent_run_id}
    selected |= {"filter": args.filter, "resolved": resolved, "config_keys": keys}
    selected |= {"target_loss": args.target_loss}
    manifest = {"git_commit": git_commit(), "selection": selected, "figures": figures}
    manifest |= {"not_drawn": failed}
    table = summary.rows([record_of(r, histories[r.run_id], keys) for r in runs])
    tables = {"summary.md": summary.markdown(table), "summary.csv": summary.csv_text(table)}
    for name, text in tables.items():
        written.append(out / name)
        written[-1].write_text(text)
    written.append(out / "manifest.json")
    written[-1].write_text(json.dumps(manifest, indent=2) + "\n")
    print(written[-1])
    print(f"test metrics over seeds (mean ± 95% interval, Student t):\n{tables['summary.md']}")
    _log_to_parent(uri, selection.parent_run_id, written, args.filter)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
