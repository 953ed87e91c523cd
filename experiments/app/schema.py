"""The config schema: Hydra structured configs, with the help text next to each field.

Config groups are the axes users vary: ``activation=``, ``init=``, ``data=``, ``optim=``, one
option per name in bpcore's registries (so the choices can never disagree with what bpcore
builds); ``experiment=`` selects a preset (``conf/experiment/*.yaml``).  Values are checked in
one place, ``experiments.app.setup.build``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

import bpcore

PARAMETRIZED_ACTIVATIONS = {"leaky_relu": 0.01, "elu": 1.0}  # name → default alpha


@dataclass
class ActivationConf:
    name: str = MISSING  # one of bpcore.ACTIVATIONS
    alpha: float | None = None  # negative slope / saturation level: leaky_relu and elu only


@dataclass
class InitConf:
    name: str = MISSING  # one of bpcore.INITIALIZERS
    gain: float = 1.0  # multiplies the std / limit
    std: float | None = None  # normal only
    limit: float | None = None  # uniform only (default 1/√fan_in)
    bias_std: float = 0.0  # 0: biases start at 0; > 0: biases ~ N(0, bias_std²)


@dataclass
class DataConf:
    name: str = MISSING  # one of bpcore.DATASETS
    n_samples: int | None = None  # None: the dataset's default
    noise: float | None = None  # None: the dataset's default
    seed: int = 0
    val_fraction: float = 0.2  # of n_samples: the validation set, for choosing (e.g. the lr)
    test_fraction: float = 0.2  # of n_samples: held out, for reporting (test/* at the end)
    k: int | None = None  # sawtooth: tent-map compositions (2^k linear pieces)


@dataclass
class OptimConf:
    name: str = MISSING  # one of bpcore.OPTIMIZERS
    lr: float = 0.1
    momentum: float = 0.9  # momentum only
    nesterov: bool = False  # momentum only
    clip_norm: float | None = None  # scale the gradient to global norm ≤ clip_norm; null: off
    clip_value: float | None = None  # clip each gradient component to ±clip_value; null: off


@dataclass
class ModelConf:
    depth: int = 3  # hidden layers: a net has depth + 1 weight matrices
    width: int = 32  # units per hidden layer
    hidden: list[int] | None = None  # explicit hidden widths; overrides depth and width
    param_budget: int | None = None  # if set: width chosen so every depth has ≈ this many params
    dtype: str = "float64"
    output: str | None = None  # None: softmax (classification) / identity (regression); sigmoid
    norm: str = "none"  # none | batch | layer: normalize every hidden layer's zˡ before f
    residual: bool = False  # aˡ = aˡ⁻¹ + residual_scale·f(zˡ) on hidden layers of equal widths
    residual_scale: float = 1.0  # α, the residual branch's scale
    norm_eps: float = 1e-5  # ε in σ = √(σ² + ε)
    norm_momentum: float = 0.1  # BatchNorm's running statistics: r ← (1 − m)·r + m·batch's


@dataclass
class TrainConf:
    batch_size: Any = 32  # an integer, or "full" (the whole training set)
    epochs: int = 30
    max_steps: int | None = None  # stop after this many optimizer steps
    lr_scaling: str = "none"  # none | linear | sqrt, relative to reference_batch_size
    reference_batch_size: int = 32


@dataclass
class LogConf:
    every_n_steps: int = 100  # diagnostics at step 0 and every n optimizer steps
    histograms: bool = False  # per-layer activation/gradient histograms (history file only)
    full_gradient: bool = False  # also the training-set gradient and noise scale (theory_metrics)
    tuning_diagnostics: bool = False  # stage=tune runs (lr grid) log these too; false: epochs only


@dataclass
class MlflowConf:
    enabled: bool = True  # false: train and print, log nothing
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else <project>/mlflow.db
    experiment_name: str = "default"
    # sweeps: skip each job that already FINISHED in this experiment with the same config (tag
    # config_hash), re-run the FAILED, KILLED and never-ended ones under the same parent run
    resume: bool = False
    run_figures: bool = True  # each run's own figures (profile, loss, boundary), drawn after it
    sweep_figures: bool = True  # a sweep's figures on its parent run, drawn at its end


@dataclass
class Config:
    activation: ActivationConf = field(default_factory=ActivationConf)
    init: InitConf = field(default_factory=InitConf)
    data: DataConf = field(default_factory=DataConf)
    optim: OptimConf = field(default_factory=OptimConf)
    model: ModelConf = field(default_factory=ModelConf)
    train: TrainConf = field(default_factory=TrainConf)
    log: LogConf = field(default_factory=LogConf)
    mlflow: MlflowConf = field(default_factory=MlflowConf)
    seed: int = 0  # network init and minibatch order
    preset: str = "default"  # the preset (conf/experiment/<preset>.yaml), for names
    stage: str = "single"  # set by hydra/sweeper=tune: tune (the lr grid) or final (reported)
    # true: run a config above the size limits, which otherwise stop it before anything runs
    # (experiments/app/sizes.py: an estimated 2 GiB of memory, 100,000 metric points per run)
    allow_large: bool = False


@cache
def schema_keys() -> dict[str, Any]:
    """The schema's keys, nested: each group a dict of its keys (values: the defaults)."""
    keys = OmegaConf.to_container(OmegaConf.structured(Config))
    assert isinstance(keys, dict)
    return {str(key): value for key, value in keys.items()}


def register_configs() -> None:
    """Put the schema and one option per registry entry into Hydra's ConfigStore."""
    cs = ConfigStore.instance()
    cs.store(name="schema", node=Config)
    for name in bpcore.ACTIVATIONS:
        alpha = PARAMETRIZED_ACTIVATIONS.get(name)
        cs.store(group="activation", name=name, node=ActivationConf(name=name, alpha=alpha))
    for name in bpcore.INITIALIZERS:
        cs.store(group="init", name=name, node=InitConf(name=name))
    for name in bpcore.DATASETS:
        cs.store(group="data", name=name, node=DataConf(name=name))
    for name in bpcore.OPTIMIZERS:
        cs.store(group="optim", name=name, node=OptimConf(name=name))
