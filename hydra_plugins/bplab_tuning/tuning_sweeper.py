"""``hydra/sweeper=tune``: each config at its own learning rate, chosen on validation loss.

Hydra instantiates sweepers only from the ``hydra_plugins`` namespace, so the class lives here;
what it does is ``experiments.app.tuning``.  It runs stage 1 (every config × lr × tuning seed),
reads those runs back from MLflow, chooses each config's lr, logs the choice to the sweep's
parent run, and runs stage 2 (every config at its lr × seed), with the launcher the sweep was
given (basic, joblib, submitit, Slurm, Ray).

No ``from __future__ import annotations`` here: Hydra's plugin scan executes this module before
it is in ``sys.modules``, where dataclasses would look its string annotations up.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from omegaconf import OmegaConf


@dataclass
class TuningSweeperConf:
    _target_: str = "hydra_plugins.bplab_tuning.tuning_sweeper.TuningSweeper"
    max_batch_size: Optional[int] = None  # noqa: UP045  jobs per launch (None: a stage at once)
    params: Optional[dict[str, str]] = None  # noqa: UP045  the configs' axes, as Hydra's basic
    lrs: list[float] = field(default_factory=lambda: [1e-3, 3e-3, 1e-2, 3e-2, 1e-1])
    tune_seeds: list[int] = field(default_factory=lambda: [100, 101])  # stage 1
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])  # stage 2: reported


ConfigStore.instance().store(
    group="hydra/sweeper", name="tune", node=TuningSweeperConf, provider="bplab"
)


class TuningSweeper(BasicSweeper):
    """Hydra's basic sweeper, run twice: the lr grid, then the reported seeds."""

    def __init__(
        self,
        max_batch_size: Optional[int],  # noqa: UP045  (OmegaConf reads these annotations)
        params: Optional[dict[str, str]],  # noqa: UP045
        lrs: list[float],
        tune_seeds: list[int],
        seeds: list[int],
    ) -> None:
        super().__init__(max_batch_size, params)

    def sweep(self, arguments: list[str]) -> Any:
        from experiments.app import tuning
        from experiments.app.sweep import SweepInfo
        from experiments.comparison.records import config_label
        from experiments.tracking.store import child_runs, log_text, set_tags

        assert self.config is not None and self.hydra_context is not None
        loader = self.hydra_context.config_loader
        grid = tuning.Grid.of(self.config.hydra.sweeper)
        assert grid is not None
        configs = tuning.configs(self.config, loader)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        stage1 = tuning.tuning_jobs(configs, grid)
        returns = [self._launch([job.overrides for job in stage1], 0)]

        info = SweepInfo.load(sweep_dir)
        assert info is not None, "the sweep callback checks that tracking is on"
        job_of = dict(zip(info.config_hashes[: len(stage1)], stage1, strict=True))
        runs = child_runs(info.tracking_uri, info.parent_run_id, info.experiment_id)
        choice = tuning.choice(configs, runs, job_of)
        log_text(info.tracking_uri, info.parent_run_id, choice.table, "lr_selection.csv")
        set_tags(info.tracking_uri, info.parent_run_id, choice.tags(configs))
        for name, lr in zip(tuning.labels(configs), choice.lrs, strict=True):
            print(f"chosen lr {lr:g} for {config_label(name)}", flush=True)

        stage2 = tuning.final_jobs(configs, choice.lrs, grid)
        composed = tuning.composed(self.config, loader, configs, grid)
        hashes = [job.hash(composed[job.config]) for job in stage2]
        final = info.config_hashes[: len(stage1)] + hashes
        dataclasses.replace(info, config_hashes=final).save(sweep_dir)
        returns.append(self._launch([job.overrides for job in stage2], len(stage1)))
        return returns

    def _launch(self, jobs: list[list[str]], first: int) -> list[JobReturn]:
        """Launch ``jobs`` in batches of max_batch_size, numbered from ``first``.  Unlike the
        basic sweeper it does not compose every job first to see that it composes (≈ 0.2 s a
        job): the sweep callback has checked each config."""
        assert self.launcher is not None
        results: list[JobReturn] = []
        for batch in self.split_overrides_to_chunks(jobs, self.max_batch_size):
            results.extend(self.launcher.launch(batch, initial_job_idx=first + len(results)))
        return results
