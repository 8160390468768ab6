"""Inverting gradients' restarts evaluated together equal the restarts one after another."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fedleak.attacks.batched_restarts import (
    TOGETHER_MAX_PARAMETERS,
    BatchedObjective,
    batched_restarts_reason,
)
from fedleak.attacks.fedavg import LocalSchedule
from fedleak.attacks.gradient_matching import CosineTarget, MatchingProblem
from fedleak.attacks.input_priors import total_variation
from fedleak.attacks.inverting_gradients import InvertingGradientsAttack, InvertingGradientsConfig
from fedleak.attacks.losses import observed_gradient
from tests.attacks.cases import NUM_CLASSES, sgd_update

CPU = torch.device("cpu")
ONE_STEP = LocalSchedule(2, ((0, 1),))


def conv_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.Sigmoid(), nn.Flatten(), nn.Linear(256, NUM_CLASSES)
    ).double()


def problem_of(model: nn.Module, labels: torch.Tensor) -> MatchingProblem:
    truth = torch.rand(len(labels), 1, 8, 8, dtype=torch.float64)
    update = sgd_update(model, truth, labels)
    observed = observed_gradient(model, update)
    return MatchingProblem(
        model=model,
        loss_name="cross_entropy",
        lr=0.1,
        schedule=LocalSchedule(len(labels), (tuple(range(len(labels))),)),
        labels=labels,
        target=CosineTarget(torch.cat([o.reshape(-1) for o in observed])),
    )


def test_batched_gradient_loss_and_prior_scale_equal_each_restart_apart() -> None:
    """Each restart's gradient, matching loss and prior scale are the one-restart path's."""
    torch.manual_seed(0)
    model = conv_net(0)
    labels = torch.tensor([3, 7])
    problem = problem_of(model, labels)
    candidates = torch.rand(3, 2, 1, 8, 8, dtype=torch.float64)
    weights = torch.tensor([0.0, 1e-3, 5e-2], dtype=torch.float64)
    batched = BatchedObjective(model, "cross_entropy", labels, problem.target, total_variation)

    gradients = batched.gradient(candidates, weights)
    losses = batched.matching_losses(candidates)
    scales = batched.prior_scales(candidates)

    for r in range(3):
        x = candidates[r].clone().requires_grad_(True)
        expected = problem.objective_gradient(x, float(weights[r]))
        assert torch.allclose(gradients[r], expected, rtol=1e-9, atol=1e-15)
        assert float(losses[r]) == pytest.approx(problem.matching_loss(x.detach()), rel=1e-9)
        assert float(scales[r]) == pytest.approx(problem.prior_scale(x), rel=1e-9)
    # the restarts are distinct problems: no restart's gradient is another's
    assert not torch.allclose(gradients[0], gradients[1])


def test_what_keeps_restarts_apart_is_named() -> None:
    small = conv_net(0)
    assert batched_restarts_reason(small, ONE_STEP, False) is None
    two_steps = LocalSchedule(2, ((0,), (1,)))
    assert "2 local steps" in str(batched_restarts_reason(small, two_steps, False))
    assert "statistics prior" in str(batched_restarts_reason(small, ONE_STEP, True))
    with_buffers = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    assert "running_mean" in str(batched_restarts_reason(with_buffers, ONE_STEP, False))
    dropout = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).train()
    assert "Dropout" in str(batched_restarts_reason(dropout, ONE_STEP, False))
    assert batched_restarts_reason(dropout.eval(), ONE_STEP, False) is None
    large = nn.Linear(TOGETHER_MAX_PARAMETERS, 1)
    assert "parameters" in str(batched_restarts_reason(large, ONE_STEP, False))
    assert batched_restarts_reason(large, ONE_STEP, False, size_rule=False) is None


def test_attack_with_restarts_together_matches_them_apart() -> None:
    """Same starts, same choice of restart, the same reconstruction up to rounding."""
    model = conv_net(1)
    truth = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    update = sgd_update(model, truth, torch.tensor([2, 9]))

    def run(together: bool):  # type: ignore[no-untyped-def]
        cfg = InvertingGradientsConfig(iterations=40, restarts=3, restarts_together=together)
        return InvertingGradientsAttack(cfg).reconstruct(model, update, device=CPU, seed=0)

    apart, together = run(False), run(True)

    assert together.details["restarts_together"] is True
    assert apart.details["restarts_together"] is False
    assert together.iterations == apart.iterations == 120
    np.testing.assert_array_equal(together.initial_inputs, apart.initial_inputs)
    assert np.abs(together.inputs - apart.inputs).max() < 1e-6
    assert float(together.details["matching_loss"]) == pytest.approx(
        float(apart.details["matching_loss"]), rel=1e-6
    )


def test_restarts_run_together_by_default_on_a_small_model_and_apart_on_a_large_one() -> None:
    small = conv_net(2).float()
    x = torch.rand(1, 1, 8, 8)
    cfg = InvertingGradientsConfig(iterations=3, restarts=2)
    out = InvertingGradientsAttack(cfg).reconstruct(
        small, sgd_update(small, x, torch.tensor([1])), device=CPU, seed=0
    )
    assert out.details["restarts_together"] is True
    torch.manual_seed(0)
    large = nn.Sequential(nn.Flatten(), nn.Linear(64, 4200), nn.ReLU(), nn.Linear(4200, 10))
    out = InvertingGradientsAttack(cfg).reconstruct(
        large, sgd_update(large, x, torch.tensor([1])), device=CPU, seed=0
    )
    assert out.details["restarts_together"] is False
