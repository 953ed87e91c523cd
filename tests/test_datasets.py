"""Tests for bpcore.datasets: shapes, splits, determinism, standardization, clean structure."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bpcore.datasets import DATASETS, Dataset, make_dataset, spirals, tent_map

NAMES = sorted(DATASETS)
CLASSIFICATION = ["circles", "digits", "gaussians", "moons", "spirals", "xor"]
# (n_features, n_outputs) at default parameters
EXPECTED_SIZES = {
    "circles": (2, 2),
    "digits": (64, 10),
    "gaussians": (2, 2),
    "moons": (2, 2),
    "spirals": (2, 2),
    "xor": (2, 2),
    "teacher": (8, 1),
    "sawtooth": (1, 1),
}


def raw(ds: Dataset) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """All raw (unstandardized) inputs and their targets, train then validation."""
    x = np.concatenate([ds.unstandardize(ds.x_train), ds.unstandardize(ds.x_val)])
    return x, np.concatenate([ds.y_train, ds.y_val])


def test_registry_covers_expected_names() -> None:
    assert set(DATASETS) == set(EXPECTED_SIZES)


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_dtypes(name: str) -> None:
    ds = make_dataset(name)
    n_features, n_outputs = EXPECTED_SIZES[name]
    assert ds.name == name
    assert (ds.n_features, ds.n_outputs) == (n_features, n_outputs)
    for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val)):
        assert x.dtype == np.float64 and x.shape == (len(y), n_features)
        if name in CLASSIFICATION:
            assert ds.task == "classification" and ds.n_classes == n_outputs
            assert y.dtype == np.int64 and y.shape == (len(x),)
        else:
            assert ds.task == "regression" and ds.n_classes == 0
            assert y.dtype == np.float64 and y.shape == (len(x), n_outputs)
    assert ds.x_mean.shape == ds.x_std.shape == (n_features,)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("n", "frac", "n_val"), [(100, 0.25, 25), (10, 0.01, 1), (10, 0.99, 9)])
def test_split_sizes(name: str, n: int, frac: float, n_val: int) -> None:
    ds = make_dataset(name, n_samples=n, val_fraction=frac)
    assert (len(ds.x_train), len(ds.x_val)) == (n - n_val, n_val)


def rows(ds: Dataset, part: str) -> set[tuple[float, ...]]:
    """The raw rows (inputs then targets) of one part of a split, as a set."""
    x = ds.unstandardize(getattr(ds, f"x_{part}"))
    y = getattr(ds, f"y_{part}").reshape(len(x), -1)
    return {tuple(row) for row in np.round(np.column_stack([x, y]), 9)}


@pytest.mark.parametrize("name", NAMES)
def test_a_test_split_is_held_out_by_a_stream_of_its_own(name: str) -> None:
    """The three parts partition the generated rows (each mapped back to raw units with the
    train statistics); the test rows stay the same whatever the validation fraction; none held
    out gives the two-way split."""
    none = make_dataset(name, n_samples=200, seed=1)
    split = make_dataset(name, n_samples=200, seed=1, test_fraction=0.25)
    other = make_dataset(name, n_samples=200, seed=1, test_fraction=0.25, val_fraction=0.4)
    assert (len(split.x_train), len(split.x_val), len(split.x_test)) == (110, 40, 50)
    assert len(none.x_test) == 0 and len(none.x_train) + len(none.x_val) == 200
    every = rows(none, "train") | rows(none, "val")
    parts = [rows(split, part) for part in ("train", "val", "test")]
    assert set.union(*parts) == every and sum(map(len, parts)) == len(every)
    assert rows(other, "test") == parts[2]


def test_default_sizes() -> None:
    assert len(make_dataset("spirals").x_train) + len(make_dataset("spirals").x_val) == 1000
    ds = make_dataset("digits")
    assert len(ds.x_train) + len(ds.x_val) == 1797 and len(ds.x_val) == round(0.2 * 1797)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_from_seed(name: str) -> None:
    a, b, c = (make_dataset(name, n_samples=200, seed=s) for s in (3, 3, 4))
    for field in ("x_train", "y_train", "x_val", "y_val", "x_mean", "x_std"):
        assert getattr(a, field).tobytes() == getattr(b, field).tobytes(), field
    assert not np.array_equal(a.x_train, c.x_train)


@pytest.mark.parametrize("name", NAMES)
def test_standardized_with_train_statistics(name: str) -> None:
    ds = make_dataset(name, n_samples=300)
    mean, std = ds.x_train.mean(axis=0), ds.x_train.std(axis=0)
    constant = np.ptp(ds.unstandardize(ds.x_train), axis=0) == 0  # blank digit pixels
    np.testing.assert_allclose(mean, 0, atol=1e-12)
    np.testing.assert_allclose(std[~constant], 1, rtol=1e-12)
    assert np.all(np.isfinite(ds.x_val)) and np.all(ds.x_std[constant] == 1)
    # the validation split uses the *train* statistics, not its own
    x_val_raw = ds.unstandardize(ds.x_val)
    np.testing.assert_allclose((x_val_raw - ds.x_mean) / ds.x_std, ds.x_val, atol=1e-12)
    assert not np.allclose(ds.x_val.mean(axis=0)[~constant], 0, atol=1e-6)


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_labels_in_range_and_all_classes_present(name: str) -> None:
    ds = make_dataset(name)
    for y in (ds.y_train, ds.y_val):
        assert y.min() >= 0 and y.max() < ds.n_classes
        assert set(np.unique(y)) == set(range(ds.n_classes))


def test_spirals_n_classes_and_balance() -> None:
    ds = spirals(n_samples=301, n_classes=3)
    _, y = raw(ds)
    assert ds.n_classes == ds.n_outputs == 3
    assert np.bincount(y).tolist() == [101, 100, 100]


def test_make_dataset_matches_direct_call() -> None:
    a = make_dataset("spirals", n_samples=150, noise=0.2, seed=7, n_classes=4)
    b = spirals(n_samples=150, noise=0.2, seed=7, n_classes=4)
    assert a.x_train.tobytes() == b.x_train.tobytes() and a.y_val.tobytes() == b.y_val.tobytes()


# ------------------------------------------------------------------- clean structure at noise=0


def test_xor_labels_are_quadrant_sign() -> None:
    x, y = raw(make_dataset("xor", noise=0))
    np.testing.assert_array_equal(y, (np.sign(x[:, 0] * x[:, 1]) > 0).astype(np.int64))
    assert np.abs(x).min() > 0.29 and np.abs(x).max() < 5.31


def test_circles_separable_by_radius() -> None:
    x, y = raw(make_dataset("circles", noise=0))
    r = np.hypot(x[:, 0], x[:, 1])
    assert r[y == 0].max() <= 2.5 + 1e-9 and r[y == 1].min() >= 3.5 - 1e-9
    noisy_x, noisy_y = raw(make_dataset("circles", noise=0.5))
    noisy_r = np.hypot(noisy_x[:, 0], noisy_x[:, 1])
    assert noisy_r[noisy_y == 0].max() > noisy_r[noisy_y == 1].min()  # noise makes them overlap


def test_spirals_lie_on_their_arms() -> None:
    k = 3
    x, y = raw(make_dataset("spirals", noise=0, n_classes=k))
    u = np.hypot(x[:, 0], x[:, 1]) / 5
    t = 3.5 * np.pi * u + 2 * np.pi * y / k
    np.testing.assert_allclose(
        x, np.column_stack([5 * u * np.sin(t), 5 * u * np.cos(t)]), atol=1e-9
    )


def test_moons_lie_on_half_circles() -> None:
    x, y = raw(make_dataset("moons", noise=0))
    upper, lower = x[y == 0], x[y == 1]
    np.testing.assert_allclose(np.hypot(upper[:, 0], upper[:, 1]), 1, atol=1e-9)
    np.testing.assert_allclose(np.hypot(lower[:, 0] - 1, lower[:, 1] - 0.5), 1, atol=1e-9)
    assert upper[:, 1].min() >= -1e-9 and lower[:, 1].max() <= 0.5 + 1e-9


def test_gaussians_centers_and_noise_spread() -> None:
    x, y = raw(make_dataset("gaussians", noise=0))
    np.testing.assert_allclose(x[y == 0].mean(axis=0), [-2, -2], atol=0.15)
    np.testing.assert_allclose(x[y == 1].mean(axis=0), [2, 2], atol=0.15)
    assert np.mean((x.sum(axis=1) > 0) == (y == 1)) > 0.99
    np.testing.assert_allclose(x[y == 1].std(axis=0), np.sqrt(0.5), rtol=0.1)
    wide, wide_y = raw(make_dataset("gaussians", noise=0.5))
    np.testing.assert_allclose(wide[wide_y == 1].std(axis=0), 2.0, rtol=0.1)


@pytest.mark.parametrize("k", [1, 2, 4, 6])
def test_tent_map_has_2_to_the_k_linear_pieces(k: int) -> None:
    grid = np.linspace(0, 1, 2 ** (k + 4) + 1)  # dyadic, so every value is exact
    y = tent_map(grid, k)
    slopes = np.diff(y) / np.diff(grid)
    np.testing.assert_array_equal(np.abs(slopes), 2.0**k)
    assert 1 + np.count_nonzero(np.diff(slopes)) == 2**k
    knots = np.arange(2**k + 1) / 2**k
    np.testing.assert_array_equal(tent_map(knots, k), np.arange(2**k + 1) % 2)


def test_sawtooth_targets_are_exact_tent_map_values() -> None:
    ds = make_dataset("sawtooth", noise=0, k=5)
    x, y = raw(ds)
    assert x.min() >= -1e-12 and x.max() <= 1 + 1e-12
    # unstandardizing is only accurate to rounding, and T^k amplifies errors by 2^k
    np.testing.assert_allclose(y, tent_map(x, 5), atol=1e-10)
    assert y.min() >= 0 and y.max() <= 1
    noisy = make_dataset("sawtooth", noise=0.1, k=5)
    np.testing.assert_allclose(np.std(raw(noisy)[1] - y), 0.1, rtol=0.1)


def test_teacher_noise_only_perturbs_targets() -> None:
    clean = make_dataset("teacher", noise=0, n_features=3, width=16, depth=3, n_targets=2)
    noisy = make_dataset("teacher", noise=0.5, n_features=3, width=16, depth=3, n_targets=2)
    assert clean.n_features == 3 and clean.n_outputs == 2
    np.testing.assert_array_equal(clean.x_train, noisy.x_train)
    np.testing.assert_allclose(np.std(noisy.y_train - clean.y_train), 0.5, rtol=0.1)
    assert clean.y_train.std() > 0.1  # a non-trivial function
    relu = make_dataset("teacher", activation="relu")
    assert not np.array_equal(relu.y_train, make_dataset("teacher").y_train)


def test_digits_are_sklearns_digits() -> None:
    from sklearn.datasets import load_digits

    sk_x, sk_y = load_digits(return_X_y=True)
    x, y = raw(make_dataset("digits"))
    x = np.rint(x)  # raw pixels are integers; unstandardizing is exact up to rounding
    ours = np.column_stack([x, y])
    theirs = np.column_stack([sk_x, sk_y])
    np.testing.assert_array_equal(np.unique(ours, axis=0), np.unique(theirs, axis=0))
    assert len(ours) == len(theirs) == 1797
    sub_x, sub_y = raw(make_dataset("digits", n_samples=200, seed=1))
    rows = {tuple(r) for r in theirs}
    assert all(tuple(r) in rows for r in np.column_stack([np.rint(sub_x), sub_y]))


# ------------------------------------------------------------------------------- bad arguments


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'; known: spirals, moons"):
        make_dataset("mnist")


@pytest.mark.parametrize(
    ("name", "kwargs", "arg"),
    [
        ("spirals", {"n_samples": 5}, "n_samples"),
        ("moons", {"n_samples": 100.0}, "n_samples"),
        ("xor", {"n_samples": True}, "n_samples"),
        ("digits", {"n_samples": 1798}, "n_samples"),
        ("spirals", {"n_samples": 10, "n_classes": 6}, "n_samples"),
        ("circles", {"noise": -0.1}, "noise"),
        ("gaussians", {"noise": float("nan")}, "noise"),
        ("teacher", {"noise": "0.1"}, "noise"),
        ("moons", {"val_fraction": 0.0}, "val_fraction"),
        ("moons", {"val_fraction": 1.0}, "val_fraction"),
        ("sawtooth", {"val_fraction": 1.5}, "val_fraction"),
        ("moons", {"test_fraction": -0.1}, "test_fraction"),
        ("moons", {"test_fraction": 1.0}, "test_fraction"),
        ("xor", {"n_samples": 10, "test_fraction": 0.9}, "test_fraction"),
        ("xor", {"seed": -1}, "seed"),
        ("spirals", {"n_classes": 1}, "n_classes"),
        ("sawtooth", {"k": 0}, "k"),
        ("teacher", {"depth": 0}, "depth"),
        ("teacher", {"width": 0}, "width"),
        ("teacher", {"activation": "softplus"}, "activation"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(
    name: str, kwargs: dict[str, Any], arg: str
) -> None:
    with pytest.raises(ValueError, match=rf"\b{arg}\b") as info:
        make_dataset(name, **kwargs)
    message = str(info.value)
    assert name in message and repr(kwargs[arg]) in message  # the dataset and offending value
    assert "must be" in message  # ... and what is allowed


def test_unknown_parameter_lists_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown parameter 'k'; allowed: n_classes"):
        make_dataset("spirals", k=3)
    with pytest.raises(ValueError, match=r"unknown parameter 'width'; allowed: \(none\)"):
        make_dataset("moons", width=3)
    with pytest.raises(ValueError, match=r"unknown parameter 'k'; allowed: \(none\)"):
        make_dataset("digits", k=3)
