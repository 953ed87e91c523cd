"""How big a run will be, estimated from its config before anything is built.

Two estimates, each with a limit above which a config stops before anything is trained or
logged, unless ``allow_large=true``: the memory a run needs (``model.width=1000000`` does not
fit) and the metric points it logs (``model.depth=100000`` logs 700,000 at step 0 alone, a
300 MB store).  The limits leave room for every preset: the largest need ≈ 40 MiB
(edge_of_chaos) and log ≈ 21,000 points (batch_size) per run.
"""

from __future__ import annotations

from experiments.diagnostics.recorder import HIDDEN_FAMILIES, LAYER_FAMILIES, PROFILE_FAMILIES

MEMORY_LIMIT = 2 * 2**30  # bytes a run may need
METRIC_LIMIT = 100_000  # metric points a run may log

# Arrays the size of the parameters: the parameters, their gradients, the updates and a logged
# step's copy of the updates, then the optimizer's state (momentum: velocity; adam: m and v).
PARAMETER_ARRAYS = 4
OPTIMIZER_STATE = {"sgd": 0, "momentum": 1, "adam": 2}
PASS_ARRAYS = 5  # per unit and row of a training pass: zˡ, aˡ, δˡ (norms, skips: x̂ˡ, yˡ, hˡ)
EVALUATION_ARRAYS = 4  # per row and unit of the widest layer: aˡ⁻¹, zˡ, aˡ, a temporary
DATA_ARRAYS = 2  # per input or output value of a row: the generated array and its split copy
EPOCH_METRICS = 7  # train/ and val/ loss and accuracy, progress/epoch, examples_seen, seconds
FULL_GRADIENT_METRICS = 4  # train/full_loss, noise/grad_sq_small, grad_sq_big, B_simple
THEORY_METRICS = 7  # theory/*, at step 0
TEST_METRICS = 2  # test/loss, test/accuracy, at the end
SUMMARY_METRICS = 7  # summary/*: 2 gradient ratios, 2 fractions, test loss and accuracy, lr


def memory_bytes(
    n_params: int,
    n_units: int,
    widest: int,
    n_values: int,
    rows: int,
    train_rows: int,
    pass_rows: int,
    itemsize: int,
    optimizer: str,
) -> int:
    """≈ the peak memory of a run: the data set (``rows`` rows of ``n_values`` float64 inputs
    and outputs), the parameter-sized arrays, the arrays of every layer for a training pass
    over ``pass_rows`` rows (the batch; the training set for a full batch or the training-set
    gradient) and the few layers an evaluation of the ``train_rows`` holds at a time (each
    epoch evaluates the training set whole, freeing each layer once the next is computed).
    ``n_units``: the units of every layer, the input's included; ``widest``: of the widest."""
    parameters = (PARAMETER_ARRAYS + OPTIMIZER_STATE.get(optimizer, 2)) * n_params * itemsize
    training_pass = PASS_ARRAYS * pass_rows * n_units * itemsize
    evaluation = EVALUATION_ARRAYS * train_rows * widest * itemsize
    return DATA_ARRAYS * rows * n_values * 8 + parameters + training_pass + evaluation


def metric_points(
    n_layers: int,
    steps: int,
    steps_per_epoch: int,
    every_n_steps: int,
    full_gradient: bool,
    remedy_metrics: int = 1,
    theory: bool = True,
    signal_metrics: int = 0,
) -> int:
    """The metric points a run of ``steps`` optimizer steps logs at most: the per-layer
    diagnostics, train/batch_loss and the ``remedy_metrics`` (``recorder.remedy_keys``) on
    every logged step (with the training-set gradient's metrics for ``log.full_gradient``), the
    epoch metrics (a last partial epoch counts), the theory metrics (if ``theory``: the
    mean-field theory applies to the net), the ``signal_metrics`` at step 0
    (``signal.signal_keys``), the test and summary metrics, and the profiles (init and final
    per hidden layer)."""
    logged_steps = (steps - 1) // every_n_steps + 1
    per_step = 1 + len(LAYER_FAMILIES) * n_layers + len(HIDDEN_FAMILIES) * (n_layers - 1)
    per_step += remedy_metrics
    if full_gradient:
        per_step += FULL_GRADIENT_METRICS + n_layers
    epochs = -(-steps // steps_per_epoch)
    profiles = 2 * len(PROFILE_FAMILIES) * (n_layers - 1)
    once = THEORY_METRICS * theory + signal_metrics + TEST_METRICS + SUMMARY_METRICS + profiles
    return logged_steps * per_step + epochs * EPOCH_METRICS + once


def human_bytes(n: float) -> str:
    """``3.2 GiB``: ``n`` bytes in the largest binary unit that keeps the number ≥ 1."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    power = 0
    while n >= 1024 and power < len(units) - 1:
        n, power = n / 1024, power + 1
    return f"{n:.3g} {units[power]}"
