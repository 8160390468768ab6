"""SPEAR (seed 002): exact recovery of whole batches through a first Linear + ReLU layer."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.datasets import load_digits
from torch import nn

from attacks import AttackFailure, Reconstruction, TrainingHyperparams, execute_attack
from attacks.base import config_from_mapping
from attacks.spear import SpearAttack, SpearConfig, relu_input_layer
from simulator.models import ModelSpec, build_model
from tests.attacks.cases import (  # one_thread: a fixture, applied to the whole module
    CPU,
    NUM_CLASSES,
    one_thread,  # noqa: F401
    psnr,
    sgd_update,
)

pytestmark = pytest.mark.usefixtures("one_thread")

INPUT_SHAPE = (1, 8, 8)


def fcnn(seed: int, dtype: torch.dtype = torch.float32, **spec: object) -> nn.Module:
    model_spec = ModelSpec("fcnn", INPUT_SHAPE, NUM_CLASSES, **spec)  # type: ignore[arg-type]
    return build_model(model_spec, seed=seed).to(dtype)


def digits(seed: int, size: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` distinct handwritten digits in [0, 1] with their labels."""
    data = load_digits()
    pick = torch.randperm(len(data.images), generator=torch.Generator().manual_seed(seed))[:size]
    images = torch.tensor(data.images[pick.numpy()] / 16.0, dtype=dtype)[:, None]
    return images, torch.tensor(data.target[pick.numpy()])


def matched_psnr(truth: torch.Tensor, recon: np.ndarray) -> list[float]:
    """PSNR per true sample against the recovered sample assigned to it (order is lost)."""
    flat_t = truth.reshape(len(truth), -1).double().numpy()
    flat_r = recon.reshape(len(recon), -1).astype(np.float64)
    cost = ((flat_t[:, None] - flat_r[None]) ** 2).mean(axis=-1)
    rows, cols = linear_sum_assignment(cost)
    return [psnr(flat_t[r], flat_r[c]) for r, c in zip(rows, cols, strict=True)]


@pytest.mark.parametrize("seed", [0, 1])
def test_every_sample_of_a_float32_batch_of_8_is_recovered(seed: int) -> None:
    model = fcnn(seed)
    x, y = digits(seed, 8, torch.float32)
    update = sgd_update(model, x, y)  # float32 model, data and update

    result = execute_attack(SpearAttack(), model, update, device=CPU, seed=0)

    assert isinstance(result, Reconstruction), result
    assert result.inputs.shape == (8, *INPUT_SHAPE) and result.inputs.dtype == np.float32
    assert min(matched_psnr(x, result.inputs)) >= 60.0
    assert result.details["layer"] == "1"
    assert result.details["reproduces"] == 1
    assert result.labels.shape == (8,) and result.labels.dtype == np.int64
    assert result.confidence is not None and result.confidence.min() >= 0.95
    assert result.iterations == 0


def test_float64_recovery_is_exact_and_reproduces_the_gradient() -> None:
    model = fcnn(2, torch.float64)
    x, y = digits(2, 8, torch.float64)

    result = SpearAttack().reconstruct(model, sgd_update(model, x, y), device=CPU, seed=0)

    assert min(matched_psnr(x, result.inputs)) >= 150.0
    assert float(result.details["gradient_residual"]) < 1e-9
    assert result.details["reproduces"] == 1
    assert int(result.details["input_starts"]) > 0  # found from the input side
    assert result.confidence is not None and result.confidence.tolist() == [1.0] * 8


def test_plain_random_submatrices_suffice_for_small_batches() -> None:
    model = fcnn(3, torch.float64)
    x, y = digits(3, 6, torch.float64)
    attack = SpearAttack(SpearConfig(guided_starts=0, input_starts=0))

    result = attack.reconstruct(model, sgd_update(model, x, y), device=CPU, seed=0)

    assert min(matched_psnr(x, result.inputs)) >= 150.0
    assert int(result.details["candidates_sampled"]) > 0


def test_deterministic_under_seed() -> None:
    model = fcnn(4, torch.float64)
    x, y = digits(4, 8, torch.float64)
    update = sgd_update(model, x, y)

    first = SpearAttack().reconstruct(model, update, device=CPU, seed=7)
    second = SpearAttack().reconstruct(model, update, device=CPU, seed=7)

    np.testing.assert_array_equal(first.inputs, second.inputs)
    assert first.details == second.details


