"""Turn a composed config into the bpcore objects of a run, checking every value on the way.

``build(cfg)`` reports each value it rejects as a ``ConfigError`` naming the key, the value and
what is allowed.  The launching process runs it on every job of a sweep before anything is
logged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

from omegaconf import DictConfig

import bpcore
from bpcore.inits import BiasInit
from bpcore.optim import LR_SCALING, Optimizer
from experiments.tracking.store import masked, uri_problem

T = TypeVar("T")


STAGES = ("single", "tune", "final")  # of a run: no tuning; the lr grid; at the chosen lr


class ConfigError(ValueError):
    """A config value outside what is allowed: ``key=value: what is allowed``."""

    def __init__(self, key: str, value: Any, allowed: str, job: str | None = None) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        where = f" (in the sweep job {job})" if job else ""
        super().__init__(f"{key}={value!r}: {allowed}{where}")


@dataclass
class Setup:
    """Everything a run needs, built and checked from a config."""

    data: bpcore.Dataset
    net: bpcore.MLP
    optimizer: Optimizer
    loss: str
    batch_size: int
    hidden: list[int]


def build(cfg: DictConfig) -> Setup:
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
    _check_tracking_uri(cfg.mlflow.tracking_uri)
    return Setup(data, net, optimizer, loss, batch_size, hidden)


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


def _check_tracking_uri(uri: str | None) -> None:
    """Only stores MLflow 3 writes to (sqlite, PostgreSQL, a tracking server), no password."""
    problem = None if uri is None else uri_problem(uri)
    if uri is not None and problem is not None:
        raise ConfigError("mlflow.tracking_uri", masked(uri), problem)


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
    if cfg.stage not in STAGES:
        raise ConfigError("stage", cfg.stage, f"one of {', '.join(STAGES)}")


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
    params = {k: data[k] for k in ("n_samples", "noise", "seed", "val_fraction", "test_fraction")}
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


def _rejecting(key: str, value: Any, make: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``make(*args, **kwargs)``, with bpcore's ValueError reported against config ``key``."""
    try:
        return make(*args, **kwargs)
    except ValueError as error:
        raise ConfigError(key, value, str(error)) from None
