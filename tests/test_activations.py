"""Activations: derivatives against finite differences, numerical safety, known values, registry.

Parametrized over ``ACTIVATIONS``, so a new activation is covered as soon as it is registered.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from numpy.typing import NDArray

import bpcore
from bpcore.activations import ACTIVATIONS, SELU, Activation, get_activation

NAMES = list(ACTIVATIONS)
DTYPES = [np.float32, np.float64]

# Defaults, plus non-default parameters (including ones that move max_grad above 1).
INSTANCES = [get_activation(name) for name in NAMES] + [
    get_activation("leaky_relu", alpha=0.2),
    get_activation("leaky_relu", alpha=1.5),
    get_activation("elu", alpha=0.5),
    get_activation("elu", alpha=2.0),
]

# Kinks of f, or of f′ (softsign: |z|), where central differences lose their O(h²) accuracy;
# finite differences skip a 1e-4 neighbourhood.  The derivative there is tested by value below.
KINKS: dict[str, tuple[float, ...]] = {
    "relu": (0.0,),
    "leaky_relu": (0.0,),
    "elu": (0.0,),
    "selu": (0.0,),
    "softsign": (0.0,),
    "hard_tanh": (-1.0, 1.0),
}

EXTREMES = [0.0, 1e-8, -1e-8, 1.0, -1.0, 20.0, -20.0, 100.0, -100.0, 1e4, -1e4]

# Dense grid on [-30, 30], step 1e-4, holding 0 and ±1 exactly.
GRID = np.arange(-300_000, 300_001) / 10_000

LAM, ALPHA = 1.0507009873554805, 1.6732632423543772

# f(-1e4), f(1e4), f′(-1e4), f′(1e4) for the default parameters.
LIMITS: dict[str, tuple[float, float, float, float]] = {
    "identity": (-1e4, 1e4, 1.0, 1.0),
    "sigmoid": (0.0, 1.0, 0.0, 0.0),
    "tanh": (-1.0, 1.0, 0.0, 0.0),
    "relu": (0.0, 1e4, 0.0, 1.0),
    "leaky_relu": (-100.0, 1e4, 0.01, 1.0),
    "elu": (-1.0, 1e4, 0.0, 1.0),
    "selu": (-LAM * ALPHA, LAM * 1e4, 0.0, LAM),
    "gelu": (0.0, 1e4, 0.0, 1.0),
    "gelu_tanh": (0.0, 1e4, 0.0, 1.0),
    "silu": (0.0, 1e4, 0.0, 1.0),
    "softplus": (0.0, 1e4, 0.0, 1.0),
    "softsign": (-1e4 / 10_001, 1e4 / 10_001, 1 / 10_001**2, 1 / 10_001**2),
    "mish": (0.0, 1e4, 0.0, 1.0),
    "hard_tanh": (-1.0, 1.0, 0.0, 0.0),
}


# f(-2), f′(-2), f(0.5), f′(0.5) for the default parameters, from mpmath at 30 digits: catches a
# wrong constant that a self-consistent value/derivative pair would hide.
REFERENCE: dict[str, tuple[float, float, float, float]] = {
    "identity": (-2.0, 1.0, 0.5, 1.0),
    "sigmoid": (0.11920292202211756, 0.10499358540350652, 0.6224593312018546, 0.2350037122015945),
    "tanh": (-0.9640275800758169, 0.07065082485316447, 0.46211715726000974, 0.7864477329659274),
    "relu": (0.0, 0.0, 0.5, 1.0),
    "leaky_relu": (-0.02, 0.01, 0.5, 1.0),
    "elu": (-0.8646647167633873, 0.1353352832366127, 0.5, 1.0),
    "selu": (-1.520166468595695, 0.2379328722516818, 0.5253504936777402, 1.0507009873554805),
    "gelu": (-0.04550026389635842, -0.0852318010781969, 0.34573123063700656, 0.8674951246561629),
    "gelu_tanh": (
        -0.04540230591222498,
        -0.08609925662361838,
        0.34571400982514394,
        0.8673699035346423,
    ),
    "silu": (-0.23840584404423512, -0.09078424878489548, 0.3112296656009273, 0.7399611873026518),
    "softplus": (0.1269280110429725, 0.11920292202211756, 0.9740769841801067, 0.6224593312018546),
    "softsign": (-0.6666666666666666, 0.1111111111111111, 0.3333333333333333, 0.4444444444444444),
    "mish": (-0.2525014826957089, -0.10835509242039394, 0.37524521130489513, 0.8864243753577272),
    "hard_tanh": (-1.0, 0.0, 0.5, 1.0),
}


@contextmanager
def strict_numerics() -> Iterator[None]:
    """Any numpy overflow, invalid operation or division by zero, and any warning, is an error."""
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        yield


def value_and_grad(act: Activation, z: NDArray[np.floating]) -> tuple[NDArray, NDArray]:
    a = act(z)
    return a, act.grad(z, a)


# --- derivatives -------------------------------------------------------------------------------


@pytest.mark.parametrize("act", INSTANCES, ids=repr)
def test_grad_matches_central_differences(act: Activation) -> None:
    rng = np.random.default_rng(0)
    z = np.concatenate([np.linspace(-8, 8, 1601), rng.uniform(-15, 15, 1000)])
    for kink in KINKS.get(act.name, ()):
        z = z[np.abs(z - kink) > 1e-4]
    h = 1e-5
    fd = (act(z + h) - act(z - h)) / (2 * h)
    np.testing.assert_allclose(act.grad(z, act(z)), fd, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("act", INSTANCES, ids=repr)
def test_max_grad_is_the_sup_of_grad(act: Activation) -> None:
    _, g = value_and_grad(act, GRID)
    assert g.max() == pytest.approx(act.max_grad, abs=1e-4)
    assert g.max() <= act.max_grad * (1 + 1e-12)


# --- numerical safety --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("name", NAMES)
def test_finite_no_warnings_dtype_kept(name: str, dtype: type[np.floating]) -> None:
    act = get_activation(name)
    rng = np.random.default_rng(1)
    arrays = [np.array(EXTREMES, dtype=dtype), (30 * rng.standard_normal((64, 33))).astype(dtype)]
    arrays += [np.array(x, dtype=dtype) for x in EXTREMES]  # 0-d
    for z in arrays:
        with strict_numerics():
            a, g = value_and_grad(act, z)
        for out in (a, g):
            assert out.dtype == dtype
            assert np.shape(out) == z.shape
            assert np.all(np.isfinite(out))


@pytest.mark.parametrize("name", NAMES)
def test_fresh_output_input_untouched(name: str) -> None:
    act = get_activation(name)
    z = np.linspace(-3, 3, 13)
    z0 = z.copy()
    a, g = value_and_grad(act, z)
    np.testing.assert_array_equal(z, z0)
    assert not np.shares_memory(a, z)
    assert not np.shares_memory(g, z)


# --- known values ------------------------------------------------------------------------------


def test_tables_cover_registry() -> None:
    assert set(LIMITS) == set(ACTIVATIONS)
    assert set(REFERENCE) == set(ACTIVATIONS)


@pytest.mark.parametrize("name", NAMES)
def test_reference_values(name: str) -> None:
    a, g = value_and_grad(get_activation(name), np.array([-2.0, 0.5]))
    f_lo, g_lo, f_hi, g_hi = REFERENCE[name]
    np.testing.assert_allclose(a, [f_lo, f_hi], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(g, [g_lo, g_hi], rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("name", NAMES)
def test_limits(name: str, dtype: type[np.floating]) -> None:
    act = get_activation(name)
    z = np.array([-1e4, 1e4], dtype=dtype)
    a, g = value_and_grad(act, z)
    f_lo, f_hi, g_lo, g_hi = LIMITS[name]
    atol = 10 * float(np.finfo(dtype).eps)
    np.testing.assert_allclose(a, [f_lo, f_hi], rtol=1e-6, atol=atol)
    np.testing.assert_allclose(g, [g_lo, g_hi], rtol=1e-6, atol=atol)


def test_exact_limits() -> None:
    big = np.array([-1e4, 1e4])
    np.testing.assert_array_equal(get_activation("sigmoid")(big), [0.0, 1.0])
    np.testing.assert_array_equal(get_activation("softplus")(big), [0.0, 1e4])
    np.testing.assert_array_equal(get_activation("tanh")(big), [-1.0, 1.0])
    for name in ("gelu", "gelu_tanh", "silu", "mish"):
        np.testing.assert_array_equal(get_activation(name)(big), [0.0, 1e4])


def test_sigmoid_grad_max_is_quarter_at_zero() -> None:
    act = get_activation("sigmoid")
    _, g = value_and_grad(act, GRID)
    assert g.max() == 0.25
    assert GRID[g.argmax()] == 0.0
    assert act.max_grad == 0.25


def test_gelu_tanh_approximates_gelu() -> None:
    z = np.linspace(-10, 10, 200_001)
    deviation = np.abs(get_activation("gelu_tanh")(z) - get_activation("gelu")(z)).max()
    assert 4e-4 < deviation < 5e-4  # ≈ 4.73e-4, near z = ±2.7


def test_gelu_max_grad_closed_form() -> None:
    r = math.sqrt(2)  # f″(z) = φ(z)(2 − z²) vanishes at √2
    phi = math.exp(-1) / math.sqrt(2 * math.pi)
    cdf = 0.5 * math.erfc(-1)
    assert get_activation("gelu").max_grad == pytest.approx(cdf + r * phi, rel=1e-15)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("gelu", 1.1289), ("gelu_tanh", 1.1290), ("silu", 1.0998), ("mish", 1.0885)],
)
def test_smooth_max_grads(name: str, expected: float) -> None:
    assert get_activation(name).max_grad == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(
    ("name", "z", "f", "df"),
    [
        ("relu", 0.0, 0.0, 0.0),
        ("leaky_relu", 0.0, 0.0, 0.01),
        ("elu", 0.0, 0.0, 1.0),
        ("selu", 0.0, 0.0, LAM * ALPHA),
        ("hard_tanh", 1.0, 1.0, 0.0),
        ("hard_tanh", -1.0, -1.0, 0.0),
        ("identity", 0.0, 0.0, 1.0),
        ("softsign", 0.0, 0.0, 1.0),
        ("softplus", 0.0, math.log(2), 0.5),
        ("gelu", 0.0, 0.0, 0.5),
        ("gelu_tanh", 0.0, 0.0, 0.5),
        ("silu", 0.0, 0.0, 0.5),
        ("mish", 0.0, 0.0, math.tanh(math.log(2))),
    ],
)
def test_values_at_kinks_and_zero(name: str, z: float, f: float, df: float) -> None:
    a, g = value_and_grad(get_activation(name), np.array([z]))
    assert a[0] == pytest.approx(f, abs=1e-15)
    assert g[0] == pytest.approx(df, abs=1e-15)


def test_selu_constants() -> None:
    assert SELU.LAMBDA == LAM
    assert SELU.ALPHA == ALPHA
    assert get_activation("selu").max_grad == pytest.approx(LAM * ALPHA, rel=1e-15)
    a, g = value_and_grad(get_activation("selu"), np.array([1.0, 2.0]))
    np.testing.assert_allclose(a, [LAM, 2 * LAM], rtol=1e-15)
    np.testing.assert_allclose(g, [LAM, LAM], rtol=1e-15)


# --- registry and parameters -------------------------------------------------------------------


def test_registry_order_and_names() -> None:
    assert NAMES == [
        "identity",
        "sigmoid",
        "tanh",
        "relu",
        "leaky_relu",
        "elu",
        "selu",
        "gelu",
        "gelu_tanh",
        "silu",
        "softplus",
        "softsign",
        "mish",
        "hard_tanh",
    ]
    assert all(cls.name == name for name, cls in ACTIVATIONS.items())


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown activation") as info:
        get_activation("swishy")
    for name in NAMES:
        assert name in str(info.value)


@pytest.mark.parametrize(("name", "param"), [("elu", "beta"), ("selu", "alpha"), ("relu", "alpha")])
def test_bad_parameter_is_named(name: str, param: str) -> None:
    with pytest.raises(ValueError, match=param):
        get_activation(name, **{param: 0.5})


def test_parameters() -> None:
    leaky = get_activation("leaky_relu", alpha=0.2)
    z = np.array([-3.0, -1.0, 2.0])
    a, g = value_and_grad(leaky, z)
    np.testing.assert_allclose(a, [-0.6, -0.2, 2.0])
    np.testing.assert_allclose(g, [0.2, 0.2, 1.0])
    assert repr(leaky) == "LeakyReLU(alpha=0.2)"
    elu = get_activation("elu", alpha=0.5)
    assert elu(np.array([-1e4]))[0] == -0.5
    assert elu.max_grad == 1.0
    assert get_activation("elu", alpha=2.0).max_grad == 2.0


def test_a_net_built_with_an_activation_object_uses_its_parameters() -> None:
    net = bpcore.MLP(
        [1, 1, 1], activation=get_activation("leaky_relu", alpha=0.3), output="identity"
    )
    net.weights[0][...] = 1.0
    net.weights[1][...] = 1.0
    np.testing.assert_allclose(net.forward([[-2.0], [2.0]]), [[-0.6], [2.0]])


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_grad_returns_a_fresh_array(name: str) -> None:
    """The backward pass writes δ into the array grad returns: it must not alias z or a."""
    z = np.linspace(-3, 3, 12).reshape(3, 4)
    f = get_activation(name)
    a = f(z)
    z_before, a_before = z.copy(), a.copy()
    da_dz = f.grad(z, a)
    da_dz[...] = 123.0
    np.testing.assert_array_equal(z, z_before)
    np.testing.assert_array_equal(a, a_before)
