"""Turn a composed config into the bpcore objects of a run, checking every value on the way.

``build(cfg)`` reports each value it rejects as a ``ConfigError`` naming the key, the value and
what is allowed.  The launching process runs it on every job of a sweep before anything is
logged.
"""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

import bpcore
from bpcore.inits import BiasInit, Initializer
from bpcore.optim import LR_SCALING, Optimizer
from bpcore.training import check_batch_size
from experiments.app import sizes
from experiments.app.schema import schema_keys
from experiments.diagnostics.recorder import remedy_keys
from experiments.diagnostics.signal import signal_keys
from experiments.diagnostics.theory import mean_field_inputs
from experiments.tracking.store import masked, uri_problem

T = TypeVar("T")


STAGES = ("single", "tune", "final")  # of a run: no tuning; the lr grid; at the chosen lr
NORM_CHOICES = ("none", *bpcore.NORMS)  # model.norm
LARGE = "set allow_large=true to run it anyway"


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
    """bpcore objects for ``cfg``; raises ConfigError for any value bpcore or the schema rejects,
    for a run above the size limits (``experiments.app.sizes``) without ``allow_large``, and
    for one whose arrays do not fit in memory with it."""
    _check_keys_and_numbers(cfg)
    _check_positive_ints(cfg)
    _check_remedies(cfg)
    _check_experiment_name(cfg.mlflow.experiment_name)
    shape = _dataset(cfg.data, None)  # the data set at its default size: the shape of a row
    need = _memory_need(cfg, shape)
    _check_memory(cfg, need)
    try:
        return _allocate(cfg)
    except MemoryError as error:  # allow_large: the arrays did not fit after all
        raise _out_of_memory(cfg, need, error) from None


def _allocate(cfg: DictConfig) -> Setup:
    """The run's objects for a config whose keys and sizes were checked."""
    data = _dataset(cfg.data, cfg.data.n_samples)
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
    net = _net(cfg, [data.n_features, *hidden, data.n_outputs], activation, output, init, bias)
    n_train = len(data.x_train)
    _rejecting_named("train", cfg, check_batch_size, net, n_train, batch_size)
    optimizer = _optimizer(cfg, batch_size)
    _check_metrics(cfg, net, optimizer.clipping, n_train, batch_size)
    _check_tracking_uri(cfg.mlflow.tracking_uri)
    return Setup(data, net, optimizer, loss, batch_size, hidden)


def _net(
    cfg: DictConfig,
    sizes: list[int],
    activation: bpcore.Activation,
    output: str,
    init: Initializer,
    bias: BiasInit,
) -> bpcore.MLP:
    """The run's net (every error MLP can raise here names a key of ``model``)."""
    model = cfg.model
    keys = ("residual", "residual_scale", "norm_eps", "norm_momentum")
    remedies = {key: model[key] for key in keys}
    remedies["norm"] = None if model.norm == "none" else model.norm
    net_args = (sizes, activation, output, init, cfg.seed, model.dtype, bias)
    return _rejecting_named("model", cfg, bpcore.MLP, *net_args, **remedies)


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
    for key in ("clip_norm", "clip_value"):
        if optim[key] is not None and not optim[key] > 0:
            raise ConfigError(
                f"optim.{key}", optim[key], "a positive number, or null (no clipping)"
            )
    lr = bpcore.scaled_lr(optim.lr, batch_size, train.lr_scaling, train.reference_batch_size)
    params = {"momentum": optim.momentum, "nesterov": optim.nesterov}
    return _rejecting(
        "optim",
        optim.name,
        bpcore.get_optimizer,
        optim.name,
        lr,
        clip_norm=optim.clip_norm,
        clip_value=optim.clip_value,
        **(params if optim.name == "momentum" else {}),
    )


def hidden_widths(model: DictConfig, n_in: int, n_out: int) -> list[int]:
    """The hidden layer widths: ``model.hidden``, or ``depth × width``, or depth × the width
    that makes ``n_in → width^depth → n_out`` come closest to ``model.param_budget``."""
    if model.hidden is not None:
        if len(model.hidden) == 0 or min(model.hidden) < 1:
            raise ConfigError("model.hidden", list(model.hidden), "a non-empty list of widths ≥ 1")
        return list(model.hidden)
    depth, width = _depth_and_width(model, n_in, n_out)
    return [width] * depth


