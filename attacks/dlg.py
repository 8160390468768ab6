"""Deep Leakage from Gradients (Zhu et al., "Deep Leakage from Gradients", NeurIPS 2019).

Find dummy data ``x'`` and dummy labels ``y'`` whose gradient matches the intercepted one,

    ``x'*, y'* = argmin_{x', y'} ||dL(F(x', W), y')/dW - grad W||^2``,

with L-BFGS. The labels are soft: ``y' = softmax(v)`` for a free vector ``v`` per sample,
optimised jointly with ``x'`` (the loss accepts label probabilities). The squared distance
is divided by ``||grad W||^2``, which leaves the minimiser unchanged and keeps L-BFGS's
stopping tolerances meaningful however small the gradient is.

Unlike DLG's Gaussian draw, ``x'`` starts uniform in ``[0, 1]`` like the data, so the
auditor's gain over the initialisation compares like with like. The optimisation is not
box-constrained (DLG's is not); the returned inputs are clipped to ``[0, 1]``. Tables and
signals (the update's :class:`~fedleak.attacks.types.InputDomain`) are standardised, not bounded:
their dummy starts standard normal and nothing is clipped. L-BFGS
without a line search can diverge: every evaluated iterate is scored and the best finite
one is returned.

A FedAvg pseudo-gradient is the sum of the K local gradients; it is matched as one gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fedleak.attacks.base import Attack, AttackConfig
from fedleak.attacks.batchnorm import BatchStatisticsPrior, observed_statistics_prior
from fedleak.attacks.input_priors import initial_inputs, input_prior, project_
from fedleak.attacks.losses import effective_batch_size, model_gradient, observed_gradient
from fedleak.attacks.registry import register_attack
from fedleak.attacks.types import InterceptedUpdate, Reconstruction


@dataclass(frozen=True)
class DLGConfig(AttackConfig):
    """Settings of :class:`DLGAttack` (and, through :class:`~.idlg.IDLGConfig`, iDLG).

    Attributes
    ----------
    iterations : int
        L-BFGS iterations (one gradient-matching evaluation each without a line search) at
        ``effort=default``, scaled by the effort. 300 by default: on a 32x32 photo through
        the sigmoid LeNet, 100 reach ~22 dB, 300 ~36 dB, 1000 ~53 dB
        (``benchmarks/calibrate_dlg.py``).
    lr : float
        L-BFGS step length (DLG uses 1).
    history_size : int
        L-BFGS memory: how many past updates approximate the inverse Hessian.
    line_search : bool
        Use L-BFGS's strong-Wolfe line search (several evaluations per iteration, far less
        prone to diverge) instead of DLG's fixed step.
    batchnorm_prior : bool
        Add the BatchNorm statistics term (:class:`~fedleak.attacks.batchnorm.BatchStatisticsPrior`)
        when the update reveals its batch's statistics; runs without it otherwise.
    batchnorm_weight : float
        Weight of that term beside the normalised L2 matching loss.
    tv_weight : float
        Weight of the modality's smoothness prior (:mod:`fedleak.attacks.input_priors`: 2-D TV on
        images, 1-D TV on signals, none on tables); 0 keeps DLG as published.
    """

    iterations: int = 300
    lr: float = 1.0
    history_size: int = 100
    line_search: bool = False
    batchnorm_prior: bool = True
    batchnorm_weight: float = 1.0
    tv_weight: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require(">= 1", "iterations", "history_size")
        self.require("> 0", "lr")
        self.require(">= 0", "batchnorm_weight", "tv_weight")


def l2_matching_loss(candidate: list[torch.Tensor], observed: list[torch.Tensor]) -> torch.Tensor:
    """``||candidate - observed||^2 / ||observed||^2`` over all parameters (DLG's objective)."""
    distance = torch.stack([(c - o).pow(2).sum() for c, o in zip(candidate, observed, strict=True)])
    scale = torch.stack([o.pow(2).sum() for o in observed]).sum().clamp_min(1e-30)
    return distance.sum() / scale


_RENORMALISE_BELOW = 1e-3
"""Re-normalise the objective once the loss falls below this fraction of its reference."""

_MAX_RECOVERIES = 3
"""Restarts from the best iterate (after a non-finite or stuck iterate) before giving up."""

_RECOVERY_STEP_FACTOR = 0.1
"""Each recovery shrinks the L-BFGS step length by this factor: the same step would repeat."""


@dataclass(frozen=True)
class MatchResult:
    """Best iterate of :func:`match_gradients_lbfgs`.

    Attributes
    ----------
    variables : list[torch.Tensor]
        Detached copies of the optimised tensors at the best evaluated iterate.
    loss : float
        Its (unscaled) objective value; ``inf`` if no evaluation was finite.
    iterations : int
        L-BFGS iterations run before the budget, a stall or repeated divergence stopped them.
    recoveries : int
        Restarts from the best iterate after L-BFGS met a non-finite value or could not
        move with its memory (a blown-up step can saturate every activation).
    """

    variables: list[torch.Tensor]
    loss: float
    iterations: int
    recoveries: int


class _ScaledLBFGS:
    """L-BFGS on ``scale * objective``, the scale making the gradient unit-norm at a restart.

    torch's L-BFGS has absolute thresholds (it skips a curvature pair with ``y.s <= 1e-10``
    and takes ``min(1, 1/|g|_1)`` as its first step), so a gradient-matching loss whose
    input gradient is ~1e-8 (a sigmoid LeNet at its default initialisation) never leaves
    its starting point. Normalising at every restart removes that scale.
    """

    def __init__(
        self, objective: Callable[[], torch.Tensor], variables: list[torch.Tensor], cfg: DLGConfig
    ) -> None:
        self.objective, self.variables, self.cfg = objective, variables, cfg
        self.best_loss = float("inf")
        self.best = [v.detach().clone() for v in variables]
        self.diverged = False
        self.scale = 1.0
        self.reference = float("inf")
        self.lr = cfg.lr
        self.optimizer = self.restart()

    def restart(self) -> torch.optim.LBFGS:
        """Fresh L-BFGS memory, the objective normalised at the current iterate."""
        loss = self.objective()
        value = float(loss.detach())
        grads = torch.autograd.grad(loss, self.variables)
        norm = float(torch.stack([g.pow(2).sum() for g in grads]).sum().sqrt())
        self.scale = 1.0 / norm if np.isfinite(norm) and norm > 0 else 1.0
        self.reference = value
        self._record(value)
        self.optimizer = torch.optim.LBFGS(
            self.variables,
            lr=self.lr,
            max_iter=1,
            history_size=self.cfg.history_size,
            tolerance_grad=0.0,
            tolerance_change=0.0,
            line_search_fn="strong_wolfe" if self.cfg.line_search else None,
        )
        return self.optimizer

    def _record(self, value: float) -> None:
        if np.isfinite(value) and value < self.best_loss:
            self.best_loss = value
            self.best = [v.detach().clone() for v in self.variables]

    def closure(self) -> torch.Tensor:
        """Evaluate, remember the best finite iterate, hand L-BFGS the scaled gradient."""
        loss = self.objective()
        value = float(loss.detach())
        # autograd.grad, not backward: the model's own .grad must stay untouched
        grads = torch.autograd.grad(loss, self.variables)
        finite = np.isfinite(value) and all(bool(torch.isfinite(g).all()) for g in grads)
        if not finite:
            self.diverged = True
            # a zero gradient makes L-BFGS return at once instead of stepping on NaNs
            for v in self.variables:
                v.grad = torch.zeros_like(v)
            return torch.zeros((), dtype=loss.dtype, device=loss.device)
        self._record(value)
        for v, g in zip(self.variables, grads, strict=True):
            v.grad = g * self.scale
        return loss.detach() * self.scale


def match_gradients_lbfgs(
    objective: Callable[[], torch.Tensor],
    variables: list[torch.Tensor],
    config: DLGConfig,
) -> MatchResult:
    """Minimise ``objective()`` over ``variables`` with L-BFGS, keeping the best finite iterate.

    The objective is normalised to a unit gradient at the start and again whenever it has
    fallen by a factor :data:`_RENORMALISE_BELOW` (a fresh L-BFGS memory each time). A
    non-finite evaluation, or a step after which L-BFGS cannot move (L-BFGS without line
    search can blow up), restarts from the best iterate with a step length shrunk by
    :data:`_RECOVERY_STEP_FACTOR`, at most :data:`_MAX_RECOVERIES` times; the search ends
    early when even a fresh L-BFGS cannot move.

    Parameters
    ----------
    objective : Callable[[], torch.Tensor]
        Scalar loss of the current ``variables`` (which require grad).
    variables : list[torch.Tensor]
        Leaf tensors optimised in place; they hold the best iterate on return.
    config : DLGConfig
        Iteration budget, step length, memory and line search.
    """
    search = _ScaledLBFGS(objective, variables, config)
    iterations = recoveries = 0
    fresh = True  # L-BFGS memory is empty: a stall now is not a stale-curvature artefact
    budget = config.scaled_count(config.iterations)
    while iterations < budget:
        before = [v.detach().clone() for v in variables]
        search.optimizer.step(search.closure)
        iterations += 1
        stalled = all(torch.equal(b, v) for b, v in zip(before, variables, strict=True))
        if search.diverged or stalled:
            if (stalled and fresh) or recoveries == _MAX_RECOVERIES:
                break  # no descent direction even from scratch, or hopeless
            recoveries += 1
            with torch.no_grad():
                for v, b in zip(variables, search.best, strict=True):
                    v.copy_(b)
            search.diverged = False
            search.lr *= _RECOVERY_STEP_FACTOR
            search.restart()
            fresh = True
        elif search.best_loss < search.reference * _RENORMALISE_BELOW:
            search.restart()
            fresh = True
        else:
            fresh = False
    if not search.diverged:
        search.closure()  # score the last step's iterate too
    with torch.no_grad():
        for v, b in zip(variables, search.best, strict=True):
            v.copy_(b)
    return MatchResult(search.best, search.best_loss, iterations, recoveries)


def gradient_matching_objective(
    model: nn.Module,
    update: InterceptedUpdate,
    x: torch.Tensor,
    labels: Callable[[], torch.Tensor],
    prior: BatchStatisticsPrior | None = None,
    prior_weight: float = 0.0,
    tv_weight: float = 0.0,
) -> Callable[[], torch.Tensor]:
    """DLG's objective as a closure over dummy data ``x`` and a label function.

    With ``prior``, ``prior_weight`` times the BatchNorm statistics term is added; with
    ``tv_weight``, that times the update's modality prior (:mod:`fedleak.attacks.input_priors`).
    """
    observed = observed_gradient(model, update)
    loss_name = update.hyperparams.loss
    smoothness = input_prior(update.input_domain, update.input_shape) if tv_weight > 0 else None

    def matching() -> torch.Tensor:
        if prior is None:
            candidate = model_gradient(model, loss_name, x, labels(), create_graph=True)
            return l2_matching_loss(candidate, observed)
        with prior.capture() as captured:
            candidate = model_gradient(model, loss_name, x, labels(), create_graph=True)
        return l2_matching_loss(candidate, observed) + prior_weight * prior.distance(captured)

    def objective() -> torch.Tensor:
        if smoothness is None:
            return matching()
        return matching() + tv_weight * smoothness(x)

    return objective


def statistics_prior(
    cfg: DLGConfig, model: nn.Module, update: InterceptedUpdate
) -> tuple[BatchStatisticsPrior | None, str]:
    """The BatchNorm statistics term ``cfg`` asks for, where ``update`` reveals it."""
    enabled = cfg.batchnorm_prior and cfg.batchnorm_weight > 0
    return observed_statistics_prior(model, update, enabled=enabled)


def uniform_dummy(
    update: InterceptedUpdate, batch: int, dtype: torch.dtype, seed: int
) -> torch.Tensor:
    """Dummy data drawn on the CPU from ``seed`` (same on any device): uniform in ``[0, 1]``
    for images, standard normal for standardised tables and signals
    (:func:`fedleak.attacks.input_priors.initial_inputs`)."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    shape = (batch, *update.input_shape)
    return initial_inputs(shape, update.input_domain, generator, dtype)


class DLGAttack(Attack):
    """Joint L-BFGS reconstruction of data and soft labels by L2 gradient matching (DLG)."""

    name = "dlg"
    config_class = DLGConfig

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
        """Match the gradient from a uniform draw of ``x'`` and a Gaussian draw of ``v``.

        With disclosed labels the labels are fixed to them and only ``x'`` is optimised.
        """
        cfg = self.config
        assert isinstance(cfg, DLGConfig)
        dtype = next(model.parameters()).dtype
        disclosed = update.disclosed_labels
        batch = effective_batch_size(update) if disclosed is None else len(disclosed)
        init = uniform_dummy(update, batch, dtype, seed)
        x = init.to(device, copy=True).requires_grad_(True)
        variables = [x]
        if disclosed is not None:
            fixed = torch.as_tensor(np.asarray(disclosed, dtype=np.int64), device=device)

            def labels() -> torch.Tensor:
                return fixed
        else:
            generator = torch.Generator(device="cpu").manual_seed(seed + 1)
            label_logits = torch.randn(
                (batch, update.num_classes), generator=generator, dtype=dtype
            ).to(device)
            label_logits.requires_grad_(True)
            variables.append(label_logits)

            def labels() -> torch.Tensor:
                return F.softmax(label_logits, dim=-1)

        prior, prior_status = statistics_prior(cfg, model, update)
        objective = gradient_matching_objective(
            model, update, x, labels, prior, cfg.batchnorm_weight, cfg.tv_weight
        )
        result = match_gradients_lbfgs(objective, variables, cfg)
        if disclosed is not None:
            label_array = np.asarray(disclosed, dtype=np.int64)
        else:
            label_array = result.variables[1].argmax(dim=-1).cpu().numpy().astype(np.int64)
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


register_attack(DLGAttack)
