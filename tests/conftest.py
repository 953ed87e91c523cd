"""Shared fixtures: Hydra's compose API on the project's conf/; processes that tests start."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from threadpoolctl import threadpool_limits

from experiments.app.schema import register_configs

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.fixture
def one_blas_thread() -> Iterator[None]:
    """Small matmuls: one BLAS thread is faster, and much faster on a loaded machine.  For the
    modules that train many small nets: ``pytestmark = pytest.mark.usefixtures(...)``."""
    with threadpool_limits(1):
        yield


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


Spawn = Callable[..., "subprocess.Popen[str]"]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """spawn(command, **popen_kwargs): a text-mode process in a session of its own, with
    SIGINT's default action whatever the caller's (a background job inherits it ignored).
    When the test ends, however it ends, each one is killed with every process of its session
    (its writer, its workers)."""
    processes: list[subprocess.Popen[str]] = []

    def start(command: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            command,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            text=True,
            **kwargs,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(60)
