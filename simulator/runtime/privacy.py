"""The privacy budget of the local-DP defense, from Opacus' Renyi-DP accountant.

Each round a participating client releases ``clip(update) + N(0, (sigma C)^2)`` to the
server (Flower's ``LocalDpMod``). Against the server, which sees every individual update and
knows who was sampled, there is no amplification by subsampling: the budget of a client is
the composition of one Gaussian mechanism per round it took part in. Local DP compares any
two data sets of the client (replace-one adjacency), so the L2 sensitivity of the clipped
update is ``2C`` and each release is a Gaussian mechanism with noise multiplier ``sigma/2``
relative to that sensitivity (Mironov 2017, RDP of the Gaussian mechanism:
``eps(alpha) = alpha / (2 (sigma/2)^2)`` per round, composed additively, then converted).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass

import yaml

from fedleak.simulator.config.schema import DpSettings, experiment_from_mapping
from fedleak.simulator.runtime.results import RunPaths, read_jsonl_rows


@dataclass(frozen=True)
class PrivacyBudget:
    """(epsilon, delta) of a client after ``rounds`` participations; inf without noise."""

    epsilon: float
    delta: float
    rounds: int
    noise_multiplier: float
    clip: float
    accountant: str = "rdp (opacus), replace-one adjacency, no subsampling amplification"


def local_dp_budget(dp: DpSettings, rounds: int) -> PrivacyBudget:
    """The budget after ``rounds`` releases under ``dp`` (worst case: every round sampled).

    Raises
    ------
    ValueError
        When ``rounds`` is negative.
    """
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")
    if rounds == 0:
        epsilon = 0.0
    elif dp.noise <= 0:
        epsilon = math.inf
    else:
        from opacus.accountants import RDPAccountant

        accountant = RDPAccountant()
        accountant.history = [(dp.noise / 2.0, 1.0, rounds)]
        with warnings.catch_warnings():  # tiny noise: the optimum is Opacus' smallest order
            warnings.filterwarnings("ignore", message="Optimal order is the smallest alpha")
            epsilon = float(accountant.get_epsilon(delta=dp.delta))
    return PrivacyBudget(
        epsilon=epsilon, delta=dp.delta, rounds=rounds, noise_multiplier=dp.noise, clip=dp.clip
    )


def run_privacy(paths: RunPaths) -> PrivacyBudget | None:
    """The DP budget spent by a run so far (rounds with a training row); None without DP."""
    if not paths.config.is_file():
        return None
    cfg = experiment_from_mapping(yaml.safe_load(paths.config.read_text(encoding="utf-8")))
    if not cfg.defense.dp.enabled:
        return None
    rounds = {int(row["round"]) for row in read_jsonl_rows(paths.training_jsonl)} - {0}
    return local_dp_budget(cfg.defense.dp, len(rounds))


def write_run_privacy(paths: RunPaths) -> str:
    """Write ``privacy.json`` for a DP run and return its summary line ('' without DP)."""
    budget = run_privacy(paths)
    if budget is None:
        return ""
    row = {
        k: (None if isinstance(v, float) and math.isinf(v) else v)
        for k, v in asdict(budget).items()
    }
    paths.privacy.write_text(json.dumps(row, indent=2) + "\n", encoding="utf-8")
    return (
        f"local DP: noise multiplier {budget.noise_multiplier:g}, clip {budget.clip:g}: "
        f"epsilon {budget.epsilon:.4g} at delta {budget.delta:g} after {budget.rounds} "
        f"round(s) per client ({budget.accountant})"
    )
