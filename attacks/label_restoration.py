"""Batch label restoration from the last layer's gradient, with counts and confidences.

After Ma et al., "Instance-wise Batch Label Restoration via Gradients in Federated
Learning", ICLR 2023: approximate class-wise embeddings and post-softmax probabilities give
linear equations in the number of instances per class. For a softmax cross-entropy batch,
the logit layer ``o = W h + b`` has (Eloul et al., WACV 2024, eqs. 6-7)

    B dL/dW = sum_m (p^m - e_{y_m}) h^m^T,      B dL/db = sum_m (p^m - e_{y_m}).

1. Estimates. Eq. 8's ratio ``dL/dW_c / dL/db_c`` approximates the embedding of class ``c``
   (of all samples, weighted by ``p_c``, for an absent class); ``P_c = softmax(W h_c + b)``
   its probabilities; the counts ``n`` solve ``(P - I) n = B dL/db`` with ``sum n = B``,
   ``n >= 0`` (Ma et al.'s pseudo-inverse step). The uniform-prediction estimate of
   :func:`fedleak.attacks.labels.infer_label_counts` is the second start.
2. Fit. For candidate counts, the class-wise model (one embedding per class present, every
   sample of a class at it) is fitted to both equations by the fixed point of
   :func:`fedleak.attacks.logit_layer.invert_groups`; its relative misfit scores the counts.
   Distinct labels make the class-wise model exact: the true counts fit to float precision
   (``exact``) whenever the K present classes number at most C - 1 and the layer has at
   least K inputs -- in particular for a batch below the last layer's input width, the
   case of Ma et al.'s untrained networks. Repeated labels fit to within the spread of a
   class's features.
3. Search. Moving one label between classes, steepest descent on the misfit; a class
   with ``dL/db_c < 0`` is present (exact for cross-entropy), so it keeps a label.
4. Confidence. Every scored count vector gets the weight ``exp(-(r - r_best) / tau)``;
   a label's confidence is the weight of the vectors that keep it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import nnls
from torch import nn

from fedleak.attacks.labels import class_gradient, find_last_layer, idlg_label, infer_label_counts
from fedleak.attacks.logit_layer import invert_groups, logit_gradients
from fedleak.attacks.losses import effective_batch_size, observed_gradient
from fedleak.attacks.types import InterceptedUpdate

_EXACT = 1e-4
"""Misfit below which the counts fit exactly (float32 updates fit the truth to ~1e-6)."""
_FIT_STEPS = 30
"""Fixed-point steps of one class-wise fit."""
_SEARCH_ROUNDS = 3
"""Rounds of single-label moves in the count search."""


@dataclass(frozen=True)
class LabelRestoration:
    """Restored labels of a batch.

    Attributes
    ----------
    labels : np.ndarray
        ``int64`` labels ``(B,)`` in class order (the gradient does not say which sample
        holds which).
    confidence : np.ndarray
        Per label, in [0, 1] (see the module docstring).
    residual : float
        Relative misfit of ``[dL/dW | dL/db]`` under the class-wise model with these counts
        (``nan`` when the layer's weights were not given or the model has too many classes
        present to fit).
    exact : bool
        ``residual`` is within float precision: the counts reproduce the gradient.
    """

    labels: np.ndarray
    confidence: np.ndarray
    residual: float
    exact: bool


@dataclass(frozen=True)
class LogitLayer:
    """The classifier layer and its observed gradient (float64)."""

    weight_grad: torch.Tensor
    bias_grad: torch.Tensor | None
    weight: torch.Tensor | None
    bias: torch.Tensor | None
    loss: str = "cross_entropy"


def _fit_residual(layer: LogitLayer, counts: np.ndarray) -> float:
    """Relative misfit of the class-wise model with ``counts`` (``nan`` when it cannot fit)."""
    present = np.flatnonzero(counts)
    num_classes, width = layer.weight_grad.shape
    if (
        layer.weight is None
        or layer.bias_grad is None
        or len(present) > min(num_classes - 1, width)
    ):
        return math.nan
    classes = torch.as_tensor(present, device=layer.weight_grad.device)
    weights = torch.as_tensor(counts[present], dtype=torch.float64, device=classes.device)
    batch = float(counts.sum())
    embeddings, _ = invert_groups(
        layer.weight_grad, layer.bias_grad, classes, weights, layer.weight, layer.bias,
        layer.loss, _FIT_STEPS, 1e-12,
    )  # fmt: skip
    signals = logit_gradients(embeddings, layer.weight, layer.bias, classes, layer.loss)
    scaled = signals * weights[:, None]
    target = torch.cat([layer.weight_grad, layer.bias_grad[:, None]], dim=1) * batch
    ones = torch.ones(len(present), 1, dtype=torch.float64, device=classes.device)
    fitted = scaled.T @ torch.cat([embeddings, ones], dim=1)
    residual = float((fitted - target).norm() / target.norm().clamp_min(1e-300))
    return residual if math.isfinite(residual) else math.inf


def _pseudo_inverse_counts(layer: LogitLayer, batch: int, present: np.ndarray) -> np.ndarray:
    """Ma et al.'s estimate: ``(P - I) n = B dL/db``, ``sum n = B``, ``n >= 0``, rounded."""
    assert layer.bias_grad is not None and layer.weight is not None
    gap = layer.bias_grad
    safe = torch.where(gap != 0, gap, torch.ones_like(gap))
    embeddings = layer.weight_grad / safe[:, None]  # row c: eq. 8's ratio for class c
    logits = embeddings @ layer.weight.T + (0.0 if layer.bias is None else layer.bias)
    probs = torch.softmax(logits, dim=1).T.cpu().numpy()  # column c: P_c
    system = probs - np.eye(probs.shape[0])
    rows = np.vstack([system, np.ones((1, system.shape[1]))])
    rhs = np.append(batch * gap.cpu().numpy(), batch)
    estimate = nnls(rows, rhs)[0]
    return _round_counts(estimate, batch, present)


