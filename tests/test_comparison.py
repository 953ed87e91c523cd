"""The comparison protocol's statistics: choosing each config's learning rate on validation
loss, and means with Student-t intervals over seeds."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest
from scipy import stats

from experiments.comparison.records import Record, config_keys, record
from experiments.comparison.selection import candidates, chosen_lrs
from experiments.comparison.summary import csv_text, interval, markdown, rows

RELU, TANH = (("activation.name", "relu"),), (("activation.name", "tanh"),)


def run(
    config: tuple[tuple[str, str], ...],
    lr: float,
    seed: int,
    val: float,
    test_accuracy: float = 0.5,
    stage: str = "tune",
    diverged: bool = False,
) -> Record:
    return Record(config, lr, seed, stage, diverged, val, 2 * val, test_accuracy, 1.0)


def test_the_interval_is_scipys_student_t_interval() -> None:
    samples = [0.91, 0.87, 0.95, 0.9, 0.88]
    got = interval(samples)
    low, high = stats.t.interval(0.95, len(samples) - 1, np.mean(samples), stats.sem(samples))
    assert got.mean == pytest.approx((low + high) / 2, rel=1e-12)
    assert got.half_width == pytest.approx((high - low) / 2, rel=1e-12)
    assert got.n == 5 and got.text(scale=100) == "90.2 ± 3.9"


def test_one_seed_has_no_interval_and_none_has_no_mean() -> None:
    one = interval([0.7, math.nan])  # a NaN (no test split) does not count
    assert (one.mean, one.half_width, one.n) == (0.7, None, 1)
    assert one.text() == "0.7 (n = 1)"
    assert interval([]).text() == "–" and interval([math.inf]).n == 0


def test_the_lr_with_the_best_mean_validation_loss_is_chosen_whatever_the_test_says() -> None:
    """Validation prefers lr 0.01 for relu; test accuracy would prefer 0.1: selection never
    reads it."""
    runs = [
        run(RELU, 0.01, 0, 0.20, test_accuracy=0.6),
        run(RELU, 0.01, 1, 0.30, test_accuracy=0.6),
        run(RELU, 0.1, 0, 0.10, test_accuracy=0.99),
        run(RELU, 0.1, 1, 0.50, test_accuracy=0.99),  # mean 0.30 > 0.25
        run(TANH, 0.01, 0, 0.40),
        run(TANH, 0.1, 0, 0.35),
    ]
    assert chosen_lrs(runs) == {RELU: 0.01, TANH: 0.1}


def test_a_diverged_seed_makes_its_lr_lose_and_ties_go_to_the_smaller_lr() -> None:
    runs = [
        run(RELU, 0.1, 0, 0.01),
        run(RELU, 0.1, 1, 0.01, diverged=True),  # a great loss before it diverged: still worst
        run(RELU, 0.001, 0, 0.9),
        run(RELU, 0.001, 1, 0.9),
        run(TANH, 0.03, 0, 0.2),
        run(TANH, 0.01, 0, 0.2),  # a tie: the smaller lr
        run(TANH, 0.3, 0, math.nan),  # no finite loss: worst
    ]
    assert chosen_lrs(runs) == {RELU: 0.001, TANH: 0.01}
    (relu_small, relu_big) = candidates(runs)[RELU]
    assert relu_big.mean_val_loss == math.inf and relu_big.diverged == 1
    assert relu_small.mean_val_loss == pytest.approx(0.9) and relu_small.seeds == 2
    everything_diverged = [run(RELU, lr, 0, 0.1, diverged=True) for lr in (0.3, 0.1)]
    assert chosen_lrs(everything_diverged) == {RELU: 0.1}


def test_the_summary_reports_the_final_runs_with_diverged_seeds_counted_apart() -> None:
    tuning = [run(RELU, 0.1, s, 0.1, test_accuracy=0.0) for s in (100, 101)]
    final = [
        run(RELU, 0.01, s, 0.2, test_accuracy=a, stage="final") for s, a in enumerate((0.8, 0.9))
    ]
    final.append(run(RELU, 0.01, 2, math.nan, test_accuracy=0.1, stage="final", diverged=True))
    (row,) = rows([*tuning, *final])
    assert (row.lr, row.seeds, row.diverged) == (0.01, 3, 1)
    assert row.test_accuracy.mean == pytest.approx(0.85) and row.test_accuracy.n == 2
    table = markdown([row])
    assert "| activation.name=relu | 0.01 | 85 ± " in table
    (parsed,) = csv.DictReader(io.StringIO(csv_text([row])))
    assert float(parsed["test_accuracy_mean"]) == pytest.approx(0.85)
    assert parsed["seeds"] == "3" and parsed["diverged"] == "1"


def test_a_record_reads_what_mlflow_stores() -> None:
    params = {"activation.name": "relu", "model.depth": "3", "optim.lr": "0.01", "seed": "4"}
    params["stage"] = "final"
    metrics = {"val/loss": 0.3, "test/loss": 0.35, "test/accuracy": 0.9, "progress/seconds": 2.0}
    got = record(params, {"diverged": "false"}, metrics, ["activation.name", "model.depth"])
    assert got == Record(
        (("activation.name", "relu"), ("model.depth", "3")),
        0.01,
        4,
        "final",
        False,
        0.3,
        0.35,
        0.9,
        2.0,
    )
    regression = record({"optim.lr": "0.1"}, {"diverged": "true"}, {"val/loss": 1.0}, [])
    assert regression.stage == "single" and regression.diverged
    assert math.isnan(regression.test_accuracy) and regression.failed_val_loss == math.inf


def test_resolved_and_derived_params_never_name_a_config() -> None:
    """A sweep over datasets: each logs its default size and noise, and every run its
    effective lr; the config is still the dataset (and the lr stays last)."""
    params = [
        {"data.name": name, "data.n_samples": rows, "data.noise": noise, "seed": seed}
        | {"optim.lr": "0.1", "optim.effective_lr": str(0.1 * seed + 0.1)}
        for name, rows, noise in (("spirals", "1000", "0.1"), ("digits", "1797", "0.0"))
        for seed in (0, 1)
    ]
    assert config_keys(params) == ["data.name"]
    sized = [p | {"data.n_samples": n} for p in params[:2] for n in ("200", "400")]
    assert config_keys(sized) == ["data.n_samples"]  # swept on purpose: a config key
