"""The config schema (Hydra structured configs) and the one place its values are checked.

Config groups are the axes users vary: ``activation=``, ``init=``, ``data=``, ``optim=``, one
option per name in bpcore's registries (so the choices can never disagree with what bpcore
builds).  ``build(cfg)`` turns a composed config into bpcore objects; every value it rejects is
reported as a ``ConfigError`` naming the key, the value and what is allowed.  The launching
process runs it on every job of a sweep before anything is logged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

import bpcore
from bpcore.inits import BiasInit
from bpcore.optim import LR_SCALING, Optimizer
from experiments.tracking import ALLOWED_SCHEMES

PARAMETRIZED_ACTIVATIONS = {"leaky_relu": 0.01, "elu": 1.0}  # name → default alpha


class ConfigError(ValueError):
    """A config value outside what is allowed: ``key=value: what is allowed``."""

    def __init__(self, key: str, value: Any, allowed: str, job: str | None = None) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        where = f" (in the sweep job {job})" if job else ""
        super().__init__(f"{key}={value!r}: {allowed}{where}")


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
    val_fraction: float = 0.2
    k: int | None = None  # sawtooth: tent-map compositions (2^k linear pieces)


@dataclass
class OptimConf:
    name: str = MISSING  # one of bpcore.OPTIMIZERS
    lr: float = 0.1
    momentum: float = 0.9  # momentum only
    nesterov: bool = False  # momentum only


@dataclass
class ModelConf:
    depth: int = 3  # hidden layers: a net has depth + 1 weight matrices
    width: int = 32  # units per hidden layer
    hidden: list[int] | None = None  # explicit hidden widths; overrides depth and width
    param_budget: int | None = None  # if set: width chosen so every depth has ≈ this many params
    dtype: str = "float64"
    output: str | None = None  # None: softmax (classification) / identity (regression); sigmoid


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


@dataclass
class MlflowConf:
    enabled: bool = True  # false: train and print, log nothing
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else <project>/mlflow.db
    experiment_name: str = "default"
    # sweeps: skip each job that already FINISHED in this experiment with the same config (tag
    # config_hash), re-run the FAILED, KILLED and never-ended ones under the same parent run
    resume: bool = False


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
    preset: str = "default"  # the experiment preset, for names


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


@dataclass
class Experiment:
    """Everything a run needs, built and checked from a config."""

    data: bpcore.Dataset
    net: bpcore.MLP
    optimizer: Optimizer
    loss: str
    batch_size: int
    hidden: list[int]


def build(cfg: DictConfig) -> Experiment:
    """bpcore objects for ``cfg``; raises ConfigError for any value bpcore or the schema rejects."""
    _check_positive_ints(cfg)
    data = _dataset(cfg.data)
    batch_size = _batch_size(cfg.train.batch_size, len(data.x_train))
    hidden = hidden_widths(cfg.model, data.n_features, data.n_outputs)
    output, loss = _head_and_loss(cfg.model.output, data.task)
    activation = _rejecting(
        "activation", cfg.activation.name, bpcore.get_activation, cfg.activation.name, **_alpha(cfg)
    )
    init = _rejecting(
        "init", cfg.init.name, bpcore.get_initializer, cfg.init.name, **_init_params(cfg.init)
    )
    bias = _rejecting("init.bias_std", cfg.init.bias_std, _bias_init, cfg.init.bias_std)
    sizes = [data.n_features, *hidden, data.n_outputs]
    net_args = (sizes, activation, output, init, cfg.seed, cfg.model.dtype, bias)
    net = _rejecting("model.dtype", cfg.model.dtype, bpcore.MLP, *net_args)
    optimizer = _optimizer(cfg, batch_size)
    check_tracking_scheme(cfg.mlflow.tracking_uri)
    return Experiment(data, net, optimizer, loss, batch_size, hidden)


HEAD_LOSS = {"softmax": "cross_entropy", "sigmoid": "bce"}  # classification heads, their loss


def _head_and_loss(output: str | None, task: str) -> tuple[str, str]:
    """(head, loss): identity + mse for regression; softmax + cross_entropy for classification
    unless ``model.output=sigmoid`` (one sigmoid unit per class + bce, as in Nielsen's book)."""
    if task == "regression":
        if output not in (None, "identity"):
            raise ConfigError("model.output", output, "null or identity for a regression dataset")
        return "identity", "mse"
    output = "softmax" if output is None else output
    if output not in HEAD_LOSS:
        raise ConfigError("model.output", output, f"null or one of {', '.join(HEAD_LOSS)}")
    return output, HEAD_LOSS[output]


def _optimizer(cfg: DictConfig, batch_size: int) -> Optimizer:
    optim, train = cfg.optim, cfg.train
    if not (isinstance(optim.lr, float | int) and math.isfinite(optim.lr) and optim.lr > 0):
        raise ConfigError("optim.lr", optim.lr, "a positive finite learning rate")
    if not 0 <= optim.momentum < 1:
        raise ConfigError("optim.momentum", optim.momentum, "a number in [0, 1)")
    if train.lr_scaling not in LR_SCALING:
        raise ConfigError("train.lr_scaling", train.lr_scaling, f"one of {', '.join(LR_SCALING)}")
    lr = bpcore.scaled_lr(optim.lr, batch_size, train.lr_scaling, train.reference_batch_size)
    params = {"momentum": optim.momentum, "nesterov": optim.nesterov}
    return _rejecting(
        "optim",
        optim.name,
        bpcore.get_optimizer,
        optim.name,
        lr,
        **(params if optim.name == "momentum" else {}),
    )


def hidden_widths(model: DictConfig, n_in: int, n_out: int) -> list[int]:
    """The hidden layer widths: ``model.hidden``, or ``depth × width``, or depth × the width
    that makes ``n_in → width^depth → n_out`` come closest to ``model.param_budget``."""
    if model.hidden is not None:
        if len(model.hidden) == 0 or min(model.hidden) < 1:
            raise ConfigError("model.hidden", list(model.hidden), "a non-empty list of widths ≥ 1")
        return list(model.hidden)
    if model.param_budget is None:
        return [model.width] * model.depth
    d = model.depth  # params(w) = (n_in + 1)w + (d − 1)(w + 1)w + (w + 1)n_out, solve for w
    a, b, c = d - 1, n_in + 1 + (d - 1) + n_out, n_out - model.param_budget
    width = -c / b if a == 0 else (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    if width < 1:
        smallest = _n_params(n_in, 1, d, n_out)
        raise ConfigError("model.param_budget", model.param_budget, f"≥ {smallest} at depth {d}")
    return [round(width)] * d


def _n_params(n_in: int, width: int, depth: int, n_out: int) -> int:
    return (n_in + 1) * width + (depth - 1) * (width + 1) * width + (width + 1) * n_out


def check_tracking_scheme(uri: str | None) -> None:
    """Only stores MLflow 3 writes to: sqlite, PostgreSQL, or a tracking server."""
    if uri is not None and uri.split(":", 1)[0].split("+", 1)[0] not in ALLOWED_SCHEMES:
        allowed = f"a URI with scheme {', '.join(ALLOWED_SCHEMES)} (e.g. sqlite:///mlflow.db)"
        raise ConfigError("mlflow.tracking_uri", uri, allowed)


def _check_positive_ints(cfg: DictConfig) -> None:
    keys = ("model.depth", "model.width", "train.epochs", "train.reference_batch_size")
    for key in (*keys, "log.every_n_steps"):
        group, name = key.split(".")
        if (value := cfg[group][name]) < 1:
            raise ConfigError(key, value, "an integer ≥ 1")
    if cfg.train.max_steps is not None and cfg.train.max_steps < 1:
        raise ConfigError("train.max_steps", cfg.train.max_steps, "an integer ≥ 1, or null")
    if cfg.seed < 0:
        raise ConfigError("seed", cfg.seed, "an integer ≥ 0")


def _batch_size(value: Any, n_train: int) -> int:
    if value == "full":
        return n_train
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= n_train:
        allowed = f"an integer in [1, {n_train}] (the training set size) or 'full'"
        raise ConfigError("train.batch_size", value, allowed)
    return value


@lru_cache(maxsize=64)
def _cached_dataset(name: str, params: tuple[tuple[str, Any], ...]) -> bpcore.Dataset:
    return bpcore.make_dataset(name, **dict(params))


def _dataset(data: DictConfig) -> bpcore.Dataset:
    params = {k: data[k] for k in ("n_samples", "noise", "seed", "val_fraction")}
    if data.k is not None:
        params["k"] = data.k
    return _rejecting("data", data.name, _cached_dataset, data.name, tuple(sorted(params.items())))


def _alpha(cfg: DictConfig) -> dict[str, float]:
    return {} if cfg.activation.alpha is None else {"alpha": cfg.activation.alpha}


def _init_params(init: DictConfig) -> dict[str, float]:
    params = {"gain": init.gain, "std": init.std, "limit": init.limit}
    return {k: v for k, v in params.items() if v is not None}


def _bias_init(bias_std: float) -> BiasInit:
    return (
        bpcore.get_bias_init(0.0) if bias_std == 0 else bpcore.get_bias_init("normal", std=bias_std)
    )


def _rejecting(key: str, value: Any, make: Any, *args: Any, **kwargs: Any) -> Any:
    """``make(*args, **kwargs)``, with bpcore's ValueError reported against config ``key``."""
    try:
        return make(*args, **kwargs)
    except ValueError as error:
        raise ConfigError(key, value, str(error)) from None
