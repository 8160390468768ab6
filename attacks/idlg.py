"""Improved DLG (Zhao et al., "iDLG: Improved Deep Leakage from Gradients", 2020).

Labels first, then data.

For softmax cross-entropy the logit gradient of one sample is negative exactly at its label,
so the label is read off the last layer's gradient (:func:`~fedleak.attacks.labels.idlg_label`);
a batch's labels come from :func:`~fedleak.attacks.label_restoration.restore_labels` (counts fitted
to the last layer's gradient, after Ma et al., ICLR 2023). With the labels
fixed, only the dummy data is optimised, by DLG's L2 gradient matching with L-BFGS
(:func:`~fedleak.attacks.dlg.match_gradients_lbfgs`: same normalisation, divergence guard and
best-iterate bookkeeping). The label rule assumes cross-entropy; under the MSE loss the
inferred labels may be wrong and the data match suffers with them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fedleak.attacks.base import Attack
from fedleak.attacks.dlg import (
    DLGConfig,
    gradient_matching_objective,
    match_gradients_lbfgs,
    statistics_prior,
    uniform_dummy,
)
from fedleak.attacks.input_priors import project_
from fedleak.attacks.label_restoration import batch_labels
from fedleak.attacks.registry import register_attack
from fedleak.attacks.types import InterceptedUpdate, Reconstruction


@dataclass(frozen=True)
class IDLGConfig(DLGConfig):
    """Settings of :class:`IDLGAttack`: DLG's (iterations, lr, history_size, line_search)."""


class IDLGAttack(Attack):
    """iDLG: labels from the last layer's gradient signs, data by L2 gradient matching."""

    name = "idlg"
    config_class = IDLGConfig

    def not_applicable_reason(self, model: nn.Module, update: InterceptedUpdate) -> str | None:
        """Return why the attack cannot run, or ``None``: only an all-zero update stops it."""
        if update.is_zero():
            return "the update is all zeros: there is no gradient to match"
        return None

    def reconstruct(
        self,
        model: nn.Module,
        update: InterceptedUpdate,
        *,
        device: torch.device,
        seed: int,
    ) -> Reconstruction:
        """Infer (or take the disclosed) labels, then match the gradient from a uniform draw."""
        cfg = self.config
        assert isinstance(cfg, IDLGConfig)
        label_array = batch_labels(model, update)
        labels = torch.as_tensor(label_array, device=device)
        dtype = next(model.parameters()).dtype
        init = uniform_dummy(update, len(label_array), dtype, seed)
        x = init.to(device, copy=True).requires_grad_(True)
        prior, prior_status = statistics_prior(cfg, model, update)
        objective = gradient_matching_objective(
            model, update, x, lambda: labels, prior, cfg.batchnorm_weight, cfg.tv_weight
        )
        result = match_gradients_lbfgs(objective, [x], cfg)
        return Reconstruction(
            inputs=project_(result.variables[0].detach().clone(), update.input_domain)
            .cpu()
            .numpy(),
            labels=label_array,
            iterations=result.iterations,
            details={
                "matching_loss": result.loss,
                "recoveries": result.recoveries,
                "batchnorm_prior": prior_status,
            },
            initial_inputs=init.numpy(),
        )


register_attack(IDLGAttack)
