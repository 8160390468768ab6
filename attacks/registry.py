"""Name table of attacks (one rule, as Opacus' accountant registry): no if/elif factories.

Attacks of other installed packages join the table through the entry-point group
``fedleak.attacks``: a package declares in its ``pyproject.toml``

.. code-block:: toml

   [project.entry-points."fedleak.attacks"]
   my_attack = "my_pkg.attack:MyAttack"

and :class:`MyAttack` (an :class:`~fedleak.attacks.base.Attack` subclass) is registered as
``my_attack`` on the table's first lookup in each process, attack workers included: they
look attacks up by name, so no module of theirs has to import the package. An entry point
may also name a module whose import registers its attacks itself. The table is a
:class:`~fedleak.attacks.name_table.Registry`, the one registry type of fedleak.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from fedleak.attacks.base import Attack, config_from_mapping
from fedleak.attacks.name_table import Registry

ENTRY_POINT_GROUP = "fedleak.attacks"


def _from_entry_point(name: str, obj: Any) -> type[Attack] | None:
    if isinstance(obj, types.ModuleType) or ATTACKS._items.get(name) is obj:
        return None  # a module that registered its attacks on import, or did so for this one
    if not (isinstance(obj, type) and issubclass(obj, Attack)):
        raise TypeError(f"{obj!r} is not an Attack subclass")
    return obj


ATTACKS: Registry[type[Attack]] = Registry(
    "attack", entry_point_group=ENTRY_POINT_GROUP, from_entry_point=_from_entry_point
)
"""The attack table: name -> :class:`~fedleak.attacks.base.Attack` subclass."""


def register_attack(name: str | type[Attack], cls: type[Attack] | None = None) -> type[Attack]:
    """Register an attack class: ``register_attack(MyAttack)`` under ``MyAttack.name``, or
    ``register_attack("name", MyAttack)`` under another name.

    Raises
    ------
    ValueError
        If the name is already registered.
    """
    if isinstance(name, type):
        return ATTACKS.register(name.name, name)
    if cls is None:
        raise TypeError("register_attack(name, cls) needs the class")
    return ATTACKS.register(name, cls)


def discover_attacks() -> None:
    """Register the attacks of installed packages (group ``fedleak.attacks``), once.

    One that fails to load, or whose name is taken, is skipped with a warning naming it.
    """
    ATTACKS.discover()


def available_attacks() -> list[str]:
    """Names of the registered attacks (installed plug-ins included), sorted."""
    return ATTACKS.names()


def attack_class(name: str) -> type[Attack]:
    """Return the class registered as ``name``.

    Raises
    ------
    ValueError
        If ``name`` is unknown; the message lists :func:`available_attacks`.
    """
    return ATTACKS.get(name)


def create_attack(name: str, params: Mapping[str, Any] | None = None) -> Attack:
    """Instantiate the attack ``name`` with settings ``params`` (validated by its config class)."""
    cls = attack_class(name)
    return cls(config_from_mapping(cls.config_class, params or {}))


def resolve_attack_names(
    names: list[str],
    fallback: list[str],
    architecture: Callable[[], nn.Module],
    input_shape: tuple[int, ...],
    num_classes: int,
) -> tuple[list[str], str | None]:
    """The attacks a run puts on every update, and a notice when the fallback joined them.

    When every attack of ``names`` can never apply to the architecture (each one's
    :meth:`~fedleak.attacks.base.Attack.architecture_reason`, e.g. the analytic attack on a model
    whose first layer is a convolution), those attacks would record only ``not_applicable``
    and the run would measure no leakage at all; the ``fallback`` attacks then run beside
    them (their rows say the reason). Otherwise ``names`` is returned unchanged.

    Parameters
    ----------
    names : list[str]
        The attacks asked for (``attack.names``).
    fallback : list[str]
        Attacks to add when none of ``names`` can apply (``attack.fallback``).
    architecture : Callable[[], nn.Module]
        Builds the global model's architecture; called only when a fallback could join.
    input_shape : tuple[int, ...]
        One sample's shape.
    num_classes : int
        Classes of the task.
    """
    extra = [name for name in fallback if name not in names]
    if not names or not extra:
        return list(names), None
    model = architecture()
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
