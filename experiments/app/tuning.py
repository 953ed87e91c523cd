"""Two-stage sweeps: every config at its own learning rate (``hydra/sweeper=tune``).

    python -m experiments.train -m activation=relu,tanh model.depth=3,10 hydra/sweeper=tune
    python -m experiments.train -m experiment=activations     # the presets use it

A *config* is one combination of the sweep's values (``hydra.sweeper.params`` and the command
line's sweeps), everything but the learning rate and the seed.  Stage 1 (``stage=tune``)
trains each config at every ``hydra.sweeper.lrs`` with each of ``hydra.sweeper.tune_seeds``;
the lr with the best mean final validation loss wins (``experiments.comparison.selection``).
Stage 2 (``stage=final``) trains each config at its lr with each of ``hydra.sweeper.seeds``:
the runs that are reported, on the test split.  Both stages are child runs of one MLflow
parent run, which gets the choice as ``lr_selection.csv`` and a tag ``lr/<config>`` each.

The selection reads the stage-1 runs back from the store, so a sweep resumed with
``mlflow.resume=true`` after a kill between the stages chooses from the runs it skips.  The
sweeper itself is ``hydra_plugins.bplab_tuning`` (Hydra loads sweepers only from there).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, replace
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from experiments.app.setup import ConfigError
from experiments.comparison.records import Config, Record, config_label, record
from experiments.comparison.selection import candidates, choose
from experiments.tracking.provenance import config_hash

SWEEPER = "hydra_plugins.bplab_tuning.tuning_sweeper.TuningSweeper"
RESERVED = ("optim.lr", "seed", "stage")  # the tuning sweeper sets these itself


@dataclass(frozen=True)
class Grid:
    """What the tuning sweeper tries: learning rates, stage-1 seeds, stage-2 seeds."""

    lrs: tuple[float, ...]
    tune_seeds: tuple[int, ...]
    seeds: tuple[int, ...]

    @classmethod
    def of(cls, sweeper: DictConfig) -> Grid | None:
        """The grid of the tuning sweeper's config (``hydra.sweeper``), None for another."""
        if sweeper.get("_target_") != SWEEPER:
            return None
        lrs = tuple(float(lr) for lr in sweeper.lrs)
        if not lrs or not all(0 < lr < math.inf for lr in lrs):
            raise ConfigError("hydra.sweeper.lrs", list(lrs), "positive finite learning rates")
        grid = cls(lrs, tuple(sweeper.tune_seeds), tuple(sweeper.seeds))
        for key, seeds in (("tune_seeds", grid.tune_seeds), ("seeds", grid.seeds)):
            if not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
                raise ConfigError(f"hydra.sweeper.{key}", list(seeds), "integers ≥ 0")
        return grid


def configs(config: DictConfig, loader: Any) -> list[list[str]]:
    """Each job's overrides as Hydra's basic sweeper expands them (for the tuning sweeper: each
    config's), from ``hydra.sweeper.params`` and the command line."""
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()]
    arguments += list(config.hydra.overrides.task)
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(arguments)
    return [list(job) for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def check_reserved(jobs: list[list[str]]) -> None:
    """The tuning sweeper sets optim.lr, seed and stage itself."""
    for job in jobs:
        for override in job:
            key = override.split("=", 1)[0].lstrip("+~")
            if key in RESERVED:
                allowed = "set by hydra/sweeper=tune (hydra.sweeper.lrs, tune_seeds, seeds)"
                raise ConfigError(key, override.split("=", 1)[1], allowed)


@dataclass(frozen=True)
class Job:
    """A job of a tuned sweep: its overrides, and the config, lr, seed and stage they set."""

    overrides: list[str]
    config: int  # index into the sweep's configs
    lr: float
    seed: int
    stage: str

    def hash(self, composed: DictConfig) -> str:
        """Its config hash, from ``composed``, its config's composition at any lr, seed and
        stage (composing every job would take ≈ 0.2 s each)."""
        return config_hash(composed, optim__lr=self.lr, seed=self.seed, stage=self.stage)


def _job(configs: list[list[str]], index: int, lr: float, seed: int, stage: str) -> Job:
    overrides = [*configs[index], f"optim.lr={lr}", f"seed={seed}", f"stage={stage}"]
    return Job(overrides, index, lr, seed, stage)


def tuning_jobs(configs: list[list[str]], grid: Grid) -> list[Job]:
    """Stage 1: every config × lr × tuning seed."""
    return [
        _job(configs, index, lr, seed, "tune")
        for index in range(len(configs))
        for lr in grid.lrs
        for seed in grid.tune_seeds
    ]


def final_jobs(configs: list[list[str]], lrs: list[float], grid: Grid) -> list[Job]:
    """Stage 2: every config at its lr × seed."""
    return [
        _job(configs, index, lr, seed, "final")
        for index, lr in enumerate(lrs)
        for seed in grid.seeds
    ]


def composed(
    config: DictConfig, loader: Any, configs: list[list[str]], grid: Grid
) -> list[DictConfig]:
    """Each config composed once, at the grid's first lr and tuning seed."""
    first = [_job(configs, i, grid.lrs[0], grid.tune_seeds[0], "tune") for i in range(len(configs))]
    return [loader.load_sweep_config(config, job.overrides) for job in first]


def labels(configs: list[list[str]]) -> list[Config]:
    """Each config as the (key, value) pairs of the overrides that differ between configs:
    what it is called in tables and tags."""
    split = [dict(o.partition("=")[::2] for o in config) for config in configs]
    varying = [k for k in split[0] if len({config.get(k) for config in split}) > 1]
    return [tuple((key, config[key]) for key in varying) for config in split]


@dataclass(frozen=True)
class Choice:
    """The lr of each config, and the table it was chosen from."""

    lrs: list[float]
    table: str  # lr_selection.csv

    def tags(self, configs: list[list[str]]) -> dict[str, str]:
        """``lr/<config> = <lr>`` per config (MLflow tag keys allow [/\\w.\\- :])."""
        names = [config_label(c).replace("=", ":").replace(", ", " ") for c in labels(configs)]
        return {f"lr/{name}"[:250]: f"{lr:g}" for name, lr in zip(names, self.lrs, strict=True)}


def choice(configs: list[list[str]], runs: list[Any], job_of: dict[str, Job]) -> Choice:
    """Each config's lr from its stage-1 ``runs`` (MLflow runs: the latest FINISHED attempt
    of each job counts), where ``job_of`` maps a job's config hash to its stage-1 job.  A job
    without a FINISHED run counts as diverged: its lr loses."""
    latest: dict[str, Any] = {}
    for run in runs:  # oldest first
        job = run.data.tags.get("config_hash", "")
        if job in job_of and run.info.status == "FINISHED":
            latest[job] = run
    names = labels(configs)
    records = []
    for job, tuned in job_of.items():
        config = names[tuned.config]
        run = latest.get(job)
        if run is None:
            nan = math.nan
            records.append(Record(config, tuned.lr, tuned.seed, "tune", True, nan, nan, nan, nan))
        else:
            found = record(run.data.params, run.data.tags, run.data.metrics, [])
            records.append(replace(found, config=config, lr=tuned.lr))
    options = candidates(records)
    lrs = [choose(options[name]).lr for name in names]
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(("config", "lr", "mean_val_loss", "seeds", "diverged", "chosen"))
    for name, lr in zip(names, lrs, strict=True):
        for option in options[name]:
            numbers = (option.mean_val_loss, option.seeds, option.diverged)
            writer.writerow((config_label(name), option.lr, *numbers, option.lr == lr))
    return Choice(lrs, table.getvalue())
