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
from experiments.app.sweep import SweepInfo
from experiments.app.target_check import refuse_foreign_targets
from experiments.diagnostics.history import HISTORY_FILE, NORM_ARRAYS
from experiments.diagnostics.recorder import DiagnosticsRecorder
from experiments.diagnostics.signal import SignalPropagation
from experiments.diagnostics.theory import theory_callbacks
from experiments.tracking.provenance import config_hash, flat_params, git_commit, run_name
from experiments.tracking.run import RunTracker
from experiments.tracking.store import TrackingError, browse_hint, default_tracking_uri

register_configs()
CONF = str(PROJECT_ROOT / "conf")  # absolute: the console script (module mode) finds it too


@dataclass
class Outcome:
    run_name: str
    status: str  # FINISHED, FAILED or KILLED (MLflow's run statuses)
    diverged_at_step: int | None
    last_epoch: bpcore.EpochReport | None
    seconds: float
    error: str | None = None
    test: dict[str, float] = field(default_factory=dict)  # test/loss (and test/accuracy)


def train(cfg: DictConfig, sweep: SweepInfo | None = None, progress: bool = False) -> Outcome:
    """Build ``cfg``, train it, log everything; a training error ends the run FAILED.

    Ctrl-C and SIGTERM (KeyboardInterrupt) end the run KILLED and propagate."""
    started = time.perf_counter()
    setup = build(cfg)
    swept = sweep.swept_keys if sweep else []
    name = run_name(cfg, setup.hidden, setup.batch_size, swept)
    try:
        tracker = _tracker(cfg, name, sweep)
    except TrackingError as error:
        if sweep is None:
            raise  # a single run: main reports it; nothing was trained
        return Outcome(name, "FAILED", None, None, time.perf_counter() - started, str(error))
    sink = tracker.log_metrics if tracker else None
    recorder = DiagnosticsRecorder(cfg.log.every_n_steps, sink, histograms=cfg.log.histograms)
    every = cfg.log.every_n_steps if cfg.log.full_gradient else None
    callbacks = [
        recorder,
        SignalPropagation(recorder.record),
        *theory_callbacks(setup.net, setup.data, setup.loss, recorder.record, every),
    ]
    if progress:
        callbacks.append(ProgressBar(cfg.train.epochs, name, max_steps=cfg.train.max_steps))
    # The writer process needs a core: with tracking on, numpy's BLAS gets one thread (as fast
    # for the suite's small nets; two threads starve the writer and slow training ~2x).
    blas_threads = 1 if tracker else None
    try:
        with tracker or contextlib.nullcontext(), threadpool_limits(blas_threads):
            try:
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
            test = _test_metrics(setup)
            if test:
                recorder.record("test", result.steps, test)
            if tracker:
                tracker.set_tags(_divergence_tags(result.diverged_at_step))
                with tracker.artifact_folder() as folder:
                    _write_artifacts(folder, cfg, setup, recorder)
    except Exception as error:  # recorded as a FAILED run by the tracker; the caller decides
        why = str(error) if isinstance(error, TrackingError) else repr(error)
        return Outcome(name, "FAILED", None, None, time.perf_counter() - started, why)
    seconds = time.perf_counter() - started
    return Outcome(
        name, "FINISHED", result.diverged_at_step, result.last_epoch, seconds, None, test
    )


def _test_metrics(setup: Setup) -> dict[str, float]:
    """test/loss and test/accuracy of the trained net on the held-out split ({} if none)."""
    data = setup.data
    if not len(data.x_test):
        return {}
    with np.errstate(all="ignore"):  # a diverged net: non-finite values are logged as such
        loss, accuracy = bpcore.evaluate(setup.net, data.x_test, data.y_test, setup.loss)
    return {"test/loss": loss} | ({} if accuracy is None else {"test/accuracy": accuracy})


def _divergence_tags(step: int | None) -> dict[str, str]:
    tags = {"diverged": str(step is not None).lower()}
    return tags if step is None else tags | {"diverged_at_step": str(step)}


def _tracker(cfg: DictConfig, name: str, sweep: SweepInfo | None) -> RunTracker | None:
    """The run's tracker, or None with ``mlflow.enabled=false``."""
    if not cfg.mlflow.enabled:
        return None
    tags = {"git_commit": git_commit(), "preset": cfg.preset, "overrides": " ".join(_overrides())}
    tags |= {"config_hash": config_hash(cfg), "stage": cfg.stage}
    if sweep is not None:
        uri, parent = sweep.tracking_uri, sweep.parent_run_id
        experiment = {"id": sweep.experiment_id}
        tags["sweep_id"] = parent
    else:  # the writer creates store and experiment: this process never imports MLflow
        uri, parent = default_tracking_uri(cfg.mlflow.tracking_uri), None
        experiment = {"name": cfg.mlflow.experiment_name}
    params = flat_params(cfg)
    return RunTracker(uri, experiment, name, parent_run_id=parent, params=params, tags=tags)


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


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


def _outcome_line(outcome: Outcome) -> str:
    if outcome.status != "FINISHED":
        return f"{outcome.run_name}: {outcome.status} ({outcome.error})"
    if outcome.diverged_at_step is not None:
        return f"{outcome.run_name}: diverged at step {outcome.diverged_at_step}"
    last = outcome.last_epoch
    assert last is not None
    accuracy = "" if last.val_accuracy is None else f", val/accuracy {last.val_accuracy:.1%}"
    test = outcome.test.get("test/accuracy")
    tested = "" if test is None else f", test/accuracy {test:.1%}"
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
    signal.signal(signal.SIGTERM, _raise_interrupt)  # again: a launcher's worker runs no main()
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
        return
    print(_outcome_line(outcome))
    if outcome.status != "FINISHED":
        sys.exit(1)
    if cfg.mlflow.enabled:
        uri = default_tracking_uri(cfg.mlflow.tracking_uri)
        print(f"tracked in {uri}; browse it with:\n  {browse_hint(uri)}")


def main() -> None:
    """Entry point: refuse a ``_target_`` outside our packages, then run the Hydra app.
    Ctrl-C and SIGTERM, whenever they come, exit with 128 + the signal's number after one
    line (130, 143); a run in progress ends KILLED."""
    signal.signal(signal.SIGTERM, _raise_interrupt)  # handled as Ctrl-C, in a sweep's launcher too
    refuse_foreign_targets(sys.argv[1:], app, CONF)
    try:
        app()
    except KeyboardInterrupt as stop:
        signum = signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT
        print(f"stopped by {signum.name}: a run in progress ended KILLED", file=sys.stderr)
        sys.exit(128 + signum)


if __name__ == "__main__":
    main()
