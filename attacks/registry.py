"""Name table of attacks (one rule, as Opacus' accountant registry): no if/elif factories.

Attacks of other installed packages join the table through the entry-point group
``fedleak.attacks``: a package declares in its ``pyproject.toml``

.. code-block:: toml

   [project.entry-points."fedleak.attacks"]
   my_attack = "my_pkg.attack:MyAttack"

and :class:`MyAttack` (an :class:`~attacks.base.Attack` subclass) is registered as
``my_attack`` on the table's first lookup in each process, attack workers included: they
look attacks up by name, so no module of theirs has to import the package. An entry point
may also name a module whose import registers its attacks itself.
"""

from __future__ import annotations

import threading
import types
import warnings
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from torch import nn

from attacks.base import Attack, config_from_mapping

ENTRY_POINT_GROUP = "fedleak.attacks"

_ATTACKS: dict[str, type[Attack]] = {}
_DISCOVERY = threading.RLock()  # re-entrant: a plug-in's import may look the table up
_discovered = False


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


def _register_entry_point(name: str, obj: Any) -> None:
    if isinstance(obj, types.ModuleType) or _ATTACKS.get(name) is obj:
        return  # a module that registered its attacks on import, or did so for this one
    if not (isinstance(obj, type) and issubclass(obj, Attack)):
        raise TypeError(f"{obj!r} is not an Attack subclass")
    register_attack(name, obj)


def discover_attacks() -> None:
    """Register the attacks of installed packages (group ``fedleak.attacks``), once.

    One that fails to load, or whose name is taken, is skipped with a warning naming it.
    """
    global _discovered
    with _DISCOVERY:
        if _discovered:
            return
        _discovered = True
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            try:
                _register_entry_point(entry.name, entry.load())
            except Exception as exc:  # a broken plug-in is reported, never fatal
                warnings.warn(
                    f"fedleak: skipped attack entry point {entry.name!r} = {entry.value!r}: "
                    f"{type(exc).__name__}: {exc}",
                    RuntimeWarning,
                    stacklevel=2,
                )


def available_attacks() -> list[str]:
    """Names of the registered attacks (installed plug-ins included), sorted."""
    discover_attacks()
    return sorted(_ATTACKS)


def attack_class(name: str) -> type[Attack]:
    """Return the class registered as ``name``.

    Raises
    ------
    ValueError
        If ``name`` is unknown; the message lists :func:`available_attacks`.
    """
    discover_attacks()
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


def resolve_attack_names(
    names: list[str],
    fallback: list[str],
    model: nn.Module,
    input_shape: tuple[int, ...],
    num_classes: int,
) -> tuple[list[str], str | None]:
    """The attacks a run puts on every update, and a notice when the fallback joined them.

    When every attack of ``names`` can never apply to the architecture (each one's
    :meth:`~attacks.base.Attack.architecture_reason`, e.g. the analytic attack on a model
    whose first layer is a convolution), those attacks would record only ``not_applicable``
    and the run would measure no leakage at all; the ``fallback`` attacks then run beside
    them (their rows say the reason). Otherwise ``names`` is returned unchanged.

    Parameters
    ----------
    names : list[str]
        The attacks asked for (``attack.names``).
    fallback : list[str]
        Attacks to add when none of ``names`` can apply (``attack.fallback``).
    model : nn.Module
        The global model's architecture.
    input_shape : tuple[int, ...]
        One sample's shape.
    num_classes : int
        Classes of the task.
    """
    extra = [name for name in fallback if name not in names]
    if not names or not extra:
        return list(names), None
    reasons = {
        name: create_attack(name).architecture_reason(model, input_shape, num_classes)
        for name in names
    }
    if any(reason is None for reason in reasons.values()):
        return list(names), None
    why = "; ".join(f"{name}: {reason}" for name, reason in reasons.items())
    notice = (
        f"attack.names {list(names)} cannot attack this model ({why}); "
        f"attack.fallback {extra} runs on every attacked update instead "
        "(attack.fallback=[] turns this off)"
    )
    return [*names, *extra], notice
