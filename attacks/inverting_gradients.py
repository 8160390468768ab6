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

import math
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from fedleak.attacks.base import Attack, AttackConfig
from fedleak.attacks.batchnorm import BatchStatisticsPrior, Captured, observed_statistics_prior
from fedleak.attacks.fedavg import (
    LocalSchedule,
    infer_local_labels,
    local_schedule,
    simulated_update,
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
from fedleak.attacks.types import InputDomain, InterceptedUpdate, Reconstruction

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

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require(">= 1", "iterations", "restarts")
        self.require("> 0", "lr", "time_budget_s")
        self.require(">= 0", "batchnorm_weight")
        if self.tv_weight is not None:
            self.require(">= 0", "tv_weight")


def _flatten(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def cosine_matching_loss(
    candidate: list[torch.Tensor], observed: list[torch.Tensor]
) -> torch.Tensor:
    """``1 - cos(candidate, observed)`` over all parameters jointly (Geiping et al. 2020, eq. 13).

    Differentiable; evaluated as ``||u/|u| - v/|v|||^2 / 2`` (see :class:`CosineTarget`).
    """
    unit = CosineTarget(_flatten(observed)).unit
    flat = _flatten(candidate)
    return 0.5 * (flat / flat.norm().clamp_min(1e-30) - unit).pow(2).sum()


class CosineTarget:
    """The observed update ``v``, flattened and normalised once, and ``1 - cos(u, v)``.

    Three implementation choices, all exact rewrites:

    - ``1 - cos(u, v)`` is evaluated as ``L = ||e||^2 / 2`` with ``e = u/|u| - v/|v|``, free of
      the cancellation in ``1 - <u, v>/(|u||v|)``, which in float32 cannot resolve a distance
      below ~1e-7 -- where an untrained sigmoid network's objective already starts (its
      gradient direction barely depends on the input).
    - its gradient is the closed form ``dL/du = (e - L u/|u|) / |u|``, handed to autograd as
      the vector of a single vector-Jacobian product through the candidate update: 6 passes
      over the flattened update instead of ~15 when autograd differentiates the
      normalisation, and no graph is built for it.
    - those passes write into two buffers allocated once: for a network with a large dense
      layer (``cnn``: 1.2M weights) fresh multi-megabyte temporaries every iteration cost more
      in page faults than the arithmetic.
    """

    def __init__(self, target: torch.Tensor) -> None:
        self.unit = target / target.norm().clamp_min(1e-30)
        self._flat = torch.empty_like(self.unit)
        self._grad = torch.empty_like(self.unit)

    def loss_and_grad(self, candidate: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L, dL/du)`` at ``u`` = the flattened ``candidate`` (no graph is kept).

        The returned gradient is a buffer that the next call overwrites.
        """
        with torch.no_grad():
            flat = torch.cat([c.detach().reshape(-1) for c in candidate], out=self._flat)
            norm = flat.norm().clamp_min(1e-30)
            e = torch.div(flat, norm, out=self._grad).sub_(self.unit)
            value = 0.5 * e.dot(e)
            grad = e.addcmul_(flat, -value / norm).div_(norm)
        return value, grad


@dataclass(frozen=True)
class MatchingProblem:
    """Everything one restart needs, computed once per attack."""

    model: nn.Module
    loss_name: str
    lr: float
    schedule: LocalSchedule
    labels: torch.Tensor
    target: CosineTarget
    prior: BatchStatisticsPrior | None = None
    prior_weight: float = 0.0
    smoothness: Prior = total_variation
    domain: InputDomain = field(default_factory=InputDomain)

    def candidate(self, x: torch.Tensor, *, create_graph: bool) -> list[torch.Tensor]:
        return simulated_update(
            self.model,
            self.loss_name,
            self.lr,
            x,
            self.labels,
            self.schedule,
            create_graph=create_graph,
        )

    def matching_loss(self, x: torch.Tensor) -> float:
        """The cosine term at ``x``; ``inf`` when not finite."""
        value = float(self.target.loss_and_grad(self.candidate(x, create_graph=False))[0].item())
        return value if np.isfinite(value) else float("inf")

    def prior_scale(self, x: torch.Tensor) -> float:
        """``|dL/dx| / |dTV/dx|`` at ``x``: the matching term's gradient in prior units."""
        matching = self.objective_gradient(x, 0.0)
        (prior,) = torch.autograd.grad(self.smoothness(x), [x])
        ratio = float(matching.norm() / prior.norm().clamp_min(1e-30))
        return ratio if math.isfinite(ratio) else 0.0

    def objective_gradient(self, x: torch.Tensor, tv_weight: float) -> torch.Tensor:
        """``d/dx [L(u(x)) + tv_weight * TV(x) + prior_weight * R_BN(x)]``, one backward pass."""
        capture: AbstractContextManager[Captured] = (
            self.prior.capture() if self.prior is not None else nullcontext({})
        )
        with capture as captured:
            candidate = self.candidate(x, create_graph=True)
        _, grad = self.target.loss_and_grad(candidate)
        outputs = list(candidate)
        parts = grad.split([c.numel() for c in candidate])
        vectors = [v.view_as(c) for v, c in zip(parts, candidate, strict=True)]
        if tv_weight > 0:
            outputs.append(self.smoothness(x))
            vectors.append(torch.full((), tv_weight, dtype=x.dtype, device=x.device))
        if self.prior is not None and self.prior_weight > 0:
            outputs.append(self.prior.distance(captured))
            vectors.append(torch.full((), self.prior_weight, dtype=x.dtype, device=x.device))
        (x_grad,) = torch.autograd.grad(outputs, [x], grad_outputs=vectors)
        return x_grad


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
            target=CosineTarget(_flatten(observed)),
            prior=prior,
            prior_weight=cfg.batchnorm_weight,
            domain=update.input_domain,
        )
        shape = (schedule.num_samples, *update.input_shape)
        smoothness, tv_weight = self._smoothness_prior(model, update)
        if smoothness is not None:
            problem = replace(problem, smoothness=smoothness)
        generator = torch.Generator(device="cpu").manual_seed(seed)

        best_loss = float("inf")
        best: tuple[torch.Tensor, torch.Tensor, np.ndarray] | None = None
        runs: list[TimedSchedule] = []
        for order in orders:
            init = initial_inputs(shape, update.input_domain, generator, dtype)
            trial = replace(problem, labels=torch.as_tensor(order, device=device))
            runs.append(self._restart_schedule())
            x = self._optimise(trial, init.to(device), tv_weight, runs[-1])
            final = trial.matching_loss(x)
            if best is None or final < best_loss:
                best_loss, best = final, (x, init, order)
        assert best is not None
        best_x, best_init, best_labels = best
        return Reconstruction(
            inputs=best_x.cpu().numpy(),
            labels=best_labels,
            iterations=sum(run.done for run in runs),
            details={
                "matching_loss": best_loss,
                "time_limited": any(run.time_limited for run in runs),
                "restarts": cfg.restarts,
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

    def _restart_schedule(self) -> TimedSchedule:
        """One restart's steps: ``iterations`` within its share of ``time_budget_s``."""
        cfg = self.config
        assert isinstance(cfg, InvertingGradientsConfig)
        return TimedSchedule(
            cfg.scaled_count(cfg.iterations),
            cfg.scaled(cfg.time_budget_s) / cfg.restarts,
            DECAY_POINTS if cfg.lr_decay else (),
        )

    def _optimise(
        self, problem: MatchingProblem, init: torch.Tensor, tv_weight: float, plan: TimedSchedule
    ) -> torch.Tensor:
        """One restart: signed Adam with step decay, projected onto the domain's bounds."""
        cfg = self.config
        assert isinstance(cfg, InvertingGradientsConfig)
        x = init.clone().requires_grad_(True)
        if cfg.tv_relative and tv_weight > 0:
            tv_weight *= problem.prior_scale(x)
        optimizer = torch.optim.Adam([x], lr=cfg.lr)
        for decays in plan:
            for group in optimizer.param_groups:
                group["lr"] *= 0.1**decays
            x_grad = problem.objective_gradient(x, tv_weight)
            # A non-finite derivative (degenerate candidate) moves nothing; no host sync.
            step = x_grad.sign() if cfg.signed_gradients else x_grad
            x.grad = torch.nan_to_num(step, nan=0.0, posinf=0.0, neginf=0.0)
            optimizer.step()
            with torch.no_grad():
                project_(x, problem.domain)
        return x.detach()


register_attack(InvertingGradientsAttack)
