"""BatchNorm statistics the server reads off an update, and the prior that matches them.

A client that trains a BatchNorm network in training mode sends back its layers' running
statistics with its weights. One training step updates each layer's buffers as

    ``r_mean' = (1 - m) * r_mean + m * mean_B``,
    ``r_var'  = (1 - m) * r_var  + m * var_B * n / (n - 1)``,

where ``mean_B`` and ``var_B`` are the mean and (biased) variance of the layer's input over
the batch, ``n`` = batch size x the layer's spatial positions, and the momentum ``m`` is part
of the model (``None`` is a cumulative average: ``m = 1 / num_batches_tracked'``). The server
knows both buffers, ``m`` and ``n``, so it solves for the batch statistics exactly. This holds
for FedSGD and for the first of several local steps only: later steps mix every batch's
statistics into the buffers, and the server cannot tell them apart.

Yin et al. ("See through Gradients: Image Batch Recovery via GradInversion", CVPR 2021,
arXiv:2104.07586) add a BatchNorm prior to gradient matching,
``R_BN(x) = sum_l ||mu_l(x) - mu_l||_2 + ||sigma_l^2(x) - sigma_l^2||_2``, with the statistics
a trained model stored for its whole training set. Here the targets are the statistics of
the client's own batch, which the update discloses: :class:`BatchStatisticsPrior` is that
term with the observed targets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedleak.attacks.fedavg import local_schedule
from fedleak.attacks.losses import effective_batch_size
from fedleak.attacks.types import InterceptedUpdate

_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)

Captured = dict[int, tuple[torch.Tensor, torch.Tensor]]
"""Per BatchNorm layer index, the candidate batch's ``(mean, biased variance)`` of its input."""


class StatisticsUnavailableError(ValueError):
    """The update does not reveal its batch statistics; the message says which assumption broke."""


@dataclass(frozen=True)
class BatchStatistics:
    """Per BatchNorm layer, in ``model.named_modules()`` order, its input's batch statistics.

    Attributes
    ----------
    layers : tuple[str, ...]
        Module names of the BatchNorm layers.
    means, variances : tuple[torch.Tensor, ...]
        Per-channel mean and biased variance of each layer's input over the client's batch.
    """

    layers: tuple[str, ...]
    means: tuple[torch.Tensor, ...]
    variances: tuple[torch.Tensor, ...]


def batchnorm_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every BatchNorm layer of ``model``, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _NORM_TYPES)]


