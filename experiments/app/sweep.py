"""Multirun bookkeeping: validate every job, then open one MLflow parent run for the sweep.

Hydra calls ``on_multirun_start`` once in the launching process before any job starts (with any
launcher: basic, joblib, submitit, ray).  There we expand the sweep exactly as Hydra's basic
sweeper will, compose and check every job's config, create the store, the experiment and the
parent run (so parallel jobs never race to create them), and leave a ``mlflow_sweep.json`` in
the sweep directory from which each job learns its parent; the launching process holds that
directory's ``mlflow_sweep.lock`` until it exits, so a second sweep started in the same
directory is refused instead of logging under the first one's parent.  ``on_multirun_end``
ends the parent FINISHED only if every job's run FINISHED, else the sweep exits 1 (an
untracked sweep too, if a job failed: it leaves a file in ``failed_jobs/``).  A bad
value in any job, or a store that cannot be opened, stops the sweep before its first job with
one line (exit status 1).

``mlflow.resume=true`` continues the sweep that ran most of these jobs in the experiment (a job
is its ``config_hash``; of sweeps that tie, the last to run one): its parent run is set RUNNING
again, runs it left RUNNING (a job killed with its writer) end KILLED, and the jobs that
already FINISHED under it are skipped (each still starts, and exits at once); the rest run
again as new children of that parent.

The workers of a launcher that starts them from the launching process (joblib's, from their
start; submitit_local's, from their job's) watch it: if it dies (kill -9), each ends its job as
SIGTERM would, its run KILLED, and exits.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from experiments import PROJECT_ROOT
from experiments.app import tuning
from experiments.app.setup import ConfigError, build
from experiments.app.target_check import foreign_targets
from experiments.comparison import summary
from experiments.comparison.records import config_keys, record, reported_stage
from experiments.tracking.owner import OWNER_TAG, owner_tag, watch_parent
from experiments.tracking.provenance import (
    config_hash,
    preset_description,
    source_tags,
    sweep_description,
)
from experiments.tracking.store import (
    NOTE,
    TrackingError,
    browse_hint,
    child_runs,
    default_tracking_uri,
    describe_experiment,
    finish_parent_run,
    job_attempts,
    log_metrics,
    log_text,
    prepare_experiment,
    reopen_parent_run,
    start_parent_run,
)

if TYPE_CHECKING:
    from filelock import FileLock

SWEEP_FILE = "mlflow_sweep.json"
SWEEP_LOCK = "mlflow_sweep.lock"
FAILED_JOBS = "failed_jobs"  # in an untracked sweep's directory: a file per job that failed


@dataclass(frozen=True)
class SweepInfo:
    """What every job of a sweep needs to log under the sweep's parent run."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    n_jobs: int
    swept_keys: list[str]  # config keys whose value differs between jobs
    config_hashes: list[str]  # each job's identity (provenance.config_hash)
    finished: dict[str, str]  # resume: config hash → name of the run that FINISHED it

    def save(self, sweep_dir: Path) -> None:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / SWEEP_FILE).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, sweep_dir: Path) -> SweepInfo | None:
        """The sweep's info, or None when tracking is off for the sweep."""
        path = sweep_dir / SWEEP_FILE
        return cls(**json.loads(path.read_text())) if path.exists() else None


def record_failed_job(sweep_dir: Path, job: int) -> None:
    """A job of an untracked sweep did not finish: tell the launching process (a tracked
    sweep's parent run learns it from the store)."""
    folder = sweep_dir / FAILED_JOBS
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(job)).touch()


@dataclass(frozen=True)
class Jobs:
    """A sweep's jobs as its callback checks them."""

    overrides: list[list[str]]  # every job's, in the order the sweeper launches them
    composed: list[tuple[list[str], DictConfig]]  # each distinct config to check, named
    hashes: list[str]  # every job's config hash


