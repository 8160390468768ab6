"""The report's summary box: every setting a reader needs to judge the numbers below it."""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from fedleak.simulator.report.findings import defense_title, enabled_defenses
from fedleak.simulator.runtime.results import LeakageRecord, describe_statuses
from fedleak.simulator.runtime.setting_warnings import EPSILON_LIMIT

EFFORT_FIELDS = ("iterations", "restarts", "time_budget_s", "guided_starts")
"""Attack settings that say how hard it tries (the rest say how)."""


def _get(config: Mapping[str, Any], *keys: str) -> Any:
    node: Any = config
    for key in keys:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def _text(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _model(config: Mapping[str, Any]) -> str:
    model = _get(config, "model") or {}
    extras = [f"{k} {model[k]}" for k in ("width", "activation") if model.get(k) is not None]
    if model.get("init") not in (None, "default"):
        extras.append(f"{model['init']} init")
    if model.get("weights"):
        extras.append(f"from {model['weights']}")
    return _text(model.get("name")) + (f" ({', '.join(extras)})" if extras else "")


def _training(config: Mapping[str, Any]) -> str:
    fed = _get(config, "federation") or {}
    mode = fed.get("mode")
    if mode == "fedsgd":
        recipe = "one gradient step per round"
    elif fed.get("local_steps"):
        recipe = f"{fed['local_steps']} local SGD steps per round"
    else:
        recipe = f"{_text(fed.get('local_epochs'))} local epoch(s) per round"
    loss = f", {fed['loss']} loss" if fed.get("loss") not in (None, "cross_entropy") else ""
    labels = ", one label per batch" if fed.get("batch_labels") == "equal" else ""
    return f"{_text(mode)}: {recipe}{loss}{labels}"


def epsilon_text(privacy: Mapping[str, Any] | None) -> str:
    """``4.41e+04 at delta 1e-05 after 3 round(s): no meaningful formal guarantee (> 10)``."""
    if not privacy:
        return "- (no differential privacy)"
    epsilon, delta, rounds = privacy.get("epsilon"), privacy.get("delta"), privacy.get("rounds")
    if epsilon is None:  # written as null: infinite (no noise)
        return f"infinite at delta {_text(delta)}: no formal guarantee (no noise)"
    text = f"{epsilon:.3g} at delta {_text(delta)} after {_text(rounds)} round(s)"
    if epsilon > EPSILON_LIMIT:
        text += f": no meaningful formal guarantee (above {EPSILON_LIMIT:g})"
    return text


def attack_effort(name: str, params: Mapping[str, Any], records: list[LeakageRecord]) -> str:
    """``inverting_gradients (effort default, iterations 200, restarts 1; 1.2 s per update)``."""
    from fedleak.attacks.base import config_from_mapping
    from fedleak.attacks.registry import attack_class

    parts = []
    try:
        settings = config_from_mapping(attack_class(name).config_class, params)
        parts = [
            f"{f.name} {getattr(settings, f.name)}"
            for f in dataclasses.fields(settings)
            if f.name in EFFORT_FIELDS
        ]
        if parts:  # a closed-form attack has no budget for the effort to scale
            parts.insert(0, f"effort {settings.effort}")
    except (TypeError, ValueError):  # an attack this version does not know
        parts = [f"{k} {v}" for k, v in params.items()]
    times = [r.attack_time_s for r in records if r.attack == name and r.attack_time_s > 0]
    timing = f"{sum(times) / len(times):.2g} s per update" if times else ""
    inner = ", ".join(parts) + ("; " if parts and timing else "") + timing
    return f"{name} ({inner})" if inner else name


def _attacks_run(attack: Mapping[str, Any], records: list[LeakageRecord]) -> list[str]:
    """``attack.names``, then any other attack with rows (a fallback that joined them)."""
    names = [str(n) for n in attack.get("names") or []]
    return names + sorted({r.attack for r in records} - set(names))


def run_facts(
    config: Mapping[str, Any],
    records: list[LeakageRecord],
    training_rows: list[dict[str, Any]],
    privacy: Mapping[str, Any] | None,
) -> list[tuple[str, str]]:
    """(label, value) pairs of the summary box, in reading order."""
    fed = _get(config, "federation") or {}
    attack = _get(config, "attack") or {}
    params: Mapping[str, Mapping[str, Any]] = attack.get("params") or {}
    by_attack: dict[str, list[LeakageRecord]] = defaultdict(list)
    for record in records:
        by_attack[record.attack].append(record)
    accuracy = [
        float(r["test_accuracy"])
        for r in training_rows
        if isinstance(r.get("test_accuracy"), int | float) and not math.isnan(r["test_accuracy"])
    ]
    defenses = [defense_title(config, d) for d in enabled_defenses(config)]
    return [
        ("experiment", _text(config.get("name"))),
        ("data set", _text(_get(config, "dataset", "name"))),
        ("model", _model(config)),
        ("training", _training(config)),
        ("batch size B", _text(fed.get("batch_size"))),
        ("learning rate", _text(fed.get("lr"))),
        ("clients x rounds", f"{_text(fed.get('num_clients'))} x {_text(fed.get('rounds'))}"),
        ("defenses", "; ".join(defenses) or "none"),
        ("epsilon", epsilon_text(privacy)),
        ("seed", _text(config.get("seed"))),
        (
            "attacks",
            "; ".join(
                attack_effort(
                    n,
                    {"effort": attack.get("effort", "default"), **params.get(n, {})},
                    by_attack[n],
                )
                for n in _attacks_run(attack, records)
            )
            or "none",
        ),
        ("leakage rows", describe_statuses(records)),
        ("final test accuracy", f"{accuracy[-1]:.3f}" if accuracy else "-"),
    ]
