"""ResNet-18's stems, and the start-up check that every client's smallest batch can train."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from fedleak.simulator.config.schema import (
    ConfigError,
    DatasetConfig,
    ExperimentConfig,
    FederationConfig,
    ModelConfig,
)
from fedleak.simulator.models.architectures import (
    ModelSpec,
    build_model,
    resolved_stem,
    training_batch_problem,
)
from fedleak.simulator.runtime.trainability import check_model_trains, smallest_client_batch


@pytest.mark.parametrize(
    ("shape", "stem"), [((3, 32, 32), "cifar"), ((1, 25, 25), "cifar"), ((3, 64, 64), "imagenet")]
)
def test_auto_stem_is_the_cifar_stem_for_small_inputs(shape: tuple[int, ...], stem: str) -> None:
    spec = ModelSpec("resnet18", shape, 10)
    assert resolved_stem(spec) == stem
    model = build_model(spec, seed=0)
    assert isinstance(model.conv1, nn.Conv2d)
    assert model.conv1.kernel_size == ((3, 3) if stem == "cifar" else (7, 7))
    assert isinstance(model.maxpool, nn.Identity) == (stem == "cifar")
    assert model(torch.rand(2, *shape)).shape == (2, 10)


def test_one_sample_trains_with_the_cifar_stem_but_not_the_imagenet_stem() -> None:
    cifar = ModelSpec("resnet18", (3, 32, 32), 10, stem="cifar")
    imagenet = dataclasses.replace(cifar, stem="imagenet")
    assert training_batch_problem(cifar, 1) is None
    problem = training_batch_problem(imagenet, 1)
    assert problem is not None and "more than 1 value per channel" in problem
    assert training_batch_problem(imagenet, 2) is None


def test_erroneous_stem_names_the_accepted_values() -> None:
    with pytest.raises(ValueError, match="accepted values"):
        build_model(ModelSpec("resnet18", (3, 32, 32), 10, stem="tiny"))
    with pytest.raises(ValueError, match="has no stem setting"):
        build_model(ModelSpec("mlp", (1, 8, 8), 10, stem="cifar"))


def _cfg(**federation: object) -> ExperimentConfig:
    return dataclasses.replace(ExperimentConfig(), federation=FederationConfig(**federation))  # type: ignore[arg-type]


def test_smallest_client_batch_follows_the_clients_batching_rules() -> None:
    parts = [np.zeros(9, dtype=np.int64), np.arange(12) % 3]
    assert smallest_client_batch(_cfg(batch_size=4), parts) == 4
    assert smallest_client_batch(_cfg(batch_size=10), parts) == 9  # a partition caps it
    # FedAvg epochs: 9 samples in batches of 4 leave a last batch of 1
    assert smallest_client_batch(_cfg(mode="fedavg", batch_size=4), parts) == 1
    assert smallest_client_batch(_cfg(mode="fedavg", batch_size=4, local_steps=2), parts) == 4
    # equal-label batches: label counts 4, 4, 4 in batches of 3 leave one sample each
    equal = _cfg(mode="fedavg", batch_size=3, batch_labels="equal")
    assert smallest_client_batch(equal, parts[1:]) == 1


def test_erroneous_resnet18_on_8x8_digits_at_batch_1_stops_before_the_run() -> None:
    cfg = dataclasses.replace(
        ExperimentConfig(),
        dataset=DatasetConfig(name="digits"),
        model=ModelConfig(name="resnet18"),
        federation=FederationConfig(batch_size=1),
    )
    with pytest.raises(ConfigError) as info:
        check_model_trains(cfg)
    message = str(info.value)
    for key in ("model.name=resnet18", "dataset.name=digits", "federation.batch_size=1"):
        assert key in message
    check_model_trains(dataclasses.replace(cfg, federation=FederationConfig(batch_size=2)))


def test_resnet18_on_lfw_trains_at_batch_1_with_the_auto_stem_only() -> None:
    cfg = dataclasses.replace(
        ExperimentConfig(),
        dataset=DatasetConfig(name="lfw"),
        model=ModelConfig(name="resnet18"),
        federation=FederationConfig(batch_size=1),
    )
    check_model_trains(cfg)
    imagenet = dataclasses.replace(cfg, model=ModelConfig(name="resnet18", stem="imagenet"))
    with pytest.raises(ConfigError, match=r"model\.stem=cifar"):
        check_model_trains(imagenet)