def expand(config: DictConfig) -> Jobs:
    """The jobs of the sweep ``config``.  The basic sweeper: each job composed.  The tuning
    sweeper: each config composed once (its jobs differ only in lr, seed and stage), and
    stage 2 with the grid's first lr standing in for the one the sweeper chooses (it records
    their hashes then)."""
    loader = GlobalHydra.instance().config_loader()
    configs = tuning.configs(config, loader)
    grid = tuning.Grid.of(config.hydra.sweeper)
    if grid is None:
        composed = [loader.load_sweep_config(config, job) for job in configs]
        named = list(zip(configs, composed, strict=True))
        return Jobs(configs, named, [config_hash(c) for c in composed])
    tuning.check_reserved(configs)
    composed = tuning.composed(config, loader, configs, grid)
    jobs = tuning.tuning_jobs(configs, grid)
    jobs += tuning.final_jobs(configs, [grid.lrs[0]] * len(configs), grid)
    hashes = [job.hash(composed[job.config]) for job in jobs]
    named = list(zip(configs, composed, strict=True))
    return Jobs([job.overrides for job in jobs], named, hashes)


def swept_keys(jobs: list[list[str]]) -> list[str]:
    """The keys whose override value differs between jobs: what the sweep varies."""
    parsed = [dict(override.split("=", 1) for override in job) for job in jobs]
    keys = {key for job in parsed for key in job}
    return sorted(key for key in keys if len({job.get(key) for job in parsed}) > 1)


class MlflowSweepCallback(Callback):
    """Validates a sweep, opens its parent run before the jobs and closes it after them."""

    def __init__(self) -> None:
        self.launcher = os.getpid()  # the launching process (the workers get a copy of this)
        self.sweep: SweepInfo | None = None
        self.sweep_dir = Path()
        self.claim: FileLock | None = None  # the sweep directory's lock, once held
        self.untracked_dir: Path | None = None  # the sweep directory of an untracked sweep

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Any failure stops the sweep before its first job, with one line and exit status 1
        (Hydra would turn the exception into a warning and run the jobs without a parent)."""
        try:
            self._start(config)
        except Exception as error:
            sys.exit(f"error: {_one_line(error)}")
        if "Joblib" in config.hydra.launcher.get("_target_", ""):
            _watched_workers()

    def _start(self, config: DictConfig) -> None:
        _check_launcher(config.hydra.launcher)
        jobs = expand(config)
        for overrides, composed in jobs.composed:
            _check(composed, overrides)
        first = jobs.composed[0][1]
        for key in ("enabled", "tracking_uri", "experiment_name", "resume", "sweep_figures"):
            if len({job.mlflow[key] for _, job in jobs.composed}) > 1:
                raise ConfigError(f"mlflow.{key}", "a sweep", "one value for all jobs")
        if first.mlflow.resume and not first.mlflow.enabled:
            raise ConfigError("mlflow.resume", True, "needs mlflow.enabled=true")
        if tuning.Grid.of(config.hydra.sweeper) and not first.mlflow.enabled:
            allowed = "true with hydra/sweeper=tune, which reads its stage-1 runs from MLflow"
            raise ConfigError("mlflow.enabled", False, allowed)
        if not first.mlflow.enabled:  # the jobs that fail leave a file here instead
            self.untracked_dir = Path(config.hydra.sweep.dir)
            shutil.rmtree(self.untracked_dir / FAILED_JOBS, ignore_errors=True)
            return
        uri = default_tracking_uri(first.mlflow.tracking_uri)
        experiment_id = prepare_experiment(uri, first.mlflow.experiment_name)
        self._claim(Path(config.hydra.sweep.dir))
        started = datetime.now().strftime("%Y%m%d-%H%M%S")
        n_jobs, hashes = len(jobs.overrides), jobs.hashes
        tags = {"overrides": " ".join(config.hydra.overrides.task), "n_jobs": str(n_jobs)}
        tags[OWNER_TAG] = owner_tag(os.getpid())
        resumed = None
        if first.mlflow.resume:
            resumed = _resume(uri, experiment_id, hashes, tags | {"resumed": started})
        if resumed is not None:
            parent, finished = resumed
            skipped = sum(job in finished for job in hashes)
            print(f"resuming sweep {parent}: {skipped} of {n_jobs} jobs already FINISHED")
        else:
            if first.mlflow.resume:
                print(f"resume: no job of this sweep ran in {first.mlflow.experiment_name!r} yet")
            name = f"{first.preset}-{started}"
            tags |= source_tags() | {"preset": first.preset}
            tags[NOTE] = sweep_description(first.preset, sys.argv[1:])
            describe_experiment(uri, experiment_id, preset_description(first.preset))
            parent, finished = start_parent_run(uri, experiment_id, name, tags), {}
            print(f"sweep {name}: {n_jobs} jobs, parent run {parent}")
        swept = swept_keys(jobs.overrides)
        self.sweep = SweepInfo(uri, experiment_id, parent, n_jobs, swept, hashes, finished)
        # on Ctrl-C, SIGTERM or a crash too: the parent never stays RUNNING
        atexit.register(self._close, cut_short=True)
        self.sweep.save(self.sweep_dir)
        sys.stdout.flush()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """In a worker of the launching process (joblib, submitit_local): if the launching
        process dies (kill -9 leaves its workers training on), the worker stops."""
        if os.getpid() != self.launcher and os.getppid() == self.launcher:
            _watch_launcher(self.launcher)

    def __getstate__(self) -> dict[str, Any]:
        """What a launcher sends its workers with Hydra's callbacks: all but the lock."""
        return self.__dict__ | {"claim": None}

    def _claim(self, sweep_dir: Path) -> None:
        """Hold the lock of the sweep directory (released when this process exits)."""
        from filelock import FileLock, Timeout

        sweep_dir.mkdir(parents=True, exist_ok=True)
        self.claim = FileLock(sweep_dir / SWEEP_LOCK)
        try:
            self.claim.acquire(timeout=0)
        except Timeout:
            allowed = "a folder that no running sweep uses"
            raise ConfigError("hydra.sweep.dir", str(sweep_dir), allowed) from None
        self.sweep_dir = sweep_dir

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.sweep is not None:
            _summarize(SweepInfo.load(self.sweep_dir) or self.sweep)
            if config.mlflow.sweep_figures:
                _draw_figures(self.sweep)
        status = self._close()
        if self.untracked_dir and (self.untracked_dir / FAILED_JOBS).exists():
            status = "FAILED"
        if status not in (None, "FINISHED"):
            sys.exit(f"sweep ended {status}: not every job finished (see the lines above)")

    def _close(self, cut_short: bool = False) -> str | None:
        """End the parent run (``cut_short``: the sweep did not reach its end); its status."""
        if self.sweep is None:
            return None
        sweep, self.sweep = self.sweep, None
        sweep = SweepInfo.load(self.sweep_dir) or sweep  # a tuning sweeper adds its stage 2
        try:
            status = finish_parent_run(
                sweep.tracking_uri, sweep.parent_run_id, sweep.config_hashes, cut_short
            )
        except TrackingError as error:  # the runs logged before the store went away are kept
            print(f"parent run {sweep.parent_run_id}: cannot be ended: {error}", flush=True)
            return "FAILED"
        print(f"parent run {sweep.parent_run_id}: {status}; browse with:")
        print(f"  {browse_hint(sweep.tracking_uri, sweep.experiment_id)}", flush=True)
        return status


