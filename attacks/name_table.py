"""One registry type for every name table of fedleak (Opacus' accountant registry's rule).

A :class:`Registry` maps names to items (attack classes, model builders, data set loaders,
pool backends, defenses) with one rule: a name is registered once, and looking up an unknown
name raises a ``ValueError`` that lists the accepted names. A registry may read an
entry-point group of installed packages, lazily, once per process, on its first lookup:

.. code-block:: toml

   [project.entry-points."fedleak.attacks"]
   my_attack = "my_pkg.attack:MyAttack"

The type lives in :mod:`attacks` because that is the bottom layer (it imports nothing of
fedleak's); the tables above it (``simulator``, ``server``, ``clients``) import it from here.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Names to items, each name registered once.

    Parameters
    ----------
    kind : str
        What the items are, for messages: ``"attack"``, ``"pool backend"``, ...
    entry_point_group : str, optional
        The entry-point group whose entries join the table on the first lookup.
    from_entry_point : callable, optional
        ``from_entry_point(name, loaded_object)`` -> the item to register, or ``None`` when
        the object registered itself (a module whose import does). Defaults to the object.
    hint : str
        Appended to the message of an unknown name (e.g. where else names come from).
    """

    def __init__(
        self,
        kind: str,
        *,
        entry_point_group: str | None = None,
        from_entry_point: Callable[[str, Any], T | None] | None = None,
        hint: str = "",
    ) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._from_entry_point = from_entry_point
        self._hint = hint
        self._items: dict[str, T] = {}
        self._lock = threading.RLock()  # re-entrant: a plug-in's import may look the table up
        self._discovered = entry_point_group is None

    def register(self, name: str, item: T) -> T:
        """Register ``item`` under ``name``; returns ``item``.

        Raises
        ------
        ValueError
            If ``name`` is already registered.
        """
        if name in self._items:
            held = getattr(self._items[name], "__name__", None)
            raise ValueError(
                f"{self.kind} {name!r} is already registered" + (f" ({held})" if held else "")
            )
        self._items[name] = item
        return item

    def discover(self) -> None:
        """Register the entry points of :attr:`entry_point_group`, once per process.

        One that fails to load, or whose name is taken, is skipped with a warning naming it:
        one broken package must not stop fedleak.
        """
        with self._lock:
            if self._discovered:
                return
            self._discovered = True
            for entry in entry_points(group=str(self.entry_point_group)):
                try:
                    loaded = entry.load()
                    item = (
                        self._from_entry_point(entry.name, loaded)
                        if self._from_entry_point
                        else loaded
                    )
                    if item is not None:
                        self.register(entry.name, item)
                except Exception as exc:  # a broken plug-in is reported, never fatal
                    warnings.warn(
                        f"fedleak: skipped entry point {entry.name!r} = {entry.value!r} of group "
                        f"{self.entry_point_group!r}: {type(exc).__name__}: {exc}",
                        RuntimeWarning,
                        stacklevel=3,
                    )

    def names(self) -> list[str]:
        """The registered names (installed plug-ins included), sorted."""
        self.discover()
        return sorted(self._items)

    def get(self, name: str) -> T:
        """The item registered as ``name``.

        Raises
        ------
        ValueError
            If ``name`` is unknown; the message lists :meth:`names`.
        """
        self.discover()
        try:
            return self._items[name]
        except KeyError:
            hint = f" {self._hint}" if self._hint else ""
            raise ValueError(
                f"unknown {self.kind} {name!r}; available: {self.names()}{hint}"
            ) from None

    def __contains__(self, name: object) -> bool:
        self.discover()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        """``(name, item)`` pairs, by name."""
        return [(name, self._items[name]) for name in self.names()]

    def copy(self) -> Registry[T]:
        """An independent table with the same entries (tests register into a copy)."""
        self.discover()
        twin: Registry[T] = Registry(self.kind, hint=self._hint)
        twin._items = dict(self._items)
        return twin
