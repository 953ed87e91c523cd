"""One row per config: its learning rate, test metrics as mean ± a 95% interval over seeds,
seeds and diverged seeds, median wall time; as a Markdown table and a CSV file.

The interval is Student's t over seeds: mean ± t₀.₉₇₅(n − 1) · s / √n, s the sample standard
deviation (``scipy.stats.t``).  It assumes roughly normal seed-to-seed variation, which for 5
seeds is an approximation; with one seed there is no interval.  Diverged seeds are counted
and left out of the means (their test metrics describe a net that stopped).
"""

from __future__ import annotations

import csv
import io
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from experiments.comparison.records import Config, Record, config_label, reported_stage

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    mean: float
    half_width: float | None  # None with fewer than two values
    n: int

    def text(self, scale: float = 1.0, digits: int = 3) -> str:
        """``0.912 ± 0.031`` (values × ``scale``), ``0.912 (n = 1)``, or ``–`` with none."""
        if self.n == 0:
            return "–"
        mean = f"{self.mean * scale:.{digits}g}"
        if self.half_width is None:
            return f"{mean} (n = 1)"
        return f"{mean} ± {self.half_width * scale:.2g}"


def interval(values: Sequence[float]) -> Interval:
    """Mean and the half width of the 95% Student-t interval of the finite ``values``."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return Interval(math.nan, None, 0)
    mean = sum(finite) / len(finite)  # inf, not an error, beyond 1.8e308
    if len(finite) < 2:
        return Interval(mean, None, len(finite))
    from scipy import stats  # type: ignore[import-untyped]  # ≈ 1 s: only when needed

    t = float(stats.t.ppf((1 + CONFIDENCE) / 2, len(finite) - 1))
    return Interval(mean, t * statistics.stdev(finite) / math.sqrt(len(finite)), len(finite))


@dataclass(frozen=True)
class Row:
    config: Config
    lr: float
    test_accuracy: Interval
    test_loss: Interval
    seeds: int
    diverged: int
    median_seconds: float

    @property
    def counts(self) -> tuple[int, int, float]:
        return self.seeds, self.diverged, self.median_seconds


def rows(records: Sequence[Record]) -> list[Row]:
    """One row per config of the reported runs, in the order the configs first appear."""
    stage = reported_stage([r.stage for r in records])
    by_config: dict[Config, list[Record]] = {}
    for r in (r for r in records if r.stage == stage):
        by_config.setdefault(r.config, []).append(r)
    out = []
    for config, runs in by_config.items():
        kept = [r for r in runs if not r.diverged]
        out.append(
            Row(
                config=config,
                lr=runs[0].lr if len({r.lr for r in runs}) == 1 else math.nan,
                test_accuracy=interval([r.test_accuracy for r in kept]),
                test_loss=interval([r.test_loss for r in kept]),
                seeds=len(runs),
                diverged=len(runs) - len(kept),
                median_seconds=statistics.median(r.seconds for r in runs),
            )
        )
    return out


HEADER = ("config", "lr", "test accuracy (%)", "test loss", "seeds", "diverged", "median s")
CSV_HEADER = (
    *("config", "lr", "test_accuracy_mean", "test_accuracy_ci95", "test_loss_mean"),
    *("test_loss_ci95", "seeds", "diverged", "median_seconds"),
)


def markdown(table: Sequence[Row]) -> str:
    """The table in Markdown; accuracy in percent, intervals as ± (95%, Student t)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in table:
        cells = (
            config_label(row.config),
            f"{row.lr:g}",
            row.test_accuracy.text(scale=100),
            row.test_loss.text(),
            str(row.seeds),
            str(row.diverged),
            f"{row.median_seconds:.2g}",
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def metrics(table: Sequence[Row]) -> dict[str, float]:
    """The table as MLflow metrics of the sweep's parent run, grouped by config:
    ``summary/<values>/test_accuracy`` (fraction), ``…/test_loss``, ``…/lr``, where ``<values>``
    are the config's values joined by ``-`` (``relu-3``), and ``summary/configs``."""
    out = {"summary/configs": float(len(table))}
    for row in table:
        name = "-".join(value for _, value in row.config) or "all"
        name = re.sub(r"[^\w.\- ]", "_", name)[:200]
        out[f"summary/{name}/lr"] = row.lr
        out[f"summary/{name}/test_accuracy"] = row.test_accuracy.mean
        out[f"summary/{name}/test_loss"] = row.test_loss.mean
    return out


def csv_text(table: Sequence[Row]) -> str:
    """The table as CSV, one column per number (half widths empty without an interval)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for row in table:
        acc, loss = row.test_accuracy, row.test_loss
        numbers = (acc.mean, acc.half_width or "", loss.mean, loss.half_width or "")
        writer.writerow((config_label(row.config), row.lr, *numbers, *row.counts))
    return out.getvalue()
