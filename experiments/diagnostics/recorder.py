"""Gradient-flow diagnostics on logged steps, and the run's history in one ``.npz`` file.

Layer tags count weight matrices from the input: ``layer_01`` … for the hidden layers and
``output`` for the last (the head), so that ``layer_04`` always means a hidden layer, whatever
the depth.  For layer l on a recorded minibatch step (pure numpy, norms accumulated in float64):

    grad_norm       ‖∂L/∂Wˡ‖_F                    bias_grad_norm  ‖∂L/∂bˡ‖₂
    act_mean        mean of aˡ                    act_std         std of aˡ  (over batch × units)
    update_ratio    ‖ΔWˡ‖_F / ‖Wˡ − ΔWˡ‖_F  (the applied update over the weights BEFORE it)
    saturation      fraction of (example, unit) entries with |f′(zˡ)| < 0.05 · sup |f′|
    dead            fraction of units with f′(zˡ) = 0 on every example of the batch

saturation and dead exist for hidden layers only: the output head (softmax, sigmoid, identity)
is not an elementwise Activation with a sup f′, so those keys are skipped for ``output``.

Profiles (``record_profiles``, once at the end): per hidden layer l = 1 … L − 1, at the first
and the last recorded step, ``profile/grad_norm_{init,final}`` (‖∂L/∂Wˡ‖_F),
``profile/delta_norm_{init,final}`` (‖δˡ‖_F over the batch × units, δˡ = ∂L/∂zˡ of the batch
mean loss) and ``profile/act_var_{init,final}`` (Var aˡ), recorded with step = l: a chart of
them against "step" is the gradient-vs-layer profile.  The output layer is not in the profile
(its values are the per-layer metrics of the output layer), so profiles of nets of different
depths line up from the input side.

Summary (``record_summary``, once at the end), scalars to sort and colour runs by:
``summary/log10_grad_ratio_{init,final}`` = log10(‖∂L/∂W¹‖ / ‖∂L/∂Wᴴ‖), first over last hidden
layer H (−6: the first layer's gradient is a millionth of the last's; 0 at depth 1), and at
the last recorded step ``summary/dead_fraction`` (hidden units dead on the whole batch) and
``summary/saturated_fraction`` (hidden (example, unit) entries saturated), both over all
hidden units.

The remedies (``remedy_diagnostics``): on every recorded step ``grad_norm/global``, ‖∂L/∂θ‖ over
all parameters before any clipping, and with clipping on ``clip/fraction``, the fraction of
the steps so far that were clipped; per hidden layer of a net with a norm, and per layer with
a skip connection (means and variances over batch × units, like act_mean):

    prenorm_mean, prenorm_var     of zˡ, before the normalization
    postnorm_mean, postnorm_var   of yˡ = γˡ ⊙ x̂ˡ + βˡ, after it (the activation's input)
    residual_var                  of the residual branch α·f(yˡ) added to aˡ⁻¹
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from bpcore import MLP, Callback, EpochReport, StepReport
from bpcore.activations import Array
from experiments.diagnostics.history import OUTPUT_TAG, FloatArray, History, IntArray

Sink = Callable[[int, dict[str, float]], None]

SATURATION_THRESHOLD = 0.05  # of |f′|, relative to the activation's max_grad (sup |f′|)
LAYER_FAMILIES = ("grad_norm", "bias_grad_norm", "act_mean", "act_std", "update_ratio")
HIDDEN_FAMILIES = ("saturation", "dead")
NORM_FAMILIES = ("prenorm_mean", "prenorm_var", "postnorm_mean", "postnorm_var")
GLOBAL_GRAD_NORM, CLIPPED_FRACTION, RESIDUAL_VAR = (
    "grad_norm/global",
    "clip/fraction",
    "residual_var",
)
BATCH_LOSS = "train/batch_loss"
DELTA_LOG10_RANGE = (-16.0, 2.0)  # |δ| histogram edges: 10⁻¹⁶ … 10², log-spaced
PROFILE_FAMILIES = ("grad_norm", "delta_norm", "act_var")  # profile/<family>_init, _final
Profile = dict[str, list[float]]  # family → value per hidden layer, input side first


def layer_tag(l: int, n_layers: int) -> str:
    """The metric-key suffix of layer index l (0-based) of ``n_layers``: ``layer_01`` for the
    first, ``output`` for the last."""
    return OUTPUT_TAG if l == n_layers - 1 else f"layer_{l + 1:02d}"


def metric_keys(n_layers: int) -> list[str]:
    """Keys of ``layer_diagnostics`` for a net of ``n_layers`` weight matrices, in its order."""
    tags = [layer_tag(l, n_layers) for l in range(n_layers)]
    return [f"{f}/{t}" for f in LAYER_FAMILIES for t in tags] + [
        f"{f}/{t}" for f in HIDDEN_FAMILIES for t in tags[:-1]
    ]


def norm(x: Array) -> float:
    """‖x‖₂ of the flattened array, accumulated in float64."""
    x64 = np.asarray(x, dtype=np.float64).ravel()
    return math.sqrt(float(np.dot(x64, x64)))


def _update_ratio(W_after: Array, updates: Sequence[Array], l: int) -> float:
    """‖ΔW‖/‖W_before‖ with W_before = W_after − ΔW (exact up to the update's rounding).

    Zero weights give inf (0 for a zero update); no update (diverged step) gives NaN.
    """
    if l >= len(updates):
        return math.nan
    dW = np.asarray(updates[l], dtype=np.float64)
    num, den = norm(dW), norm(np.asarray(W_after, dtype=np.float64) - dW)
    if den != 0:
        return num / den
    return 0.0 if num == 0 else num * math.inf


def layer_diagnostics(report: StepReport) -> dict[str, float]:
    """Per-layer metrics of one step, keyed and ordered as ``metric_keys(L)``."""
    bp, net = report.bp, report.net
    L = net.n_layers
    values: dict[str, float] = {}
    with np.errstate(over="ignore", invalid="ignore"):  # an exploding net: inf/NaN values
        for l in range(L):
            tag, a = layer_tag(l, L), bp.activations[l]
            values[f"grad_norm/{tag}"] = norm(bp.dW[l])
            values[f"bias_grad_norm/{tag}"] = norm(bp.db[l])
            values[f"act_mean/{tag}"] = float(a.mean(dtype=np.float64))
            values[f"act_std/{tag}"] = float(a.std(dtype=np.float64))
            values[f"update_ratio/{tag}"] = _update_ratio(net.weights[l], report.updates, l)
            if l < L - 1:
                f = net.hidden_activations[l]
                fp = f.grad(bp.ys[l], bp.hs[l])  # f′ at the activation's input, (batch, units)
                saturated = np.abs(fp) < SATURATION_THRESHOLD * f.max_grad  # GELU′ < 0 is not flat
                values[f"saturation/{tag}"] = float(np.mean(saturated))
                values[f"dead/{tag}"] = float(np.mean(~fp.any(axis=0)))
    return {key: values[key] for key in metric_keys(L)}


def hidden_profile(report: StepReport, diagnostics: Mapping[str, float]) -> Profile:
    """‖∂L/∂Wˡ‖_F, ‖δˡ‖_F and Var aˡ per hidden layer of one step (``diagnostics``: its
    ``layer_diagnostics``)."""
    hidden = range(report.net.n_layers - 1)
    tags = [layer_tag(l, report.net.n_layers) for l in hidden]
    return {
        "grad_norm": [diagnostics[f"grad_norm/{t}"] for t in tags],
        "delta_norm": [norm(report.bp.deltas[l]) for l in hidden],
        "act_var": [diagnostics[f"act_std/{t}"] ** 2 for t in tags],
    }


def remedy_keys(net: MLP, clipping: bool) -> list[str]:
    """Keys of ``remedy_diagnostics`` for ``net`` (``clipping``: the optimizer clips), in order."""
    keys = [GLOBAL_GRAD_NORM, *([CLIPPED_FRACTION] if clipping else [])]
    normalized = range(net.n_layers - 1) if net.norm is not None else range(0)
    keys += [f"{f}/{layer_tag(l, net.n_layers)}" for f in NORM_FAMILIES for l in normalized]
    return keys + [
        f"{RESIDUAL_VAR}/{layer_tag(l, net.n_layers)}" for l, skip in enumerate(net.skips) if skip
    ]


def remedy_diagnostics(report: StepReport) -> dict[str, float]:
    """The remedies' metrics of one step (see the module docstring), ordered as
    ``remedy_keys``."""
    bp, net = report.bp, report.net
    values = {GLOBAL_GRAD_NORM: math.sqrt(sum(norm(g) ** 2 for g in bp.grads))}
    if report.clipped_fraction is not None:
        values[CLIPPED_FRACTION] = report.clipped_fraction
    with np.errstate(over="ignore", invalid="ignore"):  # an exploding net: inf/NaN values
        for l in range(len(bp.norms)):
            tag = layer_tag(l, net.n_layers)
            for stage, x in (("prenorm", bp.zs[l]), ("postnorm", bp.ys[l])):
                values[f"{stage}_mean/{tag}"] = float(x.mean(dtype=np.float64))
                values[f"{stage}_var/{tag}"] = float(x.var(dtype=np.float64))
        for l in (l for l, skip in enumerate(net.skips) if skip):
            branch = net.residual_scale * bp.hs[l]  # α·f(yˡ)
            values[f"{RESIDUAL_VAR}/{layer_tag(l, net.n_layers)}"] = float(
                branch.var(dtype=np.float64)
            )
    return {key: values[key] for key in remedy_keys(net, report.clipped_fraction is not None)}


def _histograms(arrays: Sequence[Array], edges: FloatArray) -> IntArray:
    """Counts (L, bins); values outside the edges fall in the end bins, NaN is dropped."""
    pairs = zip(arrays, edges, strict=True)
    rows = [np.histogram(np.clip(x, e[0], e[-1]), bins=e)[0] for x, e in pairs]
    return np.stack(rows).astype(np.int64)


def _activation_edges(activations: Sequence[Array], bins: int) -> FloatArray:
    """Per layer, ``bins`` equal bins on [−r, r], r = max |aˡ| (finite; 1 if that is 0)."""
    rows = []
    for a in activations:
        finite = np.abs(a[np.isfinite(a)])
        r = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        rows.append(np.linspace(-r, r, bins + 1))
    return np.stack(rows)


class DiagnosticsRecorder(Callback):
    """Records ``layer_diagnostics`` + ``train/batch_loss`` at steps 0, k, 2k, … (k =
    ``every_n_steps``; None: no step) and the epoch metrics (``train/loss``, ``val/loss``,
    ``train/accuracy``, ``val/accuracy`` when defined, ``progress/epoch``,
    ``progress/examples_seen``, ``progress/seconds``) at ``report.step``.

    Every record goes to ``history`` and, as a fresh dict, to ``sink(step, metrics)``.
    ``histograms``: also keep per-layer histograms of aˡ (equal bins on [−r, r], r = max |aˡ| at
    that step, so no value falls outside) and |δˡ| (log-spaced on DELTA_LOG10_RANGE; the first
    bin holds zeros; out-of-range values count in the end bins).  Histograms never go to the
    sink.
    """

    def __init__(
        self,
        every_n_steps: int | None,
        sink: Sink | None = None,
        histograms: bool = False,
        histogram_bins: int = 50,
    ) -> None:
        if (every_n_steps is not None and every_n_steps < 1) or histogram_bins < 1:
            raise ValueError(
                f"every_n_steps and histogram_bins must be ≥ 1, got {every_n_steps}, "
                f"{histogram_bins}"
            )
        self.every_n_steps = every_n_steps
        self.sink = sink
        self.histograms = histograms
        self.histogram_bins = histogram_bins
        self.history = History()
        self._delta_edges = np.logspace(*DELTA_LOG10_RANGE, histogram_bins + 1)
        self._profiles: dict[str, Profile] = {}  # "init": the first recorded step, "final"
        self._last: dict[str, float] = {}  # the last recorded step's layer_diagnostics
        self._widths: list[int] = []  # of the hidden layers

    def wants_step(self, step: int) -> bool:
        return self.every_n_steps is not None and step % self.every_n_steps == 0

    def on_step(self, report: StepReport) -> None:
        self.history.n_layers = report.net.n_layers
        diagnostics = layer_diagnostics(report)
        metrics = {BATCH_LOSS: report.loss, **diagnostics}
        self.record("step", report.step, metrics | remedy_diagnostics(report))
        profile = hidden_profile(report, diagnostics)
        self._profiles.setdefault("init", profile)
        self._profiles["final"] = profile
        self._last, self._widths = diagnostics, report.net.layer_sizes[1:-1]
        if not self.histograms:
            return
        bp = report.bp
        edges = {
            "activation": _activation_edges(bp.activations, self.histogram_bins),  # this step's
            "delta": np.tile(self._delta_edges, (report.net.n_layers, 1)),  # fixed log bins
        }
        counts = {
            "activation": _histograms(bp.activations, edges["activation"]),
            "delta": _histograms([np.abs(d) for d in bp.deltas], edges["delta"]),
        }
        self.history.add_histograms(report.step, edges, counts)

    def on_epoch_end(self, report: EpochReport) -> None:
        metrics = {"train/loss": report.train_loss, "val/loss": report.val_loss}
        if report.train_accuracy is not None:
            metrics["train/accuracy"] = report.train_accuracy
        if report.val_accuracy is not None:
            metrics["val/accuracy"] = report.val_accuracy
        metrics["progress/epoch"] = report.epoch
        metrics["progress/examples_seen"] = report.examples_seen
        metrics["progress/seconds"] = report.seconds
        self.record("epoch", report.step, metrics)

    def record_profiles(self) -> None:
        """The family "profile" at step = hidden layer 1 … L − 1 (see the module docstring)."""
        if not self._profiles:
            return
        for l in range(len(self._profiles["init"]["grad_norm"])):
            values = {
                f"profile/{family}_{when}": profile[family][l]
                for family in PROFILE_FAMILIES
                for when, profile in self._profiles.items()
            }
            self.record("profile", l + 1, values)

    def record_summary(self, step: int, extra: Mapping[str, float]) -> None:
        """The family "summary" at ``step`` (see the module docstring), with ``extra`` (the
        caller's summary/… scalars; only those if no step was recorded)."""
        if not self._profiles:
            self.record("summary", step, extra)
            return
        values = {}
        with np.errstate(divide="ignore", invalid="ignore"):  # a zero or non-finite gradient
            for when, profile in self._profiles.items():
                first, last = np.float64(profile["grad_norm"][0]), profile["grad_norm"][-1]
                values[f"summary/log10_grad_ratio_{when}"] = float(np.log10(first / last))
        tags = [layer_tag(l, len(self._widths) + 1) for l in range(len(self._widths))]
        units = np.array(self._widths, dtype=np.float64)
        for family, key in (("dead", "dead_fraction"), ("saturation", "saturated_fraction")):
            fractions = np.array([self._last[f"{family}/{t}"] for t in tags])
            values[f"summary/{key}"] = float(fractions @ units / units.sum())
        self.record("summary", step, values | dict(extra))

    def record(self, family: str, step: int, metrics: Mapping[str, float]) -> None:
        """Add ``metrics`` to the history under ``family`` and send a copy to the sink."""
        values = {key: float(v) for key, v in metrics.items()}
        self.history.add(family, step, values)
        if self.sink is not None:
            self.sink(step, dict(values))
