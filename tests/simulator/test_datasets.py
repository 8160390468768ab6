"""The data set registry and the offline data sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedleak.simulator.data.datasets import (
    DEFAULT_DATASET,
    PHOTOS,
    ArrayDataset,
    DatasetUnavailableError,
    available_datasets,
    load_dataset,
    register_dataset,
)


def _load(name: str, tmp_path: Path, seed: int = 0, test_fraction: float = 0.2):
    return load_dataset(name, data_dir=tmp_path, seed=seed, test_fraction=test_fraction)


def test_registry_lists_all_datasets() -> None:
    expected = {"digits", "lfw", "photos", "mnist", "fashion_mnist", "cifar10"}
    assert expected <= set(available_datasets())
    assert DEFAULT_DATASET == "digits"


def test_digits_shapes_range_and_labels(tmp_path: Path) -> None:
    splits = _load("digits", tmp_path)
    train, test = splits.train, splits.test
    assert len(train) + len(test) == 1797
    assert len(test) == pytest.approx(0.2 * 1797, abs=1)
    for part in (train, test):
        assert part.inputs.dtype == np.float32 and part.labels.dtype == np.int64
        assert part.input_shape == (1, 8, 8)
        assert part.inputs.min() >= 0.0 and part.inputs.max() <= 1.0
        assert part.num_classes == 10 and part.name == "digits"
    assert train.inputs.max() == 1.0  # 16/16: scaled, not clipped
    assert set(np.unique(train.labels)) == set(range(10))
    # stratified: every class is in the test split with about its share
    assert np.bincount(test.labels, minlength=10).min() >= 30


def test_split_is_deterministic_and_seed_dependent(tmp_path: Path) -> None:
    a, b = _load("digits", tmp_path, seed=3), _load("digits", tmp_path, seed=3)
    c = _load("digits", tmp_path, seed=4)
    np.testing.assert_array_equal(a.train.inputs, b.train.inputs)
    np.testing.assert_array_equal(a.test.labels, b.test.labels)
    assert not np.array_equal(a.test.inputs, c.test.inputs)


def test_lfw_two_classes_faces_first(tmp_path: Path) -> None:
    splits = _load("lfw", tmp_path, test_fraction=0.25)
    assert len(splits.train) == 150 and len(splits.test) == 50
    for part in (splits.train, splits.test):
        assert part.input_shape == (1, 25, 25)
        assert part.num_classes == 2
        assert part.inputs.min() >= 0.0 and part.inputs.max() <= 1.0
        # 100 faces and 100 non-faces, split stratified
        assert np.bincount(part.labels).tolist() == [len(part) // 2, len(part) // 2]


def test_photos_are_natural_rgb_crops_one_class_per_photo(tmp_path: Path) -> None:
    splits = _load("photos", tmp_path)
    inputs = np.concatenate([splits.train.inputs, splits.test.inputs])
    labels = np.concatenate([splits.train.labels, splits.test.labels])
    assert inputs.shape == (120, 3, 32, 32) and splits.train.num_classes == len(PHOTOS)
    assert inputs.min() >= 0.0 and inputs.max() <= 1.0
    assert np.bincount(labels).tolist() == [16, 24, 24, 24, 16, 16]  # 4 crops on the short side
    # colour, not grey: the channels differ; natural: neighbouring pixels correlate strongly
    assert np.abs(inputs[:, 0] - inputs[:, 2]).mean() > 0.02
    right = np.corrcoef(inputs[..., :-1].ravel(), inputs[..., 1:].ravel())[0, 1]
    assert right > 0.8
    assert len(np.unique(inputs.reshape(120, -1), axis=0)) == 120


def test_subset_keeps_metadata(tmp_path: Path) -> None:
    train = _load("digits", tmp_path).train
    sub = train.subset(np.array([0, 5, 7]))
    assert len(sub) == 3 and sub.num_classes == 10 and sub.name == "digits"
    np.testing.assert_array_equal(sub.inputs[1], train.inputs[5])


def test_erroneous_unknown_dataset_lists_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'") as info:
        _load("imagenet", tmp_path)
    for name in available_datasets():
        assert name in str(info.value)


def test_erroneous_test_fraction(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        _load("digits", tmp_path, test_fraction=1.0)


def test_erroneous_duplicate_registration() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("digits", lambda data_dir, seed, test_fraction: None)  # type: ignore[arg-type,return-value]


def test_erroneous_array_dataset_types() -> None:
    with pytest.raises(ValueError, match="float32"):
        ArrayDataset(np.zeros((2, 1, 4, 4)), np.zeros(2, dtype=np.int64), 2, "x")
    with pytest.raises(ValueError, match="do not match"):
        ArrayDataset(np.zeros((3, 1, 4, 4), np.float32), np.zeros(2, dtype=np.int64), 2, "x")


@pytest.mark.parametrize(
    ("name", "class_name"),
    [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST"), ("cifar10", "CIFAR10")],
)
def test_erroneous_offline_download_is_explained(
    name: str, class_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision.datasets

    class Offline:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, class_name, Offline)
    with pytest.raises(DatasetUnavailableError) as info:
        _load(name, tmp_path)
    message = str(info.value)
    assert repr(name) in message
    assert str(tmp_path) in message
    assert "network" in message
    assert "dataset=digits" in message and "dataset=lfw" in message
    assert isinstance(info.value.__cause__, RuntimeError)


def test_torchvision_arrays_are_converted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    class FakeCifar:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            n = 6 if train else 2
            self.data = np.full((n, 32, 32, 3), 255, dtype=np.uint8)  # NHWC, as CIFAR10 has
            self.data[:, :, :, 0] = 0
            self.targets = list(range(n))

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCifar)
    splits = _load("cifar10", tmp_path)
    assert splits.train.inputs.shape == (6, 3, 32, 32) and len(splits.test) == 2
    assert splits.train.inputs[:, 0].max() == 0.0 and splits.train.inputs[:, 1].min() == 1.0
    assert splits.train.labels.dtype == np.int64
