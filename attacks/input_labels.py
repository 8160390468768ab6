"""Labels of a recovered batch: the ones under which its inputs reproduce the update.

Attacks that recover the inputs exactly (``analytic``, ``spear``, ``direct_batch``) need not
guess labels from the last layer's gradient alone. With the inputs known, the penultimate
features ``h_i`` and every sample's logit gradient for every candidate class,
``g_i(c) = dl(f(x_i), c) / d logits``, follow from the model. The last layer's gradient is

    B [dL/dW | dL/db] = sum_i g_i(y_i) [h_i | 1]^T,

linear in the one-hot labels: writing ``w_ic`` for the weight of class ``c`` in sample ``i``'s
label, the weights solve a least-squares problem (with ``sum_c w_ic = 1``), exactly one-hot
when the inputs are exact and the features ``[h_i | 1]`` are linearly independent. Each
sample takes its heaviest class; its weight is the label's confidence.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fedleak.attacks.labels import find_last_layer
from fedleak.attacks.losses import effective_batch_size, observed_gradient, training_loss
from fedleak.attacks.types import InterceptedUpdate


def _features_and_logits(
    model: nn.Module, module_name: str, inputs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The last layer's input ``(B, d)`` and the logits ``(B, C)`` of ``inputs``."""
    captured: list[torch.Tensor] = []
    module = model.get_submodule(module_name)
    handle = module.register_forward_hook(lambda _m, args, _out: captured.append(args[0]))
    try:
        with torch.no_grad():
            logits = model(inputs)
    finally:
        handle.remove()
    return captured[-1].reshape(inputs.shape[0], -1).double(), logits.double()


def _class_gradients(logits: torch.Tensor, loss: str) -> torch.Tensor:
    """``g_i(c)`` for every sample and class: ``(B, C, C)``, summed (not mean) loss."""
    batch, classes = logits.shape
    out = torch.empty(batch, classes, classes, dtype=logits.dtype, device=logits.device)
    for label in range(classes):
        scores = logits.detach().requires_grad_(True)
        target = torch.full((batch,), label, dtype=torch.long, device=logits.device)
        with torch.enable_grad():
            total = training_loss(loss, scores, target) * batch
            (grad,) = torch.autograd.grad(total, scores)
        out[:, label] = grad
    return out


def labels_from_inputs(
    model: nn.Module, update: InterceptedUpdate, inputs: torch.Tensor
) -> tuple[np.ndarray, np.ndarray, float]:
    """Labels of ``inputs`` (the recovered batch) that best reproduce the last layer's gradient.

    Parameters
    ----------
    model : nn.Module
        The global model, on the device of ``inputs``.
    update : InterceptedUpdate
        The intercepted update (a single gradient: FedSGD or one local step).
    inputs : torch.Tensor
        The recovered batch ``(B, *input_shape)``, in any order.

    Returns
    -------
    tuple[np.ndarray, np.ndarray, float]
        ``int64`` labels ``(B,)`` in the order of ``inputs``, per-label confidence in [0, 1]
        (the least-squares weight of the chosen class), and the relative residual of the
        last layer's gradient rebuilt with the chosen labels (~0 when inputs and labels are
        exact).
    """
    layer = find_last_layer(model, update.num_classes)
    module_name = layer.weight_name.rsplit(".", 1)[0] if "." in layer.weight_name else ""
    dtype = next(model.parameters()).dtype
    features, logits = _features_and_logits(model, module_name, inputs.to(dtype))
    grads = observed_gradient(model, update)
    observed = grads[layer.weight_index].detach().double().reshape(update.num_classes, -1)
    if layer.bias_index is not None:
        ones = torch.ones(features.shape[0], 1, dtype=features.dtype, device=features.device)
        features = torch.cat([features, ones], dim=1)
        bias = grads[layer.bias_index].detach().double().reshape(-1, 1)
        observed = torch.cat([observed, bias], dim=1)
    observed = observed.to(features.device) * effective_batch_size(update)
    # project on the row space of the features: exact for exact inputs, and small
    basis = torch.linalg.svd(features, full_matrices=False)[2]
    coords = features @ basis.T  # (B, r)
    target = observed @ basis.T  # (C, r)
    per_class = _class_gradients(logits, update.hyperparams.loss)  # (B, C_label, C_out)
    # column (i, c) of the system: vec(g_i(c) coords_i^T)
    system = torch.einsum("icn,ir->icnr", per_class, coords).reshape(
        per_class.shape[0] * per_class.shape[1], -1
    )
    weights = _constrained_lstsq(system.T, target.reshape(-1), per_class.shape[:2])
    labels = weights.argmax(dim=1)
    chosen = per_class[torch.arange(labels.numel()), labels]  # (B, C)
    rebuilt = chosen.T @ coords
    residual = float((rebuilt - target).norm() / target.norm().clamp_min(1e-300))
    confidence = weights.gather(1, labels[:, None])[:, 0].clamp(0.0, 1.0)
    return labels.cpu().numpy().astype(np.int64), confidence.cpu().numpy(), residual


def _constrained_lstsq(
    system: torch.Tensor, target: torch.Tensor, shape: tuple[int, int] | torch.Size
) -> torch.Tensor:
    """Least squares ``system @ w = target`` with every row of ``w`` (``shape``) summing to 1.

    For cross-entropy ``g_i(c) = p_i - e_c``, so adding ``t p_i`` to ``w_i`` leaves the fit
    unchanged unless the sums are pinned: the constraint rows carry the system's scale.
    """
    batch, classes = shape
    weight = float(system.norm()) / max(1.0, float(system.shape[0]) ** 0.5)
    rows = torch.zeros(batch, batch * classes, dtype=system.dtype, device=system.device)
    for index in range(batch):
        rows[index, index * classes : (index + 1) * classes] = weight
    full = torch.cat([system, rows])
    rhs = torch.cat(
        [target, torch.full((batch,), weight, dtype=target.dtype, device=target.device)]
    )
    solution = torch.linalg.lstsq(full.cpu(), rhs.cpu()[:, None], driver="gelsd").solution
    return solution[:, 0].to(system.device).reshape(batch, classes)
