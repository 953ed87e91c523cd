"""Reading runs back from the MLflow store for the figures: which runs (``select``), their
histories and 2-D classifiers (one artifact download per run), and logging the drawn files to
the sweep's parent run.  The store's plumbing is ``experiments.tracking.store``'s; MLflow is
imported on first use.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.diagnostics.history import HISTORY_FILE, History
from experiments.figures.boundaries import MODEL_FILE, load_model
from experiments.figures.common import RunInfo
from experiments.tracking.store import (
    TrackingError,
    check_tracking_uri,
    children_of,
    describe_failure,
    end_orphaned_runs,
    fetch_artifact,
    masked,
    mlflow_client,
    search_all,
    sqlite_problem,
)

if TYPE_CHECKING:
    from mlflow.entities import Run

    from bpcore import MLP

FINISHED = "attributes.status = 'FINISHED'"
PARENTLESS = "tags.mlflow.parentRunId IS NULL"


@dataclass
class Selection:
    """The runs to plot and where they came from."""

    experiment: str
    parent_run_id: str | None  # the sweep's parent run, if all runs share one
    runs: list[RunInfo]


def latest_sweep(client: Any, experiment_ids: list[str]) -> Run | None:
    """The most recently started run without a parent that has children."""
    order = ["attributes.start_time DESC"]
    for run in search_all(client.search_runs, experiment_ids, PARENTLESS, order_by=order):
        if client.search_runs(
            [run.info.experiment_id], children_of(run.info.run_id), max_results=1
        ):
            return run  # type: ignore[no-any-return]
    return None


def check_store(uri: str) -> None:
    """Refuse, in seconds and without MLflow, a store the figures cannot read: a sqlite file
    that is missing or not an MLflow store (MLflow would create one), a database or server
    that does not answer (MLflow would retry for minutes).  TrackingError, one line."""
    if uri.partition(":")[0].lower() != "sqlite":
        return check_tracking_uri(uri)
    problem = sqlite_problem(uri)
    if problem:
        raise TrackingError(problem)


def select_runs(
    uri: str, experiment: str | None, sweep: str | None, where: str
) -> tuple[str, str | None, list[Run]]:
    """(experiment name, shared parent run id or None, FINISHED runs with a config) for a sweep
    id, an experiment's most recent sweep, or the store's most recent sweep; ``where`` is an
    MLflow search filter on top.  TrackingError when nothing matches."""
    from mlflow.exceptions import MlflowException

    client = mlflow_client(uri)
    end_orphaned_runs(client)
    found = None
    if sweep:
        try:
            parent = client.get_run(sweep)
        except MlflowException:
            raise TrackingError(f"no run {sweep!r} in {uri}") from None
        what = f"sweep {sweep}"
    elif experiment:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise TrackingError(f"no experiment {experiment!r} in {uri}")
        parent = None if where else latest_sweep(client, [found.experiment_id])
        what = f"experiment {experiment!r}"
        if not where:
            if parent is None:
                raise TrackingError(
                    f"experiment {experiment!r} in {uri} has no sweep; use --filter"
                )
            what += f" (its most recent sweep, {parent.info.run_id})"
    else:
        all_ids = [e.experiment_id for e in search_all(client.search_experiments)]
        parent = latest_sweep(client, all_ids)
        if parent is None:
            raise TrackingError(f"no sweep (a parent run with child runs) in {uri}")
        what = f"the most recent sweep ({parent.info.run_id})"
    base = children_of(parent.info.run_id) if parent else ""
    if parent is not None:
        experiment_id = parent.info.experiment_id
    else:  # --experiment with --filter: all of the experiment's runs
        assert found is not None
        experiment_id = found.experiment_id
    query = " and ".join(q for q in (base, FINISHED, where) if q)
    try:
        order = ["attributes.start_time"]
        runs = search_all(client.search_runs, [experiment_id], query, order_by=order)
    except MlflowException as e:
        raise TrackingError(f"bad --filter {where!r} for {uri}: {e.message}") from None
    runs = [r for r in runs if r.data.params]  # a parent run has no config
    if not runs:
        having = f" matching {where!r}" if where else ""
        raise TrackingError(f"no FINISHED runs in {uri} for {what}{having}")
    parents = {r.data.tags.get("mlflow.parentRunId") for r in runs}
    parent_id = parents.pop() if len(parents) == 1 else None
    return str(client.get_experiment(experiment_id).name), parent_id, runs


def select(uri: str, experiment: str | None, sweep: str | None, where: str) -> Selection:
    """Resolve --sweep / --experiment / --filter into FINISHED runs (from a store that
    ``check_store`` passed); exit with one line if none, or if the store fails."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    try:
        name, parent, found = select_runs(uri, experiment, sweep, where)
    except TrackingError as e:
        sys.exit(f"error: {e}")
    except (MlflowException, SQLAlchemyError, OSError) as e:  # e.g. a read-only sqlite store
        sys.exit(f"error: MLflow cannot read the store {masked(uri)}: {describe_failure(uri, e)}")
    runs = [
        RunInfo(r.info.run_id, r.info.run_name, r.data.params, r.data.tags, r.info.artifact_uri)
        for r in found
    ]
    return Selection(name, parent, runs)


def read_histories(uri: str, runs: Sequence[RunInfo]) -> dict[str, History]:
    """One ``history.npz`` download per run; runs without one are left out with a note."""
    histories = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            try:
                path = fetch_artifact(uri, run.artifact_uri, HISTORY_FILE, Path(tmp, run.run_id))
                histories[run.run_id] = History.load(path)
            except Exception as e:  # missing or unreadable: plot the others
                print(f"note: run {run.name} ({run.run_id}) left out: {e}", file=sys.stderr)
    return histories


def read_classifiers(uri: str, runs: Sequence[RunInfo]) -> dict[str, MLP]:
    """The trained nets of the runs that classify 2-D inputs (one ``model.npz`` download
    each); other nets, diverged runs and unreadable files are skipped."""
    models = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in (r for r in runs if not r.diverged):
            try:
                path = fetch_artifact(uri, run.artifact_uri, MODEL_FILE, Path(tmp, run.run_id))
                net = load_model(path, run.params)
            except Exception as e:  # an older run without weights: no panel
                print(f"note: no decision boundary for run {run.name}: {e}", file=sys.stderr)
                continue
            if net.layer_sizes[0] == 2 and net.head.name == "softmax":
                models[run.run_id] = net
    return models


def log_files(uri: str, run_id: str, paths: list[Path], folder: str) -> None:
    """Log ``paths`` as artifacts of ``run_id`` under ``folder``."""
    client = mlflow_client(uri)
    try:
        for path in paths:
            client.log_artifact(run_id, str(path), folder)
    except Exception as e:
        raise TrackingError(f"cannot log the files to run {run_id}: {e}") from None
