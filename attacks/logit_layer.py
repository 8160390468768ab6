"""The logit layer's gradient as a function of its inputs and the batch's labels.

For the dense layer feeding the softmax, ``o = W h + b``, the mean batch gradients are
(Eloul et al., "Mixing Gradients in Neural Networks as a Strategy to Enhance Privacy in
Federated Learning", WACV 2024, eqs. 6-7)

    dL/dW = (1/B) sum_m g^m h^m^T,      dL/db = (1/B) sum_m g^m,

with ``g^m = dl/do`` of sample ``m`` (``p^m - y^m`` for cross-entropy). Given the labels and
the layer's weights, the inputs solve a fixed point: recompute every ``g^m`` at the current
estimates and solve eq. 6 by least squares (:func:`invert_groups`). Samples sharing a label
are one unknown (their rows of eq. 6 coincide up to ``p^m``). Used by the ``direct_batch``
attack and by batch label restoration (:mod:`fedleak.attacks.labels`).
"""

from __future__ import annotations

import torch

from fedleak.attacks.losses import training_loss


def logit_gradients(
    features: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    loss: str,
) -> torch.Tensor:
    """Per-sample ``dl/do`` of the training loss at logits ``features W^T + b``, ``(K, C)``."""
    logits = features @ weight.T
    if bias is not None:
        logits = logits + bias
    logits = logits.detach().requires_grad_(True)
    with torch.enable_grad():
        total = training_loss(loss, logits, labels) * logits.shape[0]
        (grad,) = torch.autograd.grad(total, logits)
    return grad


def solve_inputs(
    signals: torch.Tensor,
    counts: torch.Tensor,
    weight_grad: torch.Tensor,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """Least-squares inputs ``a_k`` of eq. 6, ``sum_k n_k signals_k a_k^T = B dL/dW``.

    ``rows`` selects the output units whose equations are used; all of them when fewer
    than the number of unknown samples would remain.
    """
    batch = counts.sum()
    system = (signals * counts[:, None]).T
    target = batch * weight_grad
    if rows is not None and int(rows.sum()) >= signals.shape[0]:
        system, target = system[rows], target[rows]
    return torch.linalg.pinv(system) @ target


def label_groups(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Distinct classes, each sample's index among them, and float64 counts per class."""
    classes, inverse, counts = torch.unique(labels.long(), return_inverse=True, return_counts=True)
    return classes, inverse, counts.double()


def invert_groups(
    weight_grad: torch.Tensor,
    bias_grad: torch.Tensor,
    classes: torch.Tensor,
    counts: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    loss: str,
    refine_steps: int,
    tolerance: float,
) -> tuple[torch.Tensor, int]:
    """Eq. 8 per distinct class, then fixed-point refinement; returns ``(K, d)`` and steps."""
    denominators = bias_grad[classes]
    safe = torch.where(denominators != 0, denominators, torch.ones_like(denominators))
    estimates = torch.where(
        (denominators != 0)[:, None],
        weight_grad[classes] / safe[:, None],
        torch.zeros_like(weight_grad[classes]),
    )
    steps = 0
    if weight is None:
        return estimates, steps
    for _ in range(refine_steps):
        signals = logit_gradients(estimates, weight, bias, classes, loss)
        updated = solve_inputs(signals, counts, weight_grad)
        if not bool(torch.isfinite(updated).all()):
            break  # keep the last finite estimate
        steps += 1
        change = float((updated - estimates).norm()) / max(float(updated.norm()), 1e-300)
        estimates = updated
        if change <= tolerance:
            break
    return estimates, steps
