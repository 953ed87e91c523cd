"""A run whose loss blows up but stays finite: training goes on, so ``diverged`` (a non-finite
loss or gradient, which stops training) never says so.

A run *exploded* at the first epoch whose training or validation loss exceeds
``EXPLOSION_FACTOR`` times the validation loss of the initial net (before any update).  At
initialization a classifier's cross-entropy is about ln(classes) (0.69 for two), so tenfold
is ≈ 7: predictions confidently wrong, not a noisy epoch; a tuned run of the presets stays far
below it.
"""

from __future__ import annotations

from experiments.diagnostics.history import History

EXPLOSION_FACTOR = 10.0
LOSS_KEYS = ("train/loss", "val/loss")  # epoch losses, on whole splits


def exploded_at(history: History, initial_loss: float) -> int | None:
    """The step of the first epoch record whose loss exceeds EXPLOSION_FACTOR × the initial
    val loss ``initial_loss`` (an infinite loss does, NaN does not), or None."""
    limit = EXPLOSION_FACTOR * initial_loss
    first: int | None = None
    for key in LOSS_KEYS:
        if key not in history.keys:
            continue
        steps, losses = history.series(key)
        above = steps[losses > limit]
        if above.size and (first is None or above[0] < first):
            first = int(above[0])
    return first


def flag_tags(flag: str, step: int | None) -> dict[str, str]:
    """``flag`` (true/false) and, if true, ``<flag>_at_step``: for ``diverged``, ``exploded``."""
    tags = {flag: str(step is not None).lower()}
    return tags if step is None else tags | {f"{flag}_at_step": str(step)}
