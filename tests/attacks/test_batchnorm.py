"""BatchNorm buffers in an update: exact batch statistics, and attacks that accept them."""

from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from fedleak.attacks import InterceptedUpdate, TrainingHyperparams, create_attack, execute_attack
from fedleak.attacks.batchnorm import (
    BatchStatisticsPrior,
    StatisticsUnavailableError,
    batchnorm_layers,
    recover_batch_statistics,
)
from fedleak.attacks.types import Reconstruction
from fedleak.clients.training import train_locally
from fedleak.simulator.models.architectures import ModelSpec, build_model

SHAPE = (3, 16, 16)


def _state(model: nn.Module) -> OrderedDict[str, np.ndarray]:
    return OrderedDict((k, v.detach().numpy().copy()) for k, v in model.state_dict().items())


def _true_statistics(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, ...]]:
    """Per BatchNorm layer, mean and biased variance of its input on ``x`` (training mode)."""
    seen: dict[str, tuple[torch.Tensor, ...]] = {}

    def hook(name: str):  # type: ignore[no-untyped-def]
        def record(_m: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            flat = args[0].detach().transpose(0, 1).flatten(1)
            seen[name] = (flat.mean(1), flat.var(1, unbiased=False))

        return record

    probe = copy.deepcopy(model).train()
    handles = [m.register_forward_pre_hook(hook(n)) for n, m in batchnorm_layers(probe)]
    probe(x)
    for handle in handles:
        handle.remove()
    return seen


def _client_update(
    batch: int, hp: TrainingHyperparams | None = None, partition: int | None = None
) -> tuple[nn.Module, InterceptedUpdate, torch.Tensor]:
    model = build_model(ModelSpec("resnet18", SHAPE, 10), seed=0).train()
    hp = hp or TrainingHyperparams("fedsgd", 0.1, batch, 1)
    rng = np.random.default_rng(1)
    inputs = rng.random((partition or batch, *SHAPE), dtype=np.float32)
    labels = rng.integers(0, 10, partition or batch).astype(np.int64)
    client = copy.deepcopy(model)
    result = train_locally(client, inputs, labels, hp, rng=rng)
    update = InterceptedUpdate(
        1, 1, _state(model), _state(client), result.num_examples, hp, SHAPE, 10
    )
    return model, update, torch.from_numpy(result.used_inputs)


@pytest.mark.parametrize("batch", [1, 4])
def test_statistics_recovered_from_update_equal_the_batch_statistics(batch: int) -> None:
    model, update, used = _client_update(batch)
    truth = _true_statistics(model, used)
    recovered = recover_batch_statistics(model, update)
    assert list(recovered.layers) == [n for n, _ in batchnorm_layers(model)]
    assert len(recovered.layers) == 20
    for name, mean, var in zip(recovered.layers, recovered.means, recovered.variances, strict=True):
        true_mean, true_var = truth[name]
        torch.testing.assert_close(mean, true_mean, atol=1e-4, rtol=1e-3)
        torch.testing.assert_close(var, true_var, atol=1e-4, rtol=1e-3)


def test_prior_is_zero_at_the_true_batch_and_positive_elsewhere() -> None:
    model, update, used = _client_update(4)
    prior = BatchStatisticsPrior(model, recover_batch_statistics(model, update))
    with prior.capture() as captured:
        model(used)
    at_truth = float(prior.distance(captured).detach())
    with prior.capture() as captured:
        model(torch.rand_like(used))
    assert at_truth < 1e-3 < float(prior.distance(captured).detach())


def test_several_local_steps_reveal_no_single_batch_statistics() -> None:
    hp = TrainingHyperparams("fedavg", 0.1, 2, 2)
    model, update, _ = _client_update(2, hp, partition=4)
    with pytest.raises(StatisticsUnavailableError, match="several local steps"):
        recover_batch_statistics(model, update)


def test_an_update_without_buffers_falls_back_to_plain_matching() -> None:
    model, update, _ = _client_update(2)
    names = {n for n, _ in model.named_parameters()}
    params_only = InterceptedUpdate(
        1,
        1,
        OrderedDict((k, v) for k, v in update.global_params.items() if k in names),
        OrderedDict((k, v) for k, v in update.client_params.items() if k in names),
        update.num_examples,
        update.hyperparams,
        SHAPE,
        10,
    )
    attack = create_attack("inverting_gradients", {"iterations": 2})
    outcome = execute_attack(attack, model, params_only, device=torch.device("cpu"), seed=0)
    assert isinstance(outcome, Reconstruction), outcome
    assert str(outcome.details["batchnorm_prior"]).startswith("off: the update carries no buffer")
    with_buffers = execute_attack(attack, model, update, device=torch.device("cpu"), seed=0)
    assert isinstance(with_buffers, Reconstruction)
    assert with_buffers.details["batchnorm_prior"] == "on"


def test_pseudo_gradient_skips_the_integer_step_counter() -> None:
    _, update, _ = _client_update(2)
    pseudo = update.pseudo_gradient()
    assert "bn1.num_batches_tracked" not in pseudo
    assert "bn1.running_mean" in pseudo  # floating buffers stay available to who asks
    only = update.pseudo_gradient(["fc.bias", "bn1.num_batches_tracked"])
    assert float(only["bn1.num_batches_tracked"]) == pytest.approx(-1 / 0.1)
