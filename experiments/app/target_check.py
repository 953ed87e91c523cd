"""Hydra calls only what this suite offers: the ``_target_`` check.

Before any job runs, Hydra calls callables that the config names by dotted path: every
``_target_`` under ``hydra.callbacks`` (nested ones too), the launcher's and the sweeper's, and
the ``class`` or ``()`` of each handler, formatter and filter of ``hydra.job_logging`` and
``hydra.hydra_logging`` (whose ``ext://`` values it imports).  A dotted path reaches anything
through modules' attributes (``bpcore.datasets.np.savetxt`` is numpy's ``savetxt``), so each
name is judged by the object it resolves to: it must be one of ``ALLOWED``'s, compared by
identity.  Resolving imports only the modules of allowed objects; any other path is refused
unresolved, so the check itself runs no foreign code.

``refuse_foreign_targets`` composes the config as the app is about to, from the command line
(overrides, presets, ``--config-dir``, ``hydra.searchpath``), and exits 1 with one line before
Hydra instantiates anything.  A preset chosen by a sweep (``-m experiment=a,b``) is composed
per job only: the sweep callback checks each job's config with ``foreign_targets`` before any
job starts.
"""

from __future__ import annotations

import copy
import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hydra._internal.hydra import Hydra
from hydra._internal.utils import (
    _locate,
    create_automatic_config_search_path,
    detect_calling_file_or_module_from_task_function,
    get_args_parser,
)
from hydra.core.config_search_path import SearchPathQuery
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


@dataclass(frozen=True)
class Allowed:
    """The objects a config key may name (canonical ``module.qualname``), and how to say so."""

    names: tuple[str, ...]
    text: str


SUBMITIT = "hydra_plugins.hydra_submitit_launcher.submitit_launcher"
LAUNCHERS = Allowed(
    (
        "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
        "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
        f"{SUBMITIT}.LocalLauncher",
        f"{SUBMITIT}.SlurmLauncher",
        "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher",
    ),
    "a launcher of hydra/launcher=basic, joblib, submitit_local, submitit_slurm, slurm, ray, "
    "ray_head",
)
SWEEPERS = Allowed(
    (
        "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
        "hydra_plugins.bplab_tuning.tuning_sweeper.TuningSweeper",
    ),
    "a sweeper of hydra/sweeper=basic, tune",
)
CALLABLES = Allowed(
    ("experiments.app.sweep.MlflowSweepCallback",),
    "experiments.app.sweep.MlflowSweepCallback (the sweep callback)",
)
LOG_CLASSES = Allowed(
    ("logging.StreamHandler", "logging.FileHandler", "logging.NullHandler"),
    "logging.StreamHandler, logging.FileHandler or logging.NullHandler",
)
LOG_STREAMS = ("ext://sys.stdout", "ext://sys.stderr")  # the only ext:// values: sys's streams
ALLOWED = {"hydra.launcher._target_": LAUNCHERS, "hydra.sweeper._target_": SWEEPERS}
LOGGING = ("job_logging", "hydra_logging")  # hydra.<these>: Python logging dictConfigs


def resolves_to_allowed(path: Any, allowed: Allowed) -> bool:
    """Whether dotted ``path`` resolves to one of the ``allowed`` objects, through attributes as
    Hydra resolves it; a path outside the allowed objects' modules is not imported."""
    if not isinstance(path, str) or not all(part.isidentifier() for part in path.split(".")):
        return False  # also leading, trailing or doubled dots, and interpolations
    modules = {name.rpartition(".")[0] for name in allowed.names}
    module = max((m for m in modules if path.startswith(f"{m}.")), key=len, default=None)
    if module is None:
        return False
    try:
        found: Any = importlib.import_module(module)
        for attribute in path[len(module) + 1 :].split("."):
            found = getattr(found, attribute)
        name = f"{getattr(found, '__module__', '')}.{getattr(found, '__qualname__', '')}"
        return name in allowed.names and _locate(name) is found and _locate(path) is found
    except Exception:  # a plugin that is not installed (or fails to import), a wrong name
        return False