ORPHAN_GRACE = 10.0  # seconds an orphaned worker has to end its run KILLED before it exits
_watching = False  # whether this worker watches its launching process already


def _watch_launcher(launcher: int) -> None:
    """In a worker that the launching process ``launcher`` started: stop when it dies (at
    once if it has died already)."""
    global _watching
    if not _watching:
        watch_parent(_stop_orphaned_worker, launcher)
        _watching = True


def _watched_workers() -> None:
    """Let joblib's workers watch this process from their start (a worker that got no job
    would wait for one for minutes after it is gone): joblib's backend "loky", which Hydra's
    joblib launcher always asks for, with ``_watch_launcher`` as its workers' initializer."""
    from joblib import register_parallel_backend
    from joblib._parallel_backends import LokyBackend  # type: ignore[import-untyped]

    watched = functools.partial(LokyBackend, initializer=_watch_launcher, initargs=(os.getpid(),))
    register_parallel_backend("loky", watched)


def _stop_orphaned_worker() -> None:
    """The launching process died: stop the job as SIGTERM would (its run ends KILLED), then
    the worker."""
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(ORPHAN_GRACE)
    os._exit(128 + signal.SIGTERM)


def _one_line(error: Exception) -> str:
    """The message of one of our errors; else the exception's type and first line."""
    if isinstance(error, ConfigError | TrackingError | HydraException | OmegaConfBaseException):
        return str(error)
    lines = str(error).strip().splitlines() or [""]
    return f"the sweep could not start: {type(error).__name__}: {lines[0]}"


