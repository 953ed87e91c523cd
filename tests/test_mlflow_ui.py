"""What a user sees of a run in MLflow's UI, read back from a real sqlite store: gradient-vs-layer
profiles, summary scalars, names, descriptions and tags."""

from __future__ import annotations

import math
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


def test_summary_scalars_group_under_one_prefix(tracked: Any) -> None:
    """The run table can sort by summary/*: the test metrics, the lr, the gradient ratio of the
    logged profile, the fractions."""
    client, run, _ = tracked
    metrics = run.data.metrics
    summary = {key for key in metrics if key.startswith("summary/")}
    assert summary == {
        *("summary/log10_grad_ratio_init", "summary/log10_grad_ratio_final"),
        *("summary/dead_fraction", "summary/saturated_fraction"),
        *("summary/test_loss", "summary/test_accuracy", "summary/lr"),
    }
    assert metrics["summary/test_accuracy"] == metrics["test/accuracy"]
    assert metrics["summary/test_loss"] == metrics["test/loss"]
    assert metrics["summary/lr"] == 0.1  # the default SGD lr
    for when in ("init", "final"):
        profile = [v for _, v in points(client, run, f"profile/grad_norm_{when}")]
        ratio = metrics[f"summary/log10_grad_ratio_{when}"]
        assert ratio == pytest.approx(math.log10(profile[0] / profile[-1]), rel=1e-12)
    assert metrics["summary/dead_fraction"] == 0.0  # tanh: f′ > 0 everywhere
    assert 0.0 <= metrics["summary/saturated_fraction"] < 1.0
