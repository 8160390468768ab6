"""What an optimisation attack assumes of the inputs, chosen by the update's modality.

The image literature regularises with total variation over the two spatial axes (Geiping et
al., "Inverting Gradients - How easy is it to break privacy in federated learning?",
NeurIPS 2020), starts from uniform noise and projects onto the pixel box ``[0, 1]``. None of
that fits a table: its columns have no neighbours, and its standardised continuous features
are unbounded (TabLeak, Vero et al., "TabLeak: Tabular Data Leakage in Federated Learning",
ICML 2023, drops such priors for tables). A 1-D signal has one axis of neighbours: its
smoothness prior is the total variation along time. One entry per modality (no if-chain):

========  ==========================================  ===================  ==============
modality  prior                                       start                projection
========  ==========================================  ===================  ==============
image     2-D total variation (on ``(C, H, W)``)       uniform in the box   onto the box
tabular   none                                        standard normal      bounds, if any
signal    1-D total variation along the last axis     standard normal      bounds, if any
========  ==========================================  ===================  ==============
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from fedleak.attacks.first_layer import dense_input_layer
from fedleak.attacks.name_table import Registry
from fedleak.attacks.types import InputDomain

__all__ = [
    "default_prior_weight",
    "initial_inputs",
    "input_prior",
    "project_",
    "total_variation",
    "total_variation_1d",
]

Prior = Callable[[torch.Tensor], torch.Tensor]


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels along the last two (spatial) axes."""
    dh = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    dw = (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    return dh + dw


def total_variation_1d(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring samples along the last (time) axis."""
    return (x[..., 1:] - x[..., :-1]).abs().mean()


def _image_prior(input_shape: tuple[int, ...]) -> Prior | None:
    return total_variation if len(input_shape) >= 3 else None


def _no_prior(input_shape: tuple[int, ...]) -> Prior | None:
    return None


def _signal_prior(input_shape: tuple[int, ...]) -> Prior | None:
    return total_variation_1d if input_shape and input_shape[-1] > 1 else None


PRIORS: Registry[Callable[[tuple[int, ...]], Prior | None]] = Registry("modality")
"""Per modality: the smoothness prior for one sample's shape, or ``None``."""
PRIORS.register("image", _image_prior)
PRIORS.register("tabular", _no_prior)
PRIORS.register("signal", _signal_prior)


def input_prior(domain: InputDomain, input_shape: tuple[int, ...]) -> Prior | None:
    """The smoothness prior of ``domain``'s modality for one sample's shape, or ``None``.

    Images get 2-D TV only when shaped ``(C, H, W)`` (a flat vector has no neighbours).

    Raises
    ------
    ValueError
        For a modality without an entry, naming the known ones.
    """
    return PRIORS.get(domain.modality)(tuple(input_shape))


def initial_inputs(
    shape: tuple[int, ...], domain: InputDomain, generator: torch.Generator, dtype: torch.dtype
) -> torch.Tensor:
    """A random start drawn on the CPU from ``generator``: uniform in a bounded box (images:
    ``torch.rand`` exactly), else standard normal (standardised data), clipped to any bound."""
    if domain.low is not None and domain.high is not None:
        draw = torch.rand(shape, generator=generator, dtype=dtype)
        return (
            draw
            if (domain.low, domain.high) == (0.0, 1.0)
            else domain.low + draw * (domain.high - domain.low)
        )
    return project_(torch.randn(shape, generator=generator, dtype=dtype), domain)


def project_(x: torch.Tensor, domain: InputDomain) -> torch.Tensor:
    """Clip ``x`` in place to the domain's bounds (no-op where unbounded); returns ``x``."""
    if domain.low is None and domain.high is None:
        return x
    return x.clamp_(min=domain.low, max=domain.high)


RELATIVE_PRIOR_WEIGHT = 0.01
"""The smoothness prior's default weight relative to the matching term (see below)."""


def default_prior_weight(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """The smoothness prior's relative weight when an attack is given none.

    0 when the model's first parametrised layer is an ``nn.Linear`` with bias on the whole
    flattened input: its gradient fixes every input on its own (the analytic attack's
    condition), and any prior pulls the optimum away from it. Otherwise
    :data:`RELATIVE_PRIOR_WEIGHT`, in units of the matching term's input gradient at the
    start (``tv_relative``). Measured by ``benchmarks/calibrate_inverting_gradients.py``
    (500 iterations, 2 seeds, B 1 and 4; docs/attacks.md): relative 0.01 beats eq. 13's
    former absolute 1e-4 by 11 and 9 dB on photos through the sigmoid LeNet, 19 dB on one
    LFW face, 4 and 2 dB on photos through the ReLU CNN; on the dense mlp on digits any
    prior costs (relative 0.01: 45 dB, none: 98 dB).
    """
    dense = dense_input_layer(model, math.prod(input_shape)) is not None
    return 0.0 if dense else RELATIVE_PRIOR_WEIGHT
