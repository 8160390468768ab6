"""Your own model, data set or defense in the experiment config.

``model._target_=my_pkg.nets.MyNet +model.hidden=64`` (or the same in a YAML file) names the
model by import path; the keys beside ``_target_`` that are not fedleak's own are its
arguments. In fedleak's terms that is ``model.name=my_pkg.nets.MyNet`` with
``model.args={hidden: 64}``, which is what the resolved ``config.yaml`` records. The same
holds for ``dataset`` with a loader function.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fedleak.simulator.plugins import is_import_path

TARGET_KEY = "_target_"
"""Hydra's key for an import path."""


def resolve_targets(data: Mapping[str, Any], own: Mapping[str, set[str]]) -> dict[str, Any]:
    """``data`` with each section of ``own`` (``model``, ``dataset``) that has a
    ``_target_`` rewritten: the target becomes ``name``, the keys that are not in
    ``own[section]`` move into ``args``."""
    resolved = dict(data)
    for section, fields in own.items():
        entry = resolved.get(section)
        if not isinstance(entry, Mapping) or TARGET_KEY not in entry:
            continue
        entry = dict(entry)
        target = entry.pop(TARGET_KEY)
        if target is not None:
            extra = {k: entry.pop(k) for k in list(entry) if k not in fields}
            entry["name"] = target
            entry["args"] = {**dict(entry.get("args") or {}), **extra}
        resolved[section] = entry
    return resolved


def import_problem(kind: str, path: str) -> str | None:
    """Why ``path`` is not a usable ``kind`` (``model``, ``dataset``) import path, or None."""
    from fedleak.simulator.data.datasets import dataset_loader
    from fedleak.simulator.models.architectures import model_builder

    resolve = {"model": model_builder, "dataset": dataset_loader}[kind]
    try:
        resolve(path)
    except ValueError as exc:
        return str(exc)
    return None


def choice_or_import(key: str, value: str, accepted: list[str]) -> list[str]:
    """Problems of ``key``: a registered name, or an import path that resolves."""
    if value in accepted:
        return []
    if not is_import_path(value):
        return [f"{key}: {value!r} is not one of {sorted(accepted)} (or an import path)"]
    problem = import_problem(key.split(".")[0], value)
    return [] if problem is None else [f"{key}: {problem}"]


def own_model_problems(name: str, *, width: int | None, activation: str | None) -> list[str]:
    """``width`` and ``activation`` shape fedleak's architectures, not a model of yours."""
    if not is_import_path(name):
        return []
    given = {"width": width, "activation": activation}
    return [
        f"model.{key}: applies to fedleak's own architectures only; give your model's "
        "arguments as model.args (+model.args.KEY=VALUE)"
        for key, value in given.items()
        if value is not None
    ]


def extra_defense_problems(extra: Mapping[str, Any]) -> list[str]:
    """Each ``defense.extra`` entry names a registered defense that accepts its settings."""
    from fedleak.simulator.defenses import create_defense

    problems = []
    for name, settings in extra.items():
        if not isinstance(settings, Mapping):
            problems.append(
                f"defense.extra.{name}: expected a mapping of settings, got {settings!r}"
            )
            continue
        try:
            create_defense(name, settings)
        except ValueError as exc:
            problems.append(f"defense.extra.{name}: {exc}")
    return problems
