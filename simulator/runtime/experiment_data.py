"""Data and model of an experiment, built the same way in every process."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from fedleak.attacks.registry import resolve_attack_names
from fedleak.simulator.data.datasets import ArrayDataset, DatasetSplits, load_dataset
from fedleak.simulator.data.partitioning import partition_indices
from fedleak.simulator.models.architectures import ModelSpec, build_model

if TYPE_CHECKING:
    from fedleak.simulator.config.schema import ExperimentConfig


def args_key(args: dict[str, Any] | None) -> str:
    """A data set's ``args`` as a cache key (canonical JSON)."""
    return json.dumps(args or {}, sort_keys=True)


@lru_cache(maxsize=4)
def cached_splits(
    name: str, data_dir: str, seed: int, test_fraction: float, args_json: str = "{}"
) -> DatasetSplits:
    """Load a data set once per process (clients of one actor share it).

    ``args_json`` is the data set's ``args`` as :func:`args_key` writes them.
    """
    return load_dataset(
        name,
        data_dir=Path(data_dir),
        seed=seed,
        test_fraction=test_fraction,
        args=json.loads(args_json),
    )


def experiment_splits(cfg: ExperimentConfig) -> DatasetSplits:
    """The train and test splits of ``cfg``'s data set (cached per process)."""
    data = cfg.dataset
    return cached_splits(
        data.name, data.data_dir, cfg.seed, data.test_fraction, args_key(data.args)
    )


def experiment_spec(cfg: ExperimentConfig, splits: DatasetSplits) -> ModelSpec:
    """The architecture of ``cfg`` sized for its data set."""
    model = cfg.model
    return model_spec_for(
        model.name,
        splits.train,
        width=model.width,
        activation=model.activation,
        init=model.init,
        stem=model.stem,
        args=model.args,
    )


@lru_cache(maxsize=16)
def cached_partitions(
    name: str,
    data_dir: str,
    seed: int,
    test_fraction: float,
    num_partitions: int,
    scheme: str,
    alpha: float,
    args_json: str = "{}",
) -> tuple[np.ndarray, ...]:
    """Partition the training split once per process; deterministic for a seed."""
    train = cached_splits(name, data_dir, seed, test_fraction, args_json).train
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
    args: dict[str, Any] | None = None,
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
        args=dict(args or {}),
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


def attack_names(cfg: ExperimentConfig, spec: ModelSpec) -> tuple[list[str], str | None]:
    """``attack.names``, with ``attack.fallback`` added when none of them fits the model.

    Returns the attacks of every attacked update and the notice that says why the fallback
    joined them (``None`` when it did not); see
    :func:`fedleak.attacks.registry.resolve_attack_names`.
    """
    return resolve_attack_names(
        list(cfg.attack.names),
        list(cfg.attack.fallback),
        lambda: build_model(spec, seed=cfg.seed),
        spec.input_shape,
        spec.num_classes,
    )
