"""Your own models, data sets and defenses: by import path, or from installed packages.

Two conventions of the Python ecosystem, used by the registries of
:mod:`fedleak.simulator.models.architectures`, :mod:`fedleak.simulator.data.datasets` and
:mod:`fedleak.simulator.defenses` (and, on its own because it imports nothing of ours,
:mod:`fedleak.attacks.registry`):

- **import paths** (Hydra's ``_target_``): ``my_pkg.nets.MyNet`` or ``my_pkg.nets:MyNet``
  names an object that is imported where it is needed, in every process;
- **entry points**: an installed package declares, in its ``pyproject.toml``,

  .. code-block:: toml

     [project.entry-points."fedleak.models"]
     my_net = "my_pkg.nets:MyNet"

  and the registry of that group lists ``my_net`` beside fedleak's own entries. Discovery
  (:class:`fedleak.attacks.name_table.Registry`) runs lazily, once per process, on the registry's
  first lookup, so it happens in Ray workers and Flower's app processes as well as in the
  ``fedleak`` command.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from fedleak.attacks.name_table import Registry

__all__ = [
    "ENTRY_POINT_GROUPS",
    "call_with",
    "import_object",
    "is_import_path",
    "registered_or_imported",
]

T = TypeVar("T")

ENTRY_POINT_GROUPS = ("fedleak.attacks", "fedleak.models", "fedleak.datasets", "fedleak.defenses")
"""The entry-point groups fedleak reads (attacks are read by :mod:`fedleak.attacks.registry`)."""


def is_import_path(name: str) -> bool:
    """Whether ``name`` is an import path (``pkg.module.Name``, ``pkg.module:Name``)."""
    return ":" in name or "." in name.strip(".")


def import_object(path: str) -> Any:
    """The object at ``path``: ``pkg.module.Name`` or ``pkg.module:Name``.

    Raises
    ------
    ValueError
        When the module cannot be imported or has no such attribute; the message names both.
    """
    module_name, sep, attribute = path.partition(":")
    if not sep:
        module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        raise ValueError(f"{path!r} is not an import path like 'my_pkg.module.Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"cannot import {module_name!r} for {path!r} ({type(exc).__name__}: {exc}); "
            "install the package or put its directory on PYTHONPATH"
        ) from None
    obj = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{module_name!r} has no attribute {attribute!r} (from {path!r})")
        obj = getattr(obj, part)
    return obj


def call_with(fn: Callable[..., Any], args: Mapping[str, Any], offered: Mapping[str, Any]) -> Any:
    """``fn(**args, **extra)``: ``extra`` are the ``offered`` values ``fn`` takes by name.

    An entry of ``args`` wins over an offered value of the same name; a function with
    ``**kwargs`` takes every offered value.
    """
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature: no extra values
        parameters = {}  # type: ignore[assignment]
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    extra = {
        name: value
        for name, value in offered.items()
        if name not in args and (takes_all or name in parameters)
    }
    return fn(**dict(args), **extra)


def registered_or_imported(
    table: Registry[T], name: str, adapt: Callable[[Callable[..., Any]], T], what: str
) -> T:
    """The item registered as ``name`` in ``table``, or ``adapt(target)`` when ``name`` is the
    import path of a callable ``target`` (Hydra's ``_target_``).

    Raises
    ------
    ValueError
        If ``name`` is neither (the message lists the registered names), its import fails, or
        it names something that is not callable (the message says it should be ``what``).
    """
    if name in table or not is_import_path(name):
        return table.get(name)
    target = import_object(name)
    if not callable(target):
        raise ValueError(f"{table.kind} {name!r} is a {type(target).__name__}, not {what}")
    return adapt(target)
