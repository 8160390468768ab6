"""Direct inversion of a whole batch through dense layers (Eloul et al. 2024, eq. 8).

For the dense layer feeding the softmax, ``o_j = sum_i w_ij x_i + b_j``, the mean batch
gradients are (eqs. 6-7) ``dL/dw_j = (1/B) sum_m g_j^m x^m`` and ``dL/db_j = (1/B) sum_m g_j^m``
with ``g_j^m = p_j^m - y_j^m`` for cross-entropy. In an untrained model ``g_c^m ~ -1`` for the
sample's own class ``c`` and ``g_j^m ~ 1/C`` otherwise, so for a batch with unique labels the
row of class ``c`` is dominated by the one sample of that class (eq. 8):

    ``x^{m(c)} ~ dL/dw_c / dL/db_c``.

Eq. 8 drops the ``p_{j != c}`` terms, which costs about ``(B-1)/C`` of mixing (an error of
roughly half the spread of the batch for ``B = 4, C = 10``). :func:`invert_dense_batch` then
removes that bias: given the layer's own weights (the server knows the global model) it
recomputes every sample's logit gradient ``g^m`` at the current estimates and solves eq. 6 for
all inputs at once by least squares, ``X = B (G^T)^+ dL/dW``, a fixed point that is exact
once the ``g^m`` are. Samples sharing a label cannot be told apart: their rows of eq. 6
coincide, and the estimate is the (weighted) mean of their inputs -- the gradient mixing the
paper proposes as a defense (equal labels in a batch, or a mixing loss such as MSE).

Beyond one layer the paper notes that "x can be inverted from a known o_j for any hidden
linear layers using back-propagation". :class:`DirectBatchAttack` does exactly that for a
chain of dense layers (``mlp``, ``fcnn``): once the logit layer's inputs ``h^m`` and error
signals ``g^m`` are known, the previous layer's per-sample error signals follow by the chain
rule, ``delta^m = (W^T g^m) * act'(h^m)``, and its gradient ``dL/dW = (1/B) sum_m delta^m
a^m^T`` is again linear in that layer's inputs ``a^m``; solving it layer by layer reaches
the client's data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedleak.attacks.base import Attack, AttackConfig
from fedleak.attacks.input_labels import labels_from_inputs
from fedleak.attacks.label_restoration import infer_labels
from fedleak.attacks.logit_layer import invert_groups, label_groups, logit_gradients, solve_inputs
from fedleak.attacks.losses import observed_gradient
from fedleak.attacks.registry import register_attack
from fedleak.attacks.types import InterceptedUpdate, Reconstruction

_LABEL_ROUNDS = 3
"""Most recoveries under labels derived from the previous recovery's inputs."""
_ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh)
"""Element-wise activations whose derivative is a function of their output."""


@dataclass(frozen=True)
class DirectBatchConfig(AttackConfig):
    """Settings of :class:`DirectBatchAttack`.

    Attributes
    ----------
    refine_steps : int
        Fixed-point corrections of eq. 8 (recompute the logit gradients ``g^m`` at the current
        estimates, re-solve eq. 6). ``0`` returns eq. 8 as printed in Eloul et al. 2024.
    tolerance : float
        Stop refining once an iteration moves the estimates by less than this fraction of
        their norm.
    """

    refine_steps: int = 50
    tolerance: float = 1e-10

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require(">= 0", "refine_steps", "tolerance")


@dataclass(frozen=True)
class DenseStage:
    """One ``nn.Linear`` of a dense chain and the activation that follows it (if any)."""

    name: str
    linear: nn.Linear
    activation: nn.Module | None


def dense_chain(model: nn.Module) -> list[DenseStage] | str:
    """Split ``model`` into dense stages, or say why it is not a chain of dense layers.

    A dense chain is an ``nn.Sequential`` of an optional leading ``nn.Flatten``, then
    ``nn.Linear`` layers each followed by at most one of ReLU, LeakyReLU, Sigmoid or Tanh.
    """
    if not isinstance(model, nn.Sequential):
        return f"model is a {type(model).__name__}, not an nn.Sequential of dense layers"
    stages: list[DenseStage] = []
    for position, (name, module) in enumerate(model.named_children()):
        if isinstance(module, nn.Flatten) and position == 0:
            continue
        if isinstance(module, nn.Linear):
            stages.append(DenseStage(name, module, None))
        elif isinstance(module, _ACTIVATIONS) and stages and stages[-1].activation is None:
            stages[-1] = DenseStage(stages[-1].name, stages[-1].linear, module)
        else:
            return (
                f"layer {name!r} ({type(module).__name__}) breaks the chain of dense layers "
                "that direct batch inversion back-propagates through"
            )
    if not stages:
        return "model has no nn.Linear layer"
    if stages[-1].activation is not None:
        return "the last nn.Linear is followed by an activation: it does not produce the logits"
    return stages


