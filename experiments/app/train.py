"""Train one config and track it in MLflow (``python -m experiments.train``, ``bplab-train``).

    python -m experiments.train                                  # one small run
    python -m experiments.train -m experiment=activations        # a preset sweep
    python -m experiments.train -m activation=relu,tanh model.depth=2,8,32

A bad config value fails before anything is trained or logged, with one line naming the key,
the value and what is allowed.  In a sweep, each job prints one line with its outcome; a job
that fails is recorded as a FAILED run and the sweep goes on.
"""

from __future__ import annotations

import contextlib
import inspect
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from threadpoolctl import threadpool_limits

import bpcore
from experiments import PROJECT_ROOT
from experiments.app.progress import ProgressBar
from experiments.app.schema import register_configs
from experiments.app.setup import ConfigError, Setup, build
from experiments.app.sweep import SweepInfo, record_failed_job
from experiments.app.target_check import refuse_foreign_targets
from experiments.diagnostics.explosion import exploded_at, flag_tags
from experiments.diagnostics.history import HISTORY_FILE, NORM_ARRAYS
from experiments.diagnostics.recorder import DiagnosticsRecorder, Sink
from experiments.diagnostics.signal import SignalPropagation
from experiments.diagnostics.theory import theory_callbacks
from experiments.tracking.provenance import config_hash, flat_params, run_name
from experiments.tracking.run import RunTracker
from experiments.tracking.store import TrackingError, browse_hint, default_tracking_uri
from experiments.tracking.timing import FILE as TIMING_FILE
from experiments.tracking.timing import Phases

register_configs()
CONF = str(PROJECT_ROOT / "conf")  # absolute: the console script (module mode) finds it too
RUN_FIGURES = "experiments.figures.run_figures:draw"  # by name: app imports no figures module
PHASES = Phases()  # where a run's time goes, with BPLAB_TIMING set (experiments.tracking.timing)


@dataclass
class Outcome:
    run_name: str
    status: str  # FINISHED, FAILED or KILLED (MLflow's run statuses)
    diverged_at_step: int | None
    last_epoch: bpcore.EpochReport | None
    seconds: float
    error: str | None = None
    test: dict[str, float] = field(default_factory=dict)  # test/loss (and test/accuracy)
    experiment_id: str = ""  # the MLflow experiment of a tracked run


def train(cfg: DictConfig, sweep: SweepInfo | None = None, progress: bool = False) -> Outcome:
    """Build ``cfg``, train it, log everything; a training error ends the run FAILED.

    Ctrl-C and SIGTERM (KeyboardInterrupt) end the run KILLED and propagate."""
    with PHASES("tracking"):  # what no inner phase claims: the tracker, artifacts, the run's end
        outcome = _train(cfg, sweep, progress)
    PHASES.save("run")
    return outcome


