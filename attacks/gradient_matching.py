"""The gradient-matching objective of inverting gradients (Geiping et al. 2020, eq. 13).

``1 - cos(u(x, y), u*)`` over all parameters at once, plus a smoothness prior and, when the
update reveals them, BatchNorm statistics: :class:`MatchingProblem` holds what one restart of
:class:`~fedleak.attacks.inverting_gradients.InvertingGradientsAttack` needs, and
:class:`CosineTarget` evaluates the cosine term and its gradient in closed form.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from fedleak.attacks.batchnorm import BatchStatisticsPrior, Captured
from fedleak.attacks.fedavg import LocalSchedule, simulated_update
from fedleak.attacks.input_priors import Prior, total_variation
from fedleak.attacks.types import InputDomain


def flatten(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The tensors' entries in one vector, in order."""
    return torch.cat([t.reshape(-1) for t in tensors])


def cosine_matching_loss(
    candidate: list[torch.Tensor], observed: list[torch.Tensor]
) -> torch.Tensor:
    """``1 - cos(candidate, observed)`` over all parameters jointly (Geiping et al. 2020, eq. 13).

    Differentiable; evaluated as ``||u/|u| - v/|v|||^2 / 2`` (see :class:`CosineTarget`).
    """
    unit = CosineTarget(flatten(observed)).unit
    flat = flatten(candidate)
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
        self._rows: tuple[torch.Tensor, torch.Tensor] | None = None

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

    def rows_loss_and_grad(
        self, candidates: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`loss_and_grad` for R candidates at once, each tensor shaped ``(R, ...)``.

        Returns ``L`` of each row, ``(R,)``, and ``dL/du`` of each, ``(R, P)``, a buffer that
        the next call overwrites.
        """
        rows = candidates[0].shape[0]
        if self._rows is None or self._rows[0].shape[0] != rows:
            buffer = self.unit.new_empty((rows, self.unit.numel()))
            self._rows = (buffer, torch.empty_like(buffer))
        with torch.no_grad():
            parts = [c.detach().reshape(rows, -1) for c in candidates]
            flat = torch.cat(parts, dim=1, out=self._rows[0])
            norm = flat.norm(dim=1, keepdim=True).clamp_min(1e-30)
            e = torch.div(flat, norm, out=self._rows[1]).sub_(self.unit)
            value = 0.5 * torch.einsum("rp,rp->r", e, e)
            grad = e.addcmul_(flat, -value.unsqueeze(1) / norm).div_(norm)
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
