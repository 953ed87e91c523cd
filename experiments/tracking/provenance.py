"""What a run is called and where it came from: run names, flattened params, git commit,
MLflow's source tags and a sweep's description."""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
from functools import cache
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from experiments import PROJECT_ROOT

DEFAULTS = {"init": "xavier_normal", "data": "spirals", "optim": "sgd", "train.lr_scaling": "none"}


NAMED = ("activation", "model.depth", "model.width", "model.hidden", "train.batch_size", "seed")
SWEPT_FIRST = " · "  # between the parts a sweep varies and the rest


def run_name(cfg: DictConfig, hidden: list[int], batch_size: int, swept: list[str]) -> str:
    """The config at a glance, e.g. ``relu-d8-w64-b32-s0``, plus non-default choices and the
    other keys a sweep varies (``relu-d8-w64-b32-he_normal-adam-lr=0.01-s0``; the seed last).
    The parts a sweep varies come first, so that a cut name still tells its runs apart:
    ``b800-linear-s1 · tanh-d3-w32``."""
    widths = sorted(set(hidden))
    width = str(widths[0]) if len(widths) == 1 else "x".join(map(str, hidden))
    parts = [  # (text, the keys that set it)
        (cfg.activation.name, ("activation",)),
        (f"d{len(hidden)}", ("model.depth", "model.hidden")),
        (f"w{width}", ("model.width", "model.hidden", "model.param_budget")),
        (f"b{batch_size}", ("train.batch_size",)),
    ]
    choices = {
        "init": cfg.init.name,
        "data": cfg.data.name,
        "optim": cfg.optim.name,
        "train.lr_scaling": cfg.train.lr_scaling,
    }
    parts += [(v, (k,)) for k, v in choices.items() if v != DEFAULTS[k] or k in swept]
    for key in swept:
        if key not in (*NAMED, *choices):
            parts.append((f"{key.rsplit('.', 1)[-1]}={_swept_value(cfg, key)}", (key,)))
    parts.append((f"s{cfg.seed}", ("seed",)))
    first = [text for text, keys in parts if set(keys) & set(swept)]
    rest = [text for text, keys in parts if not set(keys) & set(swept)]
    return SWEPT_FIRST.join("-".join(texts) for texts in (first, rest) if texts)


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


def source_tags() -> dict[str, str]:
    """MLflow's standard tags for where a run came from (the UI's Source and Version columns):
    the command, ``LOCAL``, the git commit; and ``git_dirty`` (true: the checkout had
    uncommitted changes).  No commit tags outside a git checkout."""
    tags = {"mlflow.source.name": sys.argv[0], "mlflow.source.type": "LOCAL"}
    commit, _, dirty = git_commit().partition("-")
    if commit == "unknown":
        return tags
    return tags | {"mlflow.source.git.commit": commit, "git_dirty": str(bool(dirty)).lower()}


NO_PRESET = "Runs of `python -m experiments.train` without a preset (experiment=…)."


def preset_description(preset: str) -> str:
    """What a preset compares and why: the comment heading ``conf/experiment/<preset>.yaml``,
    as one paragraph."""
    path = PROJECT_ROOT / "conf" / "experiment" / f"{preset}.yaml"
    if not path.is_file():
        return NO_PRESET
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(line for line in lines if line != "@package _global_")


def sweep_description(preset: str, arguments: list[str]) -> str:
    """A sweep's description (its parent run's, in MLflow): the preset's, and the command."""
    command = shlex.join(["python", "-m", "experiments.train", *arguments])
    return f"{preset_description(preset)}\n\nLaunched with: `{command}`"


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
