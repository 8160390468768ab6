"""``median_ratio``: the first-layer closed form, made robust by a median over neurons.

For a first layer ``z = W1 x + b1`` and one sample, row ``j`` of ``dL/dW1`` is
``dL/db1[j] * x`` (Phong et al., "Privacy-Preserving Deep Learning via Additively
Homomorphic Encryption", IEEE TIFS 2018), so every neuron with ``dL/db1[j] != 0`` gives the
input exactly: ``x = dL/dW1[j, :] / dL/db1[j]``. fedleak's ``analytic`` attack uses the
neuron of largest ``|dL/db1[j]|``. This example attack, written for this plug-in, takes per
input coordinate the **median** of the estimates of all neurons instead: a defense that
zeroes a random minority of the update entries (``random_mask``) corrupts a minority of the
estimates of each coordinate, which the median ignores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedleak.attacks.analytic import first_linear_with_bias, is_first_layer, single_gradient_reason
from fedleak.attacks.base import Attack, AttackConfig
from fedleak.attacks.label_restoration import infer_labels
from fedleak.attacks.types import InterceptedUpdate, Reconstruction


@dataclass(frozen=True)
class MedianRatioConfig(AttackConfig):
    """Settings of :class:`MedianRatioAttack`.

    Attributes
    ----------
    relative_threshold : float
        Neurons with ``|dL/db1[j]|`` below this fraction of the largest are left out (their
        ratio divides by almost nothing).
    """

    relative_threshold: float = 1e-3


class MedianRatioAttack(Attack):
    """Median over neurons of ``dL/dW1[j, i] / dL/db1[j]``: one sample, first dense layer."""

    name = "median_ratio"
    config_class = MedianRatioConfig

    def not_applicable_reason(self, model: nn.Module, update: InterceptedUpdate) -> str | None:
        """Why the closed form does not give the input here (as fedleak's ``analytic``)."""
        found = first_linear_with_bias(model)
        if found is None:
            return "model has no nn.Linear layer with bias"
        reason = single_gradient_reason(update)
        if reason is not None:
            return reason
        if not is_first_layer(model, found[1], math.prod(update.input_shape)):
            return f"layer {found[0]!r} is not the model's first layer on the input"
        return None

    def reconstruct(
        self, model: nn.Module, update: InterceptedUpdate, *, device: torch.device, seed: int
    ) -> Reconstruction:
        """The per-coordinate median of the neurons' estimates, clipped to [0, 1]."""
        assert isinstance(self.config, MedianRatioConfig)
        found = first_linear_with_bias(model)
        assert found is not None
        gradient = update.pseudo_gradient()
        dw = gradient[f"{found[0]}.weight"].double()
        db = gradient[f"{found[0]}.bias"].double()
        used = db.abs() > self.config.relative_threshold * db.abs().max()
        if not bool(used.any()):
            raise ValueError("dL/db1 is zero: no neuron gives an estimate")
        estimate = (dw[used] / db[used, None]).median(dim=0).values.clamp(0.0, 1.0)
        if update.disclosed_labels is not None:
            labels = np.asarray(update.disclosed_labels, dtype=np.int64)
        else:
            labels = infer_labels(model, update)
        return Reconstruction(
            inputs=estimate.reshape(1, *update.input_shape).numpy().astype(np.float32),
            labels=labels,
            confidence=np.ones(1),
            details={"neurons_used": int(used.sum())},
        )
