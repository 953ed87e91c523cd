"""What a run is called and where it came from: run names, flattened params, git commit."""

from __future__ import annotations

import hashlib
import json
import subprocess
from functools import cache
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from experiments import PROJECT_ROOT

DEFAULTS = {"init": "xavier_normal", "data": "spirals", "optim": "sgd", "train.lr_scaling": "none"}


NAMED = ("activation", "model.depth", "model.width", "model.hidden", "train.batch_size", "seed")


def run_name(cfg: DictConfig, hidden: list[int], batch_size: int, swept: list[str]) -> str:
    """The config at a glance, e.g. ``relu-d8-w64-b32-s0``.  Non-default choices and the other
    keys a sweep varies are appended: ``-he_normal-sawtooth-adam-linear-lr=0.01``."""
    widths = sorted(set(hidden))
    width = str(widths[0]) if len(widths) == 1 else "x".join(map(str, hidden))
    parts = [cfg.activation.name, f"d{len(hidden)}", f"w{width}", f"b{batch_size}", f"s{cfg.seed}"]
    choices = {
        "init": cfg.init.name,
        "data": cfg.data.name,
        "optim": cfg.optim.name,
        "train.lr_scaling": cfg.train.lr_scaling,
    }
    parts += [value for key, value in choices.items() if value != DEFAULTS[key]]
    for key in swept:
        if key not in (*NAMED, *choices):
            parts.append(f"{key.rsplit('.', 1)[-1]}={_swept_value(cfg, key)}")
    return "-".join(parts)


def _swept_value(cfg: DictConfig, key: str) -> Any:
    """The value of a swept key, or for a swept config group without a key of its own
    (``remedy=residual``: conf/remedy/) the option Hydra chose."""
    value = OmegaConf.select(cfg, key)
    if value is None and key not in cfg and HydraConfig.initialized():
        value = HydraConfig.get().runtime.choices.get(key)
    return value


def flat_params(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as dotted keys (``model.depth`` → ``"8"``), for MLflow params."""
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    return dict(_flatten(container, ""))


def config_hash(cfg: DictConfig, **changed: object) -> str:
    """A job's identity for ``mlflow.resume``: 16 hex digits of the resolved config, without
    ``mlflow.*`` (where it is logged, not what it trains), ``allow_large`` (whether it may run)
    and Hydra's own settings.
    ``changed``: dotted keys (``optim__lr`` for ``optim.lr``) whose value differs from
    ``cfg``'s, for the hash of a job composed with them (without composing it)."""
    keys = [str(key) for key in cfg if key not in ("hydra", "mlflow", "allow_large")]
    params = flat_params(OmegaConf.masked_copy(cfg, keys))
    params |= {key.replace("__", "."): str(value) for key, value in changed.items()}
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def _flatten(node: Any, prefix: str) -> list[tuple[str, str]]:
    if isinstance(node, dict):
        return [item for k, v in node.items() for item in _flatten(v, f"{prefix}{k}.")]
    return [(prefix[:-1], str(node))]


@cache
def git_commit() -> str:
    """HEAD of the project checkout (``-dirty`` with uncommitted changes), else ``unknown``."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    if not commit:
        return "unknown"
    return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
