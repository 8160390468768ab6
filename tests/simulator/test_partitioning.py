"""Partitioning sample indices among clients with Flower Datasets' partitioners."""

from __future__ import annotations

import numpy as np
import pytest

from fedleak.simulator.data.partitioning import available_schemes, partition_indices


def _labels(n: int = 600, classes: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, classes, size=n)


def _assert_exact_cover(parts: list[np.ndarray], n: int) -> None:
    joined = np.concatenate(parts)
    assert len(joined) == n  # disjoint ...
    np.testing.assert_array_equal(np.sort(joined), np.arange(n))  # ... and covering


@pytest.mark.parametrize("scheme", ["iid", "dirichlet"])
@pytest.mark.parametrize("num_partitions", [1, 3, 10])
def test_partitions_are_disjoint_and_cover(scheme: str, num_partitions: int) -> None:
    labels = _labels()
    parts = partition_indices(labels, num_partitions, scheme=scheme, alpha=0.5, seed=1)
    assert len(parts) == num_partitions
    assert all(p.dtype == np.int64 and len(p) > 0 for p in parts)
    _assert_exact_cover(parts, len(labels))


@pytest.mark.parametrize("scheme", ["iid", "dirichlet"])
def test_partitions_are_deterministic_for_a_seed(scheme: str) -> None:
    labels = _labels()
    a = partition_indices(labels, 4, scheme=scheme, alpha=0.5, seed=7)
    b = partition_indices(labels, 4, scheme=scheme, alpha=0.5, seed=7)
    c = partition_indices(labels, 4, scheme=scheme, alpha=0.5, seed=8)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_iid_is_balanced_and_shuffled() -> None:
    labels = _labels(n=600)
    parts = partition_indices(labels, 6, scheme="iid", alpha=0.5, seed=0)
    assert [len(p) for p in parts] == [100] * 6
    assert not np.array_equal(parts[0], np.arange(100))  # not contiguous shards of the input
    for p in parts:  # every client sees most classes
        assert len(np.unique(labels[p])) >= 8


def _label_skew(labels: np.ndarray, parts: list[np.ndarray]) -> float:
    """Mean share of each client's most frequent class."""
    return float(np.mean([np.bincount(labels[p]).max() / len(p) for p in parts]))


def test_dirichlet_small_alpha_is_skewed() -> None:
    labels = _labels(n=1000)
    skewed = partition_indices(labels, 5, scheme="dirichlet", alpha=0.05, seed=0)
    mild = partition_indices(labels, 5, scheme="dirichlet", alpha=100.0, seed=0)
    iid = partition_indices(labels, 5, scheme="iid", alpha=0.05, seed=0)
    assert _label_skew(labels, skewed) > 0.4
    assert _label_skew(labels, mild) < 0.2 and _label_skew(labels, iid) < 0.2


def test_erroneous_unknown_scheme_names_accepted_values() -> None:
    with pytest.raises(ValueError, match="unknown partitioning scheme 'shards'") as info:
        partition_indices(_labels(), 2, scheme="shards", alpha=0.5, seed=0)
    for name in available_schemes():
        assert name in str(info.value)


def test_erroneous_too_many_partitions() -> None:
    with pytest.raises(ValueError, match="num_partitions"):
        partition_indices(_labels(n=5), 6, scheme="iid", alpha=0.5, seed=0)


def test_erroneous_nonpositive_alpha() -> None:
    with pytest.raises(ValueError, match="alpha"):
        partition_indices(_labels(), 2, scheme="dirichlet", alpha=0.0, seed=0)