def _round_counts(estimate: np.ndarray, batch: int, present: np.ndarray) -> np.ndarray:
    """Integer counts summing to ``batch``, at least one for every class in ``present``."""
    counts = np.zeros(len(estimate), dtype=np.int64)
    counts[present[:batch]] = 1
    remainder = estimate - counts
    for _ in range(batch - int(counts.sum())):
        best = int(np.argmax(remainder))
        counts[best] += 1
        remainder[best] -= 1.0
    return counts


def _moves(counts: np.ndarray, present: np.ndarray) -> list[np.ndarray]:
    """Count vectors one label away from ``counts`` that keep a label in every ``present``."""
    keep = np.zeros(len(counts), dtype=bool)
    keep[present] = True
    out = []
    for source in np.flatnonzero(counts):
        if keep[source] and counts[source] == 1:
            continue
        for target in range(len(counts)):
            if target != source:
                moved = counts.copy()
                moved[source] -= 1
                moved[target] += 1
                out.append(moved)
    return out


def _confidence(scored: dict[tuple[int, ...], float], best: np.ndarray) -> np.ndarray:
    """Per label of ``best``: the weight of the scored vectors that keep that label."""
    residuals = np.array(list(scored.values()))
    vectors = np.array(list(scored.keys()))
    r_best = float(np.min(residuals))
    tau = max(r_best, _EXACT) / 2.0
    weights = np.exp(-(residuals - r_best) / tau)
    weights /= weights.sum()
    per_label = [
        float(weights[vectors[:, cls] >= copy].sum())
        for cls in np.flatnonzero(best)
        for copy in range(1, int(best[cls]) + 1)
    ]
    return np.clip(np.array(per_label), 0.0, 1.0)


def _estimate_only(labels: np.ndarray, signal: np.ndarray) -> LabelRestoration:
    """The count estimate alone: a class's first label is certain when its gradient is
    negative (the sign rule), every other label a guess (confidence 0.5)."""
    confidence = np.full(len(labels), 0.5)
    first = np.r_[True, labels[1:] != labels[:-1]]
    confidence[first & (signal[labels] < 0)] = 1.0
    return LabelRestoration(labels, confidence, math.nan, False)


