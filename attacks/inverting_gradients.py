"""Inverting Gradients (Geiping et al., "Inverting Gradients", NeurIPS 2020, eq. 13).

Find ``x in [0, 1]^n`` minimising
``1 - <u(x, y), u*> / (||u(x, y)|| ||u*||) + alpha * TV(x)``, where ``u*`` is the intercepted
update and the cosine runs over all parameters at once. The recipe: Adam on the signed input
gradient, step size divided by 10 at 3/8, 5/8 and 7/8 of the iterations, projection onto the
box after every step, several random restarts keeping the one whose final gradient matches
best (cosine term alone).

FedSGD: ``u(x, y)`` is the batch gradient ``grad L(x, y)`` (Geiping et al. 2020, eq. 2). FedAvg with
K > 1 local steps (Geiping et al.'s FedAvg attack, Geiping et al. 2020 eqs. 3-4): ``u(x, y)`` is the
weight difference ``(theta_0 - theta_K) / lr`` after simulating the client's K SGD steps on the
unknown ``x`` with the server-known ``lr`` and batch size, unrolled so that the objective is
differentiable in ``x`` (:mod:`fedleak.attacks.fedavg` says which unknowns each step uses). Labels
come from the disclosure when the threat model allows it (the audit lists them in step
order), else from the aggregated last-layer update
(:func:`fedleak.attacks.fedavg.infer_local_labels`), which gives their multiset but not which step
used which label. After a large local step the model is a different function, so that assignment
matters; the restarts therefore also search it: restart 0 assigns the labels in class order, later
restarts try the other distinct orders (all of them when there are at most ``restarts``, e.g. ``K!``
for K distinct labels with B = 1; random ones beyond), and the best final match wins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from fedleak.attacks.base import Attack, AttackConfig
from fedleak.attacks.batched_restarts import BatchedObjective, restarts_apart_reason
from fedleak.attacks.batchnorm import observed_statistics_prior
from fedleak.attacks.fedavg import LocalSchedule, infer_local_labels, local_schedule
from fedleak.attacks.gradient_matching import (
    CosineTarget,
    MatchingProblem,
    cosine_matching_loss,
    flatten,
)
from fedleak.attacks.input_priors import (
    Prior,
    default_prior_weight,
    initial_inputs,
    input_prior,
    project_,
    total_variation,
)
from fedleak.attacks.label_orders import label_orders
from fedleak.attacks.losses import effective_batch_size, observed_gradient
from fedleak.attacks.registry import register_attack
from fedleak.attacks.timed_schedule import TimedSchedule
from fedleak.attacks.types import InterceptedUpdate, Reconstruction

__all__ = [
    "CosineTarget",
    "InvertingGradientsAttack",
    "InvertingGradientsConfig",
    "MatchingProblem",
    "cosine_matching_loss",
    "total_variation",
]

DECAY_POINTS = (3 / 8, 5 / 8, 7 / 8)
"""Fractions of the iterations after which the step size is divided by 10 (Geiping et al.)."""


@dataclass(frozen=True)
class InvertingGradientsConfig(AttackConfig):
    """Settings of :class:`InvertingGradientsAttack`.

    Attributes
    ----------
    iterations : int
        Optimiser steps per restart at ``effort=default`` (scaled by the effort).
    time_budget_s : float
        Wall-clock seconds for all restarts at ``effort=default`` (scaled by the effort).
        Where ``iterations`` do not fit, each restart runs what its share affords, measured
        as it goes, with the step decays at the same fractions
        (:class:`~fedleak.attacks.timed_schedule.TimedSchedule`); the record's
        ``time_limited`` says so. 500 steps take ~1.5 s on a 32x32 LeNet and ~5 min on
        ResNet-18 at B=4 on a busy CPU core: the budget keeps the latter inside the pool's
        300 s drain deadline.
    lr : float
        Adam step size before decay.
    tv_weight : float | None
        ``alpha`` of eq. 13, the weight of the modality's smoothness prior
        (:mod:`fedleak.attacks.input_priors`): 2-D TV on images shaped ``(C, H, W)``, 1-D TV on
        signals, none on tables. Relative to the matching term when ``tv_relative``.
        ``None``: chosen for the model (:func:`fedleak.attacks.input_priors.default_prior_weight`:
        0 behind a dense first layer, else 0.01 relative).
    tv_relative : bool
        Scale ``tv_weight`` at the start of each restart by ``|dL/dx| / |dTV/dx|``, the
        ratio of the matching term's and the prior's input gradients there, so that the
        prior's share of the signed step does not depend on the model's gradient scale (an
        untrained sigmoid LeNet's matching gradient is ~1e-7, a ReLU CNN's ~1e-2).
        ``False``: ``tv_weight`` is eq. 13's absolute ``alpha``.
    restarts : int
        Independent random initialisations; the one with the lowest final matching loss wins.
    signed_gradients : bool
        Feed ``sign(dLoss/dx)`` to Adam, as Geiping et al. do.
    lr_decay : bool
        Divide the step size by 10 at 3/8, 5/8 and 7/8 of ``iterations``.
    simulate_local_steps : bool
        On a FedAvg update of K > 1 local steps, match the simulated K-step weight difference
        (Geiping et al.'s FedAvg attack). ``False`` treats the update as one gradient of one
        batch, as a FedSGD attack would.
    batchnorm_prior : bool
        When the update carries BatchNorm running statistics that reveal the batch's own
        statistics (:mod:`fedleak.attacks.batchnorm`), add Yin et al.'s statistics-matching term
        with those exact targets. Without such statistics the attack runs without it.
    batchnorm_weight : float
        Weight of that term beside the cosine term.
    restarts_together : bool | None
        Evaluate the restarts in one vectorised pass (:mod:`fedleak.attacks.batched_restarts`),
        sharing the whole ``time_budget_s``: ``None`` where that is possible and faster (the
        model's size rule), ``True`` wherever possible, ``False`` never. The record's
        ``restarts_together`` says which ran.
    """

    iterations: int = 500
    time_budget_s: float = 60.0
    lr: float = 0.1
    tv_weight: float | None = None
    tv_relative: bool = True
    restarts: int = 1
    signed_gradients: bool = True
    lr_decay: bool = True
    simulate_local_steps: bool = True
    batchnorm_prior: bool = True
    batchnorm_weight: float = 1.0
    restarts_together: bool | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require(">= 1", "iterations", "restarts")
        self.require("> 0", "lr", "time_budget_s")
        self.require(">= 0", "batchnorm_weight")
        if self.tv_weight is not None:
            self.require(">= 0", "tv_weight")


class InvertingGradientsAttack(Attack):
    """Optimisation-based reconstruction by cosine update matching (Geiping et al. 2020, eq. 13)."""

    name = "inverting_gradients"
    config_class = InvertingGradientsConfig

    def not_applicable_reason(self, model: nn.Module, update: InterceptedUpdate) -> str | None:
        """Return why the attack cannot run, or ``None``: only an all-zero update stops it."""
        if update.is_zero():
            return "the update is all zeros: there is no gradient direction to match"
        return None

    def _schedule(self, update: InterceptedUpdate) -> LocalSchedule:
        cfg = self.config
        assert isinstance(cfg, InvertingGradientsConfig)
        schedule = local_schedule(update)
        if schedule.num_steps > 1 and not cfg.simulate_local_steps:
            batch = effective_batch_size(update)
            return LocalSchedule(batch, (tuple(range(batch)),))
        return schedule

    def _labels(
        self, model: nn.Module, update: InterceptedUpdate, schedule: LocalSchedule
    ) -> tuple[np.ndarray, LocalSchedule]:
        if update.disclosed_labels is None:
            return infer_local_labels(model, update, schedule), schedule
        disclosed = np.asarray(update.disclosed_labels, dtype=np.int64)
        if schedule.num_steps == 1:
            # one batch: the disclosed labels say how many samples it held
            return disclosed, LocalSchedule(len(disclosed), (tuple(range(len(disclosed))),))
        if len(disclosed) < schedule.num_samples:
            raise ValueError(
                f"{len(disclosed)} disclosed labels for {schedule.num_samples} unknown samples"
            )
        # the audit lists the samples in the order the steps used them
        return disclosed[: schedule.num_samples], schedule

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
        label_array, schedule = self._labels(model, update, self._schedule(update))
        if update.disclosed_labels is None and schedule.num_steps > 1:
            orders = label_orders(label_array, cfg.restarts, seed)
        else:
            orders = [label_array] * cfg.restarts
        prior, prior_status = observed_statistics_prior(
            model, update, enabled=cfg.batchnorm_prior and cfg.batchnorm_weight > 0
        )
        problem = MatchingProblem(
            model=model,
            loss_name=update.hyperparams.loss,
            lr=update.hyperparams.lr,
            schedule=schedule,
            labels=torch.as_tensor(label_array, device=device),
            target=CosineTarget(flatten(observed)),
            prior=prior,
            prior_weight=cfg.batchnorm_weight,
            domain=update.input_domain,
        )
        shape = (schedule.num_samples, *update.input_shape)
        smoothness, tv_weight = self._smoothness_prior(model, update)
        if smoothness is not None:
            problem = replace(problem, smoothness=smoothness)
        generator = torch.Generator(device="cpu").manual_seed(seed)

        inits = [initial_inputs(shape, update.input_domain, generator, dtype) for _ in orders]
        apart = self._restarts_apart_reason(model, problem)
        if apart is None:
            finals, runs = self._optimise_together(problem, inits, tv_weight)
        else:
            finals, runs = [], []
            for order, init in zip(orders, inits, strict=True):
                trial = replace(problem, labels=torch.as_tensor(order, device=device))
                runs.append(self._restart_schedule(len(orders)))
                x = self._optimise(trial, init.to(device), tv_weight, runs[-1])
                finals.append((x, trial.matching_loss(x)))
        losses = [loss for _, loss in finals]
        pick = int(np.argmin(losses))  # the first of equal losses, as the sequential search did
        best_x, best_loss = finals[pick]
        best_init, best_labels = inits[pick], orders[pick]
        return Reconstruction(
            inputs=best_x.cpu().numpy(),
            labels=best_labels,
            iterations=sum(run.done for run in runs) * (len(orders) if apart is None else 1),
            details={
                "matching_loss": best_loss,
                "time_limited": any(run.time_limited for run in runs),
                "restarts": cfg.restarts,
                "restarts_together": apart is None,
                "local_steps": schedule.num_steps,
                "unknowns": schedule.num_samples,
                "batchnorm_prior": prior_status,
            },
            initial_inputs=best_init.numpy(),
        )

    def _smoothness_prior(
        self, model: nn.Module, update: InterceptedUpdate
    ) -> tuple[Prior | None, float]:
        """The modality's smoothness prior (``None`` on tables) and its weight (0 without it)."""
        cfg = self.config
        assert isinstance(cfg, InvertingGradientsConfig)
        smoothness = input_prior(update.input_domain, update.input_shape)
        if smoothness is None:
            return None, 0.0
        if cfg.tv_weight is None:
            return smoothness, default_prior_weight(model, update.input_shape)
        return smoothness, cfg.tv_weight

    def _restart_schedule(self, sharing: int) -> TimedSchedule:
        """One run's steps: ``iterations`` within its share of ``time_budget_s``.

        ``sharing`` runs split the budget: the restarts one after another, or 1 when they run
        together.
        """
        cfg = self.config
        assert isinstance(cfg, InvertingGradientsConfig)
        return TimedSchedule(
            cfg.scaled_count(cfg.iterations),
            cfg.scaled(cfg.time_budget_s) / sharing,
            DECAY_POINTS if cfg.lr_decay else (),
        )

    def _restarts_apart_reason(self, model: nn.Module, problem: MatchingProblem) -> str | None:
        """Why the restarts run one after another, or ``None`` when they run together."""
        cfg = self.config
        assert isinstance(cfg, InvertingGradientsConfig)
        uses_prior = problem.prior is not None and problem.prior_weight > 0
        return restarts_apart_reason(
            model,
            problem.schedule,
            uses_prior,
            restarts=cfg.restarts,
            together=cfg.restarts_together,
        )

    def _optimise_together(
        self, problem: MatchingProblem, inits: list[torch.Tensor], tv_weight: float
    ) -> tuple[list[tuple[torch.Tensor, float]], list[TimedSchedule]]:
        """All restarts in one vectorised run (:mod:`fedleak.attacks.batched_restarts`)."""
        cfg = self.config
        assert isinstance(cfg, InvertingGradientsConfig)
        objective = BatchedObjective(
            problem.model,
            problem.loss_name,
            problem.labels,
            problem.target,
            problem.smoothness,
        )
        start = torch.stack(inits).to(problem.labels.device)
        weights = torch.full((len(inits),), tv_weight, dtype=start.dtype, device=start.device)
        if cfg.tv_relative and tv_weight > 0:
            weights = weights * objective.prior_scales(start)
        plan = self._restart_schedule(1)
        xs = self._descend(start, lambda x: objective.gradient(x, weights), problem, plan)
        losses = objective.matching_losses(xs).tolist()
        return [(x, loss) for x, loss in zip(xs, losses, strict=True)], [plan]

    def _optimise(
        self, problem: MatchingProblem, init: torch.Tensor, tv_weight: float, plan: TimedSchedule
    ) -> torch.Tensor:
        """One restart (the relative prior scaled at its start)."""
        cfg = self.config
        assert isinstance(cfg, InvertingGradientsConfig)
        weight = tv_weight
        if cfg.tv_relative and tv_weight > 0:
            weight *= problem.prior_scale(init.clone().requires_grad_(True))
        return self._descend(init, lambda x: problem.objective_gradient(x, weight), problem, plan)

    def _descend(
        self,
        init: torch.Tensor,
        gradient: Callable[[torch.Tensor], torch.Tensor],
        problem: MatchingProblem,
        plan: TimedSchedule,
    ) -> torch.Tensor:
        """Signed Adam with step decay from ``init``, projected onto the domain's bounds.

        Every operation is elementwise, so stacked restarts descend independently.
        """
        cfg = self.config
        assert isinstance(cfg, InvertingGradientsConfig)
        x = init.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([x], lr=cfg.lr)
        for decays in plan:
            for group in optimizer.param_groups:
                group["lr"] *= 0.1**decays
            x_grad = gradient(x)
            # A non-finite derivative (degenerate candidate) moves nothing; no host sync.
            step = x_grad.sign() if cfg.signed_gradients else x_grad
            x.grad = torch.nan_to_num(step, nan=0.0, posinf=0.0, neginf=0.0)
            optimizer.step()
            with torch.no_grad():
                project_(x, problem.domain)
        return x.detach()


register_attack(InvertingGradientsAttack)
