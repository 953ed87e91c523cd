"""Every figure kind of the registry passes the automatic reviewer checks (``figure_checks``).

The runs are real but tiny: each config is trained in this process with the same callbacks as
``experiments.train`` (diagnostics, signal propagation, mean-field theory, the training-set
gradient) and no MLflow, and the figures get a ``Data`` built as ``python -m experiments.plots``
builds it.  One scenario per kind of sweep (activations × depths, batch sizes, depth × width on
a classification and a regression set, σ_w² × depth, a tuned lr grid); ≈ 50 runs of a few ms.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from functools import cache
from itertools import product

import numpy as np
import pytest
import yaml
from figure_checks import problems
from omegaconf import DictConfig, OmegaConf
from threadpoolctl import threadpool_limits

import bpcore
from experiments.app.setup import build
from experiments.app.train import diagnostics, held_out_metrics
from experiments.figures import registry, style
from experiments.figures.cli import MAX_PANELS
from experiments.figures.common import Data, RunInfo, config_keys, panel_runs
from experiments.tracking.provenance import flat_params

Compose = Callable[..., DictConfig]

TINY = ["data.n_samples=200", "train.epochs=3", "model.width=8", "log.every_n_steps=5"]
TINY += ["log.histograms=true", "log.full_gradient=true", "optim=adam", "optim.lr=0.01"]

SCENARIOS: dict[str, list[list[str]]] = {  # sweeps as lists of jobs' overrides
    "activations": [
        [f"activation={a}", f"model.depth={d}", f"seed={s}"]
        for a, d, s in product(("tanh", "relu", "sigmoid"), (2, 4), (0, 1))
    ],
    "batch": [  # every step logged: the full batch takes 3
        [f"train.batch_size={b}", f"seed={s}", "log.every_n_steps=1"]
        for b, s in product((8, 32, "full"), (0, 1))
    ],
    "depth_width": [
        [f"data={d}", f"model.depth={depth}", f"model.width={w}"]
        for d, depth, w in product(("spirals", "sawtooth"), (1, 3), (8, 16))
    ],
    "theory": [
        ["activation=tanh", "init=lecun_normal", f"init.gain={g}", f"model.depth={d}"]
        for g, d in product((0.7071, 1.0, 1.4142), (3, 6))
    ],
    "tuned": [
        ["stage=tune", f"train.batch_size={b}", f"optim.lr={lr}", f"seed={s}"]
        for b, lr, s in product((8, 32), (0.003, 0.03), (100, 101, 102))
    ]
    + [["stage=final", f"train.batch_size={b}", f"seed={s}"] for b, s in product((8, 32), (0, 1))],
}
SCENARIO_OF = {  # the figures a scenario is drawn for; the others come from "activations"
    "batch_size": "batch",
    "steps_vs_batch": "batch",
    "depth_vs_width": "depth_width",
    "depth_width_heatmap": "depth_width",
    "chi1_growth": "theory",
    "trainability": "theory",
    "lr_sensitivity": "tuned",
    "lr_vs_batch": "tuned",
}


@pytest.fixture(scope="module")
def trained(compose_config: Compose) -> Iterator[Callable[[str], Data]]:
    """scenario name → its Data (each scenario trained once per module)."""

    @cache
    def composed(groups: tuple[str, ...]) -> DictConfig:  # ≈ 1 s each: once per group choice
        return compose_config(
            [*TINY, *[g for g in groups if g.partition("=")[0] not in ("seed", "stage")]]
        )

    def config(overrides: list[str]) -> DictConfig:
        """The composed config of the group choices (``activation=tanh``), then the values."""
        cfg = composed(tuple(o for o in overrides if "." not in o.partition("=")[0]))
        cfg = cfg.copy()
        for override in overrides:
            key, _, value = override.partition("=")
            if "." in key or key in ("seed", "stage"):
                OmegaConf.update(cfg, key, yaml.safe_load(value))
        return cfg

    @cache
    def data(scenario: str) -> Data:
        runs, histories, models = [], {}, {}
        for i, overrides in enumerate(SCENARIOS[scenario]):
            run, history, net = train(config(overrides), f"{scenario}{i}")
            runs.append(run)
            histories[run.run_id] = history
            if net.layer_sizes[0] == 2 and run.params["data.name"] in ("spirals", "moons"):
                models[run.run_id] = net
        reported, tuning = Data.split(runs)
        keys = config_keys(reported)
        panels, _ = panel_runs(reported, keys, MAX_PANELS)
        shown = {run.run_id for _, run in panels}
        models = {k: m for k, m in models.items() if k in shown}
        return Data(reported, histories, keys, panels, models, tuning=tuning)

    style.apply()
    with threadpool_limits(1), np.errstate(all="ignore"):
        yield data


def train(cfg: DictConfig, run_id: str) -> tuple[RunInfo, object, bpcore.MLP]:
    """Train ``cfg`` as ``experiments.train`` does, without tracking: (run, history, net)."""
    setup = build(cfg)
    recorder, callbacks = diagnostics(cfg, setup)
    result = bpcore.fit(
        setup.net,
        setup.data,
        setup.loss,
        setup.optimizer,
        batch_size=setup.batch_size,
        epochs=cfg.train.epochs,
        seed=cfg.seed,
        callbacks=callbacks,
    )
    recorder.record_profiles()
    if test := held_out_metrics(setup):
        recorder.record("test", result.steps, test)
    recorder.record_summary(result.steps, {})
    diverged = result.diverged_at_step is not None
    tags = {"diverged": str(diverged).lower(), "stage": cfg.stage}
    if diverged:
        tags["diverged_at_step"] = str(result.diverged_at_step)
    params = flat_params(cfg) | {"optim.effective_lr": str(setup.optimizer.lr)}
    return RunInfo(run_id, run_id, params, tags), recorder.history, setup.net


@pytest.mark.parametrize("name", [kind.name for kind in registry.FIGURES])
def test_every_figure_passes_the_reviewer_checks(trained: Callable[[str], Data], name: str) -> None:
    kind = registry.figure(name)
    data = (
        Data([], {}, [], [])
        if not kind.needs_runs
        else trained(SCENARIO_OF.get(name, "activations"))
    )
    assert kind.can_show(data), (
        f"the {SCENARIO_OF.get(name, 'activations')} runs cannot show {name}"
    )
    fig, _, _ = kind.draw(data)
    assert problems(fig) == []


def test_the_scenarios_train_without_diverging(trained: Callable[[str], Data]) -> None:
    """The checks see real curves: every tiny run trained to a finite loss."""
    for scenario in SCENARIOS:
        data = trained(scenario)
        for run in [*data.runs, *data.tuning]:
            loss = data.histories[run.run_id].series("val/loss")[1][-1]
            assert math.isfinite(loss), (scenario, run.params)
