"""Hydra ``_target_`` instantiation only from this project's own code.

Hydra instantiates every ``hydra.callbacks.*`` entry (any importable callable) in the launching
process before any job starts, and the launcher and sweeper (which Hydra itself restricts to
installed plugins).  Our configs name one ``_target_``, the sweep callback, and no code of ours
calls ``hydra.utils.instantiate``.  ``refuse_foreign_targets`` composes the config as the app
is about to, before Hydra instantiates anything, and stops with one message if a ``_target_``
names anything else, whether it came from a command-line override, a ``--config-dir`` or a
``hydra.searchpath`` entry.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from hydra._internal.hydra import Hydra
from hydra._internal.utils import (
    create_automatic_config_search_path,
    detect_calling_file_or_module_from_task_function,
    get_args_parser,
)
from hydra.core.config_search_path import SearchPathQuery
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

OURS = ("experiments.", "bpcore.")
PLUGINS = ("hydra_plugins.", "hydra._internal.core_plugins.")  # launchers and sweepers
PLUGIN_KEYS = ("hydra.launcher._target_", "hydra.sweeper._target_")


def foreign_targets(cfg: DictConfig) -> list[tuple[str, Any]]:
    """(key, value) of each ``_target_`` in ``cfg`` outside our packages (or, for the launcher
    and sweeper, outside Hydra's plugins); interpolations count as foreign."""
    found: list[tuple[str, Any]] = []

    def walk(node: Any, path: str) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            where = f"{path}{key}"
            if key == "_target_":
                allowed = OURS + (PLUGINS if where in PLUGIN_KEYS else ())
                if not (isinstance(value, str) and value.startswith(allowed)):
                    found.append((where, value))
            elif isinstance(value, dict | list):
                walk(value, f"{where}.")

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    return found


def refuse_foreign_targets(argv: list[str], app: Callable[..., Any], config_path: str) -> None:
    """Exit 1 naming the first foreign ``_target_`` of the config that ``@hydra.main(config_path)
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
    for key, value in foreign_targets(cfg)[:1]:
        allowed = "a class or function of experiments or bpcore"
        if key in PLUGIN_KEYS:
            allowed = "an installed Hydra plugin (hydra_plugins.*), chosen with hydra/launcher=…"
        sys.exit(f"error: {key}={value!r}: {allowed} (Hydra would instantiate it)")
