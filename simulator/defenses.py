"""Name table of update defenses that come from outside fedleak (one rule, no if/elif).

fedleak's own defenses (``dp``, ``prune``, ``quantize``, ``secagg`` and the training recipes
``mse_loss``, ``equal_labels``) are typed settings of
:class:`fedleak.simulator.config.schema.DefenseConfig`. Others are registered here, by
:func:`register_defense` or by an installed package's entry point in the group ``fedleak.defenses``,
and switched on per run with their settings: ``+defense.extra.NAME.SETTING=VALUE`` (or
``'+defense.extra.NAME={}'`` for the defaults).

A defense is a factory: ``factory(**settings)`` returns a transform
``transform(delta, rng) -> delta`` applied by the client to every float tensor of its update
``delta = client - global`` (numpy arrays; ``rng`` is a seeded ``numpy.random.Generator``),
after fedleak's own update defenses and before SecAgg+ masks what is left.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from fedleak.attacks.name_table import Registry

__all__ = [
    "DefenseFactory",
    "DeltaTransform",
    "available_defenses",
    "create_defense",
    "defense_factory",
    "register_defense",
]

DeltaTransform = Callable[[np.ndarray, np.random.Generator], np.ndarray]
"""``transform(delta, rng) -> delta`` on one tensor of the update."""
DefenseFactory = Callable[..., DeltaTransform]
"""``factory(**settings) -> DeltaTransform``."""

DEFENSES: Registry[DefenseFactory] = Registry(
    "defense",
    entry_point_group="fedleak.defenses",
    hint="(fedleak's own are the defense/ options: dp, prune, quantize, secagg, ...)",
)
"""The table of registered (not fedleak's own) defenses: name -> :data:`DefenseFactory`."""


def register_defense(name: str, factory: DefenseFactory) -> DefenseFactory:
    """Register ``factory`` under ``name``; a name can be registered once.

    Raises
    ------
    ValueError
        If ``name`` is already registered.
    """
    if not callable(factory):
        raise ValueError(f"defense {name!r}: a factory must be callable, got {factory!r}")
    return DEFENSES.register(name, factory)


def available_defenses() -> list[str]:
    """Names of the registered defenses (installed plug-ins included), sorted."""
    return DEFENSES.names()


def defense_factory(name: str) -> DefenseFactory:
    """The factory registered as ``name``.

    Raises
    ------
    ValueError
        If ``name`` is unknown; the message lists :func:`available_defenses`.
    """
    return DEFENSES.get(name)


def create_defense(name: str, settings: Mapping[str, Any] | None = None) -> DeltaTransform:
    """The transform of defense ``name`` with ``settings``.

    Raises
    ------
    ValueError
        If ``name`` is unknown, or the factory rejects the settings (named in the message).
    """
    factory = defense_factory(name)
    try:
        transform = factory(**dict(settings or {}))
    except (TypeError, ValueError) as exc:
        given = dict(settings or {})
        raise ValueError(f"defense {name!r} rejects settings {given}: {exc}") from None
    if not callable(transform):
        raise ValueError(f"defense {name!r}: its factory returned {transform!r}, not a function")
    return transform
