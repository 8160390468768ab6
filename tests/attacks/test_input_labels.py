"""Attacks that recover inputs exactly derive labels from them: exact inputs, right labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fedleak.attacks import Reconstruction, create_attack, execute_attack
from fedleak.attacks.input_labels import labels_from_inputs
from fedleak.attacks.losses import model_gradient
from fedleak.simulator.metrics.leakage import compute_leakage
from fedleak.simulator.models.architectures import ModelSpec, build_model
from tests.attacks.cases import CPU, NUM_CLASSES, one_thread, sgd_update  # noqa: F401
from tests.attacks.test_spear import digits

pytestmark = pytest.mark.usefixtures("one_thread")

EXACT_DB = 80.0
"""Every input recovered to at least this: float32 updates put exact recoveries at 90-140 dB,
so this covers more cases than the 100 dB that counts as exact elsewhere."""


def _trained_mlp(steps: int) -> nn.Module:
    """The federation's mlp after ``steps`` FedSGD steps at lr 0.5 on digits (B = 32)."""
    model = build_model(ModelSpec("mlp", (1, 8, 8), NUM_CLASSES), seed=0)
    x, y = digits(99, 32 * steps, torch.float32)
    for step in range(steps):
        batch = slice(32 * step, 32 * (step + 1))
        grads = model_gradient(model, "cross_entropy", x[batch], y[batch])
        with torch.no_grad():
            for param, grad in zip(model.parameters(), grads, strict=True):
                param -= 0.5 * grad
    return model


def _case(attack: str, seed: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Model and batch: B=1 (analytic), B=4 distinct labels (direct_batch), B=8 (spear)."""
    size = {"analytic": 1, "direct_batch": 4, "spear": 8}[attack]
    x, y = digits(seed, size, torch.float32)
    if attack == "direct_batch":  # eq. 8 is exact for distinct labels
        y = torch.randperm(NUM_CLASSES, generator=torch.Generator().manual_seed(seed))[:size]
    name = ("mlp", "fcnn")[seed % 2]
    model = build_model(ModelSpec(name, (1, 8, 8), NUM_CLASSES), seed=seed)
    if seed >= 4 and attack != "direct_batch":
        model = _trained_mlp(5 * seed)
    return model, x, y


@pytest.mark.parametrize("attack", ["analytic", "direct_batch", "spear"])
def test_label_accuracy_is_1_whenever_every_input_is_recovered(attack: str) -> None:
    exact = 0
    for seed in range(6):
        model, x, y = _case(attack, seed)
        result = execute_attack(
            create_attack(attack), model, sgd_update(model, x, y), device=CPU, seed=0
        )
        assert isinstance(result, Reconstruction), result
        metrics = compute_leakage(x.numpy(), y.numpy(), result.inputs, result.labels)
        if metrics.psnr_min >= EXACT_DB:
            exact += 1
            assert metrics.label_accuracy == 1.0, (seed, metrics.label_accuracy)
    assert exact == 6  # the premise holds on every case, so the test says something


def test_labels_from_inputs_follow_the_inputs_order_with_repeated_labels() -> None:
    model = build_model(ModelSpec("mlp", (1, 8, 8), NUM_CLASSES), seed=1)
    x, _ = digits(5, 6, torch.float32)
    y = torch.tensor([7, 2, 7, 7, 0, 2])
    update = sgd_update(model, x, y)
    order = torch.tensor([3, 0, 5, 1, 4, 2])
    labels, confidence, residual = labels_from_inputs(model, update, x[order])
    assert labels.tolist() == y[order].tolist()
    assert residual < 1e-4 and float(confidence.min()) > 0.99


def test_labels_from_wrong_inputs_do_not_reproduce_the_gradient() -> None:
    model = build_model(ModelSpec("mlp", (1, 8, 8), NUM_CLASSES), seed=2)
    x, y = digits(6, 4, torch.float32)
    update = sgd_update(model, x, y)
    _, _, residual = labels_from_inputs(model, update, torch.rand_like(x))
    assert residual > 1e-2
    assert np.isfinite(residual)
