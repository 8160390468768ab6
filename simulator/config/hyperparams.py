"""The training recipe as the server writes it into, and a client reads it from, a ConfigRecord."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from fedleak.attacks.types import LossName, TrainingHyperparams, TrainingMode
from fedleak.simulator import record_keys as keys
from fedleak.simulator.config.schema import FederationConfig


def hyperparams_from_federation(fed: FederationConfig) -> TrainingHyperparams:
    """The recipe the server configures for every round of this federation."""
    steps = 1 if fed.mode == "fedsgd" else fed.local_steps or 0
    return TrainingHyperparams(
        mode=cast(TrainingMode, fed.mode),
        lr=fed.lr,
        batch_size=fed.batch_size,
        local_steps=steps,
        loss=cast(LossName, fed.loss),
        local_epochs=fed.local_epochs,
    )


def hyperparams_to_config(hp: TrainingHyperparams) -> dict[str, Any]:
    """ConfigRecord entries (scalars only) for ``hp``."""
    return {
        keys.MODE: hp.mode,
        keys.LR: float(hp.lr),
        keys.BATCH_SIZE: int(hp.batch_size),
        keys.LOCAL_STEPS: int(hp.local_steps),
        keys.LOCAL_EPOCHS: int(hp.local_epochs),
        keys.LOSS: hp.loss,
    }


def hyperparams_from_config(config: Mapping[str, Any]) -> TrainingHyperparams:
    """Inverse of :func:`hyperparams_to_config`.

    Raises
    ------
    KeyError
        Naming the missing entry when the ConfigRecord was not written by fedleak's server.
    """
    missing = [
        k
        for k in (keys.MODE, keys.LR, keys.BATCH_SIZE, keys.LOCAL_STEPS, keys.LOSS)
        if k not in config
    ]
    if missing:
        raise KeyError(f"train ConfigRecord lacks {missing}; is the ServerApp fedleak's?")
    return TrainingHyperparams(
        mode=cast(TrainingMode, str(config[keys.MODE])),
        lr=float(config[keys.LR]),
        batch_size=int(config[keys.BATCH_SIZE]),
        local_steps=int(config[keys.LOCAL_STEPS]),
        loss=cast(LossName, str(config[keys.LOSS])),
        local_epochs=int(config.get(keys.LOCAL_EPOCHS, 1)),
    )
