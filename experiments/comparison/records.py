"""A run as a comparison sees it: its config, learning rate, seed, stage and outcome.

A *config* is everything a sweep varies except the seed and the learning rate (and the
stage): the thing being compared.  ``record(params, tags, metrics, keys)`` reads one from what
MLflow stores (params and tags as strings, the metrics' last values).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Config = tuple[tuple[str, str], ...]  # (key, value) pairs, in the order of the sweep's keys


@dataclass(frozen=True)
class Record:
    """One finished run."""

    config: Config
    lr: float  # optim.lr (before batch-size scaling)
    seed: int
    stage: str  # "tune" (the lr grid), "final" (at the chosen lr) or "single" (no tuning)
    diverged: bool
    val_loss: float  # the last epoch's; NaN if none was logged
    test_loss: float  # NaN without a test split
    test_accuracy: float  # NaN for regression or without a test split
    seconds: float  # wall time of the training loop at its last epoch

    @property
    def failed_val_loss(self) -> float:
        """The final val loss for choosing: +inf for a diverged run or one without a finite
        value (it counts as worst)."""
        return math.inf if self.diverged or not math.isfinite(self.val_loss) else self.val_loss


REPLICATE_KEYS = ("seed",)  # runs that differ only in these are repeats of one config
DERIVED_KEYS = ("optim.effective_lr",)  # params that follow from others: never a config's
RESOLVED_KEYS = ("data.n_samples", "data.noise")  # the dataset's defaults when not set
ACTIVATION_KEY = "activation.name"
LR_KEY = "optim.lr"


def config_keys(params: Sequence[Mapping[str, str]]) -> list[str]:
    """The params that vary across runs (seeds and derived params excepted), the activation
    first and the learning rate last, leaving out keys determined by the keys before them
    (``activation.alpha`` follows from the activation; a tuned lr from its config; a
    dataset's default size and noise from the dataset, so those come after the other keys)."""
    keys = sorted({k for p in params for k in p} - {*REPLICATE_KEYS, *DERIVED_KEYS})
    varying = [k for k in keys if len({p.get(k, "") for p in params}) > 1]
    varying.sort(key=lambda k: (k != ACTIVATION_KEY, k in RESOLVED_KEYS, k == LR_KEY, k))
    kept: list[str] = []
    for key in varying:
        seen: dict[tuple[str, ...], str] = {}
        for p in params:
            before = tuple(p.get(k, "") for k in kept)
            if seen.setdefault(before, p.get(key, "")) != p.get(key, ""):
                kept.append(key)
                break
    return kept


def reported_stage(stages: Sequence[str]) -> str:
    """The stage whose runs are reported: "final" if the sweep tuned its lrs, else "single"."""
    return "final" if "final" in stages else "single"


def config_label(config: Config) -> str:
    """``activation=relu, model.depth=3``; ``all runs`` for the empty config."""
    return ", ".join(f"{key}={value}" for key, value in config) or "all runs"


def _float(values: Mapping[str, float | str], key: str) -> float:
    try:
        return float(values[key])
    except (KeyError, ValueError):
        return math.nan


def record(
    params: Mapping[str, str],
    tags: Mapping[str, str],
    metrics: Mapping[str, float],
    keys: Sequence[str],
) -> Record:
    """A Record from a run's params, tags and last metric values; ``keys`` are the config's."""
    return Record(
        config=tuple((key, params.get(key, "")) for key in keys),
        lr=_float(params, LR_KEY),
        seed=int(params.get("seed", "0")),
        stage=params.get("stage", "single"),
        diverged=tags.get("diverged") == "true",
        val_loss=_float(metrics, "val/loss"),
        test_loss=_float(metrics, "test/loss"),
        test_accuracy=_float(metrics, "test/accuracy"),
        seconds=_float(metrics, "progress/seconds"),
    )
