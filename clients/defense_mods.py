"""Client-side defenses as Flower mods, chosen per run from the experiment's defense config.

A ClientApp's mods are fixed when it is created, but fedleak's defenses travel with each
train message (in :class:`fedleak.simulator.config.client_setup.ClientSetup`). :func:`defense_mod`
is the one mod installed on the ClientApp: it builds the run's chain (fedleak's own defenses of
:mod:`fedleak.clients.defenses` in the order prune -> dp -> quantize, then the registered ones of
:mod:`fedleak.simulator.defenses`, innermost first) and passes the message through it.
"""

from __future__ import annotations

import functools

from flwr.app import ConfigRecord, Context, Message, MessageType
from flwr.clientapp.typing import ClientAppCallable, Mod

from fedleak.clients.defenses import CLIENT_DEFENSES, update_mod
from fedleak.simulator import record_keys as keys
from fedleak.simulator.config.client_setup import ClientSetup
from fedleak.simulator.defenses import create_defense


def defense_chain(setup: ClientSetup) -> list[Mod]:
    """The run's update defenses as mods, outermost first (so the first applied is last)."""
    defense = setup.defense_config()
    applied = [
        CLIENT_DEFENSES.get(name)().mod(setup, defense)
        if name in CLIENT_DEFENSES
        else update_mod(name, create_defense(name, defense.extra[name]), setup)
        for name in defense.active()
        if name != "secagg"  # SecAgg+ is a mod of its own (fedleak.clients.secagg_mods), outermost
    ]
    return applied[::-1]


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
