"""Inverting Gradients (Geiping et al. 2020, as re-implemented in seed 001, eq. 13).

Find ``x in [0, 1]^n`` minimising
``1 - <grad L(x, y), g*> / (||grad L(x, y)|| ||g*||) + alpha * TV(x)``, where ``g*`` is the
intercepted gradient and the cosine runs over all parameters at once. The recipe: Adam on
the signed input gradient, step size divided by 10 at 3/8, 5/8 and 7/8 of the iterations,
projection onto the box after every step, several random restarts keeping the best match.

A FedAvg pseudo-gradient is the sum of the K local gradients; this attack treats it as one
gradient (a dedicated FedAvg variant that simulates the K steps is future work).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from attacks.base import Attack, AttackConfig
from attacks.labels import infer_labels
from attacks.losses import effective_batch_size, model_gradient, observed_gradient
from attacks.registry import register_attack
from attacks.types import InterceptedUpdate, Reconstruction


@dataclass(frozen=True)
class InvertingGradientsConfig(AttackConfig):
    """Settings of :class:`InvertingGradientsAttack`.

    Attributes
    ----------
    iterations : int
        Optimiser steps per restart.
    lr : float
        Adam step size before decay.
    tv_weight : float
        ``alpha`` of eq. 13; applied only to inputs shaped ``(C, H, W)`` or with more dims.
    restarts : int
        Independent random initialisations; the one with the lowest final matching loss wins.
    signed_gradients : bool
        Feed ``sign(dLoss/dx)`` to Adam, as Geiping et al. do.
    lr_decay : bool
        Divide the step size by 10 at 3/8, 5/8 and 7/8 of ``iterations``.
    """

    iterations: int = 200
    lr: float = 0.1
    tv_weight: float = 1e-4
    restarts: int = 1
    signed_gradients: bool = True
    lr_decay: bool = True

    def __post_init__(self) -> None:
        for key in ("iterations", "restarts"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.tv_weight < 0:
            raise ValueError(f"tv_weight must be >= 0, got {self.tv_weight}")


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels along the last two (spatial) axes."""
    dh = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    dw = (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    return dh + dw


def cosine_matching_loss(
    candidate: list[torch.Tensor], observed: list[torch.Tensor]
) -> torch.Tensor:
    """``1 - cos(candidate, observed)`` over all parameters jointly (seed 001, eq. 13)."""
    dot = torch.stack([(c * o).sum() for c, o in zip(candidate, observed, strict=True)]).sum()
    c_norm = torch.stack([c.pow(2).sum() for c in candidate]).sum().sqrt()
    o_norm = torch.stack([o.pow(2).sum() for o in observed]).sum().sqrt()
    return 1 - dot / (c_norm * o_norm).clamp_min(1e-30)


class InvertingGradientsAttack(Attack):
    """Optimisation-based reconstruction by cosine gradient matching (seed 001, eq. 13)."""

    name = "inverting_gradients"
    config_class = InvertingGradientsConfig

    def not_applicable_reason(self, model: nn.Module, update: InterceptedUpdate) -> str | None:
        """Return why the attack cannot run, or ``None``: only an all-zero update stops it."""
        if all(not bool(torch.any(g != 0)) for g in update.pseudo_gradient().values()):
            return "the update is all zeros: there is no gradient direction to match"
        return None

    def reconstruct(
        self,
        model: nn.Module,
        update: InterceptedUpdate,
        *,
        device: torch.device,
        seed: int,
    ) -> Reconstruction:
        """Minimise eq. 13 from ``restarts`` uniform initialisations drawn with ``seed``."""
        cfg = self.config
        assert isinstance(cfg, InvertingGradientsConfig)
        observed = observed_gradient(model, update)
        dtype = observed[0].dtype if observed else torch.float32
        if update.disclosed_labels is not None:
            label_array = np.asarray(update.disclosed_labels, dtype=np.int64)
        else:
            label_array = infer_labels(model, update)
        labels = torch.as_tensor(label_array, device=device)
        shape = (effective_batch_size(update), *update.input_shape)
        if labels.shape[0] != shape[0]:
            shape = (labels.shape[0], *update.input_shape)
        use_tv = cfg.tv_weight > 0 and len(update.input_shape) >= 3
        generator = torch.Generator(device="cpu").manual_seed(seed)
        loss_name = update.hyperparams.loss

        best_loss = float("inf")
        best_x: torch.Tensor | None = None
        best_init: torch.Tensor | None = None
        for _ in range(cfg.restarts):
            init = torch.rand(shape, generator=generator, dtype=dtype)
            x = init.to(device, copy=True).requires_grad_(True)
            optimizer = torch.optim.Adam([x], lr=cfg.lr)
            milestones = [int(cfg.iterations * f) for f in (3 / 8, 5 / 8, 7 / 8)]
            scheduler = torch.optim.lr_scheduler.MultiStepLR(
                optimizer, milestones=milestones if cfg.lr_decay else [], gamma=0.1
            )
            for _ in range(cfg.iterations):
                candidate = model_gradient(model, loss_name, x, labels, create_graph=True)
                objective = cosine_matching_loss(candidate, observed)
                if use_tv:
                    objective = objective + cfg.tv_weight * total_variation(x)
                (x_grad,) = torch.autograd.grad(objective, [x])
                if not torch.isfinite(x_grad).all():
                    break
                x.grad = x_grad.sign() if cfg.signed_gradients else x_grad
                optimizer.step()
                scheduler.step()
                with torch.no_grad():
                    x.clamp_(0.0, 1.0)
            final = self._matching_loss(model, loss_name, x.detach(), labels, observed)
            if best_x is None or final < best_loss:
                best_loss, best_x, best_init = final, x.detach(), init
        assert best_x is not None
        return Reconstruction(
            inputs=best_x.cpu().numpy(),
            labels=label_array,
            iterations=cfg.iterations * cfg.restarts,
            details={"matching_loss": best_loss, "restarts": cfg.restarts},
            initial_inputs=best_init.numpy() if best_init is not None else None,
        )

    @staticmethod
    def _matching_loss(
        model: nn.Module,
        loss_name: str,
        x: torch.Tensor,
        labels: torch.Tensor,
        observed: list[torch.Tensor],
    ) -> float:
        candidate = model_gradient(model, loss_name, x, labels)
        value = float(cosine_matching_loss(candidate, observed).item())
        return value if np.isfinite(value) else float("inf")


register_attack("inverting_gradients", InvertingGradientsAttack)
