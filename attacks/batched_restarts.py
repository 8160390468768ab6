"""Inverting gradients' restarts evaluated together: one vectorised pass for R candidates.

Each restart of a gradient-matching attack costs one forward pass, one graph-keeping backward
pass to the parameters and one backward pass to the input per iteration (the floor that
``benchmarks/ig_throughput.py`` times). On a small network those passes are dominated by
per-operation overhead, not arithmetic, so R restarts cost far less than R times one when
their candidates go through the network together. The candidates cannot simply be stacked
into one larger batch: each restart needs the parameter gradient of its own batch, not of the
union. ``torch.func.vmap`` over ``grad(grad)`` gives exactly that, R independent
double-backward passes batched operation by operation.

The objective is the same as :class:`~fedleak.attacks.gradient_matching.MatchingProblem`'s
(one local step): ``1 - cos(u(x), u*)`` plus ``tv_weight * TV(x)``, with one ``tv_weight`` per
restart. The optimiser state, the
signed step and the projection are elementwise, so one Adam over the stacked ``(R, B, ...)``
candidates is R independent Adams.

Where it does not apply (:func:`batched_restarts_reason`), the attack runs its restarts one
after another as before.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from fedleak.attacks.fedavg import LocalSchedule
from fedleak.attacks.gradient_matching import CosineTarget
from fedleak.attacks.input_priors import Prior
from fedleak.attacks.losses import training_loss

TOGETHER_MAX_PARAMETERS = 262_144
"""The most parameters a model may have for its restarts to run together.

