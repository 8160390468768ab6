"""Name table of attacks (one rule, as Opacus' accountant registry): no if/elif factories."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attacks.base import Attack, config_from_mapping

_ATTACKS: dict[str, type[Attack]] = {}


def register_attack(name: str, cls: type[Attack]) -> type[Attack]:
    """Register ``cls`` under ``name``; a name can be registered once.

    Raises
    ------
    ValueError
        If ``name`` is already registered.
    """
    if name in _ATTACKS:
        raise ValueError(f"attack {name!r} is already registered ({_ATTACKS[name].__name__})")
    _ATTACKS[name] = cls
    return cls


def available_attacks() -> list[str]:
    """Names of the registered attacks, sorted."""
    return sorted(_ATTACKS)


def attack_class(name: str) -> type[Attack]:
    """Return the class registered as ``name``.

    Raises
    ------
    ValueError
        If ``name`` is unknown; the message lists :func:`available_attacks`.
    """
    try:
        return _ATTACKS[name]
    except KeyError:
        raise ValueError(
            f"unknown attack {name!r}; available attacks: {available_attacks()}"
        ) from None


def create_attack(name: str, params: Mapping[str, Any] | None = None) -> Attack:
    """Instantiate the attack ``name`` with settings ``params`` (validated by its config class)."""
    cls = attack_class(name)
    return cls(config_from_mapping(cls.config_class, params or {}))
