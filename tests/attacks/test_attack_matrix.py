"""Every registered attack on every registered model, in every training mode: a result, never a bug.

The update comes from fedleak's own client code, so it carries what a real client sends:
BatchNorm running statistics and the integer step counter included. An attack may decline
(``not_applicable``, with its reason) or give up for a reason it states; it must never fail
from an exception it did not mean to raise. New models and attacks join by being registered.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import OrderedDict

import numpy as np
import pytest
import torch

from fedleak import attacks
from fedleak.attacks import InterceptedUpdate, TrainingHyperparams, create_attack, execute_attack
from fedleak.attacks.types import AttackFailure, Reconstruction
from fedleak.clients.training import train_locally
from fedleak.simulator.models.architectures import ModelSpec, available_models, build_model

SHAPE = (3, 16, 16)
NUM_CLASSES = 4
TINY_BUDGET = {"iterations": 2, "restarts": 1, "max_samples": 20_000, "refine_steps": 2}
"""Settings that keep every attack short here, applied where an attack has them."""
DELIBERATE = ("ValueError", "NoActiveNeuronError", "StatisticsUnavailableError")
"""Exception types attacks raise on purpose, with a reason, when the data defeat them."""

MODES = {
    "fedsgd-b1": (TrainingHyperparams("fedsgd", 0.1, 1, 1), 1),
    "fedsgd-b4": (TrainingHyperparams("fedsgd", 0.1, 4, 1), 4),
    "fedavg-2-steps": (TrainingHyperparams("fedavg", 0.1, 2, 2), 4),
}


def client_update(model_name: str, mode: str) -> tuple[torch.nn.Module, InterceptedUpdate]:
    hp, partition = MODES[mode]
    model = build_model(ModelSpec(model_name, SHAPE, NUM_CLASSES), seed=0).train()
    rng = np.random.default_rng(0)
    inputs = rng.random((partition, *SHAPE), dtype=np.float32)
    labels = np.arange(partition, dtype=np.int64) % NUM_CLASSES
    before = OrderedDict((k, v.detach().numpy().copy()) for k, v in model.state_dict().items())
    client = copy.deepcopy(model)
    result = train_locally(client, inputs, labels, hp, rng=rng)
    after = OrderedDict((k, v.detach().numpy().copy()) for k, v in client.state_dict().items())
    update = InterceptedUpdate(1, 7, before, after, result.num_examples, hp, SHAPE, NUM_CLASSES)
    return model, update


def tiny_params(name: str) -> dict[str, object]:
    fields = {f.name for f in dataclasses.fields(attacks.attack_class(name).config_class)}
    return {key: value for key, value in TINY_BUDGET.items() if key in fields}


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("model_name", available_models())
@pytest.mark.parametrize("attack_name", attacks.available_attacks())
def test_every_attack_gives_a_result_on_every_model(
    attack_name: str, model_name: str, mode: str
) -> None:
    torch.manual_seed(0)
    model, update = client_update(model_name, mode)
    attack = create_attack(attack_name, tiny_params(attack_name))
    outcome = execute_attack(attack, model, update, device=torch.device("cpu"), seed=0)
    if isinstance(outcome, Reconstruction):
        assert outcome.inputs.shape[1:] == SHAPE
        assert len(outcome.labels) == len(outcome.inputs)
        assert np.isfinite(outcome.inputs).all()
        return
    assert isinstance(outcome, AttackFailure)
    assert outcome.reason, "a failure must say why"
    if outcome.status == "failed":
        kind = outcome.reason.split(":", 1)[0]
        assert kind in DELIBERATE, f"{attack_name} on {model_name} ({mode}) crashed: {outcome}"
    else:
        assert outcome.status == "not_applicable", outcome
