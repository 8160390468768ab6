"""The report's threat-model section: what the server sees, what it is told, what defends."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from fedleak.simulator.report.html_parts import esc, scalar, table, tree
from fedleak.simulator.runtime.results import RunPaths

SERVER_KNOWLEDGE = (
    "the global model it sends each round",
    "each client's reply: its updated weights, hence the update",
    "the training hyperparameters it configured",
    "the num-examples each client reports",
)
HYPERPARAMETER_KEYS = ("mode", "lr", "batch_size", "local_steps", "local_epochs", "loss")


def active_defenses(config: Mapping[str, Any]) -> list[str]:
    """Defenses the config turns on, read generically from its ``defense`` tree.

    Every mapping under ``defense`` with ``enabled: true`` is active (named by its key path,
    with its other settings); a ``defense.name`` other than ``none`` is active too.
    """
    found: list[str] = []

    def walk(node: Any, path: str) -> None:
        if not isinstance(node, Mapping):
            return
        if node.get("enabled") is True:
            settings = ", ".join(f"{k}={scalar(v)}" for k, v in node.items() if k != "enabled")
            found.append(f"{path} ({settings})" if settings else path)
        for key, child in node.items():
            walk(child, f"{path}.{key}")

    defense = config.get("defense")
    if isinstance(defense, Mapping):
        name = defense.get("name")
        if isinstance(name, str) and name != "none":
            found.append(name)
        walk(defense, "defense")
        for extra, settings in (defense.get("extra") or {}).items():  # on by being listed
            shown = ", ".join(f"{k}={scalar(v)}" for k, v in (settings or {}).items())
            found.append(f"defense.extra.{extra} ({shown})" if shown else f"defense.extra.{extra}")
    return found


def _requirements(name: str) -> set[str] | None:
    from fedleak.simulator.config.choices import attack_requirements

    try:
        return set(attack_requirements(name))
    except (ValueError, ImportError):
        return None


def _group(config: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = config.get(key)
    return value if isinstance(value, Mapping) else {}


def _settings(group: Mapping[str, Any], keys: Iterable[str]) -> str:
    return ", ".join(f"{k}={scalar(group[k])}" for k in keys if k in group) or "-"


def _requirement_rows(names: Iterable[object], disclose: set[str]) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for name in names:
        needs = _requirements(str(name))
        if needs is None:
            rows.append((name, "unknown (not registered here)", "-"))
            continue
        missing = sorted(needs - disclose)
        covered = "no: " + ", ".join(missing) if missing else "yes"
        rows.append((name, ", ".join(sorted(needs)) or "nothing beyond a plain server", covered))
    return rows


def _privacy_budget(paths: RunPaths) -> str:
    """``privacy.json`` (the DP budget a run spent), when the run wrote one."""
    try:
        budget = json.loads(paths.privacy.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    if isinstance(budget, dict):  # 4.411e+04, not 44111.77825757886
        budget = {k: f"{v:.4g}" if isinstance(v, float) else v for k, v in budget.items()}
    return "<h3>Privacy budget spent (local DP)</h3>" + tree(budget)


def _server_knowledge(defenses: list[str]) -> tuple[str, ...]:
    if not any(d.startswith("defense.secagg") for d in defenses):
        return SERVER_KNOWLEDGE
    masked = "under secure aggregation only the round's aggregate, never a single reply"
    return tuple(masked if "reply" in item else item for item in SERVER_KNOWLEDGE)


def threat_model(config: Mapping[str, Any], paths: RunPaths) -> str:
    """The threat-model section: what the server sees, is told, and which defenses act."""
    attack = _group(config, "attack")
    hyper = _settings(_group(config, "federation"), HYPERPARAMETER_KEYS)
    policy = _settings(attack, ("rounds", "client_fraction", "client_ids"))
    disclose = [str(d) for d in attack.get("disclose") or []]
    rows = _requirement_rows(attack.get("names") or [], set(disclose))
    defenses = active_defenses(config)
    parts = [
        "<h3>What an honest-but-curious Flower server sees</h3><ul>",
        *(f"<li>{esc(item)}</li>" for item in _server_knowledge(defenses)),
        f"</ul><p>Hyperparameters sent: <code>{esc(hyper)}</code></p>",
        "<h3>Disclosed beyond a plain Flower server</h3>",
        f"<p><code>{esc(', '.join(disclose))}</code></p>"
        if disclose
        else "<p>nothing: the server knows only what a plain Flower server knows</p>",
        "<h3>What each attack requires</h3>",
        table(["attack", "requires", "covered by disclose"], rows, text_cols=3)
        if rows
        else '<p class="muted">no attacks configured</p>',
        "<h3>Active defenses</h3>",
        "<ul>" + "".join(f"<li><code>{esc(d)}</code></li>" for d in defenses) + "</ul>"
        if defenses
        else "<p>none: clients send their plain updates</p>",
        _privacy_budget(paths),
        f"<h3>Which updates are attacked</h3><p><code>{esc(policy)}</code></p>",
        "<h3>Ground truth</h3><p>",
        "clients write the samples they used to the audit store, read only by the auditor "
        "to score reconstructions; it never travels over Flower"
        if attack.get("audit") is not False
        else "no audit store: attacks run, nothing is scored",
        "</p>",
    ]
    return "".join(parts)
