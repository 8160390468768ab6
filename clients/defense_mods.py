"""Client-side defenses as Flower mods, chosen per run from the experiment's defense config.

A ClientApp's mods are fixed when it is created, but fedleak's defenses travel with each
train message (in :class:`simulator.client_setup.ClientSetup`). :func:`defense_mod` is the
one mod installed on the ClientApp: it builds the run's chain (prune -> Flower's
``LocalDpMod`` -> quantize, innermost first) and passes the message through it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType
from flwr.clientapp.mod import LocalDpMod
from flwr.clientapp.typing import ClientAppCallable, Mod

from clients.seeding import client_stream, numpy_global_seed
from clients.update_defenses import dp_noise_epsilon, prune_smallest, quantize_stochastic
from simulator import record_keys as keys
from simulator.client_setup import ClientSetup
from simulator.config import DefenseConfig
from simulator.defenses import create_defense

DeltaTransform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _defense_rng(
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
        rng = _defense_rng(setup, msg, context, name)
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


def seeded_local_dp_mod(setup: ClientSetup, defense: DefenseConfig) -> Mod:
    """Flower's ``LocalDpMod`` with noise std ``noise * clip``, drawn from a seeded stream.

    ``LocalDpMod`` draws from numpy's global generator; the global state is set from the
    run's seed for the call and restored afterwards, so runs stay reproducible.
    """
    dp = defense.dp
    flower_mod = LocalDpMod(
        clipping_norm=dp.clip,
        sensitivity=dp.clip,
        epsilon=dp_noise_epsilon(dp.noise, dp.delta),
        delta=dp.delta,
    )

    def mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        seed = int(_defense_rng(setup, msg, context, "dp").integers(2**32))
        with numpy_global_seed(seed):
            return flower_mod(msg, context, call_next)

    return mod


def defense_chain(setup: ClientSetup) -> list[Mod]:
    """The run's update defenses as mods, outermost first (so prune acts first)."""
    defense = setup.defense_config()
    mods: list[Mod] = [  # registered defenses (simulator.defenses) act last
        update_mod(name, create_defense(name, settings), setup)
        for name, settings in reversed(defense.extra.items())
    ]
    if defense.quantize.enabled:
        bits = defense.quantize.bits
        mods.append(update_mod("quantize", lambda d, rng: quantize_stochastic(d, bits, rng), setup))
    if defense.dp.enabled:
        mods.append(seeded_local_dp_mod(setup, defense))
    if defense.prune.enabled:
        fraction = defense.prune.fraction
        mods.append(update_mod("prune", lambda d, _rng: prune_smallest(d, fraction), setup))
    return mods


def _chain(call_next: ClientAppCallable, mods: list[Mod]) -> ClientAppCallable:
    def wrap(inner: ClientAppCallable, mod: Mod) -> ClientAppCallable:
        return lambda msg, context: mod(msg, context, inner)

    return functools.reduce(wrap, reversed(mods), call_next)


def defense_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """The ClientApp's mod: route a train message through the run's defense chain."""
    if msg.metadata.message_type != MessageType.TRAIN or keys.CONFIG not in msg.content:
        return call_next(msg, context)
    config: ConfigRecord = msg.content[keys.CONFIG]  # type: ignore[assignment]
    if keys.CLIENT_SETUP not in config:
        return call_next(msg, context)
    setup = ClientSetup.from_json(str(config[keys.CLIENT_SETUP]))
    return _chain(call_next, defense_chain(setup))(msg, context)
