"""Local training of one client: FedSGD (one step, one batch) or FedAvg (K steps / E epochs).

Plain SGD without momentum or weight decay, so that for FedSGD
``client = global - lr * grad`` exactly (seed 001, eq. 2) and for FedAvg each local step is
seed 001's eq. 3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from attacks.losses import training_loss
from attacks.types import TrainingHyperparams


@dataclass(frozen=True)
class LocalTrainingResult:
    """What one round of local training produced.

    Attributes
    ----------
    mean_loss : float
        Mean of the per-step batch losses (before each step).
    num_examples : int
        Examples used, the weight FedAvg gives this client (one batch in FedSGD).
    used_inputs, used_labels : np.ndarray
        The exact samples of every step, in order (for the audit store).
    """

    mean_loss: float
    num_examples: int
    used_inputs: np.ndarray
    used_labels: np.ndarray


def batch_schedule(
    partition_size: int,
    hp: TrainingHyperparams,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Indices into the partition for every local step.

    FedSGD: one batch of ``batch_size`` drawn without replacement. FedAvg: ``local_steps``
    batches when set, otherwise ``local_epochs`` shuffled passes over the partition.
    """
    batch = min(hp.batch_size, partition_size)
    if hp.mode == "fedsgd":
        return [rng.choice(partition_size, size=batch, replace=False)]
    if hp.local_steps > 0:
        return [
            rng.choice(partition_size, size=batch, replace=False) for _ in range(hp.local_steps)
        ]
    steps: list[np.ndarray] = []
    for _ in range(hp.local_epochs):
        order = rng.permutation(partition_size)
        steps.extend(order[i : i + batch] for i in range(0, partition_size, batch))
    return steps


def train_locally(
    model: nn.Module,
    inputs: np.ndarray,
    labels: np.ndarray,
    hp: TrainingHyperparams,
    *,
    rng: np.random.Generator,
) -> LocalTrainingResult:
    """Train ``model`` in place on the client's partition ``(inputs, labels)``."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=hp.lr, momentum=0.0, weight_decay=0.0)
    schedule = batch_schedule(len(labels), hp, rng)
    losses = []
    for idx in schedule:
        x = torch.from_numpy(inputs[idx])
        y = torch.from_numpy(labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss = training_loss(hp.loss, model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    used = np.concatenate(schedule)
    num_examples = len(used) if hp.mode == "fedsgd" else len(labels)
    return LocalTrainingResult(
        mean_loss=float(np.mean(losses)),
        num_examples=num_examples,
        used_inputs=inputs[used],
        used_labels=labels[used],
    )
