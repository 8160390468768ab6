"""Data and model of an experiment, built the same way in every process."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from simulator.datasets import ArrayDataset, DatasetSplits, load_dataset
from simulator.models import ModelSpec, build_model
from simulator.partitioning import partition_indices


@lru_cache(maxsize=4)
def cached_splits(name: str, data_dir: str, seed: int, test_fraction: float) -> DatasetSplits:
    """Load a data set once per process (clients of one actor share it)."""
    return load_dataset(name, data_dir=Path(data_dir), seed=seed, test_fraction=test_fraction)


@lru_cache(maxsize=16)
def cached_partitions(
    name: str,
    data_dir: str,
    seed: int,
    test_fraction: float,
    num_partitions: int,
    scheme: str,
    alpha: float,
) -> tuple[np.ndarray, ...]:
    """Partition the training split once per process; deterministic for a seed."""
    train = cached_splits(name, data_dir, seed, test_fraction).train
    parts = partition_indices(train.labels, num_partitions, scheme=scheme, alpha=alpha, seed=seed)
    return tuple(parts)


def model_spec_for(
    model: str,
    dataset: ArrayDataset,
    *,
    width: int | None,
    activation: str | None,
    init: str,
    stem: str = "auto",
) -> ModelSpec:
    """The architecture for ``dataset``'s input shape and number of classes."""
    return ModelSpec(
        name=model,
        input_shape=tuple(int(s) for s in dataset.input_shape),
        num_classes=dataset.num_classes,
        activation=activation,
        init=init,
        width=width,
        stem=stem,
    )


def initial_model(spec: ModelSpec, seed: int, weights: str | None = None) -> nn.Module:
    """The global model of round 0: seeded, or loaded from a state-dict file.

    Raises
    ------
    ValueError
        When the file's parameters do not fit the architecture, naming the mismatch.
    """
    model = build_model(spec, seed=seed)
    if weights is not None:
        state = torch.load(Path(weights).expanduser(), map_location="cpu", weights_only=True)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise ValueError(
                f"model.weights {weights!r} does not fit model {spec.name!r}: {first}"
            ) from None
    return model
