"""What a user sees of a run in MLflow's UI, read back from a real sqlite store: gradient-vs-layer
profiles, summary scalars, names, descriptions and tags."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from omegaconf import DictConfig

from experiments.app.train import train
from experiments.tracking.run import close_writer

TINY = ["data.n_samples=200", "train.epochs=3", "model.width=8", "log.every_n_steps=5"]
DEPTH = 3


def only_run(uri: str, experiment: str = "default") -> Any:
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return run


@pytest.fixture(scope="module")
def tracked(
    tmp_path_factory: pytest.TempPathFactory, compose_config: Callable[..., DictConfig]
) -> Iterator[tuple[MlflowClient, Any, Path]]:
    """One tiny tanh-d3 run, trained in this process into a store of its own."""
    folder = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{folder}/mlflow.db"
    outcome = train(compose_config([*TINY, f"mlflow.tracking_uri={uri}"]))
    assert outcome.status == "FINISHED", outcome.error
    yield MlflowClient(uri), only_run(uri), folder
    close_writer()


def points(client: MlflowClient, run: Any, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))


@pytest.mark.parametrize("family", ["grad_norm", "delta_norm", "act_var"])
def test_profiles_are_logged_against_the_hidden_layer(tracked: Any, family: str) -> None:
    """profile/* has one point per hidden layer, at step = the layer (1 … depth)."""
    client, run, _ = tracked
    for when in ("init", "final"):
        assert [s for s, _ in points(client, run, f"profile/{family}_{when}")] == [1, 2, 3]


def test_profiles_are_the_first_and_last_recorded_layer_values(tracked: Any) -> None:
    """At init: the per-layer series at step 0; final: at the last recorded step."""
    client, run, _ = tracked
    series = {
        "grad_norm": lambda l: points(client, run, f"grad_norm/layer_{l:02d}"),
        "act_var": lambda l: [(s, v**2) for s, v in points(client, run, f"act_std/layer_{l:02d}")],
    }
    for family, of_layer in series.items():
        init = points(client, run, f"profile/{family}_init")
        final = points(client, run, f"profile/{family}_final")
        for l in range(1, DEPTH + 1):
            over_time = of_layer(l)
            assert over_time[0][0] == 0 and over_time[-1][0] == 10  # 15 steps, every 5
            assert init[l - 1][1] == pytest.approx(over_time[0][1], rel=1e-12)
            assert final[l - 1][1] == pytest.approx(over_time[-1][1], rel=1e-12)
