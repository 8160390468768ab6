"""SPEAR's primal candidates: null vectors of (B-1)-row submatrices of ``L``.

``rows`` are the live rows of ``L = U_B`` (M' x B); see :mod:`fedleak.attacks.spear_state`.

1. Random (B-1)-row submatrices of ``L`` and their null vectors (Dimitrov et al., "SPEAR:
   Exact Gradient Inversion of Batches in Federated Learning", NeurIPS 2024). Rows are drawn
   uniformly, or, once columns are known, with weights learnt from them: inactivity is
   correlated across similar inputs, so rows inactive for known samples are likelier to be
   inactive for an unknown one too (:func:`row_weights`).
2. Guided proposals (:func:`guided_candidates`): reweighted least squares on
   ``sum_j log(eps^2 + (L_j q)^2)`` with ``eps`` annealed to 0; their limits are null vectors
   of (B-1)-row submatrices as well.

:func:`consider` filters them: a candidate is kept when at least ``min_zeros`` rows vanish on
it (the sparsity filter), and accepted after refinement when its zero rows have rank B - 1
that does not hinge on a few rows (:func:`refine`). Zeros are judged against an absolute
tolerance ``tol`` on the unnormalised rows: the gradient's noise perturbs every row of
``U_B`` alike.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from fedleak.attacks.spear_state import GAP_FACTOR, SearchState, add_column, gram

_PAIRS_PER_BASE = 16
"""Candidate directions per sampled base (see :func:`sample_candidates`)."""
_MAX_LEVERAGE = 0.99
"""A zero row with leverage above this holds the rank alone: the candidate is spurious."""
_CHANCE = 1e-4
"""Accepted probability that more zero rows than are pruned are zero only by chance."""
_REFINED_PER_BATCH = 256
"""Most candidates refined per device batch (the sparsest first)."""
_SOFT_POWERS = (2.0, 4.0, 8.0)
"""Sharpness of the row weights learnt from known columns (see :func:`row_weights`)."""


def null_basis(rows: torch.Tensor, dim: int) -> torch.Tensor:
    """Orthonormal bases ``(T, B, dim)`` of the null spaces of ``rows`` ``(T, B - dim, B)``."""
    count, taken, width = rows.shape
    eye = torch.eye(width, dtype=rows.dtype, device=rows.device)
    if taken == 0:
        return eye.expand(count, width, width)
    house, tau = torch.geqrf(rows.transpose(1, 2))
    tail = torch.zeros(count, width, dim, dtype=rows.dtype, device=rows.device)
    tail[:, taken:, :] = eye[:dim, :dim]
    return torch.ormqr(house, tau, tail)


def weighted_draws(weight: torch.Tensor, count: int, gen: torch.Generator) -> torch.Tensor:
    """``count`` distinct indices per line of ``weight`` ``(D, M)``, drawn without replacement
    with probabilities proportional to the line's weights (Gumbel top-k): ``(D, count)``."""
    keys = torch.rand(weight.shape, generator=gen, device=weight.device, dtype=weight.dtype)
    keys = weight.log() - (-keys.clamp_min(1e-300).log()).log()
    return keys.topk(count, dim=1).indices