def foreign_targets(cfg: DictConfig) -> list[tuple[str, Any, str]]:
    """(key, value, what is allowed) of each callable ``cfg`` names that Hydra would call and
    the suite does not offer; ``cfg`` is a composed config with its ``hydra`` node."""
    found: list[tuple[str, Any, str]] = []
    for key, value in _leaves(OmegaConf.to_container(cfg, resolve=False), ""):
        if _name(key) == "_target_":
            allowed = ALLOWED.get(key, CALLABLES)
            if not resolves_to_allowed(value, allowed):
                found.append((key, value, f"Hydra would call it; allowed: {allowed.text}"))
    for node in LOGGING:
        found += _foreign_logging(cfg, f"hydra.{node}")
    return found


def _foreign_logging(cfg: DictConfig, node: str) -> list[tuple[str, Any, str]]:
    """``foreign_targets`` of logging config ``node``, resolved as Hydra resolves it when it sets
    logging up (with stand-ins for the values it sets at run time)."""
    if OmegaConf.select(cfg, node) is None:
        return []
    filled = copy.deepcopy(cfg)
    stand_ins = {"runtime.output_dir": os.getcwd(), "job.num": 0, "job.id": "0"}
    for key, value in stand_ins.items():
        OmegaConf.update(filled.hydra, key, value, force_add=True)
    try:
        resolved = OmegaConf.to_container(OmegaConf.select(filled, node), resolve=True)
    except OmegaConfBaseException as error:
        why = str(error).splitlines()[0]
        allowed = f"not resolvable before the run ({why}); use a literal value"
        return [(getattr(error, "full_key", node), "an interpolation", allowed)]
    found: list[tuple[str, Any, str]] = []
    for key, value in _leaves(resolved, f"{node}."):
        if _name(key) in ("class", "()") and not resolves_to_allowed(value, LOG_CLASSES):
            found.append((key, value, f"logging would call it; allowed: {LOG_CLASSES.text}"))
        elif isinstance(value, str) and value.startswith("ext://") and value not in LOG_STREAMS:
            allowed = " or ".join(LOG_STREAMS)
            found.append((key, value, f"logging would import it; allowed: {allowed}"))
    return found


def _name(key: str) -> str:
    """The last part of a dotted key."""
    return key.rpartition(".")[2]


def _leaves(node: Any, path: str) -> list[tuple[str, Any]]:
    """(dotted key, value) of every leaf of a plain container; a ``_target_``, ``class`` or
    ``()`` key is a leaf whatever its value."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    leaves: list[tuple[str, Any]] = []
    for key, value in items:
        where = f"{path}{key}"
        if isinstance(value, dict | list) and _name(where) not in ("_target_", "class", "()"):
            leaves += _leaves(value, f"{where}.")
        else:
            leaves.append((where, value))
    return leaves


def refuse_foreign_targets(argv: list[str], app: Callable[..., Any], config_path: str) -> None:
    """Exit 1 naming the first foreign callable of the config that ``@hydra.main(config_path)
    app`` composes from ``argv``, as Hydra will.

    A config that does not compose passes: Hydra reports that itself, in its own words."""
    args = get_args_parser().parse_args(argv)
    calling_file, calling_module = detect_calling_file_or_module_from_task_function(app)
    search_path = create_automatic_config_search_path(
        calling_file, calling_module, args.config_path or config_path
    )
    if args.config_dir is not None:
        path = f"file://{os.path.abspath(args.config_dir)}"
        search_path.prepend("command-line", path, anchor=SearchPathQuery(provider="schema"))
    try:
        hydra = Hydra.create_main_hydra2(task_name="train", config_search_path=search_path)
        cfg = hydra.compose_config(
            args.config_name or "config",
            args.overrides,
            run_mode=RunMode.MULTIRUN,  # Hydra instantiates from this master config
            validate_sweep_overrides=False,
        )
    except Exception:
        return
    finally:
        GlobalHydra.instance().clear()
    for key, value, allowed in foreign_targets(cfg)[:1]:
        sys.exit(f"error: {key}={value!r}: {allowed}")
