"""What ``fedleak list attacks|models|datasets|defenses`` prints: one line per entry.

Each line names the entry, what it needs (the threat model an attack requires, the input a
model takes, the settings a defense has) and the first line of its documentation. Entries
of installed plug-ins (entry points) are listed beside fedleak's own.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["CATALOGS", "CatalogEntry", "catalog", "format_catalog"]


@dataclass(frozen=True)
class CatalogEntry:
    """One line of a listing."""

    name: str
    needs: str
    about: str


def _first_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _parameters(fn: Callable[..., Any], skip: set[str]) -> list[str]:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in params if p.kind in kinds and p.name not in skip]


def _attacks() -> list[CatalogEntry]:
    from fedleak.attacks.base import AttackConfig
    from fedleak.attacks.registry import attack_class, available_attacks

    common = {f.name for f in dataclasses.fields(AttackConfig)}  # attack.effort sets them
    entries = []
    for name in available_attacks():
        cls = attack_class(name)
        requires = sorted(str(d) for d in cls.requires)
        needs = f"disclose {requires}" if requires else "a plain server's view"
        settings = [f.name for f in dataclasses.fields(cls.config_class) if f.name not in common]
        if settings:
            needs += f"; settings {', '.join(settings)}"
        entries.append(CatalogEntry(name, needs, _first_line(cls)))
    return entries


def _input_needs(name: str) -> str:
    """Which inputs model ``name`` takes, found by building it on each kind."""
    from fedleak.simulator.models.architectures import ModelSpec, build_model

    takes = []
    for kind, shape in (("images (C, H, W)", (1, 8, 8)), ("flat vectors (n,)", (64,))):
        try:
            build_model(ModelSpec(name, shape, num_classes=2))
        except Exception:  # probing: any failure means "does not take this input"
            continue
        takes.append(kind)
    return " or ".join(takes) if takes else "inputs it cannot be probed with"


def _models() -> list[CatalogEntry]:
    from fedleak.simulator.models.architectures import available_models, model_builder

    return [
        CatalogEntry(name, _input_needs(name), _first_line(model_builder(name)))
        for name in available_models()
    ]


def _datasets() -> list[CatalogEntry]:
    from fedleak.simulator.data.datasets import available_datasets, dataset_loader

    skip = {"data_dir", "seed", "test_fraction", "args"}
    entries = []
    for name in available_datasets():
        loader = dataset_loader(name)
        settings = _parameters(loader, skip)
        needs = f"dataset.args: {', '.join(settings)}" if settings else "-"
        entries.append(CatalogEntry(name, needs, _first_line(loader)))
    return entries


def _defense_options() -> list[CatalogEntry]:
    """fedleak's own: the ``defense/`` config options, described by their first comment."""
    from fedleak.simulator.config.compose import config_dir
    from fedleak.simulator.config.schema import DefenseConfig

    typed = typing.get_type_hints(DefenseConfig)
    entries = []
    for path in sorted((config_dir() / "defense").glob("*.yaml")):
        comments = [
            line.lstrip("# ").strip()
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.startswith("#") and not line.startswith("# @package")
        ]
        needs = f"defense={path.stem}"
        settings_cls = typed.get(path.stem)
        if dataclasses.is_dataclass(settings_cls):
            names = [f.name for f in dataclasses.fields(settings_cls) if f.name != "enabled"]
            needs += f"; settings defense.{path.stem}.{{{','.join(names)}}}"
        entries.append(CatalogEntry(path.stem, needs, comments[0] if comments else ""))
    return entries


def _defenses() -> list[CatalogEntry]:
    from fedleak.simulator.defenses import available_defenses, defense_factory

    plugins = [
        CatalogEntry(
            name,
            f"+defense.extra.{name}.SETTING=...; settings "
            f"{', '.join(_parameters(defense_factory(name), set())) or '-'}",
            _first_line(defense_factory(name)),
        )
        for name in available_defenses()
    ]
    return _defense_options() + plugins


CATALOGS: dict[str, Callable[[], list[CatalogEntry]]] = {
    "attacks": _attacks,
    "models": _models,
    "datasets": _datasets,
    "defenses": _defenses,
}
"""The listings by name (one rule: the name table)."""


def catalog(kind: str) -> list[CatalogEntry]:
    """The entries of ``kind`` (a key of :data:`CATALOGS`).

    Raises
    ------
    ValueError
        If ``kind`` is not one of :data:`CATALOGS`.
    """
    try:
        return CATALOGS[kind]()
    except KeyError:
        raise ValueError(f"unknown listing {kind!r}; choose from {sorted(CATALOGS)}") from None


def format_catalog(entries: list[CatalogEntry]) -> str:
    """Aligned lines ``name  needs  about``."""
    width_name = max((len(e.name) for e in entries), default=0)
    width_needs = max((len(e.needs) for e in entries), default=0)
    return "\n".join(
        f"{e.name:<{width_name}}  {e.needs:<{width_needs}}  {e.about}".rstrip() for e in entries
    )
