"""Local training does what the server configured: FedSGD one step, FedAvg K steps / E epochs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fedleak.attacks.losses import training_loss
from fedleak.attacks.types import TrainingHyperparams
from fedleak.clients.training import batch_schedule, train_locally


def _data(n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, 1, 4, 4), dtype=np.float32), rng.integers(0, 3, n).astype(np.int64)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def test_fedsgd_is_one_plain_sgd_step_on_one_batch() -> None:
    inputs, labels = _data()
    hp = TrainingHyperparams(mode="fedsgd", lr=0.5, batch_size=4, local_steps=1)
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    result = train_locally(model, inputs, labels, hp, rng=np.random.default_rng(1))
    assert result.num_examples == 4 and len(result.used_labels) == 4
    reference = _model()
    loss = training_loss(
        "cross_entropy",
        reference(torch.from_numpy(result.used_inputs)),
        torch.from_numpy(result.used_labels),
    )
    grads = torch.autograd.grad(loss, list(reference.parameters()))
    for b, after, g in zip(before, model.parameters(), grads, strict=True):
        torch.testing.assert_close(after.detach(), b - 0.5 * g)


def test_fedavg_runs_k_steps_and_reports_its_partition_size() -> None:
    inputs, labels = _data(20)
    hp = TrainingHyperparams(mode="fedavg", lr=0.1, batch_size=4, local_steps=3)
    result = train_locally(_model(), inputs, labels, hp, rng=np.random.default_rng(0))
    assert len(result.used_labels) == 3 * 4
    assert result.num_examples == 20


def test_fedavg_epochs_visit_every_sample_once_per_epoch() -> None:
    hp = TrainingHyperparams(mode="fedavg", lr=0.1, batch_size=6, local_steps=0, local_epochs=2)
    steps = batch_schedule(np.zeros(20, dtype=np.int64), hp, np.random.default_rng(0))
    assert [len(s) for s in steps] == [6, 6, 6, 2] * 2
    first, second = np.concatenate(steps[:4]), np.concatenate(steps[4:])
    assert sorted(first) == sorted(second) == list(range(20))


def test_batch_never_exceeds_the_partition() -> None:
    hp = TrainingHyperparams(mode="fedsgd", lr=0.1, batch_size=50, local_steps=1)
    (batch,) = batch_schedule(np.zeros(7, dtype=np.int64), hp, np.random.default_rng(0))
    assert sorted(batch) == list(range(7))


def test_equal_label_batches_hold_one_label_each() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2], dtype=np.int64)
    rng = np.random.default_rng(3)
    for hp in (
        TrainingHyperparams(mode="fedsgd", lr=0.1, batch_size=4, local_steps=1),
        TrainingHyperparams(mode="fedavg", lr=0.1, batch_size=3, local_steps=5),
    ):
        steps = batch_schedule(labels, hp, rng, batch_labels="equal")
        assert all(len(set(labels[s])) == 1 and len(s) == hp.batch_size for s in steps)
    hp = TrainingHyperparams(mode="fedavg", lr=0.1, batch_size=2, local_steps=0, local_epochs=1)
    epoch = batch_schedule(labels, hp, rng, batch_labels="equal")
    assert all(len(set(labels[s])) == 1 for s in epoch)
    assert sorted(np.concatenate(epoch)) == list(range(len(labels)))


def test_equal_label_batch_falls_back_to_the_largest_label() -> None:
    labels = np.array([0, 1, 1, 2], dtype=np.int64)
    hp = TrainingHyperparams(mode="fedsgd", lr=0.1, batch_size=4, local_steps=1)
    (batch,) = batch_schedule(labels, hp, np.random.default_rng(0), batch_labels="equal")
    assert sorted(batch) == [1, 2]


def test_erroneous_batch_labels_is_refused() -> None:
    hp = TrainingHyperparams(mode="fedsgd", lr=0.1, batch_size=1, local_steps=1)
    with pytest.raises(ValueError, match="batch_labels"):
        batch_schedule(np.zeros(3, dtype=np.int64), hp, np.random.default_rng(0), batch_labels="x")
