"""Settings that run but mean nothing are explained: each warning names its keys and effect."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fedleak.simulator.config.compose import load_experiment
from fedleak.simulator.runtime.preflight import partition_sizes
from fedleak.simulator.runtime.privacy import local_dp_budget
from fedleak.simulator.runtime.setting_warnings import (
    EPSILON_LIMIT,
    DataFacts,
    noise_for_epsilon,
    startup_warnings,
)


def _warnings(*overrides: str) -> list[str]:
    cfg = load_experiment(list(overrides))
    return startup_warnings(cfg, DataFacts(partition_sizes(cfg)))


def test_the_default_experiment_has_no_warning() -> None:
    assert _warnings() == []


def test_dp_above_the_epsilon_limit_is_labelled_as_no_formal_guarantee() -> None:
    (line,) = _warnings("defense=dp", "federation.rounds=3")
    assert line.startswith("defense.dp: epsilon 6.61e+04 at delta 1e-05 after 3 round(s) is")
    assert "no meaningful formal guarantee" in line
    cfg = load_experiment(["defense=dp", "federation.rounds=3"])
    noise = noise_for_epsilon(cfg)
    assert f"defense.dp.noise >= {noise:.3g}" in line
    rounds = cfg.federation.rounds
    assert local_dp_budget(replace(cfg.defense.dp, noise=noise), rounds).epsilon <= EPSILON_LIMIT
    less = replace(cfg.defense.dp, noise=noise * 0.99)
    assert local_dp_budget(less, rounds).epsilon > EPSILON_LIMIT  # the smallest such noise
    assert _warnings("defense=dp", "federation.rounds=3", f"defense.dp.noise={noise * 1.01}") == []


def test_a_disclosure_no_attack_requires_is_explained() -> None:
    (line,) = _warnings("attack=analytic", "attack.disclose=[labels]")
    assert "attack.disclose: 'labels' is disclosed but no attack in attack.names" in line
    assert "more than a Flower server knows" in line


def test_a_batch_larger_than_a_partition_names_the_smallest() -> None:
    (line,) = _warnings("federation.batch_size=1000", "federation.num_clients=4")
    sizes = partition_sizes(load_experiment(["federation.num_clients=4"]))
    smallest = min(sizes)
    client = sizes.index(smallest)
    assert line.startswith(
        f"federation.batch_size=1000 is larger than the partition of 4 of 4 client(s) "
        f"(the smallest: client {client}, {smallest} samples)"
    )


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (
            ["federation=fedavg", "federation.local_steps=5", "federation.local_epochs=3"],
            "federation.local_steps=5 overrides federation.local_epochs=3",
        ),
        (
            ["federation.local_epochs=3"],
            "federation.mode=fedsgd takes one gradient step on one batch: "
            "federation.local_epochs=3 are ignored",
        ),
        (
            ["defense.dp.noise=0.5"],
            "defense.dp.noise=0.5 set but defense.dp is not enabled",
        ),
        (
            ["attack=analytic_ig", "attack.names=[analytic]", "attack.fallback=[]"],
            "attack.params.inverting_gradients is set but 'inverting_gradients' is in neither "
            "attack.names ['analytic'] nor attack.fallback []: the setting is unused",
        ),
        (
            ["federation.rounds=3", "attack.rounds=[2,7]"],
            "attack.rounds [7] come after the last round",
        ),
    ],
)
def test_settings_that_override_or_void_each_other(overrides: list[str], fragment: str) -> None:
    (line,) = _warnings(*overrides)
    assert fragment in line