def sample_candidates(
    rows: torch.Tensor, pools: torch.Tensor, count: int, tol: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Null vectors of ``count`` random (B-1)-row submatrices and their zero masks.

    Submatrices share work in groups of :data:`_PAIRS_PER_BASE`: a base of ``B - 1 - t`` rows
    (``t = min(2, B - 1)``), drawn with the weights of one line of ``pools`` (cycling through
    the lines), has a ``t + 1``-dimensional null space; ``t`` more rows drawn uniformly from
    the rest cut it to one direction. Returns the directions ``(count, B)`` and the masks
    ``(count, M')`` of the rows where they vanish.
    """
    size, width = rows.shape
    t = min(2, width - 1)
    bases = max(1, count // _PAIRS_PER_BASE)
    weight = pools[torch.arange(bases, device=rows.device) % pools.shape[0]]
    base = weighted_draws(weight.to(rows.dtype), width - 1 - t, gen)
    null = null_basis(rows[base], t + 1)
    proj = torch.matmul(rows, null)  # (bases, M', t + 1): rows in null-space coordinates
    keys = torch.rand(bases, size, generator=gen, device=rows.device, dtype=rows.dtype)
    pivots = keys.scatter(1, base, -1.0).topk(_PAIRS_PER_BASE * t, dim=1).indices
    picked = torch.gather(proj, 1, pivots[..., None].expand(-1, -1, t + 1))
    picked = picked.view(bases, _PAIRS_PER_BASE, t, t + 1)
    if t == 2:
        coef = torch.linalg.cross(picked[:, :, 0], picked[:, :, 1])
    elif t == 1:
        coef = torch.stack([-picked[:, :, 0, 1], picked[:, :, 0, 0]], dim=-1)
    else:
        coef = torch.ones(bases, _PAIRS_PER_BASE, 1, dtype=rows.dtype, device=rows.device)
    norm = coef.norm(dim=-1, keepdim=True)
    coef = torch.where(norm > 1e-150, coef / norm.clamp_min(1e-300), torch.nan)
    zero = (torch.matmul(proj, coef.transpose(1, 2)).abs() <= tol).transpose(1, 2)
    directions = torch.matmul(null, coef.transpose(1, 2)).transpose(1, 2)
    return directions.reshape(-1, width), zero.reshape(-1, size)


def guided_candidates(
    rows: torch.Tensor, count: int, tol: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reweighted least squares on ``sum_j log(eps^2 + (L_j q)^2)``, ``eps`` annealed to 0.

    Each step solves ``(L^T W L) q_new = q`` with ``W = diag(1 / ((L q)^2 + eps^2))``
    (inverse iteration on the weighted Gram matrix), on unit rows. Its limits vanish on at
    least B - 1 rows: null vectors of (B-1)-row submatrices, like the random candidates.
    """
    width = rows.shape[1]
    norms = rows.norm(dim=1)
    unit = rows / norms[:, None]  # null vectors do not depend on the rows' scales
    eye = torch.eye(width, dtype=rows.dtype, device=rows.device)
    q = torch.randn(count, width, generator=gen, dtype=rows.dtype, device=rows.device)
    q = q / q.norm(dim=1, keepdim=True)
    floor = min(1e-5, max(tol / float(norms.median()), 1e-10))
    for eps in np.r_[np.geomspace(0.3, 1e-4, 40), np.geomspace(1e-5, floor, 6)]:
        resid = q @ unit.T
        weights = 1.0 / (resid * resid + float(eps) ** 2)
        gram = torch.matmul(unit.T * weights[:, None, :], unit)
        ridge = 1e-13 * gram.diagonal(dim1=1, dim2=2).sum(-1)
        q = torch.linalg.solve(gram + ridge[:, None, None] * eye, q[..., None])[..., 0]
        q = q / q.norm(dim=1, keepdim=True)
    return q, (q @ rows.T).abs() <= tol


def _leverage(rows: torch.Tensor, evals: torch.Tensor, evecs: torch.Tensor) -> torch.Tensor:
    """Leverage of every row in the span of all but the smallest eigenvector, ``(P, M')``."""
    proj = torch.matmul(rows, evecs[:, :, 1:])
    return (proj.pow(2) / evals[:, None, 1:].clamp_min(1e-300)).sum(dim=-1)


def _pruned_rows(rows: torch.Tensor, tol: float) -> int:
    """Rows to drop before the rank check: more than can fall within ``tol`` by chance.

    For a random unit direction ``q``, ``L_j q`` is roughly ``N(0, |L_j|^2 / B)``, so row
    ``j`` is zero within ``tol`` by chance with probability ``2 tol sqrt(B / 2 pi) / |L_j|``.
    Returns the smallest ``k >= 1`` with ``P(Poisson >= k) <`` :data:`_CHANCE`.
    """
    width = rows.shape[1]
    inverse = float(rows.norm(dim=1).reciprocal().sum())
    rate = 2.0 * tol * math.sqrt(width / (2.0 * math.pi)) * inverse
    depth, term, below = 1, math.exp(-rate), math.exp(-rate)
    while 1.0 - below >= _CHANCE and depth < width - 1:
        term *= rate / depth
        below += term
        depth += 1
    return depth


def refine(
    rows: torch.Tensor, q: torch.Tensor, tol: float, min_zeros: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Least-squares directions on the candidates' zero rows, and which are genuine columns.

    Batched over candidates ``q`` ``(P, B)``. Genuine: at least ``min_zeros`` zero rows, a
    residual within ``tol``, and a rank of B - 1 that survives dropping, one at a time, the
    rows of highest leverage, as many as :func:`_pruned_rows` says may be zero by chance. A
    zero row of leverage ~1 (a coloop) means the zero set is B - 1 random rows plus rows
    dependent on them, or the rows two columns share plus a few: not one ReLU pattern.
    Returns the refined directions, their zero masks ``(P, M')`` and the verdicts ``(P,)``.
    """
    width = rows.shape[1]
    zero = (q @ rows.T).abs() <= tol
    for _ in range(5):
        evals, evecs = torch.linalg.eigh(gram(rows, zero))
        q = evecs[:, :, 0]
        updated = (q @ rows.T).abs() <= tol
        stable = (updated == zero).all(dim=1)
        zero = updated
        if bool(stable.all()):
            break
    count = zero.sum(dim=1)
    ok = stable & (count >= max(min_zeros, width)) & (evals[:, 0] <= tol**2 * count)
    mask = zero.clone()
    for _ in range(_pruned_rows(rows, tol)):
        leverage = torch.where(mask, _leverage(rows, evals, evecs), 0.0)
        ok &= leverage.amax(dim=1) <= _MAX_LEVERAGE
        mask[torch.arange(mask.shape[0], device=mask.device), leverage.argmax(dim=1)] = False
        evals, evecs = torch.linalg.eigh(gram(rows, mask))
        ok &= evals[:, 1] > (GAP_FACTOR * tol) ** 2 * mask.sum(dim=1)
    return q, zero, ok


def consider(
    state: SearchState,
    rows: torch.Tensor,
    directions: torch.Tensor,
    zero: torch.Tensor,
    tol: float,
    min_zeros: int,
) -> None:
    """Sparsity filter, refinement, deduplication and independence check of candidates."""
    sizes = zero.sum(dim=1)
    passing = (sizes >= min_zeros) & directions.isfinite().all(dim=1)
    state.kept += int(passing.sum())
    if state.q and bool(passing.any()):
        same_mask = (zero[:, None, :] == torch.stack(state.zeros)[None]).all(dim=-1)
        unit = directions / directions.norm(dim=1, keepdim=True)
        same_dir = (unit @ torch.stack(state.q, dim=1)).abs() > 1.0 - 1e-6
        passing &= ~(same_mask | same_dir).any(dim=1)
    chosen = torch.where(passing, sizes, -1).argsort(descending=True)[:_REFINED_PER_BATCH]
    chosen = chosen[passing[chosen]]
    if chosen.numel() == 0:
        return
    refined, masks, ok = refine(rows, directions[chosen], tol, min_zeros)
    for q, mask in zip(refined[ok], masks[ok], strict=True):
        add_column(state, rows, q, mask, tol)


def row_weights(state: SearchState, rows: torch.Tensor) -> torch.Tensor:
    """Sampling weights of the rows, one pool per line ``(P, M')``.

    Uniform (Dimitrov et al. 2024) and, once columns are known, the zero set of each known
    sample and ``pi^g`` for ``g`` in :data:`_SOFT_POWERS`, ``pi`` being the fraction of known
    samples inactive at the row.
    """
    size, width = rows.shape
    pools = [torch.ones(size, dtype=rows.dtype, device=rows.device)]
    if state.zeros:
        known = torch.stack(state.zeros).to(rows.dtype)
        singles = [z for z in known if int(z.sum()) >= width]
        # a live row inactive for every known sample is active for an unknown one: with u
        # unknown samples, inactive for a given one with probability ~ (u - 1) / u (none while
        # every column is known and a mixture among them awaits its replacement)
        unknown = max(1, width - known.shape[0])
        inactive = known.mean(dim=0)
        inactive = torch.where(inactive == 1.0, (unknown - 1) / unknown, inactive)
        soft = [inactive.pow(power) for power in _SOFT_POWERS]
        # about half of the bases use the learnt weights, which sharpen as columns are found
        pools += singles + soft * max(1, len(singles) // len(soft))
    return torch.stack(pools)
