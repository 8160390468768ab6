"""What the rows say at a glance: who leaks most and when, and defenses that did not protect."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedleak.simulator.runtime.results import STATUS_OK, LeakageRecord

RECOVERED_SHARE = 0.5
"""A defended update counts as reconstructed when at least this share of its samples is
recovered (AVD below the recovery threshold, Eloul et al. eq. 13)."""

DEFENSE_TITLES = {
    "dp": "local DP",
    "prune": "pruning",
    "quantize": "quantisation",
    "secagg": "secure aggregation",
}
DEFENSE_SETTINGS = {
    "dp": "noise {noise:g}, clip {clip:g}",
    "prune": "fraction {fraction:g}",
    "quantize": "{bits} bits",
    "secagg": "{num_shares} shares, threshold {reconstruction_threshold}",
}
"""How each defense's strength reads (its settings that matter)."""


def enabled_defenses(config: Mapping[str, Any]) -> list[str]:
    """Names of the update defenses ``config`` turns on (``defense.<name>.enabled``)."""
    defense = config.get("defense")
    if not isinstance(defense, Mapping):
        return []
    return [
        name
        for name, settings in defense.items()
        if isinstance(settings, Mapping) and settings.get("enabled") is True
    ]


def defense_title(config: Mapping[str, Any], name: str) -> str:
    """``local DP (noise 0.01, clip 1)``: the defense and the settings that set its strength."""
    settings = config.get("defense", {}).get(name, {})
    title = DEFENSE_TITLES.get(name, name)
    try:
        return f"{title} ({DEFENSE_SETTINGS[name].format(**settings)})"
    except (KeyError, ValueError, TypeError):  # a defense or a settings file of another version
        return title


def owner_label(record: LeakageRecord) -> str:
    """``client 3``, ``aggregate`` (secure aggregation) or ``node <id>`` without audit."""
    if record.client >= 0:
        return f"client {record.client}"
    if record.details.get("target"):
        return "aggregate"
    return f"node {record.node_id}"


def _target(record: LeakageRecord) -> str:
    clients = record.details.get("aggregated_clients")
    if clients:
        return f"the aggregate of {clients} clients"
    if record.client >= 0:
        return f"client {record.client}'s update"
    return f"node {record.node_id}'s update"


def defended_leaks(config: Mapping[str, Any], records: list[LeakageRecord]) -> list[str]:
    """One line when a defended run's attacks still recovered data, naming the worst case.

    Returns
    -------
    list of str
        Empty without an active defense or when no update had at least
        :data:`RECOVERED_SHARE` of its samples recovered; otherwise e.g.
        ``secure aggregation did not protect the data: the aggregate of 4 clients was
        reconstructed at 74.5 dB in round 2 (inverting_gradients, 4 of 4 samples recovered;
        3 of 3 attacked updates)``.
    """
    defenses = enabled_defenses(config)
    ok = [r for r in records if r.status == STATUS_OK and not math.isnan(r.recovery_rate)]
    leaking = [r for r in ok if r.recovery_rate >= RECOVERED_SHARE]
    if not defenses or not leaking:
        return []
    worst = max(leaking, key=lambda r: (r.recovery_rate, np.nan_to_num(r.psnr_mean, nan=-1.0)))
    names = " + ".join(defense_title(config, d) for d in defenses)
    updates = {(r.round, r.node_id) for r in ok}
    leaked = {(r.round, r.node_id) for r in leaking}
    recovered = round(worst.recovery_rate * worst.num_truth)
    return [
        f"{names} did not protect the data: {_target(worst)} was reconstructed at "
        f"{worst.psnr_mean:.1f} dB in round {worst.round} ({worst.attack}, {recovered} of "
        f"{worst.num_truth} samples recovered); {len(leaked)} of {len(updates)} attacked "
        f"updates had at least {RECOVERED_SHARE:.0%} of their samples recovered"
    ]


@dataclass(frozen=True)
class ClientLeakage:
    """One client's best reconstruction per round (over attacks), and its worst round."""

    owner: str
    by_round: dict[int, tuple[float, str]]
    peak_psnr: float
    peak_round: int
    peak_attack: str


def client_leakage(records: list[LeakageRecord]) -> tuple[list[int], list[ClientLeakage]]:
    """Leakage per client over rounds: who leaks most (first), and when.

    Returns
    -------
    rounds : list of int
        Every round with a successful, measured attack, ascending.
    clients : list of ClientLeakage
        One per client (``aggregate`` under secure aggregation), highest peak PSNR first.
    """
    best: dict[str, dict[int, tuple[float, str]]] = defaultdict(dict)
    for record in records:
        if record.status != STATUS_OK or math.isnan(record.psnr_mean):
            continue
        cells = best[owner_label(record)]
        current = cells.get(record.round)
        if current is None or record.psnr_mean > current[0]:
            cells[record.round] = (record.psnr_mean, record.attack)
    rows = []
    for owner, cells in best.items():
        peak_round = max(cells, key=lambda r: cells[r][0])
        psnr, attack = cells[peak_round]
        rows.append(ClientLeakage(owner, dict(cells), psnr, peak_round, attack))
    rows.sort(key=lambda c: (-c.peak_psnr, c.owner))
    rounds = sorted({r for c in rows for r in c.by_round})
    return rounds, rows
