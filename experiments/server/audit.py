"""Did a sweep arrive whole?  Every job a FINISHED child run, every metric point in the store.

The reference for each run is its own ``history.npz`` artifact (every point the training sent);
the store's points are counted with one SQL query on the backend database (MLflow's API would
need one request per run and key).  Used by ``benchmarks/soak.py`` and the server tests.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from experiments.diagnostics.history import HISTORY_FILE, History
from experiments.tracking.store import child_runs, fetch_artifact


@dataclass
class SweepAudit:
    """What a sweep's store holds, against what its jobs sent."""

    expected_runs: int
    finished_runs: int = 0
    expected_points: int = 0
    stored_points: int = 0
    lost_points: int = 0  # summed over (run, key) of max(0, sent − stored)
    not_finished: list[str] = field(default_factory=list)  # "run name: STATUS"

    @property
    def lost_runs(self) -> int:
        return self.expected_runs - self.finished_runs


def stored_point_counts(store_uri: str, run_ids: list[str]) -> dict[tuple[str, str], int]:
    """(run id, metric key) → number of points in the backend store (sqlite or PostgreSQL)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(store_uri)
    query = sqlalchemy.text(
        "SELECT run_uuid, key, COUNT(*) FROM metrics WHERE run_uuid IN :ids GROUP BY run_uuid, key"
    ).bindparams(sqlalchemy.bindparam("ids", expanding=True))
    try:
        with engine.connect() as connection:
            rows = connection.execute(query, {"ids": run_ids}).all()
    finally:
        engine.dispose()
    return {(run_id, key): int(count) for run_id, key, count in rows}


def audit_sweep(
    tracking_uri: str, store_uri: str, parent_run_id: str, expected_runs: int
) -> SweepAudit:
    """Compare the children of ``parent_run_id`` (read through ``tracking_uri``) with their
    history.npz; ``store_uri`` is the backend database (the same URI for a sqlite store)."""
    audit = SweepAudit(expected_runs)
    runs = child_runs(tracking_uri, parent_run_id)
    finished = [run for run in runs if run.info.status == "FINISHED"]
    audit.finished_runs = len(finished)
    audit.not_finished = [
        f"{r.info.run_name}: {r.info.status}" for r in runs if r.info.status != "FINISHED"
    ]
    stored = stored_point_counts(store_uri, [run.info.run_id for run in finished])
    with tempfile.TemporaryDirectory() as tmp:
        for run in finished:
            folder = Path(tmp) / run.info.run_id
            history = History.load(
                fetch_artifact(tracking_uri, run.info.artifact_uri, HISTORY_FILE, folder)
            )
            for key in history.keys:
                sent = len(history.series(key)[0])
                have = stored.get((run.info.run_id, key), 0)
                audit.expected_points += sent
                audit.stored_points += have
                audit.lost_points += max(0, sent - have)
    return audit
