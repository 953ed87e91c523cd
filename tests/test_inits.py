"""Weight and bias initializers: shapes, exact variances, gain, orthogonality, deep-ReLU scaling."""

from __future__ import annotations

import math

import numpy as np
import pytest

import bpcore
from bpcore.inits import (
    BIAS_INITS,
    INITIALIZERS,
    ConstantBias,
    HeNormal,
    Initializer,
    NormalBias,
    get_bias_init,
    get_initializer,
)

NAMES = list(INITIALIZERS)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_registry_order() -> None:
    assert NAMES == [
        "normal",
        "uniform",
        "xavier_normal",
        "xavier_uniform",
        "he_normal",
        "he_uniform",
        "lecun_normal",
        "orthogonal",
    ]
    assert list(BIAS_INITS) == ["constant", "normal"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("fan_in", "fan_out"), [(400, 600), (600, 400), (7, 7)])
def test_shape_dtype_determinism(name: str, fan_in: int, fan_out: int) -> None:
    init = get_initializer(name)
    w = init(fan_in, fan_out, rng(1))
    assert w.shape == (fan_in, fan_out)
    assert w.dtype == np.float64
    assert np.isfinite(w).all()
    np.testing.assert_array_equal(w, init(fan_in, fan_out, rng(1)))
    assert not np.array_equal(w, init(fan_in, fan_out, rng(2)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("fan_in", "fan_out"), [(400, 600), (600, 400)])
@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_empirical_variance(name: str, fan_in: int, fan_out: int, gain: float) -> None:
    init = get_initializer(name, gain=gain)
    w = init(fan_in, fan_out, rng(3))
    assert abs(w.mean()) < 0.02 * math.sqrt(init.variance(fan_in, fan_out))
    assert w.var() == pytest.approx(init.variance(fan_in, fan_out), rel=0.03)
    assert init.sigma_w2(fan_in, fan_out) == pytest.approx(fan_in * init.variance(fan_in, fan_out))


@pytest.mark.parametrize("name", NAMES)
def test_variance_scales_with_gain_squared(name: str) -> None:
    base, scaled = get_initializer(name), get_initializer(name, gain=3.0)
    assert scaled.variance(50, 80) == pytest.approx(9 * base.variance(50, 80), rel=1e-12)
    np.testing.assert_allclose(scaled(50, 80, rng(4)), 3 * base(50, 80, rng(4)), rtol=1e-12)


@pytest.mark.parametrize(
    ("name", "params", "variance"),
    [
        ("normal", {}, 0.01**2),  # documented default std = 0.01
        ("normal", {"std": 0.5}, 0.25),
        ("uniform", {}, 1 / (3 * 100)),  # Glorot & Bengio's "standard" U[±1/√fan_in]
        ("uniform", {"limit": 0.3}, 0.03),
        ("xavier_normal", {}, 2 / 300),
        ("xavier_uniform", {}, 2 / 300),
        ("he_normal", {}, 2 / 100),
        ("he_uniform", {}, 2 / 100),
        ("lecun_normal", {}, 1 / 100),
        ("orthogonal", {}, 1 / 200),
    ],
)
def test_variance_formulas(name: str, params: dict[str, float], variance: float) -> None:
    assert get_initializer(name, **params).variance(100, 200) == pytest.approx(variance)


def test_sigma_w2_of_the_classic_inits() -> None:
    assert get_initializer("he_normal").sigma_w2(256, 256) == pytest.approx(2.0)
    assert get_initializer("xavier_normal").sigma_w2(256, 256) == pytest.approx(1.0)
    assert get_initializer("lecun_normal", gain=1.5).sigma_w2(256, 64) == pytest.approx(2.25)
    assert get_initializer("orthogonal", gain=2.0).sigma_w2(256, 64) == pytest.approx(4.0)


@pytest.mark.parametrize(("fan_in", "fan_out"), [(64, 64), (100, 40), (40, 100)])
@pytest.mark.parametrize("gain", [1.0, 1.7])
def test_orthogonal_is_orthogonal(fan_in: int, fan_out: int, gain: float) -> None:
    w = get_initializer("orthogonal", gain=gain)(fan_in, fan_out, rng(5))
    gram = w.T @ w if fan_in >= fan_out else w @ w.T
    np.testing.assert_allclose(gram, gain**2 * np.eye(min(fan_in, fan_out)), atol=1e-12)


def _relu_second_moments(init: Initializer, width: int = 256, depth: int = 30) -> np.ndarray:
    """E[a²] of the Gaussian input and after each of ``depth`` ReLU layers (zero bias).

    Averaged over 16 independent nets (batch 16 each): a single net's ‖a‖² performs a
    log-normal random walk with Var(log) ∝ depth / width (Hanin & Rolnick 2018), which at
    width 256 and depth 30 often leaves a factor-2 band; the weight average is what the
    mean-field recursion q^{l+1} = σ_w² q^l / 2 predicts.
    """
    g = rng(6)
    runs = []
    for _ in range(16):
        a = g.standard_normal((16, width))
        moments = [float(np.mean(a**2))]
        for _ in range(depth):
            a = np.maximum(a @ init(width, width, g), 0.0)
            moments.append(float(np.mean(a**2)))
        runs.append(moments)
    mean: np.ndarray = np.mean(runs, axis=0)
    return mean


def test_he_keeps_deep_relu_signal_flat_xavier_halves_it() -> None:
    """He et al. (2015): Var(W) = 2/fan_in preserves E[a²] through ReLU layers, 1/fan_in
    (Xavier with fan_in = fan_out) halves it per layer."""
    he = _relu_second_moments(get_initializer("he_normal"))
    assert he[0] == pytest.approx(1.0, rel=0.05)
    assert np.all((he > he[0] / 2) & (he < he[0] * 2))
    he_ratios = he[1:] / he[:-1]
    assert np.exp(np.mean(np.log(he_ratios))) == pytest.approx(1.0, abs=0.05)

    xavier = _relu_second_moments(get_initializer("xavier_normal"))
    ratios = xavier[1:] / xavier[:-1]
    assert np.all(np.abs(ratios - 0.5) < 0.1)
    assert np.exp(np.mean(np.log(ratios))) == pytest.approx(0.5, abs=0.03)


# ------------------------------------------------------------------------------------ errors


def test_a_net_built_with_an_init_object_uses_its_parameters() -> None:
    """He normal with gain 2: Var W = gain² · 2 / fan_in = 8 / 400."""
    net = bpcore.MLP([400, 400, 2], init=HeNormal(gain=2.0), seed=0)
    assert net.weights[0].var() == pytest.approx(8 / 400, rel=0.02)
    with pytest.raises(ValueError, match="initializer object"):
        get_initializer(HeNormal(gain=2.0), gain=1.0)


def test_unknown_name() -> None:
    with pytest.raises(ValueError, match=r"unknown init 'kaiming'; known: normal, uniform, "):
        get_initializer("kaiming")


def test_unknown_parameter() -> None:
    with pytest.raises(
        ValueError, match=r"init 'he_normal' does not take parameter\(s\) \['std'\]"
    ):
        get_initializer("he_normal", std=0.1)


@pytest.mark.parametrize(
    ("name", "param", "value"),
    [
        ("normal", "std", 0.0),
        ("normal", "std", -0.1),
        ("normal", "std", math.nan),
        ("uniform", "limit", -1.0),
        ("xavier_uniform", "gain", 0.0),
        ("orthogonal", "gain", -1.0),
        ("he_normal", "gain", math.inf),
    ],
)
def test_non_positive_parameters(name: str, param: str, value: float) -> None:
    with pytest.raises(
        ValueError, match=rf"init '{name}': {param} must be a positive finite number"
    ):
        get_initializer(name, **{param: value})


@pytest.mark.parametrize("fans", [(0, 5), (5, -1), (2.5, 3)])
def test_bad_fans(fans: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="must be a positive integer"):
        get_initializer("he_normal")(fans[0], fans[1], rng())  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ biases


def test_bias_inits() -> None:
    b = get_bias_init(0.1)(5, rng())
    assert b.dtype == np.float64
    np.testing.assert_array_equal(b, np.full(5, 0.1))
    assert get_bias_init(0.1).variance() == 0.0
    assert get_bias_init("constant") == ConstantBias(value=0.0)
    normal = get_bias_init("normal", std=0.3)
    assert normal == NormalBias(std=0.3)
    assert normal.variance() == pytest.approx(0.09)
    b = normal(100_000, rng(7))
    assert b.shape == (100_000,)
    assert b.var() == pytest.approx(0.09, rel=0.03)
    np.testing.assert_array_equal(normal(10, rng(8)), normal(10, rng(8)))
    net = bpcore.MLP([2, 20_000, 2], bias_init=normal, seed=0)  # an object: used as given
    assert net.biases[0].std() == pytest.approx(0.3, rel=0.03)


def test_bias_init_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown bias init 'zeros'; known: constant, normal"):
        get_bias_init("zeros")
    with pytest.raises(ValueError, match="bias init 'normal': std must be a positive finite"):
        get_bias_init("normal", std=-1.0)
    with pytest.raises(ValueError, match=r"bias init 'normal' needs parameter\(s\) \['std'\]"):
        get_bias_init("normal")
    with pytest.raises(ValueError, match=r"does not take parameter\(s\) \['std'\]"):
        get_bias_init("constant", std=1.0)
    with pytest.raises(ValueError, match="value must be a finite number"):
        get_bias_init(math.inf)
    with pytest.raises(ValueError, match="only apply to a bias init name"):
        get_bias_init(0.0, std=1.0)
