"""Tabular and signal data sets: encoding, decoding, modality, partitioning, offline errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedleak.simulator.data.datasets import DatasetUnavailableError, load_dataset
from fedleak.simulator.data.partitioning import partition_indices
from fedleak.simulator.data.signal_datasets import z_normalise
from fedleak.simulator.data.tabular import TabularEncoder, fit_encoder

COLUMNS = {
    "colour": ["red", "blue", "red", "green"],
    "grade": [2.0, 10.0, 2.0, 3.0],
    "age": [20.0, 30.0, 40.0, 50.0],
}


def _encoder() -> TabularEncoder:
    return fit_encoder(COLUMNS, ["colour", "grade"], ["age"])


def test_encoder_one_hot_and_standardised_layout() -> None:
    encoder = _encoder()
    rows = encoder.encode(COLUMNS)
    assert rows.shape == (4, 3 + 3 + 1) and rows.dtype == np.float32
    # categories sorted, numbers in numeric order and without a fraction
    assert [f.categories for f in encoder.features[:2]] == [
        ("blue", "green", "red"),
        ("2", "3", "10"),
    ]
    np.testing.assert_array_equal(rows[:, :6].sum(axis=1), 2.0)  # one 1 per block
    np.testing.assert_allclose(rows[:, 6].mean(), 0.0, atol=1e-7)
    np.testing.assert_allclose(rows[:, 6].std(), 1.0, atol=1e-6)
    assert encoder.domain().discrete_groups == ((0, 3), (3, 6))
    assert encoder.domain().modality == "tabular" and encoder.domain().low is None


def test_decode_inverts_encode_and_reads_noisy_rows() -> None:
    encoder = _encoder()
    rows = encoder.encode(COLUMNS)
    decoded = encoder.decode(rows)
    assert [r["colour"] for r in decoded] == COLUMNS["colour"]
    assert [r["grade"] for r in decoded] == ["2", "10", "2", "3"]
    np.testing.assert_allclose([r["age"] for r in decoded], COLUMNS["age"], rtol=1e-6)
    noisy = rows + np.random.default_rng(0).normal(0, 0.1, rows.shape)
    assert [r["colour"] for r in encoder.decode(noisy)] == COLUMNS["colour"]


def test_encoder_json_round_trip() -> None:
    encoder = _encoder()
    assert TabularEncoder.from_json(encoder.to_json()) == encoder


def test_erroneous_unknown_category_names_feature_and_categories() -> None:
    with pytest.raises(ValueError, match=r"feature 'colour': unknown category 'pink'.*blue"):
        _encoder().encode({**COLUMNS, "colour": ["pink", "red", "red", "red"]})


def test_fair_is_tabular_offline_and_decodes_to_original_units(tmp_path: Path) -> None:
    splits = load_dataset("fair", data_dir=tmp_path, seed=0, test_fraction=0.2)
    train, test = splits.train, splits.test
    assert len(train) + len(test) == 6366 and train.num_classes == 2
    assert train.domain.modality == "tabular" and train.encoder is test.encoder
    assert train.input_shape == (train.encoder.width,)
    ages = [row["age"] for row in train.encoder.decode(train.inputs[:50])]
    assert set(np.round(ages, 3)) <= {17.5, 22.0, 27.0, 32.0, 37.0, 42.0}
    # the subset of one client keeps the schema
    assert train.subset(np.arange(3)).encoder is train.encoder


def test_anes96_is_offline_and_wide_enough_for_spear_at_b32(tmp_path: Path) -> None:
    train = load_dataset("anes96", data_dir=tmp_path, seed=0, test_fraction=0.2).train
    assert train.num_classes == 2 and train.input_shape == (69,)
    row = train.encoder.decode(train.inputs[:1])[0]
    assert row["income"] in {str(i) for i in range(1, 25)} and 18 <= round(row["age"]) <= 95


@pytest.mark.parametrize(
    ("name", "length", "classes"), [("gunpoint", 150, 2), ("pigcvp", 2000, 52)]
)
def test_ucr_signals_are_z_normalised_series(
    tmp_path: Path, name: str, length: int, classes: int
) -> None:
    train = load_dataset(name, data_dir=tmp_path, seed=0, test_fraction=0.2).train
    assert train.input_shape == (length,) and train.num_classes == classes
    assert train.domain.modality == "signal" and train.domain.high is None
    np.testing.assert_allclose(train.inputs.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(train.inputs.std(axis=1), 1.0, atol=1e-4)


def test_z_normalise_keeps_constant_series_finite() -> None:
    out = z_normalise(np.array([[1.0, 1.0, 1.0], [0.0, 1.0, 2.0]]))
    np.testing.assert_array_equal(out[0], 0.0)
    np.testing.assert_allclose(out[1], [-1.2247449, 0.0, 1.2247449], rtol=1e-6)


@pytest.mark.parametrize("scheme", ["iid", "dirichlet"])
@pytest.mark.parametrize("name", ["fair", "gunpoint"])
def test_partitioning_covers_modality_sets(tmp_path: Path, name: str, scheme: str) -> None:
    train = load_dataset(name, data_dir=tmp_path, seed=0, test_fraction=0.2).train
    parts = partition_indices(train.labels, 4, scheme=scheme, alpha=0.5, seed=0)
    joined = np.sort(np.concatenate(parts))
    np.testing.assert_array_equal(joined, np.arange(len(train)))


def test_erroneous_adult_offline_names_the_offline_alternative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sklearn.datasets

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("no network")

    monkeypatch.setattr(sklearn.datasets, "fetch_openml", offline)
    with pytest.raises(DatasetUnavailableError, match="dataset=fair"):
        load_dataset("adult", data_dir=tmp_path, seed=0, test_fraction=0.2)