def _train(cfg: DictConfig, sweep: SweepInfo | None, progress: bool) -> Outcome:
    started = time.perf_counter()
    with PHASES("setup"):
        setup = build(cfg)
    swept = sweep.swept_keys if sweep else []
    name = run_name(cfg, setup.hidden, setup.batch_size, swept)
    try:
        tracker = _tracker(cfg, name, sweep, setup)
    except TrackingError as error:
        if sweep is None:
            raise  # a single run: main reports it; nothing was trained
        return Outcome(name, "FAILED", None, None, time.perf_counter() - started, str(error))
    sink = PHASES.timed("tracking", tracker.log_metrics) if tracker else None
    recorder, callbacks = diagnostics(cfg, setup, sink)
    if progress:
        callbacks.append(ProgressBar(cfg.train.epochs, name, max_steps=cfg.train.max_steps))
    if TIMING_FILE:
        _time_callbacks(callbacks)
    # The writer process needs a core: with tracking on, numpy's BLAS gets one thread (as fast
    # for the suite's small nets; two threads starve the writer and slow training ~2x).
    blas_threads = 1 if tracker else None
    with PHASES("evaluation"):
        initial_loss = _initial_val_loss(setup)
    try:
        with tracker or contextlib.nullcontext(), threadpool_limits(blas_threads):
            try:
                with PHASES("batching"):  # what no step, evaluation or callback claims in fit
                    result = bpcore.fit(
                        setup.net,
                        setup.data,
                        setup.loss,
                        setup.optimizer,
                        batch_size=setup.batch_size,
                        epochs=cfg.train.epochs,
                        max_steps=cfg.train.max_steps,
                        seed=cfg.seed,
                        callbacks=callbacks,
                    )
            except BaseException:  # the history so far is the record of a FAILED or KILLED run
                if tracker:
                    with (
                        contextlib.suppress(TrackingError),
                        tracker.artifact_folder(wait=1.0) as folder,
                    ):
                        _write_artifacts(folder, cfg, setup, recorder)
                raise
            with PHASES("evaluation"):
                test = held_out_metrics(setup)
            with PHASES("diagnostics"):
                recorder.record_profiles()
                if test:
                    recorder.record("test", result.steps, test)
                chosen = {"summary/lr": cfg.optim.lr}  # the tuned lr in stage final
                summary = {f"summary/{key.replace('/', '_')}": v for key, v in test.items()}
                recorder.record_summary(result.steps, summary | chosen)
            if tracker:
                exploded = exploded_at(recorder.history, initial_loss)
                tracker.set_tags(
                    flag_tags("diverged", result.diverged_at_step) | flag_tags("exploded", exploded)
                )
                if cfg.mlflow.run_figures and cfg.stage != "tune":  # tuning runs choose an lr
                    tracker.draw_after_end(RUN_FIGURES)
                with tracker.artifact_folder() as folder:
                    _write_artifacts(folder, cfg, setup, recorder)
    except Exception as error:  # recorded as a FAILED run by the tracker; the caller decides
        why = _failure(error)
        return Outcome(name, "FAILED", None, None, time.perf_counter() - started, why)
    seconds = time.perf_counter() - started
    experiment = tracker.experiment_id if tracker else ""
    return Outcome(
        name,
        "FINISHED",
        result.diverged_at_step,
        result.last_epoch,
        seconds,
        None,
        test,
        experiment,
    )


def _time_callbacks(callbacks: list[bpcore.Callback]) -> None:
    """Time the training steps, evaluations and callbacks inside ``bpcore.fit`` (timing on)."""
    for callback in callbacks:
        for hook in ("on_step", "on_epoch_end"):
            setattr(callback, hook, PHASES.timed("diagnostics", getattr(callback, hook)))


def _time_bpcore() -> None:
    """Time ``bpcore.fit``'s training steps and evaluations (timing on; once per process)."""
    training = bpcore.training
    training.train_step = PHASES.timed("steps", training.train_step)
    training.evaluate = PHASES.timed("evaluation", training.evaluate)


if TIMING_FILE:
    _time_bpcore()


def _failure(error: Exception) -> str:
    """One line for what ended a run FAILED: our own message; what ran out (memory, disk
    space) and where; else the exception's repr."""
    if isinstance(error, TrackingError):
        return str(error)
    if isinstance(error, MemoryError):
        return f"out of memory: {error}"
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}" + (f": {error.filename}" if error.filename else "")
    return repr(error)


def diagnostics(
    cfg: DictConfig, setup: Setup, sink: Sink | None = None
) -> tuple[DiagnosticsRecorder, list[bpcore.Callback]]:
    """The job's recorder (sending to ``sink``) and every diagnostic callback of a run: the
    per-layer metrics, signal propagation at step 0, the mean-field theory metrics.  A tuning
    run (``stage=tune``, which only chooses an lr) records its epoch metrics only, unless
    ``log.tuning_diagnostics``."""
    if cfg.stage == "tune" and not cfg.log.tuning_diagnostics:
        recorder = DiagnosticsRecorder(None, sink)
        return recorder, [recorder]
    recorder = DiagnosticsRecorder(cfg.log.every_n_steps, sink, histograms=cfg.log.histograms)
    every = cfg.log.every_n_steps if cfg.log.full_gradient else None
    callbacks = [
        recorder,
        SignalPropagation(recorder.record),
        *theory_callbacks(setup.net, setup.data, setup.loss, recorder.record, every),
    ]
    return recorder, callbacks


