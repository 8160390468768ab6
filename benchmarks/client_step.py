"""What a fedleak client sends after training on a batch: the update builders of the benchmarks.

Every benchmark that attacks a single update builds it the way a real client does: a copy of
the global model trained by :func:`fedleak.clients.training.train_locally` (one FedSGD step, or
K FedAvg steps), both state dicts snapshotted into an
:class:`~fedleak.attacks.types.InterceptedUpdate`, and the samples and labels in the order
the client used them (the ground truth a reconstruction is scored against).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from fedleak.attacks.losses import model_gradient
from fedleak.attacks.types import InputDomain, InterceptedUpdate, TrainingHyperparams
from fedleak.clients.training import train_locally


@dataclass(frozen=True)
class ClientStep:
    """One client's update and the batch behind it.

    Attributes
    ----------
    update : InterceptedUpdate
        What the server sees.
    inputs, labels : np.ndarray
        The samples the client trained on, in the order it used them.
    """

    update: InterceptedUpdate
    inputs: np.ndarray
    labels: np.ndarray


def numpy_state(model: torch.nn.Module) -> OrderedDict[str, np.ndarray]:
    """A copy of ``model``'s state dict as numpy arrays (parameters and buffers)."""
    return OrderedDict((k, v.detach().cpu().numpy().copy()) for k, v in model.state_dict().items())


def client_step(
    model: torch.nn.Module,
    inputs: np.ndarray,
    labels: np.ndarray,
    hyperparams: TrainingHyperparams,
    *,
    num_classes: int,
    rng: np.random.Generator,
    node_id: int = 1,
    batch_labels: str = "random",
    disclose_labels: bool = False,
) -> ClientStep:
    """Train a copy of the global ``model`` on ``(inputs, labels)`` as a client does.

    Parameters
    ----------
    model : torch.nn.Module
        The global model; left as it was.
    inputs, labels : np.ndarray
        The client's partition.
    hyperparams : TrainingHyperparams
        Mode, learning rate, batch size, local steps and loss.
    num_classes : int
        Classes of the task (the update records it).
    rng : np.random.Generator
        Draws the client's batches.
    node_id : int
        The client's id in the update.
    batch_labels : {"random", "equal"}
        How the client composes its batches (gradient mixing's equal-label batches).
    disclose_labels : bool
        Record the labels used in the update (a threat model where the server knows them).
    """
    client = copy.deepcopy(model)
    before = numpy_state(model)
    result = train_locally(client, inputs, labels, hyperparams, rng=rng, batch_labels=batch_labels)
    update = InterceptedUpdate(
        server_round=1,
        node_id=node_id,
        global_params=before,
        client_params=numpy_state(client),
        num_examples=result.num_examples,
        hyperparams=hyperparams,
        input_shape=tuple(int(s) for s in inputs.shape[1:]),
        num_classes=num_classes,
        disclosed_labels=result.used_labels if disclose_labels else None,
    )
    return ClientStep(update, result.used_inputs, result.used_labels)


def one_step_update(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    lr: float,
    num_classes: int,
    *,
    input_domain: InputDomain | None = None,
) -> InterceptedUpdate:
    """The FedSGD update of one SGD step on exactly ``(x, y)``, in this order.

    Unlike :func:`client_step`, no batch is drawn: the step is taken on the given tensors
    (cross-entropy, in the model's current mode and dtype), so a benchmark controls the batch
    and its precision. Buffers (BatchNorm's running statistics) carry what the forward pass
    did to them, as a client's reply does; ``model`` is left as it was.

    Parameters
    ----------
    model : torch.nn.Module
        The global model.
    x, y : torch.Tensor
        The batch and its labels.
    lr : float
        The client's learning rate.
    num_classes : int
        Classes of the task.
    input_domain : InputDomain, optional
        The data's schema, for tabular and signal data.
    """
    before = numpy_state(model)
    names = [name for name, _ in model.named_parameters()]
    grads = dict(zip(names, model_gradient(model, "cross_entropy", x, y), strict=True))
    moved = numpy_state(model)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in before.items()})
    after = OrderedDict(
        (k, v - np.asarray(lr, dtype=v.dtype) * grads[k].detach().cpu().numpy())
        if k in grads
        else (k, moved[k])
        for k, v in before.items()
    )
    batch = int(x.shape[0])
    return InterceptedUpdate(
        server_round=1,
        node_id=1,
        global_params=before,
        client_params=after,
        num_examples=batch,
        hyperparams=TrainingHyperparams("fedsgd", lr, batch, local_steps=1),
        input_shape=tuple(int(s) for s in x.shape[1:]),
        num_classes=num_classes,
        input_domain=input_domain if input_domain is not None else InputDomain(),
    )
