"""The accepted values of every enumerated config key, read from the registries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, get_args

from fedleak.attacks.name_table import Registry
from fedleak.attacks.types import LossName, TrainingMode

BatchLabels = Literal["random", "equal"]
"""``federation.batch_labels``."""
QueuePolicy = Literal["wait", "skip"]
"""``pool.when_full``."""
Device = Literal["auto", "cpu", "cuda"]
"""``device``."""

# the closed sets, read from the Literal types the config schema is annotated with
MODES: tuple[str, ...] = get_args(TrainingMode)
LOSSES: tuple[str, ...] = get_args(LossName)
BATCH_LABELS: tuple[str, ...] = get_args(BatchLabels)
QUEUE_POLICIES: tuple[str, ...] = get_args(QueuePolicy)
DEVICES: tuple[str, ...] = get_args(Device)


POOL_BACKENDS: Registry[str | Callable[..., Any]] = Registry("pool backend")
"""Attack-pool backends: name -> the factory ``factory(PoolConfig) -> AttackPool``, or its
import path. fedleak's own are import paths, so that the config layer knows their names
without importing the server (:func:`fedleak.server.pool.create_pool` imports the one a run
uses)."""
POOL_BACKENDS.register("ray", "fedleak.server.pool.ray_pool:RayAttackPool")
POOL_BACKENDS.register("inprocess", "fedleak.server.pool.inprocess:InProcessAttackPool")


def accepted_pool_backends() -> list[str]:
    """Registered attack-pool backends."""
    return POOL_BACKENDS.names()


def accepted_efforts() -> list[str]:
    """Accepted values of ``attack.effort`` (the attacks' budget levels)."""
    from fedleak.attacks.base import EFFORT_SCALES

    return list(EFFORT_SCALES)


def accepted_datasets() -> list[str]:
    """Registered data set names."""
    from fedleak.simulator.data.datasets import available_datasets

    return available_datasets()


def accepted_models() -> list[str]:
    """Registered model names."""
    from fedleak.simulator.models.architectures import available_models

    return available_models()


def accepted_activations() -> list[str]:
    """Activation names models accept."""
    from fedleak.simulator.models.architectures import available_activations

    return available_activations()


def accepted_inits() -> list[str]:
    """Weight initialisations models accept."""
    from fedleak.simulator.models.architectures import available_inits

    return available_inits()


def accepted_stems() -> list[str]:
    """Input stems ``resnet18`` accepts (``model.stem``)."""
    from fedleak.simulator.models.architectures import STEMS

    return list(STEMS)


def accepted_partitioners() -> list[str]:
    """Registered partitioning schemes."""
    from fedleak.simulator.data.partitioning import available_schemes

    return available_schemes()


def accepted_attacks() -> list[str]:
    """Registered attack names."""
    from fedleak import attacks

    return attacks.available_attacks()


def attack_requirements(name: str) -> frozenset[str]:
    """The disclosures attack ``name`` requires, as plain strings."""
    from fedleak.attacks.registry import attack_class

    return frozenset(str(d) for d in attack_class(name).requires)
