"""Config composition and the range checks: every preset composes, bad values are named."""

from __future__ import annotations

import dataclasses
import sys
import tracemalloc
import typing
from pathlib import Path

import numpy as np
import pytest
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

import bpcore
from experiments.app import sizes
from experiments.app import train as app
from experiments.app.schema import Config
from experiments.app.setup import ConfigError, build
from experiments.app.sweep import swept_keys
from experiments.app.target_check import foreign_targets
from experiments.diagnostics.recorder import DiagnosticsRecorder
from experiments.tracking.provenance import config_hash, flat_params, run_name

REMEDIES = ["model.norm=batch", "model.residual=true", "optim.clip_norm=1"]
PRESETS = sorted(
    p.stem for p in (Path(__file__).resolve().parents[1] / "conf/experiment").glob("*.yaml")
)


def test_default_config_builds_a_small_net(compose_config) -> None:
    cfg = compose_config()
    setup = build(cfg)
    assert setup.hidden == [32, 32, 32]
    assert setup.net.layer_sizes == [2, 32, 32, 32, 2]
    assert setup.loss == "cross_entropy" and setup.batch_size == 32
    assert run_name(cfg, setup.hidden, setup.batch_size, []) == "tanh-d3-w32-b32-s0"
    params = flat_params(cfg)
    assert params["model.depth"] == "3" and params["activation.name"] == "tanh"


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_and_builds(compose_config, preset: str) -> None:
    cfg = compose_config([f"experiment={preset}"])
    assert cfg.preset == preset and cfg.mlflow.experiment_name == preset
    build(cfg)


@pytest.mark.parametrize("group", ["activation", "init", "data", "optim"])
def test_group_options_are_the_registries(compose_config, group: str) -> None:
    registry = {
        "activation": bpcore.ACTIVATIONS,
        "init": bpcore.INITIALIZERS,
        "data": bpcore.DATASETS,
        "optim": bpcore.OPTIMIZERS,
    }[group]
    for name in registry:
        cfg = compose_config([f"{group}={name}"])
        assert cfg[group].name == name
        build(cfg)


def test_overrides_reach_bpcore(compose_config) -> None:
    cfg = compose_config(
        [
            "activation=leaky_relu",
            "activation.alpha=0.2",
            "init=normal",
            "init.std=0.5",
            "data=moons",
            "data.n_samples=300",
            "optim=momentum",
            "optim.momentum=0.5",
            "model.hidden=[8,4]",
            "train.batch_size=full",
            "train.lr_scaling=linear",
            "train.reference_batch_size=60",
        ]
    )
    setup = build(cfg)
    assert setup.net.hidden_activations[0].alpha == 0.2
    assert setup.net.init.std == 0.5
    full = 300 - 60 - 60  # minus the validation and test sets (0.2 each by default)
    assert setup.hidden == [8, 4] and setup.batch_size == full
    assert (len(setup.data.x_val), len(setup.data.x_test)) == (60, 60)
    assert setup.optimizer.momentum == 0.5
    assert setup.optimizer.lr == pytest.approx(0.1 * full / 60)
    name = run_name(cfg, setup.hidden, full, ["activation", "optim.momentum"])
    assert name == "leaky_relu-momentum=0.5 · d2-w8x4-b180-normal-moons-momentum-linear-s0"
    swept = ["train.batch_size", "train.lr_scaling", "seed"]
    assert run_name(cfg, setup.hidden, 800, swept) == (
        "b800-linear-s0 · leaky_relu-d2-w8x4-normal-moons-momentum"
    )


def test_sigmoid_output_trains_with_bce(compose_config) -> None:
    """model.output=sigmoid: one sigmoid unit per class and cross-entropy (bce), as in Nielsen."""
    setup = build(compose_config(["model.output=sigmoid", "data=digits"]))
    assert setup.net.head.name == "sigmoid" and setup.loss == "bce"
    assert setup.net.layer_sizes[-1] == 10


def test_param_budget_keeps_the_parameter_count(compose_config) -> None:
    counts = {}
    for depth in (1, 2, 4, 8, 16, 32):
        cfg = compose_config([f"model.depth={depth}", "model.param_budget=2500"])
        counts[depth] = build(cfg).net.n_params
    assert all(abs(n - 2500) / 2500 < 0.1 for n in counts.values()), counts


