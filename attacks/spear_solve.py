"""SPEAR's linear algebra around the search: the factorisation of ``A`` and the final solve.

``A = [dL/dW | dL/db] = U_B S_B V_B^T = L R`` (see :mod:`fedleak.attacks.spear`); the search
(:mod:`fedleak.attacks.spear_search`) finds the columns of ``Q`` or the inputs themselves, and
:func:`check_batch` says how well the recovered batch explains ``A`` and which samples the
first layer alone leaves undetermined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fedleak.attacks.spear_state import DualData, SearchState, least_squares

_NOISE_FACTOR = 3.0
"""Zero tolerance in units of the noise of one row of ``L``: ``s_(B+1) / (s_B sqrt(M'))``."""
_TOL_FLOOR = 1e-7
"""Smallest zero tolerance relative to a typical row of ``L``: eigh on Gram matrices is
exact to ~1e-8 here, and a ReLU-active entry falls below it with probability ~1e-7."""
_LIVE_FACTOR = 10.0
"""Rows of ``L`` shorter than this many tolerances cannot tell zero from nonzero."""
_REPRODUCE_FACTOR = 100.0
"""The recovered batch reproduces ``A`` when its residual is within this many times the
part of ``A`` beyond rank B (or 1e-6)."""


@dataclass(frozen=True)
class LayerFactors:
    """``A = [dL/dW | dL/db]`` of the attacked layer and its rank-B factorisation.

    Attributes
    ----------
    grad : torch.Tensor
        ``A`` (M x (N+1)).
    basis, right : torch.Tensor
        ``L = U_B`` (M x B) and ``R = S_B V_B^T`` (B x (N+1)).
    sing : torch.Tensor
        Every singular value of ``A``.
    unit_right : torch.Tensor
        ``V_B^T`` (B x (N+1)).
    tol : float
        Absolute zero tolerance on the rows of ``L`` (unit directions).
    live : torch.Tensor
        ``(M,)`` boolean: the rows the search uses.
    noise : float
        ``s_(B+1) / s_B``.
    layer : str
        The attacked layer's module name.
    """

    grad: torch.Tensor  # A, M x (N+1)
    basis: torch.Tensor  # L = U_B, M x B
    right: torch.Tensor  # R = S_B V_B^T, B x (N+1)
    sing: torch.Tensor  # every singular value of A
    unit_right: torch.Tensor  # V_B^T
    tol: float
    live: torch.Tensor  # (M,) rows the search uses
    noise: float  # s_(B+1) / s_B
    layer: str


def factorise(grad: torch.Tensor, batch: int, name: str) -> LayerFactors:
    """SVD, zero tolerance and live rows of ``A`` (see the module docstring)."""
    left, sing, right_t = torch.linalg.svd(grad, full_matrices=False)
    if float(sing[batch - 1]) <= 1e-12 * float(sing[0]):
        raise ValueError(f"[dL/dW | dL/db] of layer {name!r} has rank < B = {batch}")
    basis = left[:, :batch]
    # The gradient's noise perturbs every row of U_B alike, whatever its norm: zeros are
    # judged on unnormalised rows against an absolute tolerance.
    nonzero = grad.abs().amax(dim=1) > 0
    size = int(nonzero.sum())
    noise = float(sing[batch] / sing[batch - 1]) if batch < sing.numel() else 0.0
    tol = max(_TOL_FLOOR * math.sqrt(batch / size), _NOISE_FACTOR * noise / math.sqrt(size))
    live = nonzero & (basis.norm(dim=1) > _LIVE_FACTOR * tol)
    right = sing[:batch, None] * right_t[:batch]
    return LayerFactors(grad, basis, right, sing, right_t[:batch], tol, live, noise, name)


def from_columns(rows: torch.Tensor, state: SearchState, right: torch.Tensor) -> torch.Tensor:
    """``[X | 1] = Q^{-1} R`` from the B found columns, rescaled to a last column of ones."""
    # polish each direction by an SVD of its zero rows (the search used Gram matrices)
    directions = torch.stack(
        [torch.linalg.svd(rows[z], full_matrices=False)[2][-1] for z in state.zeros] or state.q,
        dim=1,
    )
    return scaled_inputs(directions, right)


def scaled_inputs(directions: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``[X | 1]`` ``(B, N+1)`` from B directions of ``Q`` (its columns, up to scale).

    ``Q'^{-1} R = diag(c) [X | 1]`` for the unknown column scales ``c``; dividing each row by
    its last entry removes them.
    """
    unscaled = torch.linalg.solve(directions, right)
    return unscaled / unscaled[:, -1:]


@dataclass(frozen=True)
class BatchCheck:
    """How well a recovered batch explains ``A``.

    Attributes
    ----------
    residual : float
        Relative error of ``A`` rebuilt from ``dL/dZ = A [X | 1]^+``, masked by the recovered
        inputs' ReLU patterns, and ``[X | 1]``.
    reproduces : bool
        ``residual`` is within :data:`_REPRODUCE_FACTOR` times ``A``'s part beyond rank B
        (or 1e-6).
    agreement : torch.Tensor
        ``(B,)``: per sample, the fraction of live neurons where the recovered ``dL/dZ`` is
        zero exactly where the recovered input leaves the neuron inactive.
    undetermined : torch.Tensor
        ``(B,)`` boolean: inputs the first layer fixes only up to a line. When sample ``i``'s
        inactive neurons leave a null space of ``L`` wider than its column (they are a
        subset of sample ``k``'s), ``q_i + t q_k`` fits every zero, and ``[X | 1] = Q^{-1} R``
        moves ``x_k`` to ``(x_k - t x_i) / (1 - t)``: SPEAR's uniqueness assumption fails.
    """

    residual: float
    reproduces: bool
    agreement: torch.Tensor
    undetermined: torch.Tensor


def _undetermined(
    factors: LayerFactors, directions: torch.Tensor, inactive: torch.Tensor
) -> torch.Tensor:
    """Samples whose column another sample's zero set does not pin (see :class:`BatchCheck`)."""
    rows = factors.basis[factors.live]
    width = directions.shape[1]
    flagged = torch.zeros(width, dtype=torch.bool, device=directions.device)
    for index in range(width):
        zero_rows = rows[inactive[factors.live, index]]
        evals = torch.linalg.eigvalsh(zero_rows.T @ zero_rows)
        if int((evals <= factors.tol**2 * zero_rows.shape[0]).sum()) < 2:
            continue
        vanish = (zero_rows @ directions).abs().amax(dim=0) <= factors.tol
        vanish[index] = False
        flagged |= vanish
    return flagged


def check_batch(factors: LayerFactors, stacked: torch.Tensor, layer: DualData) -> BatchCheck:
    """Check ``[X | 1]`` (``stacked``, B x (N+1)) against ``A`` (see :class:`BatchCheck`).

    ``dL/dZ = A [X | 1]^+`` must vanish where the recovered inputs leave a neuron inactive:
    it is masked with their ReLU pattern before ``A`` is rebuilt.
    """
    batch = stacked.shape[0]
    dz = least_squares(stacked.T, factors.grad.T).T  # (M, B)
    active = (stacked[:, :-1] @ layer.weight.T + layer.bias).T > 0
    rebuilt = (dz * active) @ stacked
    residual = float((rebuilt - factors.grad).norm() / factors.grad.norm())
    beyond_rank = float(factors.sing[batch:].norm() / factors.sing.norm())
    coords = factors.basis.T @ dz
    directions = coords / coords.norm(dim=0, keepdim=True)
    zero = (factors.basis @ directions).abs() <= factors.tol
    agreement = (zero != active)[factors.live].to(stacked.dtype).mean(dim=0)
    return BatchCheck(
        residual,
        residual <= max(1e-6, _REPRODUCE_FACTOR * beyond_rank),
        agreement,
        _undetermined(factors, directions, ~active),
    )
