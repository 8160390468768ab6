"""Experiment presets (``configs/experiment/``), composed the Hydra way: ``+experiment=NAME``."""

from __future__ import annotations

import itertools

import pytest

from fedleak.simulator.config.compose import load_experiment
from fedleak.simulator.config.schema import ConfigError


def test_training_curve_trains_to_convergence_and_attacks_dense_then_spaced() -> None:
    cfg = load_experiment(["+experiment=training_curve"])
    assert cfg.name == "training_curve"
    assert cfg.federation.rounds >= 30
    assert cfg.attack.names == ["analytic", "inverting_gradients"]
    schedule = cfg.attack.rounds
    assert schedule is not None and schedule[0] == 1 and schedule[-1] == cfg.federation.rounds
    gaps = [b - a for a, b in itertools.pairwise(schedule)]
    assert all(gap >= 1 for gap in gaps)
    assert gaps[:7] == [1] * 7  # every round while the model changes fast
    assert gaps == sorted(gaps) and gaps[-1] >= 10  # then ever wider apart


def test_command_line_overrides_win_over_the_preset() -> None:
    cfg = load_experiment(
        ["+experiment=training_curve", "federation.rounds=5", "attack=analytic", "seed=3"]
    )
    assert (cfg.federation.rounds, cfg.attack.names, cfg.seed) == (5, ["analytic"], 3)
    assert cfg.attack.rounds is not None  # the schedule stays; rounds past 5 are never reached


def test_erroneous_experiment_name_lists_the_presets() -> None:
    with pytest.raises(ConfigError) as info:
        load_experiment(["+experiment=trainingcurve"])
    assert "experiment: 'trainingcurve' is not one of ['training_curve'" in str(info.value)
