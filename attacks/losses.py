"""Training losses and gradients as the client computes them, and the gradient the server observes.

The attacks re-run the client's objective on candidate inputs, so the loss here must be the
one the clients train with: the mean over the batch of a per-sample loss (Geiping et al. 2020, eq.
2).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from fedleak.attacks.types import InterceptedUpdate

LOSS_NAMES: tuple[str, ...] = ("cross_entropy", "mse")
"""Accepted values of ``TrainingHyperparams.loss`` and of :func:`training_loss`'s ``name``."""


def _as_probabilities(labels: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """Turn integer labels ``(B,)`` into one-hot rows; pass soft labels ``(B, C)`` through."""
    if labels.is_floating_point():
        if labels.shape[-1] != num_classes:
            raise ValueError(
                f"soft labels have {labels.shape[-1]} classes, logits have {num_classes}"
            )
        return labels.to(dtype)
    return F.one_hot(labels.long(), num_classes).to(dtype)


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if labels.is_floating_point():
        return F.cross_entropy(logits, labels.to(logits.dtype))
    return F.cross_entropy(logits, labels.long())


def _softmax_mse(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    targets = _as_probabilities(labels, logits.shape[-1], logits.dtype)
    return (F.softmax(logits, dim=-1) - targets).pow(2).sum(dim=-1).mean()


_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cross_entropy": _cross_entropy,
    "mse": _softmax_mse,
}


def training_loss(name: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean batch loss the clients train with.

    Parameters
    ----------
    name : {"cross_entropy", "mse"}
        ``cross_entropy``: softmax cross-entropy (Zhao et al. 2020's iDLG derivation assumes it).
        ``mse``: squared error between ``softmax(logits)`` and the one-hot (or soft) labels,
        summed over classes -- Eloul et al. 2024's gradient-mixing defense, ``sum_k (y_k - p_k)^2``.
    logits : torch.Tensor
        Model outputs, shape ``(B, C)``.
    labels : torch.Tensor
        Integer class indices ``(B,)`` or soft label probabilities ``(B, C)`` (floating point).

    Returns
    -------
    torch.Tensor
        Scalar: the per-sample loss averaged over the batch.

    Raises
    ------
    ValueError
        If ``name`` is not one of :data:`LOSS_NAMES`.
    """
    try:
        loss = _LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; accepted: {list(LOSS_NAMES)}") from None
    return loss(logits, labels)


def parameter_names(model: nn.Module) -> list[str]:
    """Names of ``model``'s parameters in ``model.parameters()`` order (state-dict names).

    Buffers (e.g. BatchNorm running statistics) are excluded: they carry no gradient.
    """
    return [name for name, _ in model.named_parameters()]


def model_gradient(
    model: nn.Module,
    loss_name: str,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    create_graph: bool = False,
) -> list[torch.Tensor]:
    """Gradient of the mean batch loss w.r.t. ``model.parameters()``, in that order.

    Parameters
    ----------
    model : nn.Module
        The model, in the mode (train/eval) the client trains in.
    loss_name : str
        See :func:`training_loss`.
    inputs : torch.Tensor
        Batch ``(B, *input_shape)``.
    labels : torch.Tensor
        Integer ``(B,)`` or soft ``(B, C)`` labels.
    create_graph : bool
        Keep the graph so the result can be differentiated again (double backprop, needed
        to optimise inputs against a gradient-matching loss, Geiping et al. 2020 eq. 13).

    Returns
    -------
    list[torch.Tensor]
        One tensor per parameter; zeros for parameters the loss does not depend on.
    """
    params = list(model.parameters())
    loss = training_loss(loss_name, model(inputs), labels)
    grads = torch.autograd.grad(loss, params, create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)]


def observed_gradient(model: nn.Module, update: InterceptedUpdate) -> list[torch.Tensor]:
    """The intercepted pseudo-gradient, aligned with ``model.named_parameters()``.

    Each tensor is moved to its parameter's device and dtype. In FedSGD mode this is the
    client's batch gradient exactly (Geiping et al. 2020, eq. 2); in FedAvg mode it is the sum of
    the
    K local gradients, which attacks in this package treat as one gradient.

    Raises
    ------
    KeyError
        If the update lacks one of the model's parameters.
    ValueError
        If a parameter's shape differs from the update's.
    """
    names = [name for name, _ in model.named_parameters()]
    missing = [name for name in names if name not in update.global_params]
    if missing:
        raise KeyError(
            f"update has no parameter {missing[0]!r}; it has {list(update.global_params)}"
        )
    pseudo = update.pseudo_gradient(names)  # buffers carry no gradient: side information only
    observed: list[torch.Tensor] = []
    for name, param in model.named_parameters():
        grad = pseudo[name]
        if tuple(grad.shape) != tuple(param.shape):
            raise ValueError(
                f"parameter {name!r}: update shape {tuple(grad.shape)}, "
                f"model shape {tuple(param.shape)}"
            )
        observed.append(grad.to(device=param.device, dtype=param.dtype))
    return observed


def effective_batch_size(update: InterceptedUpdate) -> int:
    """Number of samples in the client's (single) batch, as far as the server can tell.

    A client whose partition is smaller than the configured batch size trains on fewer
    samples; its ``num_examples`` then says so. ``num_examples <= 0`` is ignored.
    """
    configured = update.hyperparams.batch_size
    if update.num_examples > 0:
        return max(1, min(configured, update.num_examples))
    return configured


def input_numel(update: InterceptedUpdate) -> int:
    """Number of scalars in one input sample."""
    return math.prod(update.input_shape)
