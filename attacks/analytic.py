"""Closed-form inversion of a fully-connected layer for one sample (Phong et al. 2018).

For ``z = W a + b``, row ``j`` of ``dL/dW`` is ``dL/dz[j] * a`` and ``dL/db[j]`` is
``dL/dz[j]``, hence ``a = dL/dW[j, :] / dL/db[j]`` for any neuron with ``dL/db[j] != 0`` (an
active neuron: after a ReLU, ``z[j] > 0``; Phong et al. 2018). Nothing in the identity
depends on where the layer sits: it recovers the input of *any* ``nn.Linear`` with bias,
e.g. the features a conv stack hands to the classifier (Geiping et al. 2020, section 3). The
identity
holds only for a single sample's gradient: with ``B > 1`` both sides are batch means and the
ratio is a mixture of the batch's inputs.

Two entry points, because a :class:`~fedleak.attacks.types.Reconstruction` must hold *model inputs*
(the auditor compares them with the client's data):

- :class:`AnalyticAttack` (registered as ``analytic``) reconstructs the client's input when
  the first ``nn.Linear`` with bias is the model's first layer (``mlp``, ``fcnn``). On other
  models it returns ``not_applicable`` and says so, naming the layer whose input features
  *are* recoverable.
- :func:`recover_linear_input` recovers those features for the first (or a named) ``nn.Linear``
  with bias anywhere in the model, e.g. the 256 (for 8x8 inputs) flattened conv features
  of ``cnn``; :func:`invert_linear_input` is the formula itself on two gradient tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedleak.attacks.base import Attack, AttackConfig
from fedleak.attacks.fedavg import local_step_count
from fedleak.attacks.first_layer import dense_input_layer
from fedleak.attacks.input_labels import labels_from_inputs
from fedleak.attacks.losses import effective_batch_size
from fedleak.attacks.registry import register_attack
from fedleak.attacks.spear_layers import parameter_name
from fedleak.attacks.types import InterceptedUpdate, Reconstruction


class NoActiveNeuronError(ValueError):
    """Every ``dL/db[j]`` is zero: Phong et al. 2018's formula has no valid neuron ``j``."""


@dataclass(frozen=True)
class AnalyticConfig(AttackConfig):
    """Settings of :class:`AnalyticAttack`.

    Attributes
    ----------
    top_k : int
        Number of neurons with the largest ``|dL/db[j]|`` to combine. With ``k > 1`` the
        input is the least-squares solution of ``dL/dW[j, :] = dL/db[j] * a`` over those
        rows, ``a = sum_j db_j dW_j / sum_j db_j^2`` (Phong et al. 2018's ratio for ``k = 1``).
    """

    top_k: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require(">= 1", "top_k")


