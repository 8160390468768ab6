"""TabLeak (Vero, Balunović, Dimitrov and Vechev, "TabLeak: Tabular Data Leakage in Federated
Learning", ICML 2023).

Gradient matching on tabular rows, with the paper's two answers to a table's mix of discrete
and continuous features:

- Softmax relaxation. A discrete feature is a one-hot block of the row; the attack optimises
  free logits per block and feeds ``softmax(logits / temperature)`` to the model, so every
  iterate lies in the simplex (the paper's sec. 4.1). Continuous columns (standardised) are
  free. The objective is the cosine distance between the candidate's gradient and the
  intercepted one (the paper uses the cosine loss of Geiping et al. 2020), minimised with
  Adam from standard-normal starts.
- Pooled ensembling (sec. 4.2). ``restarts`` independent reconstructions of the batch are
  matched row by row to the one with the best final loss (Hungarian assignment on the
  encoded rows), then pooled: each discrete feature by majority vote over the restarts'
  categories (its one-hot row is returned), each continuous one by the median.

Each row's confidence is one minus the mean normalised entropy of its discrete features'
votes over the restarts (the paper's entropy-based measure of how trustworthy a feature is,
sec. 4.3, averaged per row). Labels are the disclosed ones where the threat model allows
it, else restored from the last layer's update
(:func:`fedleak.attacks.label_restoration.infer_labels`). FedSGD updates; a FedAvg update is
matched as one gradient. The table's schema (which columns form a one-hot block) is the update's
:class:`~fedleak.attacks.types.InputDomain`.

The restarts are independent, so where the model allows it they run together, in one
vectorised pass (:mod:`fedleak.attacks.batched_restarts`, as inverting gradients' do): the
same starts, steps and pooling, at a fraction of the time on a table's small network.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from fedleak.attacks.base import Attack, AttackConfig
from fedleak.attacks.batched_restarts import BatchedObjective, restarts_apart_reason
from fedleak.attacks.fedavg import LocalSchedule
from fedleak.attacks.gradient_matching import CosineTarget
from fedleak.attacks.input_priors import total_variation
from fedleak.attacks.label_restoration import batch_labels
from fedleak.attacks.losses import model_gradient, observed_gradient
from fedleak.attacks.registry import register_attack
from fedleak.attacks.types import InputDomain, InterceptedUpdate, Reconstruction


@dataclass(frozen=True)
class TabLeakConfig(AttackConfig):
    """Settings of :class:`TabLeakAttack`.

    Attributes
    ----------
    iterations : int
        Adam steps per restart at ``effort=default`` (scaled by the effort).
    lr : float
        Adam step size.
    restarts : int
        Reconstructions pooled by the ensemble (the paper uses 30; 1 turns pooling off).
    temperature : float
        Softmax temperature of the discrete blocks.
    restarts_together : bool | None
        Run the restarts in one vectorised pass: ``None`` where that is possible and faster
        (the model's size rule), ``True`` wherever possible, ``False`` never. The record's
        ``restarts_together`` says which ran.
    """

    iterations: int = 300
    lr: float = 0.06
    restarts: int = 10
    temperature: float = 1.0
    restarts_together: bool | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require(">= 1", "iterations", "restarts")
        self.require("> 0", "lr", "temperature")


def relaxed_rows(free: torch.Tensor, domain: InputDomain, temperature: float) -> torch.Tensor:
    """Rows (the last axis) with each one-hot block replaced by ``softmax(block / temperature)``."""
    pieces, start = [], 0
    for lo, hi in domain.discrete_groups:
        pieces.append(free[..., start:lo])
        pieces.append(torch.softmax(free[..., lo:hi] / temperature, dim=-1))
        start = hi
    pieces.append(free[..., start:])
    return torch.cat(pieces, dim=-1)


def one_hot_rows(rows: np.ndarray, domain: InputDomain) -> np.ndarray:
    """``rows`` with every one-hot block snapped to the one-hot of its argmax."""
    out = np.array(rows, dtype=np.float64)
    for lo, hi in domain.discrete_groups:
        block = np.zeros_like(out[:, lo:hi])
        block[np.arange(len(out)), out[:, lo:hi].argmax(axis=1)] = 1.0
        out[:, lo:hi] = block
    return out


def align_to(reference: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``rows`` reordered so row ``i`` is the one matched to ``reference[i]`` (min total L2)."""
    cost = ((reference[:, None, :] - rows[None, :, :]) ** 2).sum(axis=2)
    ref_idx, row_idx = linear_sum_assignment(cost)
    out = np.empty_like(rows)
    out[ref_idx] = rows[row_idx]
    return out


def pool_ensemble(
    candidates: list[np.ndarray], domain: InputDomain
) -> tuple[np.ndarray, np.ndarray]:
    """Pool aligned reconstructions ``(R, B, n)``: vote per block, median per continuous column.

    Returns the pooled rows (one-hot blocks) and each row's confidence in ``[0, 1]``.
    """
    stack = np.stack(candidates)  # (R, B, n)
    pooled = np.median(stack, axis=0)
    entropies = []
    for lo, hi in domain.discrete_groups:
        votes = stack[:, :, lo:hi].argmax(axis=2)  # (R, B)
        counts = np.stack([(votes == k).sum(axis=0) for k in range(hi - lo)], axis=1)
        block = np.zeros((stack.shape[1], hi - lo))
        block[np.arange(len(block)), counts.argmax(axis=1)] = 1.0
        pooled[:, lo:hi] = block
        share = counts / counts.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy = -np.nansum(np.where(share > 0, share * np.log(share), 0.0), axis=1)
        entropies.append(entropy / math.log(hi - lo) if hi - lo > 1 else np.zeros(len(block)))
    if not entropies:
        return pooled, np.ones(stack.shape[1])
    return pooled, 1.0 - np.mean(np.stack(entropies), axis=0)


class TabLeakAttack(Attack):
    """Softmax-relaxed cosine gradient matching with pooled ensembling, for tables (TabLeak)."""

    name = "tableak"
    config_class = TabLeakConfig

    def not_applicable_reason(self, model: nn.Module, update: InterceptedUpdate) -> str | None:
        """TabLeak reconstructs table rows: other modalities and all-zero updates stop it."""
        if update.input_domain.modality != "tabular":
            return (
                f"TabLeak reconstructs tabular rows; this update's inputs are "
                f"{update.input_domain.modality} data"
            )
        if len(update.input_shape) != 1:
            return f"TabLeak needs flat rows, got input shape {update.input_shape}"
        if update.is_zero():
            return "the update is all zeros: there is no gradient direction to match"
        return None

    def _restart(
        self,
        model: nn.Module,
        update: InterceptedUpdate,
        labels: torch.Tensor,
        init: torch.Tensor,
        target: CosineTarget,
    ) -> tuple[np.ndarray, float]:
        """One reconstruction from ``init``: its relaxed rows and final cosine loss."""
        cfg = self.config
        assert isinstance(cfg, TabLeakConfig)
        loss_name = update.hyperparams.loss

        def gradient(rows: torch.Tensor) -> torch.Tensor:
            candidate = model_gradient(model, loss_name, rows, labels, create_graph=True)
            _, grad = target.loss_and_grad(candidate)
            parts = grad.split([c.numel() for c in candidate])
            vectors = [v.view_as(c) for v, c in zip(parts, candidate, strict=True)]
            (step,) = torch.autograd.grad(candidate, [rows], grad_outputs=vectors)
            return step

        rows = self._descend(init, update.input_domain, gradient)
        value = float(target.loss_and_grad(model_gradient(model, loss_name, rows, labels))[0])
        return rows.cpu().double().numpy(), value if math.isfinite(value) else math.inf

    def _restarts_together(
        self,
        model: nn.Module,
        update: InterceptedUpdate,
        labels: torch.Tensor,
        inits: torch.Tensor,
        target: CosineTarget,
    ) -> list[tuple[np.ndarray, float]]:
        """Every restart from the stacked ``inits`` ``(R, B, n)`` in one vectorised run."""
        loss_name = update.hyperparams.loss
        objective = BatchedObjective(model, loss_name, labels, target, total_variation)
        no_prior = inits.new_zeros(len(inits))
        rows = self._descend(inits, update.input_domain, lambda r: objective.gradient(r, no_prior))
        values = objective.matching_losses(rows).tolist()
        return [(r.cpu().double().numpy(), v) for r, v in zip(rows, values, strict=True)]

    def _descend(
        self,
        init: torch.Tensor,
        domain: InputDomain,
        gradient: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """Adam on the free logits from ``init``; returns the relaxed rows it ends at.

        ``gradient`` maps relaxed rows to the matching loss's gradient in them; the chain rule
        through the softmax blocks gives the step in the logits.
        """
        cfg = self.config
        assert isinstance(cfg, TabLeakConfig)
        free = init.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([free], lr=cfg.lr)
        for _ in range(cfg.scaled_count(cfg.iterations)):
            rows = relaxed_rows(free, domain, cfg.temperature)
            at_rows = gradient(rows.detach().requires_grad_(True))
            (step,) = torch.autograd.grad(rows, [free], grad_outputs=at_rows)
            free.grad = torch.nan_to_num(step, nan=0.0, posinf=0.0, neginf=0.0)
            optimizer.step()
        with torch.no_grad():
            return relaxed_rows(free, domain, cfg.temperature)

    def reconstruct(
        self,
        model: nn.Module,
        update: InterceptedUpdate,
        *,
        device: torch.device,
        seed: int,
    ) -> Reconstruction:
        """Run ``restarts`` reconstructions from seeded normal starts and pool them."""
        cfg = self.config
        assert isinstance(cfg, TabLeakConfig)
        label_array = batch_labels(model, update)
        labels = torch.as_tensor(label_array, device=device)
        dtype = next(model.parameters()).dtype
        generator = torch.Generator(device="cpu").manual_seed(seed)
        shape = (len(label_array), *update.input_shape)
        observed = observed_gradient(model, update)
        target = CosineTarget(torch.cat([g.reshape(-1) for g in observed]))
        inits = [torch.randn(shape, generator=generator, dtype=dtype) for _ in range(cfg.restarts)]
        batch = len(label_array)
        one_step = LocalSchedule(batch, (tuple(range(batch)),))  # matched as one gradient
        apart = restarts_apart_reason(
            model, one_step, False, restarts=cfg.restarts, together=cfg.restarts_together
        )
        if apart is None:
            runs = self._restarts_together(
                model, update, labels, torch.stack(inits).to(device), target
            )
        else:
            runs = [self._restart(model, update, labels, x.to(device), target) for x in inits]
        runs.sort(key=lambda run: run[1])
        reference = runs[0][0]
        aligned = [reference, *(align_to(reference, rows) for rows, _ in runs[1:])]
        pooled, confidence = pool_ensemble(aligned, update.input_domain)
        return Reconstruction(
            inputs=pooled.astype(np.float32).reshape(shape),
            labels=label_array,
            confidence=confidence,
            iterations=cfg.scaled_count(cfg.iterations) * cfg.restarts,
            details={
                "matching_loss": runs[0][1],
                "restarts": cfg.restarts,
                "restarts_together": apart is None,
            },
        )


register_attack(TabLeakAttack)
