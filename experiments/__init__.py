"""The suite around bpcore: train and sweep with Hydra, track in MLflow, draw figures.

    app/          the training app (``python -m experiments.train``): config schema and checks,
                  the sweep callback, the ``_target_`` check
    diagnostics/  per-layer gradient-flow metrics, recorded as a run's history
    comparison/   the protocol of a fair comparison: each config's lr, intervals over seeds
    tracking/     writing runs to MLflow: the store, a run, the writer process
    figures/      reading runs back and drawing them (``python -m experiments.plots``)
    server/       a shared MLflow server on PostgreSQL (``python -m experiments.server``)

Imports go one way: app and figures → comparison, diagnostics, tracking; server →
diagnostics, tracking; all of them → bpcore.  ``tests/test_imports.py`` checks it.
"""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