def test_disclosed_labels_are_used() -> None:
    model = fcnn(0, torch.float64)
    x, y = digits(0, 4, torch.float64)
    update = sgd_update(model, x, y, disclosed=y.numpy())
    result = SpearAttack().reconstruct(model, update, device=CPU, seed=0)
    assert result.labels.tolist() == y.tolist()


def test_not_applicable_for_multi_step_fedavg() -> None:
    model = fcnn(0)
    x, y = digits(0, 4, torch.float32)
    update = sgd_update(model, x, y)
    update = replace(update, hyperparams=TrainingHyperparams("fedavg", 0.1, 4, 5))
    result = execute_attack(SpearAttack(), model, update, device=CPU, seed=0)
    assert isinstance(result, AttackFailure) and result.status == "not_applicable"
    assert "5 local steps" in result.reason


def test_not_applicable_when_batch_is_not_below_min_n_m() -> None:
    model = fcnn(0, width=8)  # M = 8 neurons: dL/dW of a batch of 8 is not low-rank
    x, y = digits(0, 8, torch.float32)
    result = execute_attack(SpearAttack(), model, sgd_update(model, x, y), device=CPU, seed=0)
    assert isinstance(result, AttackFailure) and result.status == "not_applicable"
    assert "min(N, M) = min(64, 8)" in result.reason


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (
            build_model(ModelSpec("fcnn", INPUT_SHAPE, NUM_CLASSES, activation="sigmoid"), seed=0),
            "followed by Sigmoid, not ReLU",
        ),
        (nn.Sequential(nn.Flatten(), nn.Linear(64, 32, bias=False), nn.ReLU()), "without bias"),
        (
            nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(72, 10)),
            "is a Conv2d",
        ),
    ],
    ids=["sigmoid", "no-bias", "conv-first"],
)
def test_not_applicable_without_a_linear_relu_input_layer(model: nn.Module, reason: str) -> None:
    x, y = digits(0, 2, torch.float32)
    result = execute_attack(SpearAttack(), model, sgd_update(model, x, y), device=CPU, seed=0)
    assert isinstance(result, AttackFailure) and result.status == "not_applicable"
    assert reason in result.reason


def test_relu_input_layer_of_fcnn_and_of_a_mismatched_input() -> None:
    model = fcnn(0)
    found = relu_input_layer(model, 64)
    assert not isinstance(found, str) and found[0] == "1"
    assert "in_features=64, not the 100-dimensional input" in str(relu_input_layer(model, 100))


def test_erroneous_duplicate_samples_leave_the_gradient_rank_deficient() -> None:
    model = fcnn(0, torch.float64)
    x, y = digits(0, 4, torch.float64)
    x[3], y[3] = x[0], y[0]  # two equal samples: dL/dW has rank 3 < B = 4
    result = execute_attack(SpearAttack(), model, sgd_update(model, x, y), device=CPU, seed=0)
    assert isinstance(result, AttackFailure) and result.status == "failed"
    assert "rank < B = 4" in result.reason


def test_erroneous_budget_too_small_is_a_recorded_failure() -> None:
    model = fcnn(0, torch.float64)
    x, y = digits(0, 8, torch.float64)
    config = SpearConfig(time_budget_s=1e-6, batch_chunk=16, guided_starts=0, input_starts=0)
    result = execute_attack(SpearAttack(config), model, sgd_update(model, x, y), device=CPU, seed=0)
    assert isinstance(result, AttackFailure) and result.status == "failed"
    assert "of 8 columns of Q in" in result.reason
    assert "the time budget ran out; raise time_budget_s" in result.reason


@pytest.mark.parametrize(
    "params",
    [
        {"sparsity_threshold": -0.1},
        {"sparsity_threshold": 1.0},
        {"batch_chunk": 8},
        {"time_budget_s": 0},
        {"guided_starts": -1},
        {"input_starts": -1},
    ],
)
def test_erroneous_config(params: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(params))):
        config_from_mapping(SpearConfig, params)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    model = fcnn(5, torch.float64)
    x, y = digits(5, 8, torch.float64)
    update = sgd_update(model, x, y)
    cuda = torch.device("cuda")
    result = SpearAttack().reconstruct(model.to(cuda), update, device=cuda, seed=0)
    assert min(matched_psnr(x, result.inputs)) >= 150.0
