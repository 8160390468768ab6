"""Settings that run but do not mean what they seem: explained at start, kept in the report.

Each check reads the validated config (and the clients' partition sizes, where it needs
them) and returns one sentence per problem, naming the keys, what actually happens and what
to change. None of them stops a run: impossible settings are errors elsewhere
(:mod:`fedleak.simulator.config.schema`, :mod:`fedleak.simulator.runtime.preflight`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from fedleak.simulator.config.schema import DefenseConfig, ExperimentConfig

EPSILON_LIMIT = 10.0
"""Above this epsilon a DP guarantee bounds nothing a reader can use: e^10 ~ 22000 is the
factor by which the adversary's odds of any conclusion about a sample may change."""

WARNINGS_FILE = "warnings.json"


@dataclass(frozen=True)
class DataFacts:
    """What the checks need to know about the data: each client's partition size."""

    partition_sizes: tuple[int, ...] = ()


def noise_for_epsilon(cfg: ExperimentConfig, limit: float = EPSILON_LIMIT) -> float:
    """The smallest noise multiplier keeping epsilon <= ``limit`` over the run (bisection)."""
    from dataclasses import replace

    from fedleak.simulator.runtime.privacy import local_dp_budget

    def epsilon(noise: float) -> float:
        dp = replace(cfg.defense.dp, noise=noise)
        return local_dp_budget(dp, cfg.federation.rounds).epsilon

    low, high = max(cfg.defense.dp.noise, 1e-6), 1.0
    while epsilon(high) > limit:
        low, high = high, high * 2
    for _ in range(40):
        middle = math.sqrt(low * high)
        low, high = (middle, high) if epsilon(middle) > limit else (low, middle)
    return high


def dp_guarantee(cfg: ExperimentConfig, data: DataFacts) -> list[str]:
    """Local DP whose epsilon over the run is above :data:`EPSILON_LIMIT`."""
    dp = cfg.defense.dp
    if not dp.enabled:
        return []
    from fedleak.simulator.runtime.privacy import local_dp_budget

    rounds = cfg.federation.rounds
    budget = local_dp_budget(dp, rounds)
    if budget.epsilon <= EPSILON_LIMIT:
        return []
    return [
        f"defense.dp: epsilon {budget.epsilon:.3g} at delta {dp.delta:g} after {rounds} "
        f"round(s) is above {EPSILON_LIMIT:g}, so this noise (defense.dp.noise={dp.noise:g}) "
        "gives no meaningful formal guarantee; it still adds noise, whose effect the "
        f"leakage rows measure. defense.dp.noise >= {noise_for_epsilon(cfg):.3g} keeps "
        f"epsilon <= {EPSILON_LIMIT:g} over {rounds} round(s)"
    ]


def unused_disclosures(cfg: ExperimentConfig, data: DataFacts) -> list[str]:
    """Facts disclosed to the server that no configured attack requires."""
    from fedleak.simulator.config.choices import attack_requirements

    required = {need for name in cfg.attack.names for need in attack_requirements(name)}
    return [
        f"attack.disclose: {item!r} is disclosed but no attack in attack.names "
        f"{cfg.attack.names} requires it; the attacks use it instead of inferring it, so "
        f"the leakage measured is that of a server that knows the clients' {item}, more "
        "than a Flower server knows. Drop it (attack.disclose=[]) to measure a plain server"
        for item in cfg.attack.disclose
        if item not in required
    ]


def batch_over_partition(cfg: ExperimentConfig, data: DataFacts) -> list[str]:
    """A batch size larger than some client's partition (batches are clamped)."""
    batch = cfg.federation.batch_size
    small = [(size, client) for client, size in enumerate(data.partition_sizes) if size < batch]
    if not small:
        return []
    size, client = min(small)
    return [
        f"federation.batch_size={batch} is larger than the partition of {len(small)} of "
        f"{len(data.partition_sizes)} client(s) (the smallest: client {client}, {size} "
        f"samples); their batches are cut to their whole partition, so B is {size} there, "
        f"not {batch}"
    ]


def overridden_training(cfg: ExperimentConfig, data: DataFacts) -> list[str]:
    """Training settings that another setting makes void."""
    fed = cfg.federation
    if fed.mode == "fedsgd":
        ignored = [f"local_epochs={fed.local_epochs}"] if fed.local_epochs != 1 else []
        ignored += [f"local_steps={fed.local_steps}"] if fed.local_steps is not None else []
        if ignored:
            return [
                f"federation.mode=fedsgd takes one gradient step on one batch: federation."
                f"{' and federation.'.join(ignored)} are ignored (federation=fedavg uses them)"
            ]
        return []
    if fed.local_steps is not None and fed.local_epochs != 1:
        return [
            f"federation.local_steps={fed.local_steps} overrides federation.local_epochs="
            f"{fed.local_epochs}: clients take {fed.local_steps} SGD steps and ignore the "
            "epochs (set local_steps=null to train by epochs)"
        ]
    return []


def inactive_settings(cfg: ExperimentConfig, data: DataFacts) -> list[str]:
    """Settings of a defense that is off, attack settings of attacks that do not run."""
    problems = []
    defaults = DefenseConfig()
    for defense in fields(DefenseConfig):
        if defense.name == "extra":  # registered defenses: on by being listed, no flag
            continue
        settings, default = getattr(cfg.defense, defense.name), getattr(defaults, defense.name)
        changed = [
            f"defense.{defense.name}.{f.name}={getattr(settings, f.name)}"
            for f in fields(settings)
            if f.name != "enabled" and getattr(settings, f.name) != getattr(default, f.name)
        ]
        if changed and not settings.enabled:
            problems.append(
                f"{', '.join(changed)} set but defense.{defense.name} is not enabled, so it "
                f"has no effect (add defense={defense.name}, or defense=[...,{defense.name}])"
            )
    for name in sorted(set(cfg.attack.params) - {*cfg.attack.names, *cfg.attack.fallback}):
        problems.append(
            f"attack.params.{name} is set but {name!r} is in neither attack.names "
            f"{cfg.attack.names} nor attack.fallback {cfg.attack.fallback}: the setting is unused"
        )
    late = [r for r in cfg.attack.rounds or [] if r > cfg.federation.rounds]
    if late:
        problems.append(
            f"attack.rounds {late} come after the last round (federation.rounds="
            f"{cfg.federation.rounds}): those rounds never happen"
        )
    return problems


Check = Callable[[ExperimentConfig, DataFacts], list[str]]
CHECKS: tuple[Check, ...] = (
    dp_guarantee,
    unused_disclosures,
    batch_over_partition,
    overridden_training,
    inactive_settings,
)


def startup_warnings(cfg: ExperimentConfig, data: DataFacts | None = None) -> list[str]:
    """Every warning of :data:`CHECKS` for ``cfg``, in order."""
    facts = data or DataFacts()
    return [line for check in CHECKS for line in check(cfg, facts)]


def write_warnings(run_dir: Path, warnings: Sequence[str]) -> None:
    """Keep the start-up warnings in the run directory, for the report."""
    (run_dir / WARNINGS_FILE).write_text(json.dumps(list(warnings), indent=2) + "\n")


def read_warnings(run_dir: Path) -> list[str]:
    """The start-up warnings a run kept (empty for runs older than this file)."""
    try:
        loaded = json.loads((run_dir / WARNINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [str(line) for line in loaded] if isinstance(loaded, list) else []