BAD = [
    (["model.depth=0"], "model.depth=0: an integer ≥ 1"),
    (["model.output=tanh"], "model.output='tanh': null or one of softmax, sigmoid"),
    (["model.output=sigmoid", "data=teacher"], "model.output='sigmoid': null or identity"),
    (["model.width=-4"], "model.width=-4: an integer ≥ 1"),
    (["model.hidden=[8,0]"], "model.hidden"),
    (["model.param_budget=5"], "model.param_budget=5"),
    (["optim.lr=0"], "optim.lr=0"),
    (["optim.lr=-0.1"], "optim.lr=-0.1"),
    (["optim.momentum=1.0"], "optim.momentum=1.0"),
    (["train.batch_size=0"], r"train.batch_size=0: an integer in \[1, 600\]"),  # 1000 − 2 × 200
    (["train.batch_size=601"], r"train.batch_size=601: an integer in \[1, 600\]"),
    (["train.batch_size=half"], "train.batch_size='half'"),
    (["train.epochs=0"], "train.epochs=0"),
    (["train.max_steps=0"], "train.max_steps=0"),
    (["train.lr_scaling=cubic"], "train.lr_scaling='cubic': one of none, linear, sqrt"),
    (["log.every_n_steps=0"], "log.every_n_steps=0"),
    (["seed=-1"], "seed=-1"),
    (["data.n_samples=3"], "n_samples"),
    (["data.noise=-1"], "noise"),
    (["data.name=imagenet"], "unknown dataset 'imagenet'; known: spirals"),
    (["activation.name=swishy"], "unknown activation 'swishy'; known: identity"),
    (["activation=tanh", "activation.alpha=0.1"], "activation='tanh'"),
    (["init.gain=-1"], "gain"),
    (["model.dtype=float16"], "model.dtype='float16'"),
    (
        ["mlflow.tracking_uri=file:///tmp/mlruns"],
        "mlflow.tracking_uri='file:///tmp/mlruns': not supported.*; use sqlite:///<path>",
    ),
    (["mlflow.tracking_uri=ftp://x"], "mlflow.tracking_uri"),
    (  # refused before anything runs, the password never shown
        ["mlflow.tracking_uri=http://alice:s3cret@host:5000"],
        r"mlflow.tracking_uri='http://alice:\*\*\*@host:5000': contains a password",
    ),
    (["mlflow.experiment_name=''"], "mlflow.experiment_name='': a name that is not empty"),
    (["mlflow.experiment_name=' '"], "mlflow.experiment_name=' ': a name that is not empty"),
    # keys Hydra adds with + (its own hint for an unknown key) are not the schema's
    (
        ["+model.dept=3"],
        r"model.dept=3: no such key; did you mean model.depth\? \(model has depth, width,",
    ),
    (["+modle.depth=3"], r"modle=\{'depth': 3\}: no such key; did you mean model\?"),
    (["++train.epoch=3"], "train.epoch=3: no such key; did you mean train.epochs"),
    (["+zzz=1"], r"zzz=1: no such key \(top-level keys: activation, init, data,"),
    (["+log.every_n_steps_x=1"], "log.every_n_steps_x=1: no such key; did you mean"),
    # the remedies
    (["model.norm=group"], "model.norm='group': one of none, batch, layer"),
    (["model.residual_scale=0"], "model.residual_scale=0.0: a positive number"),
    (["model.norm_eps=-1e-5"], "model.norm_eps=-1e-05: a positive number"),
    (["model.norm_momentum=0"], r"model.norm_momentum=0.0: a number in \(0, 1\]"),
    (["model.norm_momentum=1.5"], r"model.norm_momentum=1.5: a number in \(0, 1\]"),
    (["optim.clip_norm=0"], r"optim.clip_norm=0.0: a positive number, or null \(no clipping\)"),
    (["optim.clip_value=-1"], r"optim.clip_value=-1.0: a positive number, or null \(no clipping\)"),
    (
        ["model.residual=true", "model.depth=1"],
        r"model.residual=True: no hidden layer has as many units as inputs in \[2, 32, 2\]",
    ),
    (
        ["model.norm=batch", "train.batch_size=1"],
        "train.batch_size=1: BatchNorm trains on batches of ≥ 2 examples",
    ),
    (
        ["model.norm=batch", "train.batch_size=599"],
        "train.batch_size=599: 600 examples leave a last batch of 1: BatchNorm trains on",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), BAD)