def _depth_and_width(model: DictConfig, n_in: int, n_out: int) -> tuple[int, int]:
    """(depth, width) of a net of equal hidden widths, without ``model.hidden``."""
    if model.param_budget is None:
        return model.depth, model.width
    d = model.depth  # params(w) = (n_in + 1)w + (d − 1)(w + 1)w + (w + 1)n_out, solve for w
    a, b, c = d - 1, n_in + 1 + (d - 1) + n_out, n_out - model.param_budget
    width = -c / b if a == 0 else (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    if width < 1:
        smallest = _n_params(n_in, 1, d, n_out)
        raise ConfigError("model.param_budget", model.param_budget, f"≥ {smallest} at depth {d}")
    return d, round(width)


def _n_params(n_in: int, width: int, depth: int, n_out: int) -> int:
    return (n_in + 1) * width + (depth - 1) * (width + 1) * width + (width + 1) * n_out


@dataclass(frozen=True)
class MemoryNeed:
    """A run's memory estimate (``sizes.memory_bytes``), what it counts, and the config key
    that makes it large."""

    n_bytes: int
    what: str
    key: str


def _memory_need(cfg: DictConfig, shape: bpcore.Dataset) -> MemoryNeed:
    """The run's memory estimate, naming ``data.n_samples`` if the data set's default size
    fits, else the model's widest dimension.  ``shape``: the data set at its default size."""
    n_in, n_out = shape.n_features, shape.n_outputs
    if cfg.model.hidden is not None:
        widths = [n_in, *hidden_widths(cfg.model, n_in, n_out), n_out]
        n_params = sum((a + 1) * b for a, b in itertools.pairwise(widths))
        n_units, widest, key = sum(widths), max(widths), "model.hidden"
    else:  # never a list of depth widths: model.depth=10**12 is refused, not allocated
        depth, width = _depth_and_width(cfg.model, n_in, n_out)
        n_params, n_units = _n_params(n_in, width, depth, n_out), n_in + depth * width + n_out
        widest = max(n_in, width, n_out)
        key = "model.width" if width > depth else "model.depth"
        key = "model.param_budget" if cfg.model.param_budget is not None else key
    itemsize = 4 if cfg.model.dtype == "float32" else 8
    batch = cfg.train.batch_size  # checked later: a bad value counts as 1 row here
    whole = batch == "full" or cfg.log.full_gradient  # a training pass over the training set
    batch = batch if isinstance(batch, int) and not isinstance(batch, bool) and batch > 0 else 1

    default_rows = len(shape.x_train) + len(shape.x_val) + len(shape.x_test)

    def need(rows: int) -> int:
        train_rows = rows * len(shape.x_train) // default_rows  # the split's share
        pass_rows = train_rows if whole else min(batch, train_rows)
        shapes = (n_params, n_units, widest, n_in + n_out, rows, train_rows, pass_rows)
        return sizes.memory_bytes(*shapes, itemsize, cfg.optim.name)

    rows = default_rows if cfg.data.n_samples is None else cfg.data.n_samples
    if need(rows) > sizes.MEMORY_LIMIT and need(default_rows) <= sizes.MEMORY_LIMIT:
        key = "data.n_samples"
    what = f"{n_params:,} parameters, {n_units:,} units, {rows:,} rows"
    return MemoryNeed(need(rows), what, key)


def _check_memory(cfg: DictConfig, need: MemoryNeed) -> None:
    """Refuse a run whose memory estimate is above the limit, unless ``allow_large``."""
    if need.n_bytes <= sizes.MEMORY_LIMIT or cfg.allow_large:
        return
    estimate, limit = sizes.human_bytes(need.n_bytes), sizes.human_bytes(sizes.MEMORY_LIMIT)
    allowed = f"the run would need ≈ {estimate} of memory ({need.what}), above the limit of {limit}"
    raise ConfigError(need.key, OmegaConf.select(cfg, need.key), f"{allowed}; {LARGE}")


def _out_of_memory(cfg: DictConfig, need: MemoryNeed, error: MemoryError) -> ConfigError:
    """What to say when the run's arrays did not fit (``allow_large``): one line with the
    size, not numpy's traceback."""
    estimate = sizes.human_bytes(need.n_bytes)
    why = f"out of memory ({error}); the run needs ≈ {estimate} ({need.what})"
    return ConfigError(need.key, OmegaConf.select(cfg, need.key), why)


def _check_metrics(
    cfg: DictConfig, net: bpcore.MLP, clipping: bool, n_train: int, batch_size: int
) -> None:
    """Refuse a run that would log more metric points than the limit (``sizes.metric_points``),
    unless ``allow_large``, naming ``model.depth`` if the layers make it many, else the key
    that makes the steps many."""
    per_epoch = -(-n_train // batch_size)
    steps = cfg.train.epochs * per_epoch
    steps = steps if cfg.train.max_steps is None else min(steps, cfg.train.max_steps)
    every, n_layers = cfg.log.every_n_steps, net.n_layers
    remedies, theory = len(remedy_keys(net, clipping)), mean_field_inputs(net) is not None
    signal = len(signal_keys(net))
    args = (n_layers, steps, per_epoch, every, cfg.log.full_gradient, remedies, theory, signal)
    points = sizes.metric_points(*args)
    if points <= sizes.METRIC_LIMIT or cfg.allow_large:
        return
    if n_layers > (steps - 1) // every + 1:
        key = "model.hidden" if cfg.model.hidden is not None else "model.depth"
    else:
        key = "log.every_n_steps" if every < per_epoch else "train.epochs"
    what = f"{n_layers:,} layers, {steps:,} steps, diagnostics every {every}"
    allowed = f"the run would log ≈ {points:,} metric points ({what}), above the limit of "
    raise ConfigError(key, OmegaConf.select(cfg, key), f"{allowed}{sizes.METRIC_LIMIT:,}; {LARGE}")


def _check_remedies(cfg: DictConfig) -> None:
    """model.norm, residual_scale, norm_eps, norm_momentum in range (clipping: ``_optimizer``)."""
    model = cfg.model
    if model.norm not in NORM_CHOICES:
        raise ConfigError("model.norm", model.norm, f"one of {', '.join(NORM_CHOICES)}")
    for key in ("residual_scale", "norm_eps"):
        if not model[key] > 0:
            raise ConfigError(f"model.{key}", model[key], "a positive number")
    if not 0 < model.norm_momentum <= 1:
        raise ConfigError("model.norm_momentum", model.norm_momentum, "a number in (0, 1]")


def _check_experiment_name(name: str) -> None:
    if not name.strip():
        raise ConfigError("mlflow.experiment_name", name, "a name that is not empty")


def _check_tracking_uri(uri: str | None) -> None:
    """Only stores MLflow 3 writes to (sqlite, PostgreSQL, a tracking server), no password."""
    problem = None if uri is None else uri_problem(uri)
    if uri is not None and problem is not None:
        raise ConfigError("mlflow.tracking_uri", masked(uri), problem)


def _check_keys_and_numbers(cfg: DictConfig) -> None:
    """Every key is one of the schema's (Hydra adds any key given with ``+``, such as
    ``+model.dept=3``) and every float is finite; Hydra's own node is not the run's."""
    keys = [str(key) for key in cfg if key != "hydra"]
    values = OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=True)
    _check_known(values, schema_keys(), "")
    for key, value in _leaves(values, ""):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(key, value, "a finite number")


def _check_known(values: Any, schema: dict[str, Any], path: str) -> None:
    for key, value in values.items():
        if key not in schema:
            group = f"{path[:-1]} has" if path else "top-level keys:"
            close = difflib.get_close_matches(key, schema, n=1)
            hint = f"; did you mean {path}{close[0]}?" if close else ""
            allowed = f"no such key{hint} ({group} {', '.join(schema)})"
            raise ConfigError(f"{path}{key}", value, allowed)
        if isinstance(schema[key], dict) and isinstance(value, dict):
            _check_known(value, schema[key], f"{path}{key}.")


def _leaves(node: Any, path: str) -> list[tuple[str, Any]]:
    """(dotted key, value) of every leaf of a plain container."""
    if not isinstance(node, dict | list):
        return [(path, node)]
    items = node.items() if isinstance(node, dict) else enumerate(node)
    return [leaf for key, value in items for leaf in _leaves(value, f"{path}.{key}".lstrip("."))]


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


def _dataset(data: DictConfig, n_samples: int | None) -> bpcore.Dataset:
    """The data set ``data`` describes, with ``n_samples`` rows (None: its default)."""
    params = {k: data[k] for k in ("noise", "seed", "val_fraction", "test_fraction")}
    params["n_samples"] = n_samples
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


def _rejecting_named(
    group: str, cfg: DictConfig, make: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    """``make(*args, **kwargs)``, with bpcore's ValueError ``name: what is allowed`` reported
    against the config key ``group.name``."""
    try:
        return make(*args, **kwargs)
    except ValueError as error:
        name, _, allowed = str(error).partition(": ")
        key = f"{group}.{name}"
        raise ConfigError(key, OmegaConf.select(cfg, key), allowed) from None


def _rejecting(key: str, value: Any, make: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``make(*args, **kwargs)``, with bpcore's ValueError reported against config ``key``."""
    try:
        return make(*args, **kwargs)
    except ValueError as error:
        raise ConfigError(key, value, str(error)) from None
