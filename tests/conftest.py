"""Shared fixtures: Hydra's compose API on the project's conf/."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from experiments.app.schema import register_configs

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.fixture(scope="session")
def compose_config() -> Iterator[Callable[..., DictConfig]]:
    """compose_config(overrides) → the config ``python -m experiments.train`` would compose;
    ``hydra=True`` keeps the ``hydra`` node (launcher, sweeper, callbacks)."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):

        def _compose(overrides: list[str] | None = None, hydra: bool = False) -> DictConfig:
            return compose(
                config_name="config", overrides=overrides or [], return_hydra_config=hydra
            )

        yield _compose
