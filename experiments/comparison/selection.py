"""The learning rate each config is compared at: the one of a grid with the best mean final
validation loss over seeds.

The literature's protocol for comparing activations or optimizers (Eger et al. 2018; Schmidt
et al. 2021): tune the learning rate per configuration on a validation split, then report on
a separate test split over several seeds.  Rules: a run that diverged (or left no finite val
loss) counts as worst, so one diverged seed makes its lr lose to any lr whose seeds all
finished; of equal means, the smaller lr wins.  Nothing here reads a test metric.
"""

from __future__ import annotations

from dataclasses import dataclass

from experiments.comparison.records import Config, Record


@dataclass(frozen=True)
class Candidate:
    """One lr of one config's grid, over the tuning seeds."""

    lr: float
    mean_val_loss: float  # +inf if any seed diverged
    seeds: int
    diverged: int


def candidates(records: list[Record]) -> dict[Config, list[Candidate]]:
    """Per config, each lr tried, smallest lr first."""
    runs: dict[Config, dict[float, list[Record]]] = {}
    for r in records:
        runs.setdefault(r.config, {}).setdefault(r.lr, []).append(r)
    out: dict[Config, list[Candidate]] = {}
    for config, by_lr in runs.items():
        out[config] = []
        for lr in sorted(by_lr):
            losses = [r.failed_val_loss for r in by_lr[lr]]
            mean = sum(losses) / len(losses)  # +inf if any is (a sum beyond 1.8e308 too)
            diverged = sum(r.diverged for r in by_lr[lr])
            out[config].append(Candidate(lr, mean, len(losses), diverged))
    return out


def choose(options: list[Candidate]) -> Candidate:
    """The best mean final val loss; of equals (all infinite included) the smallest lr."""
    return min(options, key=lambda c: (c.mean_val_loss, c.lr))


def chosen_lrs(records: list[Record]) -> dict[Config, float]:
    """Per config, the chosen learning rate of the tuning runs ``records``."""
    return {config: choose(options).lr for config, options in candidates(records).items()}
