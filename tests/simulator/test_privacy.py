"""The local-DP budget follows the Gaussian mechanism's RDP composition."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from fedleak.simulator.config.schema import DpSettings
from fedleak.simulator.runtime.privacy import local_dp_budget


def _rdp_gaussian_epsilon(sigma: float, rounds: int, delta: float) -> float:
    """Independent reference: eps = min_alpha rounds*alpha/(2 s^2) + log(1/delta)/(alpha-1)."""
    s = sigma / 2.0  # replace-one adjacency: sensitivity 2C
    alphas = np.linspace(1.01, 2000, 400_000)
    return float(np.min(rounds * alphas / (2 * s**2) + math.log(1 / delta) / (alphas - 1)))


@pytest.mark.parametrize(("sigma", "rounds"), [(2.0, 1), (4.0, 10), (10.0, 50)])
def test_epsilon_matches_the_rdp_of_the_gaussian_mechanism(sigma: float, rounds: int) -> None:
    budget = local_dp_budget(DpSettings(enabled=True, noise=sigma, delta=1e-5), rounds)
    reference = _rdp_gaussian_epsilon(sigma, rounds, 1e-5)
    # Opacus converts RDP with a tighter bound (Balle et al. 2020) than the classic one
    assert 0.75 * reference <= budget.epsilon <= reference * 1.001


def test_more_noise_or_fewer_rounds_spend_less() -> None:
    eps = [local_dp_budget(DpSettings(noise=s), 5).epsilon for s in (0.5, 1.0, 2.0, 4.0)]
    assert eps == sorted(eps, reverse=True)
    assert local_dp_budget(DpSettings(noise=1.0), 2).epsilon < eps[1]


def test_no_noise_is_no_privacy_and_no_rounds_is_no_spending() -> None:
    assert local_dp_budget(DpSettings(noise=0.0), 3).epsilon == math.inf
    assert local_dp_budget(DpSettings(noise=1.0), 0).epsilon == 0.0
    with pytest.raises(ValueError, match="rounds"):
        local_dp_budget(DpSettings(noise=1.0), -1)


def test_a_dp_run_reports_the_budget_of_its_completed_rounds(tmp_path: Path) -> None:
    import json

    import yaml

    from fedleak.simulator.config.schema import DefenseConfig, ExperimentConfig
    from fedleak.simulator.runtime.privacy import write_run_privacy
    from fedleak.simulator.runtime.results import RunPaths

    paths = RunPaths(tmp_path)
    cfg = ExperimentConfig(defense=DefenseConfig(dp=DpSettings(enabled=True, noise=3.0)))
    paths.config.write_text(yaml.safe_dump(cfg.to_dict()), encoding="utf-8")
    rows = [{"round": r, "test_accuracy": 0.5} for r in (0, 1, 2)]
    paths.training_jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    line = write_run_privacy(paths)
    saved = json.loads(paths.privacy.read_text())
    assert saved["rounds"] == 2
    assert saved["epsilon"] == pytest.approx(local_dp_budget(cfg.defense.dp, 2).epsilon)
    assert "epsilon" in line

    plain = ExperimentConfig()
    paths.config.write_text(yaml.safe_dump(plain.to_dict()), encoding="utf-8")
    paths.privacy.unlink()
    assert write_run_privacy(paths) == "" and not paths.privacy.exists()