def _activation_derivative(
    activation: nn.Module | None, outputs: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``act'(z)`` expressed through ``a = act(z)``, and which units it is reliable for.

    Piecewise-linear activations must decide ``z > 0`` from an estimate of ``a`` that the
    pseudo-gradient's rounding (``~eps``, relative) leaves slightly off zero: the cut sits at
    ``eps^(2/3)`` of the largest activation, and units with an activation within
    ``[eps^(5/6), eps^(1/2)]`` of it for some sample are flagged unreliable.
    """
    every_unit = torch.ones(outputs.shape[1], dtype=torch.bool, device=outputs.device)
    if activation is None:
        return torch.ones_like(outputs), every_unit
    if isinstance(activation, nn.Sigmoid):
        return outputs * (1 - outputs), every_unit
    if isinstance(activation, nn.Tanh):
        return 1 - outputs.pow(2), every_unit
    top = max(float(outputs.abs().max()), 1e-300)
    active = (outputs > eps ** (2 / 3) * top).to(outputs.dtype)
    magnitude = outputs.abs()
    unsure = (magnitude > eps ** (5 / 6) * top) & (magnitude < eps**0.5 * top)
    reliable = ~unsure.any(dim=0)
    if isinstance(activation, nn.LeakyReLU):
        return active + (1 - active) * activation.negative_slope, reliable
    return active, reliable


def invert_dense_batch(
    weight_grad: torch.Tensor,
    bias_grad: torch.Tensor,
    labels: torch.Tensor,
    *,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    loss: str = "cross_entropy",
    refine_steps: int = 50,
    tolerance: float = 1e-10,
) -> torch.Tensor:
    """Inputs of the dense layer feeding the softmax, one per label (Eloul et al. 2024, eq. 8).

    Parameters
    ----------
    weight_grad : torch.Tensor
        ``dL/dW`` of the logit layer, ``(C, d)``, the mean over the batch (eq. 6).
    bias_grad : torch.Tensor
        ``dL/db`` of the logit layer, ``(C,)`` (eq. 7).
    labels : torch.Tensor
        The batch's integer labels ``(B,)`` (inferred or disclosed), in any order.
    weight, bias : torch.Tensor | None
        The layer's parameters. Without ``weight`` the result is eq. 8 as printed; with it,
        ``refine_steps`` fixed-point corrections solve eq. 6 with the logit gradients
        recomputed at the current estimates (the terms eq. 8 neglects).
    loss : {"cross_entropy", "mse"}
        The training loss, for the recomputed logit gradients.
    refine_steps : int
        Maximum number of corrections.
    tolerance : float
        Stop once a correction moves the estimates by less than this fraction of their norm.

    Returns
    -------
    torch.Tensor
        ``(B, d)`` float64 estimates, row ``m`` for ``labels[m]``. Samples sharing a label get
        the same row: their mean input, which is all eq. 6 determines (Eloul et al.'s mixing).
    """
    classes, inverse, counts = label_groups(labels)
    estimates, _ = invert_groups(
        weight_grad.double(),
        bias_grad.double(),
        classes,
        counts,
        None if weight is None else weight.double(),
        None if bias is None else bias.double(),
        loss,
        refine_steps if weight is not None else 0,
        tolerance,
    )
    return estimates[inverse]


class DirectBatchAttack(Attack):
    """Closed-form batch reconstruction for dense networks (Eloul et al. 2024, eq. 8; chain rule).

    Applies to an ``nn.Sequential`` chain of dense layers whose first ``nn.Linear`` takes the
    flattened input and whose last produces the logits with a bias: logistic regression
    (eq. 8 directly), ``mlp`` and ``fcnn`` (eq. 8 on the logit layer, then back-propagated
    least squares, see the module docstring). Labels are disclosed or inferred from the
    negative entries of the logit layer's bias gradient (Eloul et al. 2024 sec. 4.1, exact when the
    labels are unique and ``C >> B``). A FedAvg pseudo-gradient is treated as one gradient.
    """

    name = "direct_batch"
    config_class = DirectBatchConfig

    def not_applicable_reason(self, model: nn.Module, update: InterceptedUpdate) -> str | None:
        """Return why eq. 8 cannot reach the client's data through this model, or ``None``."""
        reason = self.architecture_reason(model, update.input_shape, update.num_classes)
        if reason is not None:
            return reason
        if update.is_zero():
            return "the update is all zeros: eq. 8 has nothing to divide"
        return None

    def architecture_reason(
        self, model: nn.Module, input_shape: tuple[int, ...], num_classes: int
    ) -> str | None:
        """Return why the model is not a dense chain from the input to the logits, or ``None``."""
        chain = dense_chain(model)
        if isinstance(chain, str):
            return chain
        first, last = chain[0].linear, chain[-1].linear
        numel = math.prod(input_shape)
        if first.in_features != numel:
            return (
                f"layer {chain[0].name!r} has in_features={first.in_features}, not the "
                f"{numel}-dimensional input: the formula would recover features, not data"
            )
        if last.out_features != num_classes or last.bias is None:
            return (
                f"layer {chain[-1].name!r} is not a logit layer with bias over "
                f"{num_classes} classes: eq. 8 divides by dL/db of the logits"
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
        """Recover every sample of the batch in closed form; ``seed`` is unused.

        Without disclosed labels, the labels restored from the gradient start a short
        alternation: the recovered inputs give labels of their own
        (:func:`fedleak.attacks.input_labels.labels_from_inputs`), and the batch is recovered again
        under them until they agree, so exact inputs come with the labels they were
        recovered under.
        """
        chain = dense_chain(model)
        if isinstance(chain, str):
            raise ValueError(chain)
        if update.disclosed_labels is not None:
            return self._recover(model, update, chain, np.asarray(update.disclosed_labels))
        label_array = infer_labels(model, update)
        for _ in range(_LABEL_ROUNDS):
            result = self._recover(model, update, chain, label_array)
            inputs = torch.from_numpy(result.inputs).to(next(model.parameters()))
            derived = labels_from_inputs(model, update, inputs)[0]
            if np.array_equal(derived, label_array):
                break
            label_array = derived
        return result

    def _recover(
        self,
        model: nn.Module,
        update: InterceptedUpdate,
        chain: list[DenseStage],
        label_array: np.ndarray,
    ) -> Reconstruction:
        """Eq. 8 and the back-propagated least squares under ``label_array``."""
        cfg = self.config
        assert isinstance(cfg, DirectBatchConfig)
        device = next(model.parameters()).device
        label_array = label_array.astype(np.int64)
        names = [name for name, _ in model.named_parameters()]
        grads = dict(zip(names, observed_gradient(model, update), strict=True))
        eps = torch.finfo(next(model.parameters()).dtype).eps

        classes, inverse, counts = label_groups(torch.as_tensor(label_array, device=device))
        counts = counts.to(device)
        last = chain[-1]
        weight = last.linear.weight.detach().double()
        bias = last.linear.bias.detach().double() if last.linear.bias is not None else None
        features, steps = invert_groups(
            grads[f"{last.name}.weight"].double(),
            grads[f"{last.name}.bias"].double(),
            classes,
            counts,
            weight,
            bias,
            update.hyperparams.loss,
            cfg.refine_steps,
            cfg.tolerance,
        )
        signals = logit_gradients(features, weight, bias, classes, update.hyperparams.loss)
        residual = _residual(signals, counts, features, grads[f"{last.name}.weight"].double())
        for stage, below in zip(reversed(chain[1:]), reversed(chain[:-1]), strict=True):
            derivative, rows = _activation_derivative(below.activation, features, eps)
            signals = (signals @ stage.linear.weight.detach().double()) * derivative
            features = solve_inputs(signals, counts, grads[f"{below.name}.weight"].double(), rows)

        out_dtype = update.global_params[f"{chain[0].name}.weight"].dtype
        inputs = features[inverse].reshape(len(label_array), *update.input_shape)
        return Reconstruction(
            inputs=inputs.cpu().numpy().astype(out_dtype, copy=False),
            labels=label_array,
            confidence=(1.0 / counts[inverse]).cpu().numpy(),
            iterations=steps,
            details={
                "recovered": "input",
                "dense_layers": len(chain),
                "distinct_labels": int(classes.numel()),
                "refine_steps": steps,
                "residual": residual,
            },
        )


def _residual(
    signals: torch.Tensor, counts: torch.Tensor, features: torch.Tensor, weight_grad: torch.Tensor
) -> float:
    """Relative misfit of eq. 6 at the logit layer (0 when the estimates explain it)."""
    batch = counts.sum()
    fitted = (signals * counts[:, None]).T @ features
    scale = max(float((batch * weight_grad).norm()), 1e-300)
    return float((fitted - batch * weight_grad).norm()) / scale


register_attack(DirectBatchAttack)