def _values_per_sample(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Per BatchNorm layer, the positions one sample contributes per channel (H x W for 2-D)."""
    seen: dict[str, int] = {}

    def hook(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def record(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            seen[name] = args[0][0, 0].numel()  # a pre-hook returning a value replaces args

        return record

    hooks = [m.register_forward_pre_hook(hook(name)) for name, m in batchnorm_layers(model)]
    was_training = model.training
    param = next(model.parameters(), None)
    try:
        model.eval()  # eval mode takes any batch and leaves the running statistics alone
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=None if param is None else param.device))
    finally:
        model.train(was_training)
        for handle in hooks:
            handle.remove()
    return seen


def _buffer(update: InterceptedUpdate, name: str) -> tuple[np.ndarray, np.ndarray]:
    if name not in update.global_params or name not in update.client_params:
        raise StatisticsUnavailableError(f"the update carries no buffer {name!r}")
    return (
        np.asarray(update.global_params[name], dtype=np.float64),
        np.asarray(update.client_params[name], dtype=np.float64),
    )


def _momentum(module: nn.Module, update: InterceptedUpdate, prefix: str) -> float:
    counter = f"{prefix}num_batches_tracked"
    steps = None
    if counter in update.global_params and counter in update.client_params:
        before, after = _buffer(update, counter)
        steps = int(after - before)
        if steps != 1:
            raise StatisticsUnavailableError(
                f"{counter} moved by {steps}, not by one training step: the buffers mix "
                "several batches (or none)"
            )
    momentum = getattr(module, "momentum", None)
    if momentum is not None:
        return float(momentum)
    if steps is None:
        raise StatisticsUnavailableError(f"cumulative averaging needs {counter}, which is missing")
    return 1.0 / float(_buffer(update, counter)[1])


def recover_batch_statistics(model: nn.Module, update: InterceptedUpdate) -> BatchStatistics:
    """Solve the update's running-statistics change for its batch's statistics (exact).

    Raises
    ------
    StatisticsUnavailableError
        When the model has no BatchNorm layer, the client sent no running statistics, or the
        update is the result of more than one local step.
    """
    layers = batchnorm_layers(model)
    if not layers:
        raise StatisticsUnavailableError("the model has no BatchNorm layer")
    if local_schedule(update).num_steps != 1:
        raise StatisticsUnavailableError("several local steps mix their batches' statistics")
    positions = _values_per_sample(model, update.input_shape)
    batch = effective_batch_size(update)
    names, means, variances = [], [], []
    for name, module in layers:
        prefix = f"{name}." if name else ""
        if not getattr(module, "track_running_stats", False):
            raise StatisticsUnavailableError(f"layer {name!r} keeps no running statistics")
        momentum = _momentum(module, update, prefix)
        mean_before, mean_after = _buffer(update, f"{prefix}running_mean")
        var_before, var_after = _buffer(update, f"{prefix}running_var")
        count = batch * positions[name]
        if count < 2:
            raise StatisticsUnavailableError(f"layer {name!r} sees one value per channel")
        mean = (mean_after - (1 - momentum) * mean_before) / momentum
        unbiased = (var_after - (1 - momentum) * var_before) / momentum
        names.append(name)
        means.append(torch.from_numpy(mean).float())
        variances.append(torch.from_numpy(unbiased * (count - 1) / count).float())
    return BatchStatistics(tuple(names), tuple(means), tuple(variances))


class BatchStatisticsPrior:
    """Distance of a candidate batch's BatchNorm statistics to the observed ones.

    ``R(x) = sum_l mean_c [(mu_lc(x) - mu_lc)^2 / v_lc + (var_lc(x) - v_lc)^2 / v_lc^2]``, with
    ``v_lc`` the observed variance plus the layer's ``eps``: Yin et al.'s term with every
    layer's statistics measured in units of that layer's own spread. Their unnormalised sum
    of norms is dominated by the deep layers, whose statistics are large and say little about
    pixels; measured on ResNet-18 and 32x32 photos, this statistics term alone takes a uniform
    start from 9 to 14 dB in 300 Adam steps, the unnormalised one to 9.3 dB.

    Use :meth:`capture` around the candidate's forward pass, then :meth:`distance` on what it
    captured; the distance is differentiable w.r.t. the candidate inputs.

    Parameters
    ----------
    model : nn.Module
        The attacked model (hooks are added for the duration of :meth:`capture` only).
    statistics : BatchStatistics
        The targets, from :func:`recover_batch_statistics`.
    """

    def __init__(self, model: nn.Module, statistics: BatchStatistics) -> None:
        modules = dict(model.named_modules())
        self.modules = [modules[name] for name in statistics.layers]
        device = next(model.parameters()).device
        self.means = [m.to(device) for m in statistics.means]
        self.variances = [v.to(device) for v in statistics.variances]
        self.scales = [
            (v + float(getattr(m, "eps", 1e-5))).to(device)
            for v, m in zip(statistics.variances, self.modules, strict=True)
        ]

    @contextmanager
    def capture(self) -> Iterator[Captured]:
        """Record ``(mean, biased variance)`` of each BatchNorm layer's input, by layer index.

        Within the context, the latest forward pass's statistics are kept.
        """
        captured: Captured = {}

        def hook(index: int) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
            def record(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
                x = args[0].transpose(0, 1).flatten(1)  # channels first, other axes pooled
                captured[index] = (x.mean(dim=1), x.var(dim=1, unbiased=False))

            return record

        hooks = [m.register_forward_pre_hook(hook(i)) for i, m in enumerate(self.modules)]
        try:
            yield captured
        finally:
            for handle in hooks:
                handle.remove()

    def distance(self, captured: Captured) -> torch.Tensor:
        """The prior at the captured statistics; differentiable w.r.t. the candidate."""
        missing = [i for i in range(len(self.modules)) if i not in captured]
        if missing:
            raise RuntimeError(f"no forward pass went through BatchNorm layers {missing}")
        terms = [
            (
                (captured[i][0] - mean).pow(2) / scale + (captured[i][1] - var).pow(2) / scale**2
            ).mean()
            for i, (mean, var, scale) in enumerate(
                zip(self.means, self.variances, self.scales, strict=True)
            )
        ]
        return torch.stack(terms).sum()


def observed_statistics_prior(
    model: nn.Module, update: InterceptedUpdate, *, enabled: bool
) -> tuple[BatchStatisticsPrior | None, str]:
    """The statistics term for ``update`` where it reveals them, and a word for the result row.

    Returns
    -------
    tuple[BatchStatisticsPrior | None, str]
        The prior and ``"on"``; or ``None`` and ``"off (setting)"`` / ``"off: <reason>"``.
    """
    if not enabled:
        return None, "off (setting)"
    try:
        return BatchStatisticsPrior(model, recover_batch_statistics(model, update)), "on"
    except StatisticsUnavailableError as exc:
        return None, f"off: {exc}"
