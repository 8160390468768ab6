"""Analytic attack (Phong et al. 2018): exact recovery where theory says so, refusals elsewhere."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from fedleak.attacks import (
    AnalyticAttack,
    AnalyticConfig,
    AttackFailure,
    InterceptedUpdate,
    Reconstruction,
    TrainingHyperparams,
    create_attack,
    execute_attack,
)
from fedleak.attacks.analytic import (
    NoActiveNeuronError,
    first_linear_with_bias,
    invert_linear_input,
    recover_linear_input,
)
from fedleak.attacks.losses import model_gradient
from fedleak.simulator.models.architectures import ModelSpec, build_model

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


# ---------------------------------------------------------------- any linear layer (Geiping et al.
# 2020 §3)


def _layer_input(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    """The true input of ``layer`` on ``x``, captured by a forward hook."""
    seen: list[torch.Tensor] = []
    handle = model.get_submodule(layer).register_forward_hook(
        lambda _m, args, _out: seen.append(args[0].detach())
    )
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("seed", range(3))
def test_acceptance_mlp_from_the_model_zoo_is_recovered_exactly(seed: int) -> None:
    model = build_model(ModelSpec("mlp", INPUT_SHAPE, NUM_CLASSES), seed=seed)
    x = torch.rand((1, *INPUT_SHAPE), generator=torch.Generator().manual_seed(seed))
    update = sgd_update(model, x, torch.tensor([seed]))

    result = execute_attack(create_attack("analytic"), model, update, device=CPU, seed=0)

    assert isinstance(result, Reconstruction)
    assert result.inputs.dtype == np.float32
    rel_err = np.linalg.norm(result.inputs - x.numpy()) / np.linalg.norm(x.numpy())
    assert rel_err < 1e-5
    assert result.labels.tolist() == [seed]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("top_k", [1, 8])
def test_acceptance_cnn_first_linear_input_features_are_recovered(seed: int, top_k: int) -> None:
    model = build_model(ModelSpec("cnn", INPUT_SHAPE, NUM_CLASSES), seed=seed)
    x = torch.rand((1, *INPUT_SHAPE), generator=torch.Generator().manual_seed(seed))
    update = sgd_update(model, x, torch.tensor([seed]))
    layer, _ = first_linear_with_bias(model) or ("", None)
    truth = _layer_input(model, layer, x).numpy()

    recovery = recover_linear_input(model, update, top_k=top_k)

    assert recovery.layer == layer == "7"  # after conv-pool-conv-pool-flatten
    assert not recovery.is_model_input
    assert recovery.features.shape == truth.shape == (1, 256)
    rel_err = np.linalg.norm(recovery.features - truth) / np.linalg.norm(truth)
    assert rel_err < 1e-5
    bias_grad = update.pseudo_gradient()["7.bias"]
    assert len(recovery.neurons) == top_k
    assert abs(bias_grad[recovery.neurons[0]]) == bias_grad.abs().max()
    assert recovery.bias_grads[0] == pytest.approx(float(bias_grad[recovery.neurons[0]]))


def test_any_named_linear_layer_input_is_recovered() -> None:
    model = build_model(ModelSpec("fcnn", (12,), NUM_CLASSES, width=16), seed=0).double()
    x = torch.rand(1, 12, dtype=torch.float64)
    update = sgd_update(model, x, torch.tensor([4]))
    for layer in ("3", "5", "11"):  # hidden layers and the classifier
        recovery = recover_linear_input(model, update, layer=layer)
        truth = _layer_input(model, layer, x).numpy()
        assert np.allclose(recovery.features, truth, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="candidates"):
        recover_linear_input(model, update, layer="nope")


def test_the_attack_refuses_the_cnn_input_and_points_at_the_features() -> None:
    model = build_model(ModelSpec("cnn", INPUT_SHAPE, NUM_CLASSES), seed=0)
    update = sgd_update(model, torch.rand((1, *INPUT_SHAPE)), torch.tensor([1]))
    result = execute_attack(AnalyticAttack(), model, update, device=CPU, seed=0)
    assert isinstance(result, AttackFailure) and result.status == "not_applicable"
    assert "recover_linear_input" in result.reason and "'7'" in result.reason


def test_details_name_every_neuron_used() -> None:
    model = mlp(1)
    x = torch.rand((1, *INPUT_SHAPE), dtype=torch.float64)
    update = sgd_update(model, x, torch.tensor([2]))
    result = AnalyticAttack(AnalyticConfig(top_k=3)).reconstruct(model, update, device=CPU, seed=0)
    neurons = [int(j) for j in str(result.details["neurons"]).split(",")]
    order = torch.argsort(update.pseudo_gradient()["1.bias"].abs(), descending=True)
    assert neurons == order[:3].tolist()
    assert result.details["neuron"] == neurons[0] and result.details["neurons_used"] == 3


def test_invert_linear_input_formula_and_validity() -> None:
    a = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    dz = torch.tensor([0.0, -2.0, 0.5, 0.0], dtype=torch.float64)
    features, neurons = invert_linear_input(dz[:, None] * a[None, :], dz, top_k=4)
    assert torch.allclose(features, a)
    assert neurons.tolist() == [1, 2]  # inactive neurons (dz = 0) are never used
    with pytest.raises(NoActiveNeuronError, match="no active neuron"):
        invert_linear_input(torch.ones(4, 3), torch.zeros(4))
    with pytest.raises(ValueError, match="not those of one"):
        invert_linear_input(torch.ones(4, 3), torch.ones(3))


def test_recover_linear_input_refuses_batches_and_dead_layers() -> None:
    model = mlp(0)
    batch = sgd_update(
        model, torch.rand((2, *INPUT_SHAPE), dtype=torch.float64), torch.tensor([1, 2])
    )
    with pytest.raises(ValueError, match="batch size 2"):
        recover_linear_input(model, batch)
    first = model.get_submodule("1")
    assert isinstance(first, nn.Linear)
    with torch.no_grad():
        first.bias.fill_(-1000.0)
    dead = sgd_update(model, torch.rand((1, *INPUT_SHAPE), dtype=torch.float64), torch.tensor([1]))
    with pytest.raises(NoActiveNeuronError, match="layer '1'"):
        recover_linear_input(model, dead)


def test_not_applicable_for_fedavg_epochs_over_several_samples() -> None:
    model = mlp(0)
    x = torch.rand((1, *INPUT_SHAPE), dtype=torch.float64)
    update = sgd_update(model, x, torch.tensor([1]), mode="fedavg", local_steps=0)
    update = InterceptedUpdate(**{**update.__dict__, "num_examples": 30})
    result = execute_attack(AnalyticAttack(), model, update, device=CPU, seed=0)
    assert isinstance(result, AttackFailure) and result.status == "not_applicable"
    assert "epochs" in result.reason


def test_fedavg_of_a_single_step_is_a_gradient() -> None:
    model = mlp(2)
    x = torch.rand((1, *INPUT_SHAPE), dtype=torch.float64)
    update = sgd_update(model, x, torch.tensor([5]), mode="fedavg", local_steps=0)  # 1 epoch
    result = execute_attack(AnalyticAttack(), model, update, device=CPU, seed=0)
    assert isinstance(result, Reconstruction)
    assert np.allclose(result.inputs, x.numpy(), rtol=1e-9)
