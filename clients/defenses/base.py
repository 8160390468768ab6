"""The client-side defense type, its registry, and the mod that applies a transform.

A defense is a :class:`ClientDefense` subclass in a file of its own, registered under the
name of its settings in :class:`fedleak.simulator.config.schema.DefenseConfig` (``prune``, ``dp``,
``quantize``); :func:`fedleak.clients.defense_mods.defense_chain` builds the enabled ones, in the
order of :data:`fedleak.simulator.config.schema.UPDATE_DEFENSES`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message
from flwr.clientapp.typing import ClientAppCallable, Mod

from fedleak.attacks.name_table import Registry
from fedleak.clients.seeding import client_stream
from fedleak.simulator import record_keys as keys
from fedleak.simulator.config.client_setup import ClientSetup
from fedleak.simulator.config.schema import DefenseConfig

DeltaTransform = Callable[[np.ndarray, np.random.Generator], np.ndarray]
"""``transform(delta, rng) -> delta`` on one tensor of the update."""


class ClientDefense(ABC):
    """One of fedleak's own update defenses, applied by the client as a Flower mod."""

    name: ClassVar[str]
    """The registry name, also the attribute of :class:`DefenseConfig` holding the settings."""

    def enabled(self, defense: DefenseConfig) -> bool:
        """Whether the run's defense config switches this defense on."""
        return bool(getattr(defense, self.name).enabled)

    @abstractmethod
    def mod(self, setup: ClientSetup, defense: DefenseConfig) -> Mod:
        """The Flower mod that applies this defense with the run's settings."""


CLIENT_DEFENSES: Registry[type[ClientDefense]] = Registry("client defense")
"""fedleak's own update defenses: name -> :class:`ClientDefense` subclass."""


def register_client_defense(cls: type[ClientDefense]) -> type[ClientDefense]:
    """Class decorator: register ``cls`` under ``cls.name``."""
    return CLIENT_DEFENSES.register(cls.name, cls)


def defense_rng(
    setup: ClientSetup, msg: Message, context: Context, name: str
) -> np.random.Generator:
    """Independent, reproducible stream per (seed, round, partition, defense)."""
    config: ConfigRecord = msg.content[keys.CONFIG]  # type: ignore[assignment]
    server_round = int(config[keys.SERVER_ROUND])  # type: ignore[arg-type]
    partition = int(context.node_config.get(keys.PARTITION_ID, 0))
    return client_stream(setup.seed, server_round, partition, name)


def _only_arrays(msg: Message) -> tuple[str, ArrayRecord]:
    records = msg.content.array_records
    if len(records) != 1:
        raise ValueError(f"a defense mod needs exactly one ArrayRecord, got {sorted(records)}")
    return next(iter(records.items()))


def update_mod(name: str, transform: DeltaTransform, setup: ClientSetup) -> Mod:
    """A mod applying ``transform`` to every float tensor of ``reply - sent`` (the update).

    Integer buffers (e.g. BatchNorm's step counter) pass through unchanged.
    """

    def mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        _, sent = _only_arrays(msg)
        reply = call_next(msg, context)
        if reply.has_error():
            return reply
        key, record = _only_arrays(reply)
        rng = defense_rng(setup, msg, context, name)
        arrays: dict[str, Array] = {}
        for name_, array in record.items():
            new = array.numpy()
            if np.issubdtype(new.dtype, np.floating):
                old = sent[name_].numpy()
                new = (old + transform(new - old, rng)).astype(new.dtype)
            arrays[name_] = Array(np.ascontiguousarray(new))
        reply.content[key] = ArrayRecord(arrays)
        return reply

    return mod
