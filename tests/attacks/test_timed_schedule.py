"""TimedSchedule: the fixed-count schedule where it fits the budget, fewer iterations with the
same decay fractions where it does not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedleak.attacks import create_attack, execute_attack
from fedleak.attacks.timed_schedule import TimedSchedule
from fedleak.attacks.types import Reconstruction
from tests.attacks.cases import cat_image, lenet, sgd_update

DECAYS = (3 / 8, 5 / 8, 7 / 8)


class FakeClock:
    """Each step the caller takes costs ``step_s`` seconds; the first ``warmup`` cost 3x."""

    def __init__(self, step_s: float, warmup: int = 0) -> None:
        self.now, self.step_s, self.warmup, self.steps = 0.0, step_s, warmup, 0

    def __call__(self) -> float:
        return self.now

    def step(self) -> None:
        self.now += self.step_s * (3 if self.steps < self.warmup else 1)
        self.steps += 1


def _run(plan: TimedSchedule, clock: FakeClock) -> list[int]:
    """The iterations at which a decay fell due (repeated for a double decay)."""
    at = []
    for iteration, decays in enumerate(plan):
        at += [iteration] * decays
        clock.step()
    return at


def test_a_run_that_fits_is_the_fixed_count_schedule() -> None:
    clock = FakeClock(0.01)
    plan = TimedSchedule(500, budget_s=60.0, decay_points=DECAYS, clock=clock)
    assert _run(plan, clock) == [187, 312, 437]
    assert plan.done == 500 and not plan.time_limited


def test_an_expensive_run_stops_at_its_budget_with_decays_at_the_same_fractions() -> None:
    clock = FakeClock(0.5, warmup=5)  # 500 steps would take 250 s
    plan = TimedSchedule(500, budget_s=60.0, decay_points=DECAYS, clock=clock)
    decays = _run(plan, clock)
    assert plan.time_limited and plan.done == 110  # 5 x 1.5 s + 105 x 0.5 s
    assert clock.now <= 60.0 + 0.5  # never more than one step past the budget
    assert decays == [int(f * plan.done) for f in DECAYS]


def test_a_step_slower_than_the_whole_budget_still_runs_once() -> None:
    clock = FakeClock(10.0)
    plan = TimedSchedule(500, budget_s=1.0, decay_points=DECAYS, clock=clock)
    assert _run(plan, clock) == [] and plan.done == 1


@pytest.mark.parametrize(("iterations", "budget"), [(0, 1.0), (10, 0.0), (10, float("nan"))])
def test_bad_settings_are_refused(iterations: int, budget: float) -> None:
    with pytest.raises(ValueError, match="iterations must be >= 1 and budget_s > 0"):
        TimedSchedule(iterations, budget)


def test_inverting_gradients_records_a_run_its_time_budget_cut_short() -> None:
    model = lenet(0)
    update = sgd_update(model, cat_image(), torch.tensor([3]))
    cpu = torch.device("cpu")
    attack = create_attack("inverting_gradients", {"iterations": 10**6, "time_budget_s": 0.5})
    out = execute_attack(attack, model, update, device=cpu, seed=0)
    assert isinstance(out, Reconstruction)
    assert out.details["time_limited"] is True and 1 <= out.iterations < 10**6
    assert np.isfinite(out.inputs).all()
    full = execute_attack(
        create_attack("inverting_gradients", {"iterations": 5}), model, update, device=cpu, seed=0
    )
    assert isinstance(full, Reconstruction)
    assert full.details["time_limited"] is False and full.iterations == 5
