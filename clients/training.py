"""Local training of one client: FedSGD (one step, one batch) or FedAvg (K steps / E epochs).

Plain SGD without momentum or weight decay, so that for FedSGD
``client = global - lr * grad`` exactly (Geiping et al. 2020, eq. 2) and for FedAvg each local step
is
Geiping et al. 2020's eq. 3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedleak.attacks.losses import training_loss
from fedleak.attacks.types import TrainingHyperparams


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


def _random_batches(
    partition_size: int, hp: TrainingHyperparams, rng: np.random.Generator
) -> list[np.ndarray]:
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


def _one_label_batch(labels: np.ndarray, batch: int, rng: np.random.Generator) -> np.ndarray:
    """``batch`` indices sharing one label, drawn among the labels that have enough samples.

    When no label has ``batch`` samples the most frequent label's samples are all used.
    """
    values, counts = np.unique(labels, return_counts=True)
    eligible = values[counts >= batch]
    label = rng.choice(eligible) if len(eligible) else values[np.argmax(counts)]
    members = np.flatnonzero(labels == label)
    return rng.choice(members, size=min(batch, len(members)), replace=False)


def _equal_label_batches(
    labels: np.ndarray, hp: TrainingHyperparams, rng: np.random.Generator
) -> list[np.ndarray]:
    batch = min(hp.batch_size, len(labels))
    if hp.mode == "fedsgd":
        return [_one_label_batch(labels, batch, rng)]
    if hp.local_steps > 0:
        return [_one_label_batch(labels, batch, rng) for _ in range(hp.local_steps)]
    steps: list[np.ndarray] = []
    for _ in range(hp.local_epochs):
        epoch: list[np.ndarray] = []
        for label in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == label))
            epoch.extend(members[i : i + batch] for i in range(0, len(members), batch))
        steps.extend(epoch[i] for i in rng.permutation(len(epoch)))
    return steps


def batch_schedule(
    labels: np.ndarray,
    hp: TrainingHyperparams,
    rng: np.random.Generator,
    *,
    batch_labels: str = "random",
) -> list[np.ndarray]:
    """Indices into the partition (whose labels are ``labels``) for every local step.

    FedSGD: one batch of ``batch_size`` drawn without replacement. FedAvg: ``local_steps``
    batches when set, otherwise ``local_epochs`` shuffled passes over the partition.
    ``batch_labels="equal"`` draws every batch from a single label (Eloul et al. 2024, section 3:
    equal labels mix the per-sample gradients of the dense layer); an epoch then visits each
    label's samples in batches of that label only.
    """
    if batch_labels == "equal":
        return _equal_label_batches(labels, hp, rng)
    if batch_labels != "random":
        raise ValueError(f"batch_labels must be 'random' or 'equal', got {batch_labels!r}")
    return _random_batches(len(labels), hp, rng)


def train_locally(
    model: nn.Module,
    inputs: np.ndarray,
    labels: np.ndarray,
    hp: TrainingHyperparams,
    *,
    rng: np.random.Generator,
    batch_labels: str = "random",
) -> LocalTrainingResult:
    """Train ``model`` in place on the client's partition ``(inputs, labels)``.

    ``batch_labels``: ``random`` or ``equal`` (see :func:`batch_schedule`).
    """
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=hp.lr, momentum=0.0, weight_decay=0.0)
    schedule = batch_schedule(labels, hp, rng, batch_labels=batch_labels)
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
