"""Closed-form inversion of a first fully-connected layer for one sample (seed 000, problem 1.2).

For ``z1 = W1 x + b1``, row ``j`` of ``dL/dW1`` is ``dL/dz1[j] * x`` and ``dL/db1[j]`` is
``dL/dz1[j]``, hence ``x = dL/dW1[j, :] / dL/db1[j]`` for any neuron with
``dL/db1[j] != 0`` (an active neuron: after a ReLU, ``z1[j] > 0``). The identity holds only
for a single sample's gradient: with ``B > 1`` both sides are batch means and the ratio is a
mixture of the batch's inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from attacks.base import Attack, AttackConfig
from attacks.labels import infer_labels
from attacks.losses import effective_batch_size
from attacks.registry import register_attack
from attacks.types import InterceptedUpdate, Reconstruction


@dataclass(frozen=True)
class AnalyticConfig(AttackConfig):
    """Settings of :class:`AnalyticAttack`.

    Attributes
    ----------
    top_k : int
        Number of neurons with the largest ``|dL/db1[j]|`` to combine. With ``k > 1`` the
        input is the least-squares solution of ``dL/dW1[j, :] = dL/db1[j] * x`` over those
        rows, ``x = sum_j db_j dW_j / sum_j db_j^2`` (equal to seed 000's ratio for ``k = 1``).
    """

    top_k: int = 1

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")


def first_linear_with_bias(model: nn.Module) -> tuple[str, nn.Linear] | None:
    """The first ``nn.Linear`` with a bias in ``model.named_modules()`` order, if any."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.bias is not None:
            return name, module
    return None


def _is_first_layer(model: nn.Module, layer: nn.Linear, input_numel: int) -> bool:
    """Whether ``layer`` sees the raw input: no parametrised module before it, sizes agree."""
    for module in model.modules():
        if module is layer:
            return layer.in_features == input_numel
        if any(True for _ in module.parameters(recurse=False)):
            return False
    return False


def _prefixed(prefix: str, leaf: str) -> str:
    return f"{prefix}.{leaf}" if prefix else leaf


class AnalyticAttack(Attack):
    """Exact single-sample reconstruction through the first linear layer (seed 000).

    Applies to FedSGD updates (or FedAvg with one local step) of a batch of one, on a model
    whose first parametrised layer is an ``nn.Linear`` with bias taking the flattened input.
    """

    name = "analytic"
    config_class = AnalyticConfig

    def not_applicable_reason(self, model: nn.Module, update: InterceptedUpdate) -> str | None:
        """Return why seed 000's formula does not hold for this model and update, or ``None``."""
        found = first_linear_with_bias(model)
        if found is None:
            return "model has no nn.Linear layer with bias; the analytic attack needs dL/db1"
        name, layer = found
        hp = update.hyperparams
        if hp.mode != "fedsgd" and hp.local_steps > 1:
            return (
                f"{hp.mode} with {hp.local_steps} local steps: the update is not one gradient, "
                "and the analytic formula needs a single gradient"
            )
        batch = effective_batch_size(update)
        if batch != 1:
            return (
                f"batch size {batch} > 1: dL/dW1[j]/dL/db1[j] is exact only for one sample "
                "(with B > 1 it mixes the batch's inputs)"
            )
        numel = math.prod(update.input_shape)
        if not _is_first_layer(model, layer, numel):
            return (
                f"layer {name!r} (in_features={layer.in_features}) is not the model's first "
                f"layer on the {numel}-dimensional input: the formula would recover its input "
                "features, not the client's data"
            )
        bias_grad = update.pseudo_gradient()[_prefixed(name, "bias")]
        if not bool(torch.any(bias_grad != 0)):
            return (
                f"no active neuron in layer {name!r}: dL/db1[j] = 0 for every j, so the "
                "formula x = dL/dW1[j,:] / dL/db1[j] has no valid j (seed 000)"
            )
        return None

    def reconstruct(
        self,
        model: nn.Module,
        update: InterceptedUpdate,
        *,
        device: torch.device,
        seed: int,
    ) -> Reconstruction:
        """Recover the single input as ``dL/dW1[j, :] / dL/db1[j]`` (seed 000).

        ``device`` and ``seed`` are unused: the attack is closed-form and cheap on CPU.
        """
        assert isinstance(self.config, AnalyticConfig)
        found = first_linear_with_bias(model)
        if found is None:
            raise ValueError("model has no nn.Linear layer with bias")
        name, _ = found
        pseudo = update.pseudo_gradient()
        weight_grad = pseudo[_prefixed(name, "weight")].double()
        bias_grad = pseudo[_prefixed(name, "bias")].double()
        order = torch.argsort(bias_grad.abs(), descending=True, stable=True)
        chosen = order[: self.config.top_k]
        chosen = chosen[bias_grad[chosen] != 0]
        if chosen.numel() == 0:
            raise ValueError(f"no active neuron in layer {name!r} (seed 000's validity condition)")
        db = bias_grad[chosen]
        x = (db[:, None] * weight_grad[chosen]).sum(dim=0) / db.pow(2).sum()

        dtype = update.global_params[_prefixed(name, "weight")].dtype
        inputs = x.reshape(1, *update.input_shape).numpy().astype(dtype, copy=False)
        if update.disclosed_labels is not None:
            labels = np.asarray(update.disclosed_labels, dtype=np.int64)
        else:
            labels = infer_labels(model, update)
        neuron = int(chosen[0].item())
        return Reconstruction(
            inputs=inputs,
            labels=labels,
            confidence=np.ones(1),
            iterations=0,
            details={
                "layer": name,
                "neuron": neuron,
                "bias_grad": float(bias_grad[neuron].item()),
                "neurons_used": int(chosen.numel()),
            },
        )


register_attack("analytic", AnalyticAttack)