def held_out_metrics(setup: Setup) -> dict[str, float]:
    """test/loss and test/accuracy of the trained net on the held-out split ({} if none)."""
    data = setup.data
    if not len(data.x_test):
        return {}
    with np.errstate(all="ignore"):  # a diverged net: non-finite values are logged as such
        loss, accuracy = bpcore.evaluate(setup.net, data.x_test, data.y_test, setup.loss)
    return {"test/loss": loss} | ({} if accuracy is None else {"test/accuracy": accuracy})


def _initial_val_loss(setup: Setup) -> float:
    """The untrained net's loss on the validation split: what an exploding loss exceeds."""
    data = setup.data
    with np.errstate(all="ignore"):
        return bpcore.evaluate(setup.net, data.x_val, data.y_val, setup.loss)[0]


def _tracker(
    cfg: DictConfig, name: str, sweep: SweepInfo | None, setup: Setup
) -> RunTracker | None:
    """The run's tracker, or None with ``mlflow.enabled=false``."""
    if not cfg.mlflow.enabled:
        return None
    tags = {"preset": cfg.preset, "overrides": " ".join(_overrides())}
    tags |= {"config_hash": config_hash(cfg), "stage": cfg.stage}
    if sweep is not None:
        uri, parent = sweep.tracking_uri, sweep.parent_run_id
        experiment = {"id": sweep.experiment_id}
        tags["sweep_id"] = parent
    else:  # the writer creates store and experiment: this process never imports MLflow
        uri, parent = default_tracking_uri(cfg.mlflow.tracking_uri), None
        experiment = {"name": cfg.mlflow.experiment_name}
    params = flat_params(cfg) | _resolved_params(cfg, setup)
    return RunTracker(uri, experiment, name, parent_run_id=parent, params=params, tags=tags)


def _resolved_params(cfg: DictConfig, setup: Setup) -> dict[str, str]:
    """The values used where the config says "the dataset's default" (None): the data set's
    rows and noise; and the lr the optimizer steps with (``optim.effective_lr``: ``optim.lr``
    scaled with the batch size under ``train.lr_scaling``)."""
    data = setup.data
    noise = cfg.data.noise
    if noise is None:
        noise = inspect.signature(bpcore.DATASETS[cfg.data.name]).parameters["noise"].default
    rows = len(data.x_train) + len(data.x_val) + len(data.x_test)
    lr = setup.optimizer.lr
    return {"data.n_samples": str(rows), "data.noise": str(noise), "optim.effective_lr": str(lr)}