def test_bad_values_are_named(compose_config, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(compose_config(overrides))


def float_keys() -> list[str]:
    """Every key the schema types as a float (or an optional one)."""
    keys = []
    for group, kind in typing.get_type_hints(Config).items():
        fields = typing.get_type_hints(kind) if dataclasses.is_dataclass(kind) else {"": kind}
        for name, hint in fields.items():
            if hint is float or float in typing.get_args(hint):
                keys.append(f"{group}.{name}".rstrip("."))
    return keys


def test_the_float_keys_are_the_ones_expected() -> None:
    expected = ["activation.alpha", "init.gain", "init.std", "init.limit", "init.bias_std"]
    expected += ["data.noise", "data.val_fraction", "data.test_fraction", "optim.lr"]
    expected += ["model.residual_scale", "model.norm_eps", "model.norm_momentum"]
    expected += ["optim.clip_norm", "optim.clip_value"]
    assert sorted(float_keys()) == sorted([*expected, "optim.momentum"])


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("key", float_keys())
def test_every_float_must_be_finite(compose_config, key: str, value: str) -> None:
    choice = ["activation=elu"] if key == "activation.alpha" else []  # a parametrized one
    with pytest.raises(ConfigError, match=rf"^{key}={value}: a finite number$"):
        build(compose_config([*choice, f"{key}={value}"]))


@pytest.mark.parametrize(
    "overrides",
    [
        ["activation=swishy"],
        ["data=imagenet"],
        ["model.dept=3"],
        ["model.depth=abc"],
        ["optim=rmsprop"],
    ],
)
def test_hydra_rejects_unknown_options_and_types(compose_config, overrides: list[str]) -> None:
    with pytest.raises((HydraException, OmegaConfBaseException)):
        compose_config(overrides)


def test_swept_keys_are_what_varies_between_jobs() -> None:
    jobs = [
        ["activation=relu", "model.depth=2", "optim.lr=0.1"],
        ["activation=tanh", "model.depth=2", "optim.lr=0.1"],
        ["activation=relu", "model.depth=2", "optim.lr=0.3"],
    ]
    assert swept_keys(jobs) == ["activation", "optim.lr"]


def test_slurm_preset_fills_submitits_slurm_launcher(compose_config) -> None:
    cfg = compose_config(["hydra/launcher=slurm", "hydra.launcher.partition=cpu"], hydra=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.timeout_min, launcher.cpus_per_task) == ("cpu", 60, 2)
    assert (launcher.mem_gb, launcher.array_parallelism) == (4, 32)
    callback = cfg.hydra.callbacks.mlflow_sweep._target_
    assert callback == "experiments.app.sweep.MlflowSweepCallback"
    assert compose_config(["hydra/launcher=slurm"], hydra=True).hydra.launcher.partition is None


@pytest.mark.parametrize("launcher", ["basic", "joblib", "submitit_local", "submitit_slurm"])
def test_every_launcher_keeps_the_sweep_callback(compose_config, launcher: str) -> None:
    cfg = compose_config([f"hydra/launcher={launcher}"], hydra=True)
    assert cfg.hydra.runtime.choices["hydra/launcher"] == launcher
    assert list(cfg.hydra.callbacks) == ["mlflow_sweep"]


def test_config_hash_is_what_a_job_trains(compose_config) -> None:
    """The resume identity: the same for where it is logged, for how a value is written and
    with Hydra's node (the launching process's view); different for anything trained."""
    base = config_hash(compose_config(["optim.lr=0.01"]))
    assert len(base) == 16 and base == config_hash(compose_config(["optim.lr=1e-2"]))
    assert base == config_hash(compose_config(["optim.lr=0.01"], hydra=True))
    logged_elsewhere = ["mlflow.experiment_name=x", "mlflow.resume=true", "mlflow.enabled=false"]
    logged_elsewhere.append("allow_large=true")  # whether it may run, not what it trains
    assert base == config_hash(compose_config(["optim.lr=0.01", *logged_elsewhere]))
    for change in ("seed=1", "model.depth=4", "activation=relu", "log.every_n_steps=5"):
        assert config_hash(compose_config(["optim.lr=0.01", change])) != base, change


def test_a_job_hash_derived_without_composing_equals_the_composed_ones(compose_config) -> None:
    """The tuning sweeper hashes its jobs from one composition per config."""
    base = compose_config(["activation=relu", "optim.lr=0.001", "seed=100", "stage=tune"])
    for lr, seed, stage in ((0.03, 7, "final"), (1e-05, 0, "tune"), (3.0, 12, "final")):
        job = compose_config(
            ["activation=relu", f"optim.lr={lr}", f"seed={seed}", f"stage={stage}"]
        )
        assert config_hash(base, optim__lr=lr, seed=seed, stage=stage) == config_hash(job)
    assert config_hash(base, seed=101) != config_hash(base)


OFFERED = ["hydra/launcher=joblib", "hydra/launcher=submitit_local", "hydra/launcher=slurm"]
OFFERED += ["hydra/launcher=submitit_slurm", "hydra/sweeper=tune"]


@pytest.mark.parametrize("choice", [*(f"experiment={p}" for p in PRESETS), *OFFERED])
def test_our_configs_name_only_our_targets(compose_config, choice: str) -> None:
    cfg = compose_config([choice], hydra=True)
    assert cfg.hydra.launcher._target_ and foreign_targets(cfg) == []


CALLBACK = "experiments.app.sweep.MlflowSweepCallback"
FOREIGN = [
    "bpcore.datasets.np.savetxt",  # through a module of ours into numpy
    "experiments.tracking.store.os.system",  # through a module of ours into os
    "experiments.tracking.provenance.subprocess.run",
    "experiments.app.sweep.os.system",  # through the callback's own module
    "experiments.app.sweep.MlflowSweepCallback.on_multirun_start",  # not the class
    "experiments.app.sweep.MlflowSweepCallbackX",  # the allowed name is a prefix of it
    "experiments.app.sweep.json",  # a module
    "builtins.eval",
    "builtins.exec",
    "eval",
    "os.system",
    f".{CALLBACK}",  # relative tricks
    "experiments.app.sweep..MlflowSweepCallback",
    "experiments..app.sweep.MlflowSweepCallback",
    f"{CALLBACK}.",
    "${oc.env:HOME}",  # an interpolation: resolved only later
    "hydra._internal.core_plugins.basic_launcher.BasicLauncher",  # a launcher, not a callback
]


@pytest.mark.parametrize("target", FOREIGN)
def test_a_callback_target_is_judged_by_what_it_resolves_to(compose_config, target: str) -> None:
    cfg = compose_config([f"+hydra.callbacks.x._target_={target}"], hydra=True)
    ((key, value, allowed),) = foreign_targets(cfg)
    assert (key, value) == ("hydra.callbacks.x._target_", target)
    assert allowed == f"Hydra would call it; allowed: {CALLBACK} (the sweep callback)"


@pytest.mark.parametrize(
    ("override", "refused"),
    [
        (f"hydra.launcher._target_={CALLBACK}", True),
        ("hydra.launcher._target_=bpcore.datasets.np.savetxt", True),
        (
            "hydra.launcher._target_=hydra_plugins.hydra_joblib_launcher.joblib_launcher.os.system",
            True,
        ),
        ("hydra.sweeper._target_=hydra._internal.core_plugins.basic_launcher.BasicLauncher", True),
        (
            "hydra.launcher._target_=hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
            False,
        ),
        # another name of an allowed class: the object is what counts, not the string
        ("hydra.sweeper._target_=hydra_plugins.bplab_tuning.tuning_sweeper.BasicSweeper", False),
        ("hydra.callbacks.mlflow_sweep._target_=experiments.app.train.MlflowSweepCallback", True),
    ],
)
def test_launcher_and_sweeper_are_the_plugins_offered(
    compose_config, override: str, refused: bool
) -> None:
    found = foreign_targets(compose_config([override], hydra=True))
    assert [(key, value) for key, value, _ in found] == (
        [tuple(override.split("=", 1))] if refused else []
    )


def test_a_nested_target_in_an_allowed_callback_is_found(compose_config) -> None:
    nested = "+hydra.callbacks.mlflow_sweep.x={_target_:bpcore.datasets.np.savetxt}"
    (found,) = foreign_targets(compose_config([nested], hydra=True))
    assert found[:2] == ("hydra.callbacks.mlflow_sweep.x._target_", "bpcore.datasets.np.savetxt")


@pytest.mark.parametrize(
    ("override", "key", "value"),
    [
        (
            "hydra.job_logging.handlers.console.class=bpcore.datasets.np.savetxt",
            "hydra.job_logging.handlers.console.class",
            "bpcore.datasets.np.savetxt",
        ),
        (
            "+hydra.hydra_logging.handlers.x={class:logging.handlers.SocketHandler}",
            "hydra.hydra_logging.handlers.x.class",
            "logging.handlers.SocketHandler",
        ),
        (
            "hydra.job_logging.handlers.console.stream=ext://os.system",
            "hydra.job_logging.handlers.console.stream",
            "ext://os.system",
        ),
    ],
)
def test_logging_names_only_logging_s_handlers_and_streams(
    compose_config, override: str, key: str, value: str
) -> None:
    """Hydra's logging set-up calls a handler's ``class`` and imports ``ext://`` values."""
    found = foreign_targets(compose_config([override], hydra=True))
    assert [(k, v) for k, v, _ in found] == [(key, value)]


def test_the_check_imports_nothing_it_refuses(
    compose_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resolving a path may import modules: only those of allowed objects are."""
    (tmp_path / "bplab_side_effect.py").write_text(
        f"open({str(tmp_path / 'imported')!r}, 'w').close()\ndef f(): pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = compose_config(["+hydra.callbacks.x._target_=bplab_side_effect.f"], hydra=True)
    assert [found[1] for found in foreign_targets(cfg)] == ["bplab_side_effect.f"]
    assert not (tmp_path / "imported").exists() and "bplab_side_effect" not in sys.modules


LIMIT = r", above the limit of {}; set allow_large=true to run it anyway$"
MEMORY = r"the run would need ≈ [\d.]+ {} of memory \(.+ parameters, .+ units, .+ rows\)"
MEMORY += LIMIT.format("2 GiB")
METRICS = r"the run would log ≈ [\d,]+ metric points \(.+ layers, .+ steps, diagnostics every .+\)"
METRICS += LIMIT.format("100,000")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.width=1000000"], "model.width=1000000: " + MEMORY.format("TiB")),
        (["model.depth=100000"], "model.depth=100000: " + MEMORY.format("GiB")),
        (["model.depth=1000000000000"], "model.depth=1000000000000: " + MEMORY.format("PiB")),
        (
            ["model.hidden=[100000,100000]"],
            r"model.hidden=\[100000, 100000\]: " + MEMORY.format("GiB"),
        ),
        (
            ["model.param_budget=10000000000"],
            "model.param_budget=10000000000: " + MEMORY.format("GiB"),
        ),
        (["data.n_samples=100000000"], "data.n_samples=100000000: " + MEMORY.format("GiB")),
        (["model.depth=3000", "model.width=4"], "model.depth=3000: " + METRICS),
        (["train.epochs=100000"], "train.epochs=100000: " + METRICS),
        (["log.every_n_steps=1", "train.epochs=300"], "log.every_n_steps=1: " + METRICS),
    ],
)
def test_a_run_above_the_size_limits_is_refused_with_the_estimate(
    compose_config, overrides: list[str], message: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{message}"):
        build(compose_config(overrides))


def test_allow_large_lets_a_large_run_through(compose_config) -> None:
    for large in (["train.epochs=100000"], ["model.depth=3000"]):
        setup = build(compose_config([*large, "allow_large=true"]))
        assert setup.net.n_layers == len(setup.hidden) + 1


MEASURED = [
    ["model.width=512", "data.n_samples=2000", "optim=adam"],  # parameters
    ["model.width=64", "model.depth=50", "data.n_samples=5000", "optim=momentum"],  # activations
    ["model.width=16", "data.n_samples=100000", "train.batch_size=full"],  # data
    # the training-set gradient beside a minibatch step's arrays
    ["data.n_samples=20000", "model.width=128", "log.full_gradient=true", "log.every_n_steps=200"],
    # the remedies' arrays: x̂ˡ, yˡ, hˡ beside zˡ and aˡ
    ["model.width=64", "model.depth=20", "data.n_samples=5000", *REMEDIES],
]


@pytest.mark.parametrize("overrides", MEASURED)
def test_the_memory_estimate_is_within_a_factor_of_the_measured_peak(
    compose_config, monkeypatch: pytest.MonkeyPatch, overrides: list[str]
) -> None:
    """Build and train as the app does, measuring the peak of what numpy and Python allocate
    over two steps and the evaluation that ends them; the estimate must lie between half and
    three times it."""
    cfg = compose_config([*overrides, "train.max_steps=2", "mlflow.enabled=false"])
    tracemalloc.start()
    try:
        assert app.train(cfg).status == "FINISHED"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    monkeypatch.setattr(sizes, "MEMORY_LIMIT", 3 * peak)
    build(cfg)
    monkeypatch.setattr(sizes, "MEMORY_LIMIT", peak // 2)
    with pytest.raises(ConfigError, match="of memory"):
        build(cfg)


@pytest.mark.parametrize(
    "overrides",
    [
        ["data.n_samples=200", "train.epochs=3", "log.every_n_steps=5"],
        ["data.n_samples=200", "train.max_steps=7", "log.every_n_steps=3"],  # inside epoch 2
        ["model.depth=6", "data.n_samples=300", "train.epochs=2", "log.full_gradient=true"],
        ["data=digits", "model.depth=2", "train.batch_size=full", "train.epochs=4"],
        [  # the remedies' metrics
            "model.norm=batch",
            "model.residual=true",
            "optim.clip_norm=1",
            "data.n_samples=200",
            "train.epochs=2",
            "log.every_n_steps=3",
        ],
    ],
)
def test_the_metric_estimate_is_what_a_run_logs(
    compose_config, monkeypatch: pytest.MonkeyPatch, overrides: list[str]
) -> None:
    """Count the points a run records (each record goes to MLflow when tracking is on): the
    limit lets exactly that many through."""
    cfg = compose_config([*overrides, "mlflow.enabled=false"])
    sent: list[int] = []
    record = DiagnosticsRecorder.record

    def counted(self: DiagnosticsRecorder, family: str, step: int, metrics: dict) -> None:
        sent.append(len(metrics))
        record(self, family, step, metrics)

    monkeypatch.setattr(DiagnosticsRecorder, "record", counted)
    assert app.train(cfg).status == "FINISHED"
    monkeypatch.setattr(sizes, "METRIC_LIMIT", sum(sent))
    build(cfg)
    monkeypatch.setattr(sizes, "METRIC_LIMIT", sum(sent) - 1)
    with pytest.raises(ConfigError, match="metric points"):
        build(cfg)


def test_docs_configuration_names_every_key_of_the_schema() -> None:
    """docs/configuration.md (linked from the README) is where users look keys up: each key of
    the schema is in its group's row, as `key` or `group.key`."""
    import dataclasses
    import re

    from experiments.app.schema import Config

    page = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    rows = {m[0]: m[1] for m in re.findall(r"^\| `(\w+)[^|]*\|(.*)\|$", page, re.MULTILINE)}
    for group in dataclasses.fields(Config):
        if not dataclasses.is_dataclass(group.default_factory):  # seed, preset, stage
            assert f"`{group.name}`" in page, group.name
            continue
        for key in dataclasses.fields(group.default_factory):
            if key.name != "name":
                spans = re.findall(r"`([\w.]+)`", rows[group.name])
                assert {key.name, f"{group.name}.{key.name}"} & set(spans), (group.name, key.name)


def test_the_remedies_train_end_to_end(compose_config, monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m experiments.train model.norm=batch model.residual=true optim.clip_norm=1`` at
    small size: the run finishes and records the remedies' diagnostics — at step 0 BatchNorm's
    output has mean 0 and variance σ²/(σ² + ε) ≈ 1 over batch × units, the skip layers (not
    the first, 2 → 32) have a residual branch — and no mean-field theory (it assumes no norm
    and no skips)."""
    small = ["data.n_samples=300", "train.epochs=3", "log.every_n_steps=5", "mlflow.enabled=false"]
    cfg = compose_config([*REMEDIES, *small])
    families: dict[str, list[dict[str, float]]] = {}
    record = DiagnosticsRecorder.record

    def kept(self: DiagnosticsRecorder, family: str, step: int, metrics: dict) -> None:
        families.setdefault(family, []).append(dict(metrics))
        record(self, family, step, metrics)

    monkeypatch.setattr(DiagnosticsRecorder, "record", kept)
    outcome = app.train(cfg)
    assert outcome.status == "FINISHED" and outcome.diverged_at_step is None
    assert "theory" not in families and "test/accuracy" in families["test"][0]
    first = families["step"][0]
    assert first["grad_norm/global"] > 0 and 0 <= first["clip/fraction"] <= 1
    for layer in ("layer_01", "layer_02", "layer_03"):
        assert first[f"postnorm_mean/{layer}"] == pytest.approx(0, abs=1e-12)
        assert first[f"postnorm_var/{layer}"] == pytest.approx(1, abs=1e-3)
        assert first[f"prenorm_var/{layer}"] > 0
    assert [k for k in first if k.startswith("residual_var/")] == [
        "residual_var/layer_02",
        "residual_var/layer_03",
    ]


def test_a_normalized_net_s_saved_model_evaluates_as_trained(
    compose_config, tmp_path: Path
) -> None:
    """model.npz keeps γ, β and the running statistics; ``load_model`` (decision boundaries)
    rebuilds the net from it and the run's params, and evaluates exactly as the trained net."""
    from experiments.figures.boundaries import load_model

    cfg = compose_config([*REMEDIES, "data=moons", "mlflow.enabled=false"])
    setup = build(cfg)
    bpcore.fit(setup.net, setup.data, setup.loss, setup.optimizer, 32, max_steps=20)
    assert not np.allclose(setup.net.running_vars[0], 1.0)
    app._write_artifacts(tmp_path, cfg, setup, DiagnosticsRecorder(1))
    loaded = load_model(tmp_path / "model.npz", flat_params(cfg))
    x = setup.data.x_val
    np.testing.assert_array_equal(loaded.forward(x), setup.net.forward(x))


@pytest.mark.parametrize(
    ("remedy", "norm", "residual", "clip_norm"),
    [
        ("none", "none", False, None),
        ("residual", "none", True, None),
        ("batch", "batch", False, None),
        ("layer", "layer", False, None),
        ("clip", "none", False, 1.0),
        ("residual_batch", "batch", True, None),
        ("residual_layer", "layer", True, None),
    ],
)
def test_each_remedy_of_the_preset_sets_its_keys_and_builds(
    compose_config, remedy: str, norm: str, residual: bool, clip_norm: float | None
) -> None:
    """conf/remedy/: the `remedy=` axis of the remedies preset is these three keys."""
    cfg = compose_config(["experiment=remedies", f"remedy={remedy}"])
    assert (cfg.model.norm, cfg.model.residual, cfg.optim.clip_norm) == (norm, residual, clip_norm)
    assert build(cfg).net.norm == (None if norm == "none" else norm)


def test_a_swept_config_group_is_named_by_its_option(compose_config) -> None:
    """`remedy=` sets keys but is no key itself: the run name takes the option Hydra chose."""
    from hydra.core.hydra_config import HydraConfig

    full = compose_config(["experiment=remedies", "remedy=residual_layer"], hydra=True)
    HydraConfig.instance().set_config(full)
    try:
        cfg = compose_config(["experiment=remedies", "remedy=residual_layer"])
        setup = build(cfg)
        name = run_name(cfg, setup.hidden, setup.batch_size, ["activation", "remedy"])
    finally:
        HydraConfig.instance().cfg = None
    assert name == "tanh-remedy=residual_layer · d30-w32-b32-circles-s0"  # swept parts first