def _summarize(sweep: SweepInfo) -> None:
    """Print the sweep's summary table (its reported runs: stage final, else every run) and log
    it to the parent run as summary.md and summary.csv."""
    jobs = set(sweep.config_hashes)
    latest = {}
    try:
        for run in child_runs(sweep.tracking_uri, sweep.parent_run_id, sweep.experiment_id):
            job = run.data.tags.get("config_hash")
            if job in jobs and run.info.status == "FINISHED":
                latest[job] = run  # oldest first: the newest attempt is kept
        stage = reported_stage([r.data.params.get("stage", "single") for r in latest.values()])
        runs = [r for r in latest.values() if r.data.params.get("stage", "single") == stage]
        keys = config_keys([run.data.params for run in runs])
        found = [record(r.data.params, r.data.tags, r.data.metrics, keys) for r in runs]
        table = summary.rows(found)
        if not table:
            return
        text = summary.markdown(table)
        log_metrics(sweep.tracking_uri, sweep.parent_run_id, summary.metrics(table))
        log_text(sweep.tracking_uri, sweep.parent_run_id, text, "summary.md")
        log_text(sweep.tracking_uri, sweep.parent_run_id, summary.csv_text(table), "summary.csv")
    except Exception as error:  # the store failed: the parent's end reports it
        print(f"no summary: {' '.join(str(error).split())}", flush=True)
        return
    print(f"test metrics over seeds (mean ± 95% interval, Student t):\n{text}", end="", flush=True)


def _draw_figures(sweep: SweepInfo) -> None:
    """Draw the sweep's figures onto its parent run (``python -m experiments.plots``, as a
    process of its own: the app imports no figures module); if that fails, say so and how to
    draw them again, and go on (the sweep's status does not depend on its figures)."""
    again = ["python", "-m", "experiments.plots", "--sweep", sweep.parent_run_id]
    again += ["--tracking-uri", sweep.tracking_uri]
    with tempfile.TemporaryDirectory(prefix="bplab-sweep-figures-") as out:
        command = [sys.executable, *again[1:], "--out", out, "--formats", "png"]
        done = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT)
    if done.returncode == 0:
        print(f"figures: logged to parent run {sweep.parent_run_id} under figures/", flush=True)
        return
    lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
    print(f"figures: not drawn ({lines[-1]}); draw them with:\n  {shlex.join(again)}", flush=True)


def _resume(
    uri: str, experiment_id: str, hashes: list[str], tags: dict[str, str]
) -> tuple[str, dict[str, str]] | None:
    """Reopen the sweep that ran most of these jobs (of those that tie, the last to run one):
    (its parent run id, config hash → name of the run that FINISHED that job under it); None if
    none of them ran in the experiment."""
    attempts = job_attempts(uri, experiment_id, set(hashes))
    if not attempts:
        return None
    jobs_of: dict[str, set[str]] = {}  # parent run id → its jobs, most recently active first
    for run in attempts:
        labels = run.data.tags
        jobs_of.setdefault(labels["mlflow.parentRunId"], set()).add(labels["config_hash"])
    parent = max(jobs_of, key=lambda p: len(jobs_of[p]))  # the first of equals
    ours = child_runs(uri, parent, experiment_id)  # any job of it (a tuning sweep's stage 2)
    finished = {
        run.data.tags["config_hash"]: run.info.run_name
        for run in ours  # oldest first: the newest FINISHED attempt is kept
        if run.info.status == "FINISHED" and "config_hash" in run.data.tags
    }
    orphans = [run.info.run_id for run in ours if run.info.status == "RUNNING"]
    reopen_parent_run(uri, parent, tags, orphans)
    return parent, finished


def _check_launcher(launcher: DictConfig) -> None:
    """A launcher's worker count (joblib's ``n_jobs``), if it has one, is one joblib takes."""
    n_jobs = launcher.get("n_jobs")
    if n_jobs is not None and (type(n_jobs) is not int or n_jobs == 0):
        allowed = "an integer ≥ 1, or negative as joblib counts: -1 every core, -2 all but one"
        raise ConfigError("hydra.launcher.n_jobs", n_jobs, allowed)


def _check(job: DictConfig, overrides: list[str]) -> None:
    """Raise ConfigError, naming the job, if any value of it is not allowed or it names a
    callable the suite does not offer (a preset chosen by the sweep)."""
    for key, value, allowed in foreign_targets(job)[:1]:
        raise ConfigError(key, value, allowed, " ".join(overrides))
    try:
        build(job)
    except ConfigError as error:
        raise ConfigError(error.key, error.value, error.allowed, " ".join(overrides)) from None