def invert_linear_input(
    weight_grad: torch.Tensor, bias_grad: torch.Tensor, top_k: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Recover a linear layer's input from its weight and bias gradients (Phong et al. 2018).

    Parameters
    ----------
    weight_grad : torch.Tensor
        ``dL/dW``, shape ``(out_features, in_features)``, of one sample's loss.
    bias_grad : torch.Tensor
        ``dL/db``, shape ``(out_features,)``.
    top_k : int
        Combine the ``top_k`` neurons of largest ``|dL/db[j]|`` by least squares (see
        :class:`AnalyticConfig`); neurons with ``dL/db[j] = 0`` are never used.

    Returns
    -------
    tuple[torch.Tensor, torch.Tensor]
        ``(features, neurons)``: the input ``(in_features,)`` in float64, on the gradients'
        device, and the int64 indices of the neurons used, largest ``|dL/db[j]|`` first.

    Raises
    ------
    NoActiveNeuronError
        If ``dL/db`` is zero everywhere (no active neuron; Phong et al. 2018's validity condition).
    ValueError
        If the shapes do not fit together or ``top_k < 1``.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if weight_grad.dim() != 2 or tuple(bias_grad.shape) != (weight_grad.shape[0],):
        raise ValueError(
            f"weight gradient {tuple(weight_grad.shape)} and bias gradient "
            f"{tuple(bias_grad.shape)} are not those of one nn.Linear"
        )
    dw, db = weight_grad.detach().double(), bias_grad.detach().double()
    order = torch.argsort(db.abs(), descending=True, stable=True)
    chosen = order[:top_k]
    chosen = chosen[db[chosen] != 0]
    if chosen.numel() == 0:
        raise NoActiveNeuronError(
            "no active neuron: dL/db[j] = 0 for every j, so the formula "
            "a = dL/dW[j,:] / dL/db[j] has no valid j (Phong et al. 2018)"
        )
    weights = db[chosen]
    features = (weights[:, None] * dw[chosen]).sum(dim=0) / weights.pow(2).sum()
    return features, chosen


@dataclass(frozen=True)
class LinearInputRecovery:
    """The recovered input of one ``nn.Linear`` layer, from :func:`recover_linear_input`.

    Attributes
    ----------
    layer : str
        Module name of the layer in ``model.named_modules()``.
    features : np.ndarray
        The layer's input for the single sample, shape ``(1, in_features)``, in the update's
        float dtype. For a first layer on flattened data these are the client's pixels.
    neurons : tuple[int, ...]
        The neurons whose gradient rows were combined, largest ``|dL/db[j]|`` first.
    bias_grads : tuple[float, ...]
        ``dL/db[j]`` of those neurons.
    is_model_input : bool
        Whether the layer sees the raw (flattened) model input, so ``features`` is the data.
    """

    layer: str
    features: np.ndarray
    neurons: tuple[int, ...]
    bias_grads: tuple[float, ...]
    is_model_input: bool


def linear_layers_with_bias(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """Every ``nn.Linear`` with a bias, in ``model.named_modules()`` order."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and module.bias is not None
    ]


def first_linear_with_bias(model: nn.Module) -> tuple[str, nn.Linear] | None:
    """The first ``nn.Linear`` with a bias in ``model.named_modules()`` order, if any."""
    layers = linear_layers_with_bias(model)
    return layers[0] if layers else None


def is_first_layer(model: nn.Module, layer: nn.Module, input_numel: int) -> bool:
    """Whether ``layer`` sees the raw input: no parametrised module before it, sizes agree.

    Parameter-free modules before it (``Flatten``) are assumed to only reshape.
    """
    return dense_input_layer(model, input_numel) is layer


def single_gradient_reason(update: InterceptedUpdate) -> str | None:
    """Why ``update`` is not one sample's gradient (the formula's premise), or ``None``."""
    hp = update.hyperparams
    steps = local_step_count(update)
    if steps != 1:
        recipe = f"{hp.local_steps} local steps" if hp.local_steps else f"{hp.local_epochs} epochs"
        return (
            f"{hp.mode} with {recipe} ({steps} SGD steps): the update is not one gradient, "
            "and the analytic formula needs a single gradient"
        )
    batch = effective_batch_size(update)
    if batch != 1:
        return (
            f"batch size {batch} > 1: dL/dW[j]/dL/db[j] is exact only for one sample "
            "(with B > 1 it mixes the batch's inputs)"
        )
    return None


def _find_layer(model: nn.Module, layer: str | None) -> tuple[str, nn.Linear]:
    layers = linear_layers_with_bias(model)
    if not layers:
        raise ValueError("model has no nn.Linear layer with bias; the formula needs dL/db")
    if layer is None:
        return layers[0]
    for name, module in layers:
        if name == layer:
            return name, module
    raise ValueError(
        f"no nn.Linear with bias named {layer!r}; candidates: {[n for n, _ in layers]}"
    )


def recover_linear_input(
    model: nn.Module,
    update: InterceptedUpdate,
    *,
    layer: str | None = None,
    top_k: int = 1,
) -> LinearInputRecovery:
    """Recover one sample's input to a linear layer anywhere in ``model`` (Geiping et al. 2020).

    Parameters
    ----------
    model : nn.Module
        The global model (only its module structure is used).
    update : InterceptedUpdate
        A FedSGD update (or FedAvg with one local step) of a batch of one.
    layer : str | None
        Module name of an ``nn.Linear`` with bias; default: the first one.
    top_k : int
        See :class:`AnalyticConfig`.

    Raises
    ------
    ValueError
        If the model has no such layer, or the update is not a single sample's gradient.
    NoActiveNeuronError
        If the layer's bias gradient is zero everywhere.
    """
    reason = single_gradient_reason(update)
    if reason is not None:
        raise ValueError(reason)
    name, module = _find_layer(model, layer)
    pseudo = update.pseudo_gradient()
    try:
        features, neurons = invert_linear_input(
            pseudo[parameter_name(name, "weight")], pseudo[parameter_name(name, "bias")], top_k
        )
    except NoActiveNeuronError as exc:
        raise NoActiveNeuronError(f"layer {name!r}: {exc}") from None
    bias_grad = pseudo[parameter_name(name, "bias")].double()
    dtype = update.global_params[parameter_name(name, "weight")].dtype
    return LinearInputRecovery(
        layer=name,
        features=features.reshape(1, -1).cpu().numpy().astype(dtype, copy=False),
        neurons=tuple(int(j) for j in neurons.tolist()),
        bias_grads=tuple(float(bias_grad[j]) for j in neurons.tolist()),
        is_model_input=is_first_layer(model, module, math.prod(update.input_shape)),
    )


class AnalyticAttack(Attack):
    """Exact single-sample reconstruction through the first linear layer (Phong et al. 2018).

    Applies to FedSGD updates (or FedAvg with one local step) of a batch of one, on a model
    whose first parametrised layer is an ``nn.Linear`` with bias taking the flattened input.
    Elsewhere the layer's input features are still recoverable, with
    :func:`recover_linear_input`, but they are not the client's data, so the attack refuses.
    """

    name = "analytic"
    config_class = AnalyticConfig

    def not_applicable_reason(self, model: nn.Module, update: InterceptedUpdate) -> str | None:
        """Return why Phong et al. 2018's formula does not give the input here, or ``None``."""
        reason = self.architecture_reason(model, update.input_shape, update.num_classes)
        if reason is not None:
            return reason
        reason = single_gradient_reason(update)
        if reason is not None:
            return reason
        found = first_linear_with_bias(model)
        assert found is not None  # architecture_reason checked it
        name = found[0]
        bias_grad = update.pseudo_gradient()[parameter_name(name, "bias")]
        if not bool(torch.any(bias_grad != 0)):
            return (
                f"no active neuron in layer {name!r}: dL/db1[j] = 0 for every j, so the "
                "formula x = dL/dW1[j,:] / dL/db1[j] has no valid j (Phong et al. 2018)"
            )
        return None

    def architecture_reason(
        self, model: nn.Module, input_shape: tuple[int, ...], num_classes: int
    ) -> str | None:
        """Return why no update of this model gives its input by the formula, or ``None``."""
        found = first_linear_with_bias(model)
        if found is None:
            return "model has no nn.Linear layer with bias; the analytic attack needs dL/db1"
        name, layer = found
        numel = math.prod(input_shape)
        if not is_first_layer(model, layer, numel):
            return (
                f"layer {name!r} (in_features={layer.in_features}) is not the model's first "
                f"layer on the {numel}-dimensional input: the formula recovers its input "
                "features exactly (fedleak.attacks.analytic.recover_linear_input), "
                "not the client's data"
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
        """Recover the single input as ``dL/dW1[j, :] / dL/db1[j]`` (Phong et al. 2018).

        ``device`` and ``seed`` are unused: the attack is closed-form and cheap on CPU.

        Raises
        ------
        ValueError
            If the first linear layer with bias does not see the model input.
        """
        assert isinstance(self.config, AnalyticConfig)
        recovery = recover_linear_input(model, update, top_k=self.config.top_k)
        if not recovery.is_model_input:
            raise ValueError(
                f"layer {recovery.layer!r} is not the first layer: its input is not the data"
            )
        inputs = recovery.features.reshape(1, *update.input_shape)
        if update.disclosed_labels is not None:
            labels = np.asarray(update.disclosed_labels, dtype=np.int64)
        else:  # the label under which the recovered input reproduces the update
            param = next(model.parameters())
            labels = labels_from_inputs(model, update, torch.from_numpy(inputs).to(param))[0]
        return Reconstruction(
            inputs=inputs,
            labels=labels,
            confidence=np.ones(1),
            iterations=0,
            details={
                "layer": recovery.layer,
                "neuron": recovery.neurons[0],
                "bias_grad": recovery.bias_grads[0],
                "neurons_used": len(recovery.neurons),
                "neurons": ",".join(str(j) for j in recovery.neurons),
            },
        )


register_attack(AnalyticAttack)
