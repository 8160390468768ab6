"""Analytic attack (seed 000): exact recovery where theory says so, refusals elsewhere."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from attacks import (
    AnalyticAttack,
    AttackFailure,
    InterceptedUpdate,
    Reconstruction,
    TrainingHyperparams,
    create_attack,
    execute_attack,
)
from attacks.losses import model_gradient

CPU = torch.device("cpu")
INPUT_SHAPE = (1, 8, 8)
NUM_CLASSES = 10


def mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, NUM_CLASSES)
    ).double()


def sgd_update(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    lr: float = 0.05,
    mode: str = "fedsgd",
    local_steps: int = 1,
    disclosed: np.ndarray | None = None,
) -> InterceptedUpdate:
    """What the server sees after the client's one real SGD step on (x, y)."""
    names = [n for n, _ in model.named_parameters()]
    grads = dict(zip(names, model_gradient(model, "cross_entropy", x, y), strict=True))
    global_params = OrderedDict(
        (k, v.detach().cpu().numpy().copy()) for k, v in model.state_dict().items()
    )
    client_params = OrderedDict(
        (k, v - lr * grads[k].detach().cpu().numpy()) if k in grads else (k, v.copy())
        for k, v in global_params.items()
    )
    hp = TrainingHyperparams(mode, lr, x.shape[0], local_steps)  # type: ignore[arg-type]
    return InterceptedUpdate(
        1,
        42,
        global_params,
        client_params,
        x.shape[0],
        hp,
        tuple(x.shape[1:]),
        NUM_CLASSES,
        disclosed,
    )


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("top_k", [1, 4])
def test_exact_recovery_single_sample(seed: int, top_k: int) -> None:
    model = mlp(seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((1, *INPUT_SHAPE), generator=gen, dtype=torch.float64)
    y = torch.tensor([seed % NUM_CLASSES])
    update = sgd_update(model, x, y)

    result = execute_attack(
        create_attack("analytic", {"top_k": top_k}), model, update, device=CPU, seed=0
    )

    assert isinstance(result, Reconstruction)
    assert result.inputs.shape == (1, *INPUT_SHAPE)
    rel_err = np.linalg.norm(result.inputs - x.numpy()) / np.linalg.norm(x.numpy())
    assert rel_err < 1e-5
    assert result.labels.tolist() == y.tolist()
    assert result.confidence is not None and result.confidence.tolist() == [1.0]
    assert result.iterations == 0
    assert result.details["layer"] == "1"
    neuron = int(result.details["neuron"])
    bias_grad = update.pseudo_gradient()["1.bias"]
    assert abs(float(bias_grad[neuron])) == pytest.approx(float(bias_grad.abs().max()))
    assert result.details["bias_grad"] == pytest.approx(float(bias_grad[neuron]))


def test_disclosed_labels_are_used() -> None:
    model = mlp(0)
    x = torch.rand((1, *INPUT_SHAPE), dtype=torch.float64)
    update = sgd_update(model, x, torch.tensor([2]), disclosed=np.array([2]))
    result = AnalyticAttack().reconstruct(model, update, device=CPU, seed=0)
    assert result.labels.tolist() == [2]
    assert result.labels.dtype == np.int64


def test_not_applicable_when_no_neuron_is_active() -> None:
    model = mlp(0)
    first = model.get_submodule("1")
    assert isinstance(first, nn.Linear)
    with torch.no_grad():
        first.bias.fill_(-1000.0)  # inputs in [0, 1]: every pre-activation is negative
    x = torch.rand((1, *INPUT_SHAPE), dtype=torch.float64)
    update = sgd_update(model, x, torch.tensor([1]))
    assert not update.pseudo_gradient()["1.bias"].any()

    result = execute_attack(AnalyticAttack(), model, update, device=CPU, seed=0)

    assert isinstance(result, AttackFailure)
    assert result.status == "not_applicable"
    assert "no active neuron" in result.reason


def test_not_applicable_for_batches() -> None:
    model = mlp(0)
    x = torch.rand((3, *INPUT_SHAPE), dtype=torch.float64)
    update = sgd_update(model, x, torch.tensor([1, 2, 3]))
    result = execute_attack(AnalyticAttack(), model, update, device=CPU, seed=0)
    assert isinstance(result, AttackFailure)
    assert result.status == "not_applicable"
    assert "batch size 3" in result.reason


def test_not_applicable_for_multi_step_fedavg() -> None:
    model = mlp(0)
    x = torch.rand((1, *INPUT_SHAPE), dtype=torch.float64)
    update = sgd_update(model, x, torch.tensor([1]), mode="fedavg", local_steps=5)
    result = execute_attack(AnalyticAttack(), model, update, device=CPU, seed=0)
    assert isinstance(result, AttackFailure) and result.status == "not_applicable"
    assert "local steps" in result.reason


def test_not_applicable_without_linear_bias() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, NUM_CLASSES, bias=False)).double()
    x = torch.rand((1, *INPUT_SHAPE), dtype=torch.float64)
    update = sgd_update(model, x, torch.tensor([1]))
    result = execute_attack(AnalyticAttack(), model, update, device=CPU, seed=0)
    assert isinstance(result, AttackFailure) and result.status == "not_applicable"
    assert "no nn.Linear" in result.reason


def test_not_applicable_when_linear_is_not_first_layer() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(128, NUM_CLASSES)
    ).double()
    x = torch.rand((1, *INPUT_SHAPE), dtype=torch.float64)
    update = sgd_update(model, x, torch.tensor([1]))
    result = execute_attack(AnalyticAttack(), model, update, device=CPU, seed=0)
    assert isinstance(result, AttackFailure) and result.status == "not_applicable"
    assert "'3'" in result.reason and "not the model's first layer" in result.reason


def test_erroneous_top_k() -> None:
    with pytest.raises(ValueError, match="top_k"):
        create_attack("analytic", {"top_k": 0})
