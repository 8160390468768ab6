"""Label primitives on the last layer's gradient (iDLG: Zhao et al. 2020; counts: Eloul et al.).

:mod:`fedleak.attacks.label_restoration` builds the batch restoration on them; attacks that recover
inputs exactly take their labels from :mod:`fedleak.attacks.input_labels`.

For softmax cross-entropy, the gradient w.r.t. logit ``i`` of one sample with label ``c`` is
``g_i = p_i - [i == c]``: negative exactly at the true class (Zhao et al. 2020). The last layer's
bias gradient is ``g`` itself; its weight-gradient row ``i`` is ``g_i * a`` with ``a`` the
penultimate activations, so the row sums ``g_i * sum(a)`` keep the sign of ``g_i`` whenever
``a >= 0`` (after ReLU or sigmoid; not after tanh or a plain linear layer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class LastLayer:
    """Where the classifier's last layer sits among ``model.named_parameters()``.

    Attributes
    ----------
    weight_index, weight_name : int, str
        Position and name of the last 2-D parameter whose first dimension is ``num_classes``.
    bias_index, bias_name : int | None, str | None
        The matching bias (same module prefix, shape ``(num_classes,)``), if there is one.
    """

    weight_index: int
    weight_name: str
    bias_index: int | None
    bias_name: str | None


def find_last_layer(model: nn.Module, num_classes: int) -> LastLayer:
    """Locate the classifier layer: the last 2-D parameter with first dimension ``num_classes``.

    Raises
    ------
    ValueError
        If no parameter has that shape.
    """
    named = list(model.named_parameters())
    for index in range(len(named) - 1, -1, -1):
        name, param = named[index]
        if param.dim() == 2 and param.shape[0] == num_classes:
            prefix = name.rsplit(".", 1)[0] if "." in name else ""
            bias_name = f"{prefix}.bias" if prefix else "bias"
            for b_index, (b_name, b_param) in enumerate(named):
                if b_name == bias_name and tuple(b_param.shape) == (num_classes,):
                    return LastLayer(index, name, b_index, b_name)
            return LastLayer(index, name, None, None)
    raise ValueError(f"no 2-D parameter with first dimension num_classes={num_classes}")


def class_gradient(weight_grad: torch.Tensor, bias_grad: torch.Tensor | None) -> torch.Tensor:
    """Per-class gradient signal: the bias gradient, else the weight-gradient row sums.

    The bias gradient is the mean logit gradient for any activation; the row sums carry
    its sign only when the penultimate activations are non-negative (Zhao et al. 2020).
    """
    if bias_grad is not None:
        return bias_grad.detach().double().cpu()
    return weight_grad.detach().double().sum(dim=1).cpu()


def idlg_label(weight_grad: torch.Tensor, bias_grad: torch.Tensor | None = None) -> int:
    """iDLG label of a single sample (Zhao et al. 2020): the class whose gradient is negative.

    Parameters
    ----------
    weight_grad : torch.Tensor
        Last-layer weight gradient ``(C, d)``.
    bias_grad : torch.Tensor | None
        Last-layer bias gradient ``(C,)``; used in preference to the row sums when given.

    Returns
    -------
    int
        ``argmin`` of the per-class gradient. Exact for cross-entropy with ``B = 1`` when the
        bias gradient is given, or when the penultimate activations are non-negative.
    """
    return int(torch.argmin(class_gradient(weight_grad, bias_grad)).item())


def infer_label_counts(
    weight_grad: torch.Tensor, bias_grad: torch.Tensor | None, batch_size: int
) -> np.ndarray:
    """Batch labels (as a sorted multiset) from the last layer's mean gradient.

    With mean cross-entropy over a batch, the bias gradient is
    ``g_i = (sum_b p_bi - n_i) / B`` where ``n_i`` counts class ``i`` in the batch. So

    1. a class with ``g_i < 0`` is present (``n_i > sum_b p_bi >= 0``; exact);
    2. assuming near-uniform predictions ``p_bi ~ 1/C`` (an untrained model, Eloul et al. 2024
       sec. 3), ``n_i ~ B/C - B g_i``.

    Every class of step 1 gets one label; the remaining labels go one at a time to the
    class with the largest remaining estimate ``B/C - B g_i - n_i``. Without a bias, the
    row sums are divided by an estimated mean activation sum chosen so that their
    negative part equals its uniform-prediction value ``k/C - 1`` (``k`` negative classes).

    Limits: confident (trained) models break the uniform-prediction estimate; MSE loss
    does not give the sign property (Eloul et al. 2024); a FedAvg pseudo-gradient (sum of K steps)
    is treated as one gradient. Returns the labels in class order, not batch order.

    Parameters
    ----------
    weight_grad : torch.Tensor
        Last-layer weight gradient ``(C, d)``.
    bias_grad : torch.Tensor | None
        Last-layer bias gradient ``(C,)``, preferred when available.
    batch_size : int
        Number of labels ``B`` to return.

    Returns
    -------
    np.ndarray
        ``int64`` labels of length ``batch_size``, sorted.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    g = class_gradient(weight_grad, bias_grad).numpy()
    num_classes = g.shape[0]
    negative = g < 0
    if bias_grad is None and negative.any():
        k = int(negative.sum())
        target = k / num_classes - 1.0
        if target < 0:
            g = g * (target / g[negative].sum())
    counts = np.zeros(num_classes, dtype=np.int64)
    # step 1: present classes, most negative first (a noisy gradient may show more than B)
    present = np.argsort(g, kind="stable")[: min(batch_size, int(negative.sum()))]
    counts[present] = 1
    residual = batch_size / num_classes - batch_size * g - counts
    for _ in range(batch_size - int(counts.sum())):
        best = int(np.argmax(residual))
        counts[best] += 1
        residual[best] -= 1.0
    return np.repeat(np.arange(num_classes, dtype=np.int64), counts)
