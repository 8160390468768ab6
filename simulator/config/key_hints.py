"""'Did you mean' for unknown config keys, from the keys the experiment schema accepts."""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Iterable

OPEN_MAPPINGS = ("attack.params",)
"""Keys whose entries are free-form (each attack's settings): new entries need ``+``."""


def schema_keys(schema: type, prefix: str = "") -> list[str]:
    """Every dotted key of a dataclass schema: groups and their leaves, sorted."""
    keys: list[str] = []
    hints = typing.get_type_hints(schema)
    for field in dataclasses.fields(schema):
        key = f"{prefix}{field.name}"
        keys.append(key)
        if dataclasses.is_dataclass(hints[field.name]):
            keys.extend(schema_keys(hints[field.name], f"{key}."))
    return sorted(keys)


def suggest(key: str, accepted: Iterable[str]) -> list[str]:
    """Up to three accepted keys close to ``key``: its siblings first, then any dotted key.

    A typo in the last part (``federation.round``) is matched among the keys of the same
    group; a typo in the group (``federaton.rounds``) against every key, more strictly.
    """
    accepted = list(accepted)
    parent, _, leaf = key.rpartition(".")
    siblings = {k.rpartition(".")[2]: k for k in accepted if k.rpartition(".")[0] == parent}
    close = difflib.get_close_matches(leaf, list(siblings), n=3, cutoff=0.6)
    if close:
        return [siblings[m] for m in close]
    return difflib.get_close_matches(key, accepted, n=3, cutoff=0.8)


def unknown_key_message(key: str, accepted: Iterable[str]) -> str:
    """``federation.round: unknown key; did you mean 'federation.rounds'? ...``.

    The keys listed are the accepted ones beside the unknown key (same parent).
    """
    accepted = sorted(accepted)
    parent = key.rpartition(".")[0]
    if any(parent == open_key or parent.startswith(f"{open_key}.") for open_key in OPEN_MAPPINGS):
        return (
            f"{key}: not in the preset; attack settings are free-form entries, add it with "
            f"'+{key}=...' (the attack's own check then lists its accepted settings)"
        )
    siblings = [k.rpartition(".")[2] for k in accepted if k.rpartition(".")[0] == parent]
    where = f"of {parent}" if parent else "at the top level"
    if not siblings:  # the group itself is unknown
        siblings, where = [k for k in accepted if "." not in k], "at the top level"
    close = suggest(key, accepted)
    hint = f"did you mean {' or '.join(repr(k) for k in close)}? " if close else ""
    return f"{key}: unknown key; {hint}accepted keys {where}: {siblings}"
