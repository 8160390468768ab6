"""SPEAR behind a binary head (attacks/spear_binary.py): alike inputs, two-valued columns."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from fedleak.attacks import AttackFailure, Reconstruction, TrainingHyperparams, execute_attack
from fedleak.attacks.spear import SpearAttack, SpearConfig
from fedleak.attacks.spear_layers import binary_head
from fedleak.simulator.data.datasets import load_dataset
from fedleak.simulator.models.architectures import ModelSpec, build_model
from tests.attacks.cases import CPU, one_thread, sgd_update  # noqa: F401
from tests.attacks.test_spear import matched_psnr

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[2]


def gunpoint_update(batch: int, index: int) -> tuple[torch.nn.Module, torch.Tensor, object]:
    """The update of ``benchmarks/signals.py``: ``batch`` GunPoint series, the 2-class mlp."""
    train = load_dataset("gunpoint", data_dir=ROOT / "data", seed=0, test_fraction=0.2).train
    rows = np.random.default_rng(100 * batch + index).choice(len(train), batch, replace=False)
    x, y = torch.from_numpy(train.inputs[rows]), torch.from_numpy(train.labels[rows])
    model = build_model(ModelSpec("mlp", train.input_shape, train.num_classes), seed=index)
    update = replace(sgd_update(model, x, y), num_classes=2, input_domain=train.domain)
    return model, x, (y, update)


@pytest.mark.parametrize("batch,index", [(4, 0), (8, 0), (8, 1)])
def test_alike_series_behind_a_binary_head_are_recovered_exactly(batch: int, index: int) -> None:
    """GunPoint's series are so alike that 66-77 live neurons fall into a few dozen ReLU
    patterns: the sparse search found 0-1 of the B columns in 30 s on these updates."""
    model, x, (y, update) = gunpoint_update(batch, index)
    attack = SpearAttack(SpearConfig(time_budget_s=20.0))
    result = execute_attack(attack, model, update, device=CPU, seed=0)
    assert isinstance(result, Reconstruction), result
    assert min(matched_psnr(x, result.inputs)) >= 100.0
    assert sorted(result.labels.tolist()) == sorted(y.tolist())
    assert result.details["assembled"] == 1


def test_the_binary_head_needs_two_outputs_and_cross_entropy() -> None:
    model, _, (_, update) = gunpoint_update(4, 0)
    layer, head = model[1], model[3]
    expected = (head.weight[0] - head.weight[1]).detach()
    found = binary_head(model, layer, update)
    assert found is not None and torch.equal(found, expected)
    mse = replace(update, hyperparams=TrainingHyperparams("fedsgd", 0.1, 4, 1, loss="mse"))
    assert binary_head(model, layer, mse) is None
    ten = build_model(ModelSpec("mlp", (1, 150), 10), seed=0)
    assert binary_head(ten, ten[1], update) is None


def test_a_batch_whose_patterns_do_not_span_b_names_that_cause() -> None:
    """Two copies of one series: no attack on the first layer can tell them apart."""
    model, x, (y, update) = gunpoint_update(4, 0)
    x = torch.cat([x[:3], x[:1]])
    update = replace(sgd_update(model, x, torch.cat([y[:3], y[:1]])), num_classes=2)
    result = execute_attack(
        SpearAttack(SpearConfig(time_budget_s=2.0)), model, update, device=CPU, seed=0
    )
    assert isinstance(result, AttackFailure) and result.status == "failed"
    assert "the gradient has rank < B = 4" in result.reason