def _overrides() -> list[str]:
    """This job's command-line (and sweep) overrides."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _write_artifacts(
    folder: Path, cfg: DictConfig, setup: Setup, recorder: DiagnosticsRecorder
) -> None:
    """config.yaml, overrides.yaml, the diagnostics history and the trained parameters (with a
    norm: γ, β and BatchNorm's running statistics, ``gammas0`` …)."""
    OmegaConf.save(cfg, folder / "config.yaml", resolve=True)
    OmegaConf.save(OmegaConf.create(_overrides()), folder / "overrides.yaml")
    recorder.history.save(folder / HISTORY_FILE)
    net = setup.net
    arrays = {
        "layer_sizes": np.array(net.layer_sizes),
        "activations": np.array([f.name for f in net.hidden_activations]),
        "output": np.array(net.head.name),
        **{f"W{l}": w for l, w in enumerate(net.weights)},
        **{f"b{l}": b for l, b in enumerate(net.biases)},
        **{f"{name}{l}": a for name in NORM_ARRAYS for l, a in enumerate(getattr(net, name))},
    }
    np.savez(folder / "model.npz", **arrays)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C: the run in progress ends KILLED."""


def _catch_stop_signals() -> None:
    """Ctrl-C and SIGTERM raise KeyboardInterrupt (``Terminated``) once (SIGINT stays ignored
    where the caller ignores it)."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)


def _stop(signum: int, frame: FrameType | None) -> None:
    """The first Ctrl-C or SIGTERM: stop.  The next ones are ignored, so that they cannot cut
    short the cleanup (the runs end KILLED, the parent run too; a few seconds at most)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is _stop:
            signal.signal(sig, signal.SIG_IGN)
    name = signal.Signals(signum).name
    raise Terminated(name) if signum == signal.SIGTERM else KeyboardInterrupt(name)


def _outcome_line(outcome: Outcome) -> str:
    """The run's name and outcome; accuracies as MLflow stores them, fractions in [0, 1]."""
    if outcome.status != "FINISHED":
        return f"{outcome.run_name}: {outcome.status} ({outcome.error})"
    if outcome.diverged_at_step is not None:
        return f"{outcome.run_name}: diverged at step {outcome.diverged_at_step}"
    last = outcome.last_epoch
    assert last is not None
    accuracy = "" if last.val_accuracy is None else f", val/accuracy {last.val_accuracy:.3f}"
    test = outcome.test.get("test/accuracy")
    tested = "" if test is None else f", test/accuracy {test:.3f}"
    line = f"{outcome.run_name}: val/loss {last.val_loss:.4g}{accuracy}{tested}"
    return f"{line} ({outcome.seconds:.1f} s)"


def _say(line: str) -> None:
    """A job's line in one write, so parallel jobs' lines never interleave (``print`` writes
    the newline apart)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _job(sweep: SweepInfo | None) -> str:
    """``[3/12]``: this job's number in the sweep."""
    return f"[{HydraConfig.get().job.num + 1}/{sweep.n_jobs if sweep else '?'}]"


@hydra.main(version_base="1.3", config_path=CONF, config_name="config")
def app(cfg: DictConfig) -> None:
    """Hydra's task function: a single run, or one job of a sweep (``-m``)."""
    _catch_stop_signals()  # again: a launcher's worker runs no main()
    hydra_cfg = HydraConfig.get()
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        # relative to the launching directory, wherever the launcher runs the job (Ray: elsewhere)
        sweep_dir = Path(hydra_cfg.runtime.cwd, hydra_cfg.sweep.dir)
        sweep = SweepInfo.load(sweep_dir) if in_sweep else None
        if cfg.mlflow.resume and not in_sweep:
            raise ConfigError("mlflow.resume", True, "resumes a sweep: add -m (1 job is a sweep)")
        if sweep and (done := sweep.finished.get(config_hash(cfg))):
            _say(f"{_job(sweep)} skipped: already FINISHED as run {done}")
            return
        outcome = train(cfg, sweep, progress=not in_sweep and sys.stderr.isatty())
    except (ConfigError, TrackingError) as error:
        sys.exit(f"error: {error}")
    if in_sweep:
        _say(f"{_job(sweep)} {_outcome_line(outcome)}")
        if sweep is None and outcome.status != "FINISHED":  # untracked
            record_failed_job(sweep_dir, hydra_cfg.job.num)
        return
    print(_outcome_line(outcome))
    if outcome.status != "FINISHED":
        sys.exit(1)
    if cfg.mlflow.enabled:
        uri = default_tracking_uri(cfg.mlflow.tracking_uri)
        print(f"tracked in {uri}; browse it with:\n  {browse_hint(uri, outcome.experiment_id)}")


def main() -> None:
    """Entry point: refuse a ``_target_`` outside our packages, then run the Hydra app.
    Ctrl-C and SIGTERM, whenever they come, exit with 128 + the signal's number after one
    line (130, 143); a run in progress ends KILLED."""
    _catch_stop_signals()  # in a sweep's launching process too
    refuse_foreign_targets(sys.argv[1:], app, CONF)
    try:
        app()
    except KeyboardInterrupt as stop:
        signum = signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT
        print(f"stopped by {signum.name}: a run in progress ended KILLED", file=sys.stderr)
        sys.exit(128 + signum)


if __name__ == "__main__":
    main()
