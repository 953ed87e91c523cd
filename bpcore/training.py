"""Minibatch training with a callback interface for the experiment layer.

The loop computes what training needs anyway (the minibatch loss and backward pass, the update)
and hands it to callbacks only on the steps they ask for, so diagnostics cost nothing on the
other steps.  Step numbers count optimizer steps taken: the report for step s describes the
gradient at the parameters after s updates and the update that turned them into step s + 1.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from bpcore.activations import Array
from bpcore.datasets import Dataset
from bpcore.losses import Loss, as_targets, get_loss
from bpcore.mlp import MLP, Backprop
from bpcore.norms import batch_size_problem
from bpcore.optim import Optimizer


@dataclass
class StepReport:
    """One optimizer step, as seen by a callback that asked for it."""

    step: int  # updates applied before this one
    epoch: int  # epochs completed before this step
    examples_seen: int  # training examples used before this step
    loss: float  # minibatch loss at the parameters before the update
    bp: Backprop  # the minibatch forward and backward pass
    updates: list[Array]  # ΔW applied, in net.params order (weights, biases, γ, β)
    net: MLP  # the net being trained (its parameters change with every later step)
    clipped_fraction: float | None = None  # of the steps so far (None: no clipping)


@dataclass
class EpochReport:
    """Losses on the full train and validation sets after an epoch (accuracy: classification)."""

    epoch: int  # epochs completed
    step: int  # updates applied so far
    examples_seen: int
    seconds: float  # wall time since training started
    train_loss: float
    val_loss: float
    train_accuracy: float | None
    val_accuracy: float | None


@dataclass
class FitResult:
    steps: int
    epochs: int
    examples_seen: int
    diverged_at_step: int | None  # step whose loss or gradient was not finite
    last_epoch: EpochReport | None


class Callback:
    """Override what you need; ``on_step`` runs only on steps where ``wants_step`` is true.

    A StepReport's arrays are the callback's to keep: a reported step's arrays are never
    reused by a later step.
    """

    def wants_step(self, step: int) -> bool:
        return False

    def on_step(self, report: StepReport) -> None:
        pass

    def on_epoch_end(self, report: EpochReport) -> None:
        pass


def minibatches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[NDArray[np.int64]]:
    """Index arrays of one shuffled epoch; the last batch holds the remainder."""
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def evaluate(net: MLP, x: Array, y: Array, loss: str) -> tuple[float, float | None]:
    """(loss, accuracy) of ``net`` on a whole set; accuracy is None for regression targets."""
    loss_fn = get_loss(loss, net.head.name)
    fp = net._forward(net.check_input(x), keep=False)  # BatchNorm's running statistics
    out = fp.activations[-1]
    value = loss_fn.value(fp.zs[-1], out, as_targets(y, net.layer_sizes[-1], net.dtype))
    if not (y.ndim == 1 and np.issubdtype(y.dtype, np.integer)):
        return value, None
    predicted = (out[:, 0] > 0.5).astype(y.dtype) if out.shape[1] == 1 else out.argmax(axis=1)
    return value, float(np.mean(predicted == y))


class StepResult(NamedTuple):
    loss: float
    bp: Backprop  # ``reuse``'s arrays if one was given
    updates: list[Array]  # ΔW applied, the optimizer's buffers (empty if the net diverged)
    diverged: bool  # loss or gradient not finite: no update was applied


def train_step(
    net: MLP,
    x: Array,
    targets: Array,
    loss_fn: Loss,
    optimizer: Optimizer,
    reuse: Backprop | None = None,
) -> StepResult:
    """Forward, backward, update and BatchNorm's running statistics on one validated
    minibatch: the training loop's hot path, which reuses arrays (``reuse``: a Backprop this
    step overwrites; the updates returned are the optimizer's buffers).

    Divergence: a non-finite loss or squared gradient norm (‖g‖² overflowing counts) leaves
    the parameters and running statistics untouched.
    """
    with np.errstate(all="ignore"):  # a diverging net overflows; caught just below
        loss_value, bp = net._loss_and_grads(x, targets, loss_fn, reuse)
        grads = bp.grads
        finite = math.isfinite(loss_value) and all(math.isfinite(np.vdot(g, g)) for g in grads)
    if not finite:
        return StepResult(loss_value, bp, [], diverged=True)
    updates = optimizer.step_in_place(net.params, grads)
    net.track_running_stats(bp)
    return StepResult(loss_value, bp, updates, diverged=False)


def check_batch_size(net: MLP, n: int, batch_size: int) -> None:
    """A ValueError unless minibatches of ``batch_size`` from ``n`` examples can train ``net``:
    1 ≤ batch_size ≤ n, and with BatchNorm no batch of 1 (the last one holds the remainder)."""
    if not 1 <= batch_size <= n:
        raise ValueError(
            f"batch_size: must be in [1, {n}] (the training set size), got {batch_size}"
        )
    last = n % batch_size or batch_size  # the last batch of an epoch holds the remainder
    if problem := batch_size_problem(net.norm, last):
        remainder = "" if batch_size == 1 else f"{n} examples leave a last batch of 1: "
        raise ValueError(f"batch_size: {remainder}{problem}")


def fit(
    net: MLP,
    data: Dataset,
    loss: str,
    optimizer: Optimizer,
    batch_size: int | None = None,
    epochs: int = 1,
    max_steps: int | None = None,
    seed: int = 0,
    callbacks: Sequence[Callback] = (),
) -> FitResult:
    """Train ``net`` on ``data.x_train`` by minibatch gradient descent.

    ``batch_size`` None means full batch.  Stops after ``epochs`` or ``max_steps`` (whichever
    comes first), or at the first step whose loss or gradient is not finite (divergence).
    ``max_steps`` inside an epoch ends it early: its report (``epoch``: the epochs completed)
    has the losses at the parameters training stopped at.
    """
    n = len(data.x_train)
    batch_size = n if batch_size is None else batch_size
    check_batch_size(net, n, batch_size)
    if epochs < 1 or (max_steps is not None and max_steps < 1):
        raise ValueError(f"epochs and max_steps must be ≥ 1, got {epochs}, {max_steps}")
    loss_fn = get_loss(loss, net.head.name)
    x_train = net.check_input(data.x_train)
    y_train = as_targets(data.y_train, net.layer_sizes[-1], net.dtype)
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    step = examples_seen = 0
    bp: Backprop | None = None
    last_epoch: EpochReport | None = None
    for epoch in range(epochs):
        for batch in minibatches(n, batch_size, rng):
            if max_steps is not None and step >= max_steps:
                if examples_seen > epoch * n:  # stopped inside an epoch: the losses at the stop
                    last_epoch = _epoch_report(net, data, loss, epoch, step, examples_seen, started)
                    for cb in callbacks:
                        cb.on_epoch_end(last_epoch)
                return FitResult(step, epoch, examples_seen, None, last_epoch)
            x, y = x_train[batch], y_train[batch]
            result = train_step(net, x, y, loss_fn, optimizer, reuse=bp)
            if result.diverged:
                return FitResult(step, epoch, examples_seen, step, last_epoch)
            bp = result.bp  # the next step writes into these arrays …
            if wanting := [cb for cb in callbacks if cb.wants_step(step)]:
                updates = [u.copy() for u in result.updates]
                clipped = optimizer.clipped_fraction
                report = StepReport(
                    step, epoch, examples_seen, result.loss, bp, updates, net, clipped
                )
                for cb in wanting:
                    cb.on_step(report)
                bp = None  # … unless callbacks got them: theirs to keep
            step += 1
            examples_seen += len(batch)
        last_epoch = _epoch_report(net, data, loss, epoch + 1, step, examples_seen, started)
        for cb in callbacks:
            cb.on_epoch_end(last_epoch)
    return FitResult(step, epochs, examples_seen, None, last_epoch)


def _epoch_report(
    net: MLP, data: Dataset, loss: str, epoch: int, step: int, examples_seen: int, started: float
) -> EpochReport:
    with np.errstate(all="ignore"):
        train_loss, train_acc = evaluate(net, data.x_train, data.y_train, loss)
        val_loss, val_acc = evaluate(net, data.x_val, data.y_val, loss)
    seconds = time.perf_counter() - started
    return EpochReport(
        epoch, step, examples_seen, seconds, train_loss, val_loss, train_acc, val_acc
    )
