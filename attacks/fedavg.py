"""The client's local training as the server can simulate it (Geiping et al. 2020, eqs. 3-4).

In FedAvg a client runs K local SGD steps ``theta_{k+1} = theta_k - lr * grad L(theta_k; batch_k)``
and sends ``theta_K``. The server knows ``lr``, the batch size B, K (or the epochs E) and
``num-examples``, but not which samples went into which batch. Geiping et al. attack such an
update by unrolling the K steps on the unknown data with a differentiable update and matching
the resulting weight difference (their FedAvg experiments: n images, several local steps).

The server's model of the client's schedule, :func:`local_schedule`:

- ``fedsgd`` (or one local step): one batch holding every unknown sample.
- ``fedavg`` with ``local_steps = K > 0``: ``N = min(K * B, num_examples)`` unknown samples (a
  client with fewer than ``K * B`` samples must reuse some); step ``k`` uses samples
  ``(k * B + j) mod N`` for ``j < B``, i.e. K disjoint in-order batches when ``N = K * B``.
  The real client draws its batches at random, so the true assignment is unknowable; the
  in-order one is equivalent up to a permutation of the unknowns when the batches are
  disjoint.
- ``fedavg`` with ``local_steps = 0`` (E epochs): ``N = num_examples`` unknowns, each epoch a
  pass over them in order in batches of B (the last one possibly smaller), as the client does
  over its shuffled partition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from fedleak.attacks.label_restoration import observed_logit_layer, restore_label_counts
from fedleak.attacks.labels import idlg_label
from fedleak.attacks.losses import effective_batch_size, model_gradient, training_loss
from fedleak.attacks.types import InterceptedUpdate


@dataclass(frozen=True)
class LocalSchedule:
    """Which unknown samples each simulated local step trains on.

    Attributes
    ----------
    num_samples : int
        Number of unknown samples N the attack reconstructs.
    batches : tuple[tuple[int, ...], ...]
        Per local step, the indices (into the N unknowns) of its batch, in step order.
    """

    num_samples: int
    batches: tuple[tuple[int, ...], ...]

    @property
    def num_steps(self) -> int:
        """Number of local SGD steps K."""
        return len(self.batches)

    @property
    def num_slots(self) -> int:
        """Samples summed over all steps (``K * B`` for full batches)."""
        return sum(len(batch) for batch in self.batches)


def local_schedule(update: InterceptedUpdate) -> LocalSchedule:
    """The server's reconstruction of the client's local schedule (see the module docstring).

    Raises
    ------
    ValueError
        If ``fedavg`` mode has neither local steps nor local epochs.
    """
    hp = update.hyperparams
    batch = effective_batch_size(update)
    if hp.mode == "fedsgd" or hp.local_steps == 1:
        return LocalSchedule(batch, (tuple(range(batch)),))
    if hp.local_steps > 0:
        total = hp.local_steps * batch
        count = min(total, update.num_examples) if update.num_examples > 0 else total
        batches = tuple(
            tuple((k * batch + j) % count for j in range(batch)) for k in range(hp.local_steps)
        )
        return LocalSchedule(count, batches)
    if hp.local_epochs < 1:
        raise ValueError(
            f"fedavg with local_steps=0 needs local_epochs >= 1, got {hp.local_epochs}"
        )
    count = update.num_examples if update.num_examples > 0 else batch
    epoch = tuple(tuple(range(i, min(i + batch, count))) for i in range(0, count, batch))
    return LocalSchedule(count, epoch * hp.local_epochs)


def local_step_count(update: InterceptedUpdate) -> int:
    """Number of local SGD steps the update is the result of, as far as the server can tell."""
    return local_schedule(update).num_steps


def infer_local_labels(
    model: nn.Module, update: InterceptedUpdate, schedule: LocalSchedule
) -> np.ndarray:
    """Labels of the N unknowns from the aggregated last-layer update (iDLG / label restoration).

    The FedAvg pseudo-gradient ``(global - client) / lr`` is the sum of the K steps' batch-mean
    gradients, i.e. ``num_slots / B`` times the mean per-sample gradient when the parameters
    drift little during the K steps; it is rescaled to that mean before
    :func:`~fedleak.attacks.label_restoration.restore_label_counts` restores N labels (class order):
    exact for one step of an untrained network, the count estimate's refinement beyond.
    """
    if schedule.num_samples == 1:
        layer = observed_logit_layer(model, update)
        return np.array([idlg_label(layer.weight_grad, layer.bias_grad)], dtype=np.int64)
    scale = max(len(batch) for batch in schedule.batches) / schedule.num_slots
    layer = observed_logit_layer(model, update, scale)
    return restore_label_counts(layer, schedule.num_samples).labels


def simulated_update(
    model: nn.Module,
    loss_name: str,
    lr: float,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    schedule: LocalSchedule,
    *,
    create_graph: bool = False,
) -> list[torch.Tensor]:
    """``(theta_0 - theta_K) / lr`` after the schedule's K local SGD steps on ``inputs``.

    This is the sum of the K steps' gradients, each taken at the parameters the previous
    steps produced, and it is what the server observes as ``update.pseudo_gradient()``.
    With ``create_graph`` the whole unrolled update is differentiable w.r.t. ``inputs``
    (Geiping et al.'s FedAvg attack). One step is exactly
    :func:`~fedleak.attacks.losses.model_gradient`.

    Parameters
    ----------
    model : nn.Module
        The global model; its parameters are not modified.
    loss_name : str
        The clients' training loss (:func:`~fedleak.attacks.losses.training_loss`).
    lr : float
        The clients' SGD learning rate.
    inputs, labels : torch.Tensor
        The N unknowns ``(N, *input_shape)`` and their labels ``(N,)`` (or soft ``(N, C)``).
    schedule : LocalSchedule
        Which of the N samples each step uses.
    create_graph : bool
        Keep the graph for double backpropagation.

    Returns
    -------
    list[torch.Tensor]
        One tensor per parameter, in ``model.named_parameters()`` order.
    """
    if schedule.num_steps == 1 and len(schedule.batches[0]) == inputs.shape[0]:
        return model_gradient(model, loss_name, inputs, labels, create_graph=create_graph)
    names = [name for name, _ in model.named_parameters()]
    params: list[torch.Tensor] = [param for _, param in model.named_parameters()]
    total: list[torch.Tensor] = [torch.zeros_like(p) for p in params]
    for batch in schedule.batches:
        first, size = batch[0], len(batch)
        if batch == tuple(range(first, first + size)):  # a slice is cheaper than a gather
            x, y = inputs[first : first + size], labels[first : first + size]
        else:
            index = torch.as_tensor(batch, device=inputs.device)
            x, y = inputs[index], labels[index]
        logits = functional_call(model, dict(zip(names, params, strict=True)), (x,))
        loss = training_loss(loss_name, logits, y)
        grads = torch.autograd.grad(loss, params, create_graph=create_graph, allow_unused=True)
        steps = [
            torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)
        ]
        total = [t + g for t, g in zip(total, steps, strict=True)]
        params = [p - lr * g for p, g in zip(params, steps, strict=True)]
    return total