Measured by ``benchmarks/ig_throughput.py`` (one CPU thread, 4 restarts, time per
restart-iteration together / apart): LeNet on photos and faces (9-16K parameters) 0.42-0.46
at B = 1 and 0.89 at B = 4, the mlp on digits (7.5K) 0.64, the 6-layer fcnn on digits (176K)
0.62; the mlp on photos (308K, one 307K layer) 1.65 and the McMahan CNN (2.2M, one 2.1M dense
layer) 1.87, where the stacked per-restart updates are bound by memory, not by per-operation
overhead.
"""

RANDOM_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
"""Modules whose training-mode output is random: a vectorised pass would draw differently."""


def batched_restarts_reason(
    model: nn.Module,
    schedule: LocalSchedule,
    uses_statistics_prior: bool,
    *,
    size_rule: bool = True,
) -> str | None:
    """Why the restarts of this problem cannot be evaluated together, or ``None``.

    Parameters
    ----------
    model : nn.Module
        The attacked model, in the mode its client trains in.
    schedule : LocalSchedule
        The simulated local steps; only a single step is vectorised.
    uses_statistics_prior : bool
        Whether the BatchNorm statistics prior is on (it reads module hooks).
    size_rule : bool
        Keep the restarts of a model above :data:`TOGETHER_MAX_PARAMETERS` apart (they run
        faster so); ``False`` asks only whether they can run together.
    """
    if schedule.num_steps != 1:
        return f"the update simulates {schedule.num_steps} local steps (only one is vectorised)"
    if uses_statistics_prior:
        return "the BatchNorm statistics prior reads module hooks, which a vectorised pass skips"
    size = sum(p.numel() for p in model.parameters())
    if size_rule and size > TOGETHER_MAX_PARAMETERS:
        return (
            f"the model has {size} parameters (> {TOGETHER_MAX_PARAMETERS}): its restarts run "
            "faster one after another"
        )
    buffers = [name for name, _ in model.named_buffers()]
    if buffers:
        return f"the model has buffers that a training pass updates ({buffers[0]!r})"
    random = [type(m).__name__ for m in model.modules() if isinstance(m, RANDOM_MODULES)]
    if model.training and random:
        return f"the model draws random numbers in training mode ({random[0]})"
    return None


def restarts_apart_reason(
    model: nn.Module,
    schedule: LocalSchedule,
    uses_statistics_prior: bool,
    *,
    restarts: int,
    together: bool | None,
) -> str | None:
    """Why an attack's ``restarts`` run one after another, or ``None`` when they run together.

    ``together`` is the attack's ``restarts_together`` setting: ``None`` applies the size
    rule of :func:`batched_restarts_reason`, ``True`` only asks whether they can, ``False``
    keeps them apart.
    """
    if restarts == 1:
        return "one restart"
    if together is False:
        return "restarts_together is off"
    return batched_restarts_reason(
        model, schedule, uses_statistics_prior, size_rule=together is None
    )


class BatchedObjective:
    """The matching objective and its input gradient for R restarts at once.

    ``vmap`` gives each restart's update ``u(x_r)`` (R parameter gradients, stacked), with
    the graph back to the stacked candidates; the cosine term's gradient in ``u`` is
    :class:`~fedleak.attacks.gradient_matching.CosineTarget`'s closed form, row by row, and one
    vector-Jacobian product takes it to the candidates, as for one restart.

    Parameters
    ----------
    model : nn.Module
        The attacked model; its parameters are read, never modified.
    loss_name : str
        The clients' training loss (:func:`~fedleak.attacks.losses.training_loss`).
    labels : torch.Tensor
        The batch's labels, shared by every restart.
    target : CosineTarget
        The observed update.
    smoothness : Prior
        The input prior ``TV(x)`` of one candidate batch.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_name: str,
        labels: torch.Tensor,
        target: CosineTarget,
        smoothness: Prior,
    ) -> None:
        params = {name: p.detach() for name, p in model.named_parameters()}

        def update_of(x: torch.Tensor) -> list[torch.Tensor]:
            def batch_loss(p: dict[str, torch.Tensor]) -> torch.Tensor:
                return training_loss(loss_name, functional_call(model, p, (x,)), labels)

            update = grad(batch_loss)(params)
            return [update[name] for name in params]

        self._target = target
        self._updates: Callable[[torch.Tensor], list[torch.Tensor]] = vmap(update_of)
        self._smoothness: Callable[[torch.Tensor], torch.Tensor] = vmap(smoothness)

    def gradient(self, candidates: torch.Tensor, tv_weights: torch.Tensor) -> torch.Tensor:
        """``d/dx [L(u(x_r)) + tv_weights[r] * TV(x_r)]`` for every restart ``r``, stacked."""
        x = candidates.detach().requires_grad_(True)
        updates = self._updates(x)
        _, slopes = self._target.rows_loss_and_grad(updates)
        outputs: list[torch.Tensor] = list(updates)
        parts = slopes.split([u[0].numel() for u in updates], dim=1)
        vectors = [part.view_as(u) for part, u in zip(parts, updates, strict=True)]
        if bool((tv_weights != 0).any()):
            outputs.append(self._smoothness(x))
            vectors.append(tv_weights)
        (x_grad,) = torch.autograd.grad(outputs, [x], grad_outputs=vectors)
        return x_grad

    def matching_losses(self, candidates: torch.Tensor) -> torch.Tensor:
        """The cosine term of every restart, ``(R,)``; ``inf`` where not finite."""
        with torch.no_grad():
            values, _ = self._target.rows_loss_and_grad(self._updates(candidates))
        return torch.where(torch.isfinite(values), values, torch.full_like(values, torch.inf))

    def prior_scales(self, candidates: torch.Tensor) -> torch.Tensor:
        """``|dL/dx| / |dTV/dx|`` of every restart, ``(R,)``: the relative prior's unit.

        0 where not finite, as the one-restart path does.
        """
        matching = self.gradient(candidates, candidates.new_zeros(len(candidates)))
        x = candidates.detach().requires_grad_(True)
        (prior,) = torch.autograd.grad(self._smoothness(x).sum(), [x])
        ratio = matching.flatten(1).norm(dim=1) / prior.flatten(1).norm(dim=1).clamp_min(1e-30)
        return torch.where(torch.isfinite(ratio), ratio, torch.zeros_like(ratio))