def restore_label_counts(layer: LogitLayer, batch_size: int) -> LabelRestoration:
    """Restore the batch's label multiset from its logit layer (module docstring).

    Without the layer's weights (or its bias gradient), or with more classes present than
    the class-wise model can fit, only the uniform-prediction estimate of
    :func:`fedleak.attacks.labels.infer_label_counts` is available (``nan`` residual).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    uniform = infer_label_counts(layer.weight_grad, layer.bias_grad, batch_size)
    start = np.bincount(uniform, minlength=layer.weight_grad.shape[0])
    signal = class_gradient(layer.weight_grad, layer.bias_grad).numpy()
    if layer.weight is None or layer.bias_grad is None:
        return _estimate_only(uniform, signal)
    present = np.argsort(signal, kind="stable")[: int((signal < 0).sum())]
    scored: dict[tuple[int, ...], float] = {}

    def score(counts: np.ndarray) -> float:
        """The misfit of ``counts``, fitted once."""
        key = tuple(int(v) for v in counts)
        if key not in scored:
            scored[key] = _fit_residual(layer, counts)
        return scored[key]

    candidates = [start, _pseudo_inverse_counts(layer, batch_size, present)]
    best = min(candidates, key=lambda counts: np.nan_to_num(score(counts), nan=np.inf))
    if math.isnan(score(best)):
        return _estimate_only(uniform, signal)
    for _ in range(_SEARCH_ROUNDS):
        if score(best) <= _EXACT:
            break
        moved = min(_moves(best, present), key=score, default=best)
        if not score(moved) < score(best):
            break
        best = moved
    if score(best) > _EXACT:  # survey the neighbourhood for the confidence
        for counts in _moves(best, present):
            score(counts)
    labels = np.repeat(np.arange(len(best), dtype=np.int64), best)
    residual = score(best)
    return LabelRestoration(labels, _confidence(scored, best), residual, residual <= _EXACT)


def observed_logit_layer(
    model: nn.Module, update: InterceptedUpdate, scale: float = 1.0
) -> LogitLayer:
    """The classifier layer's weights and its observed gradient times ``scale`` (float64).

    Parameters
    ----------
    model : nn.Module
        The global model: the last layer's weights and the gradient's layout.
    update : InterceptedUpdate
        The intercepted update; its pseudo-gradient supplies the last-layer gradient.
    scale : float
        Factor on the gradient (a FedAvg update rescaled to one batch's mean gradient).
    """
    found = find_last_layer(model, update.num_classes)
    grads = observed_gradient(model, update)
    params = list(model.parameters())
    weight_grad = grads[found.weight_index].detach().double().reshape(update.num_classes, -1)
    bias_grad = None if found.bias_index is None else grads[found.bias_index].detach().double()
    weight = params[found.weight_index].detach().double().reshape(update.num_classes, -1)
    bias = None if found.bias_index is None else params[found.bias_index].detach().double()
    return LogitLayer(
        weight_grad * scale,
        None if bias_grad is None else bias_grad * scale,
        weight,
        bias,
        update.hyperparams.loss,
    )


def restore_labels(model: nn.Module, update: InterceptedUpdate) -> LabelRestoration:
    """Labels of the intercepted batch: iDLG for ``B = 1``, :func:`restore_label_counts` beyond.

    Parameters
    ----------
    model : nn.Module
        The global model: the last layer's weights and the gradient's layout.
    update : InterceptedUpdate
        The intercepted update; its pseudo-gradient supplies the last-layer gradient.
    """
    layer = observed_logit_layer(model, update)
    batch = effective_batch_size(update)
    if batch == 1:
        label = idlg_label(layer.weight_grad, layer.bias_grad)
        return LabelRestoration(np.array([label], dtype=np.int64), np.ones(1), math.nan, False)
    return restore_label_counts(layer, batch)


def infer_labels(model: nn.Module, update: InterceptedUpdate) -> np.ndarray:
    """The labels of :func:`restore_labels` (``int64``, length B, class order)."""
    return restore_labels(model, update).labels


def batch_labels(model: nn.Module, update: InterceptedUpdate) -> np.ndarray:
    """The disclosed labels where the threat model gives them, else :func:`infer_labels`."""
    if update.disclosed_labels is not None:
        return np.asarray(update.disclosed_labels, dtype=np.int64)
    return infer_labels(model, update)
