"""Run names that say what an experiment changes: ``lenet-lfw-dp0.1`` rather than ``default``.

A run that does not choose its ``name`` is named from the settings where it differs from
the default experiment, each written as one short part, in the order of :data:`NAME_PARTS`
(what is trained, on what, under which defense, how, attacked by what, with which seed).
A run equal to the default keeps the name ``default``; ``name=...`` always wins.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_NAME = "default"
MAX_NAME_LENGTH = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]+")


def _get(config: Mapping[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class NamePart:
    """One part of a run name: ``label(config)``, or ``None`` where it says nothing.

    The part is used when its label differs from the default experiment's label.
    """

    label: Callable[[Mapping[str, Any]], str | None]


def _value(key: str, template: str = "{}") -> NamePart:
    def label(config: Mapping[str, Any]) -> str | None:
        value = _get(config, key)
        if value is None:
            return None
        if isinstance(value, list):
            return template.format("+".join(str(v) for v in value)) if value else None
        return template.format(_number(value))

    return NamePart(label)


def _defense(key: str, template: str, setting: str | None) -> NamePart:
    def label(config: Mapping[str, Any]) -> str | None:
        settings = _get(config, f"defense.{key}")
        if not isinstance(settings, Mapping) or settings.get("enabled") is not True:
            return None
        return template.format(_number(settings.get(setting)) if setting else "")

    return NamePart(label)


def _extra_defenses(config: Mapping[str, Any]) -> str | None:
    """Registered defenses (``defense.extra``) by name: on by being listed."""
    extra = _get(config, "defense.extra")
    return "+".join(sorted(extra)) if isinstance(extra, Mapping) and extra else None


def _partitioner(config: Mapping[str, Any]) -> str | None:
    scheme = _get(config, "federation.partitioner")
    if scheme == "dirichlet":
        return f"dirichlet{_number(_get(config, 'federation.alpha'))}"
    return None if scheme is None else str(scheme)


def _weights(config: Mapping[str, Any]) -> str | None:
    weights = _get(config, "model.weights")
    if not weights:
        return None
    stem = str(weights).replace("\\", "/").rsplit("/", 1)[-1].split(".", 1)[0]
    return f"from-{stem}"


NAME_PARTS: tuple[NamePart, ...] = (
    _value("model.name"),
    _value("model.width", "w{}"),
    _value("model.activation"),
    _value("model.init", "{}-init"),
    NamePart(_weights),
    _value("dataset.name"),
    _defense("dp", "dp{}", "noise"),
    _defense("prune", "prune{}", "fraction"),
    _defense("quantize", "q{}bit", "bits"),
    _defense("secagg", "secagg{}", None),
    NamePart(_extra_defenses),
    _value("federation.mode"),
    _value("federation.loss"),
    _value("federation.batch_labels", "{}-labels"),
    NamePart(_partitioner),
    _value("federation.num_clients", "c{}"),
    _value("federation.batch_size", "B{}"),
    _value("federation.lr", "lr{}"),
    _value("federation.local_epochs", "E{}"),
    _value("federation.local_steps", "K{}"),
    _value("federation.rounds", "r{}"),
    _value("attack.names"),
    _value("attack.disclose", "knows-{}"),
    _value("seed", "seed{}"),
)
"""Every part a derived name can have, in the order they appear."""


def derive_run_name(config: Mapping[str, Any], default: Mapping[str, Any]) -> str:
    """The name of ``config``'s run: its parts that differ from ``default``'s, joined by ``-``.

    Parameters
    ----------
    config, default : Mapping
        Resolved experiment configs (``ExperimentConfig.to_dict()`` or the composed mapping).

    Returns
    -------
    str
        E.g. ``lenet-lfw-dp0.1``; ``default`` when no part differs. Characters outside
        ``[A-Za-z0-9._+=-]`` become ``_``; a name over :data:`MAX_NAME_LENGTH` characters
        is cut and ends with a hash of the whole name, so different runs stay apart.
    """
    parts = []
    for part in NAME_PARTS:
        label = part.label(config)
        if label is not None and label != part.label(default):
            parts.append(_UNSAFE.sub("_", label))
    name = "-".join(parts) or DEFAULT_NAME
    if len(name) > MAX_NAME_LENGTH:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[: MAX_NAME_LENGTH - 9]}-{digest}"
    return name


def names_itself(overrides: Sequence[str]) -> bool:
    """Whether the command line sets ``name`` (``name=x``, ``+name=x``, ``++name=x``)."""
    return any(o.split("=", 1)[0].lstrip("+~") == "name" for o in overrides if "=" in o)
