"""Hugging Face data sets through Flower Datasets' ``FederatedDataset`` (``dataset=huggingface``).

``dataset.args.path`` is one of

- a hub name, e.g. ``uoft-cs/cifar10``: downloaded into ``<data_dir>/huggingface`` the first
  time (needs a network), read from there afterwards;
- a local directory holding a data set's files (parquet, CSV, JSON, image folders), with
  splits named as Hugging Face names them (``train-*.parquet``, ``test-*.parquet``); offline;
- parquet file(s), glob patterns allowed (``/data/faces/*.parquet``); offline.

``FederatedDataset`` loads the whole split; fedleak partitions it among the clients with
Flower Datasets' partitioners like every other data set
(:mod:`fedleak.simulator.data.partitioning`), so ``federation.partitioner`` and
``federation.alpha`` apply unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fedleak.simulator.data.datasets import (
    ArrayDataset,
    DatasetSplits,
    DatasetUnavailableError,
    as_splits,
)

__all__ = ["federated_dataset", "load_huggingface"]


def federated_dataset(path: str, data_dir: Path, split: str, subset: str | None = None) -> Any:
    """A ``FederatedDataset`` over ``path`` (see module docstring) with one partition of
    ``split``: fedleak does the partitioning itself."""
    from flwr_datasets import FederatedDataset

    local = Path(path).expanduser()
    kwargs: dict[str, Any] = {}
    if "*" in path or local.suffix == ".parquet":
        dataset, kwargs["data_files"] = "parquet", {split: str(local)}
    elif local.is_dir():
        dataset = str(local.resolve())
    else:
        dataset, kwargs["cache_dir"] = path, str(Path(data_dir) / "huggingface")
    return FederatedDataset(
        dataset=dataset, subset=subset, partitioners={split: 1}, shuffle=False, **kwargs
    )


def _to_images(values: list[Any]) -> np.ndarray:
    """Decoded images (PIL) or arrays -> float32 ``(N, C, H, W)`` in [0, 1]."""
    array = np.stack([np.asarray(v) for v in values]).astype(np.float32)
    if array.ndim == 3:  # (N, H, W) grayscale
        array = array[:, None]
    elif array.ndim == 4 and array.shape[-1] in (1, 3, 4) and array.shape[1] not in (1, 3, 4):
        array = array.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    if array.size and array.max() > 1.0:  # 8-bit pixels
        array /= 255.0
    return np.ascontiguousarray(array)


def _image_column(split: Any, label_column: str) -> str:
    """The first column holding images, else the first that is not the label."""
    import datasets

    columns = [c for c in split.column_names if c != label_column]
    images = [c for c in columns if isinstance(split.features[c], datasets.Image)]
    if not (images or columns):
        raise ValueError(f"the data set has no column besides {label_column!r}")
    return (images or columns)[0]


def _num_classes(split: Any, label_column: str, labels: list[np.ndarray]) -> int:
    import datasets

    feature = split.features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        return int(feature.num_classes)
    return int(max(int(y.max()) for y in labels if y.size)) + 1


def load_huggingface(
    data_dir: Path,
    seed: int,
    test_fraction: float,
    *,
    path: str,
    image_column: str | None = None,
    label_column: str = "label",
    train_split: str = "train",
    test_split: str = "test",
    subset: str | None = None,
) -> DatasetSplits:
    """Load ``path``'s ``train_split`` (and ``test_split`` where it has one) as arrays.

    Without a ``test_split`` the train split is divided (stratified, ``seed``,
    ``test_fraction``).

    Raises
    ------
    DatasetUnavailableError
        When the data cannot be read: no such local files, or a hub name offline.
    """
    fds = federated_dataset(path, data_dir, train_split, subset)
    try:
        train = fds.load_split(train_split)
    except Exception as exc:  # datasets raises many kinds: missing files, no network, ...
        raise DatasetUnavailableError(
            f"dataset.args.path={path!r}: no split {train_split!r} could be read "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). Give a "
            "local directory or parquet files offline; hub names need a network the first time"
        ) from exc
    column = image_column or _image_column(train, label_column)
    splits = [train]
    if _has_split(fds, test_split):
        splits.append(fds.load_split(test_split))
    labels = [np.asarray(s[label_column], dtype=np.int64) for s in splits]
    inputs = [_to_images(s[column]) for s in splits]
    name = f"huggingface:{path}"
    classes = _num_classes(train, label_column, labels)
    if len(splits) == 1:
        return as_splits((inputs[0], labels[0]), name, seed, test_fraction, classes)
    return DatasetSplits(
        train=ArrayDataset(inputs[0], labels[0], classes, name),
        test=ArrayDataset(inputs[1], labels[1], classes, name),
    )


def _has_split(fds: Any, split: str) -> bool:
    try:
        fds.load_split(split)
    except ValueError:
        return False
    return True
