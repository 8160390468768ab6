"""The search for the columns of ``Q`` behind :mod:`attacks.spear` (seed 002).

``rows`` are the live rows of ``L = U_B`` (M' x B). Column ``q_i`` of ``Q`` makes ``L q_i`` the
column of ``dL/dZ`` for sample ``i``, exactly zero on the neurons ``Z_i`` inactive for it.
Candidates come from three sources, all batched on the device:

1. Random (B-1)-row submatrices of ``L`` and their null vectors (seed 002). Rows are drawn
   uniformly, or, once columns are known, with weights learnt from them: inactivity is
   correlated across similar inputs, so rows inactive for known samples are likelier to be
   inactive for an unknown one too.
2. Guided proposals: reweighted least squares on ``sum_j log(eps^2 + (L_j q)^2)`` with ``eps``
   annealed to 0; their limits are null vectors of (B-1)-row submatrices as well.
3. Dual completion, once at most two columns are missing (:func:`_dual_candidates`); once
   all are found, the same leave-one-out completion repairs a single wrong column
   (:func:`_repair`), which noisy (float32) gradients can let through.

A candidate is kept when at least ``min_zeros`` rows vanish on it (the sparsity filter),
and accepted after refinement when its zero rows have rank B - 1 that does not hinge on
a few rows (see :func:`_refine`). Zeros are judged against an absolute tolerance ``tol`` on
the unnormalised rows: the gradient's noise perturbs every row of ``U_B`` alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

_PAIRS_PER_BASE = 16
"""Candidate directions per sampled base (see :func:`_sample_candidates`)."""
_MAX_LEVERAGE = 0.99
"""A zero row with leverage above this holds the rank alone: the candidate is spurious."""
_CHANCE = 1e-4
"""Accepted probability that more zero rows than are pruned are zero only by chance."""
_GAP_FACTOR = 10.0
"""The second null direction of a genuine zero set leaves residuals this far above ``tol``."""
_SAME_DIRECTION = 1e-4
"""Refined directions with ``|cos| > 1 - _SAME_DIRECTION`` are one column of ``Q``."""
_REFINED_PER_BATCH = 256
"""Most candidates refined per device batch (the sparsest first)."""
_SOFT_POWERS = (2.0, 4.0, 8.0)
"""Sharpness of the row weights learnt from known columns (see :func:`_row_weights`)."""
_GUIDED_PERIOD = 8
"""Random-sampling batches between two guided (reweighted least-squares) rounds."""
_REPAIR_GAIN = 0.1
"""A repaired set of columns must reproduce ``A`` this many times better to be kept."""


@dataclass
class SearchState:
    """Columns of ``Q`` found so far, their zero masks over the rows, and counters.

    Attributes
    ----------
    q : list[torch.Tensor]
        Unit directions ``(B,)`` in ``L``'s coordinates.
    zeros : list[torch.Tensor]
        Boolean masks ``(M',)`` of the rows where ``L q`` vanishes (the inactive neurons).
    sampled : int
        Random submatrices tried.
    kept : int
        Candidates (random or guided) that passed the sparsity filter, repeats included.
    """

    q: list[torch.Tensor] = field(default_factory=list)
    zeros: list[torch.Tensor] = field(default_factory=list)
    sampled: int = 0
    kept: int = 0


@dataclass(frozen=True)
class DualData:
    """What the dual completion needs: ``R`` (B x (N+1)) and the layer on the live rows."""

    right: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor


def _null_basis(rows: torch.Tensor, dim: int) -> torch.Tensor:
    """Orthonormal bases ``(T, B, dim)`` of the null spaces of ``rows`` ``(T, B - dim, B)``."""
    count, taken, width = rows.shape
    eye = torch.eye(width, dtype=rows.dtype, device=rows.device)
    if taken == 0:
        return eye.expand(count, width, width)
    house, tau = torch.geqrf(rows.transpose(1, 2))
    tail = torch.zeros(count, width, dim, dtype=rows.dtype, device=rows.device)
    tail[:, taken:, :] = eye[:dim, :dim]
    return torch.ormqr(house, tau, tail)


def _sample_candidates(
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
    keys = torch.rand(bases, size, generator=gen, device=rows.device, dtype=rows.dtype)
    # Gumbel top-k: rows drawn without replacement with probabilities ~ weight
    keys = weight.log() - (-keys.clamp_min(1e-300).log()).log()
    base = keys.topk(width - 1 - t, dim=1).indices
    null = _null_basis(rows[base], t + 1)
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


def _guided_candidates(
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


def _gram(rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``sum_{j in mask} L_j L_j^T`` per mask: ``(P, B, B)`` from ``rows`` and ``(P, M')``."""
    return torch.matmul(rows.T * mask[:, None, :].to(rows.dtype), rows)


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


def _refine(
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
        evals, evecs = torch.linalg.eigh(_gram(rows, zero))
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
        evals, evecs = torch.linalg.eigh(_gram(rows, mask))
        ok &= evals[:, 1] > (_GAP_FACTOR * tol) ** 2 * mask.sum(dim=1)
    return q, zero, ok


def _add(state: SearchState, q: torch.Tensor, mask: torch.Tensor) -> None:
    """Keep ``q`` unless it repeats a known column or depends linearly on the known ones."""
    if len(state.q) == q.numel():
        return
    if state.q:
        same = (torch.stack(state.q) @ q).abs() > 1.0 - _SAME_DIRECTION
        if bool(same.any()) or any(bool(torch.equal(mask, z)) for z in state.zeros):
            return
    if float(torch.linalg.svdvals(torch.stack([*state.q, q], dim=1))[-1]) < 1e-6:
        return
    state.q.append(q)
    state.zeros.append(mask)


def _consider(
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
    refined, masks, ok = _refine(rows, directions[chosen], tol, min_zeros)
    for q, mask in zip(refined[ok], masks[ok], strict=True):
        _add(state, q, mask)


def _dual_candidates(dual: DualData, known: torch.Tensor) -> torch.Tensor:
    """ReLU patterns ``(P, M')`` of the inputs the unknown samples may have (<= 2 unknown).

    Every row ``u`` of ``Q^{-1}`` that belongs to an unknown sample annihilates the known
    columns ``Q_K``, so the unknown ``[x | 1] = u R`` lie in ``ann(Q_K) R``. With one unknown
    sample this fixes ``x`` (its last coordinate must be 1), hence its ReLU pattern
    ``W x + b <= 0``, hence its column: the null vector of those rows of ``L``. With two,
    the inputs lie on a line along which the pattern changes only where some ``W_j x + b_j``
    crosses zero: one point per interval between crossings covers every pattern.
    """
    width, count = known.shape
    basis = torch.linalg.svd(known, full_matrices=True)[0][:, count:]
    span = basis.T @ dual.right  # (u, N + 1)
    last = span[:, -1]
    none = torch.zeros(0, dual.bias.numel(), dtype=torch.bool, device=span.device)
    if float(last.norm()) <= 1e-9 * float(span.norm()):
        return none
    start = last @ span / last.dot(last)  # last coordinate 1
    if width - count == 1:
        points = start[None]
    else:
        step = torch.stack([-last[1], last[0]]) @ span  # last coordinate 0
        cross = -(dual.weight @ start[:-1] + dual.bias) / (dual.weight @ step[:-1])
        cross = cross[cross.isfinite()].sort().values
        if cross.numel() == 0:
            return none
        margin = 1.0 + float(cross[-1] - cross[0])
        ends = torch.stack([cross[0] - margin, cross[-1] + margin])
        params = torch.cat([(cross[1:] + cross[:-1]) / 2, ends])
        points = start + params[:, None] * step
    return points[:, :-1] @ dual.weight.T + points[:, -1:] * dual.bias <= 0


def _accept_patterns(
    state: SearchState, rows: torch.Tensor, masks: torch.Tensor, tol: float, min_zeros: int
) -> None:
    """Add the columns whose zero rows are ReLU patterns computed from inputs.

    A pattern is kept as it is (a ReLU-active entry of ``dL/dZ`` may be tiny, below
    ``tol``), and accepted when its rows leave a one-dimensional null space with residuals
    within ``tol``: dozens of rows in B dimensions do that only for the right pattern.
    """
    count = masks.sum(dim=1)
    evals, evecs = torch.linalg.eigh(_gram(rows, masks))
    ok = (count >= min_zeros) & (evals[:, 0] <= tol**2 * count)
    ok &= evals[:, 1] > (_GAP_FACTOR * tol) ** 2 * count
    for q, mask in zip(evecs[ok][:, :, 0], masks[ok], strict=True):
        _add(state, q, mask)


def _inconsistency(dual: DualData, rows: torch.Tensor, directions: torch.Tensor) -> float:
    """How far the batch that ``directions`` (``(B, B)``) give is from reproducing ``L R``.

    Rebuilds the live rows of ``A`` from the recovered ``dL/dZ`` (masked by the ReLU of
    the recovered inputs) and ``[X | 1]``; relative error, ~0 for the right columns.
    """
    factors = torch.linalg.solve(directions, dual.right)
    inputs = factors[:, :-1] / factors[:, -1:]
    dz = rows @ directions * factors[:, -1]
    active = (inputs @ dual.weight.T + dual.bias).T > 0
    target = rows @ dual.right
    rebuilt = (dz * active) @ torch.cat([inputs, torch.ones_like(factors[:, -1:])], dim=1)
    return float((rebuilt - target).norm() / target.norm())


def _repair(state: SearchState, rows: torch.Tensor, dual: DualData, tol: float) -> None:
    """Replace one wrong column by the one the others imply, if that reproduces ``A`` better.

    With noisy gradients a spurious direction can pass :func:`_refine`; the B - 1 others
    then fix the last input (see :func:`_dual_candidates`), so leaving each column out in
    turn finds the wrong one when there is only one.
    """
    best, current = None, _inconsistency(dual, rows, torch.stack(state.q, dim=1))
    for index in range(len(state.q)):
        others = [q for j, q in enumerate(state.q) if j != index]
        masks = _dual_candidates(dual, torch.stack(others, dim=1))
        if masks.shape[0] != 1 or bool(torch.equal(masks[0], state.zeros[index])):
            continue
        q = torch.linalg.eigh(_gram(rows, masks))[1][0, :, 0]
        if float((rows[masks[0]] @ q).abs().max()) > tol:
            continue
        trial = torch.stack([*others[:index], q, *others[index:]], dim=1)
        score = _inconsistency(dual, rows, trial)
        if score < _REPAIR_GAIN * current:
            best, current = (index, q, masks[0]), score
    if best is not None:
        index, q, mask = best
        state.q[index], state.zeros[index] = q, mask


def _row_weights(state: SearchState, rows: torch.Tensor) -> torch.Tensor:
    """Sampling weights of the rows, one pool per line ``(P, M')``.

    Uniform (seed 002) and, once columns are known, the zero set of each known sample and
    ``pi^g`` for ``g`` in :data:`_SOFT_POWERS`, ``pi`` being the fraction of known samples
    inactive at the row.
    """
    size, width = rows.shape
    pools = [torch.ones(size, dtype=rows.dtype, device=rows.device)]
    if state.zeros:
        known = torch.stack(state.zeros).to(rows.dtype)
        singles = [z for z in known if int(z.sum()) >= width]
        # a live row inactive for every known sample is active for an unknown one: with u
        # unknown samples, inactive for a given one with probability ~ (u - 1) / u
        unknown = width - known.shape[0]
        inactive = known.mean(dim=0)
        inactive = torch.where(inactive == 1.0, (unknown - 1) / unknown, inactive)
        soft = [inactive.pow(power) for power in _SOFT_POWERS]
        # about half of the bases use the learnt weights, which sharpen as columns are found
        pools += singles + soft * max(1, len(singles) // len(soft))
    return torch.stack(pools)


def spear_search(
    rows: torch.Tensor,
    dual: DualData | None,
    *,
    tol: float,
    min_zeros: int,
    max_samples: int,
    batch_chunk: int,
    guided_starts: int,
    gen: torch.Generator,
) -> SearchState:
    """Find the B columns of ``Q`` from the live rows of ``L`` (``(M', B)``).

    Batches of ``batch_chunk`` random submatrices (with, every :data:`_GUIDED_PERIOD`
    batches, ``guided_starts`` guided candidates) until B columns are found or
    ``max_samples`` submatrices are spent; once at most two columns are missing, ``dual``
    (when given) completes them. Stops early as soon as B columns are known.
    """
    size, width = rows.shape
    state = SearchState()
    if width == 1:
        state.q.append(torch.ones(1, dtype=rows.dtype, device=rows.device))
        return state
    if min_zeros > size:
        return state
    batches, completed = 0, -1
    while len(state.q) < width and state.sampled < max_samples:
        if dual is not None and width - len(state.q) <= 2 and completed != len(state.q):
            completed = len(state.q)
            masks = _dual_candidates(dual, torch.stack(state.q, dim=1))
            _accept_patterns(state, rows, masks, tol, min_zeros)
            continue
        if guided_starts and batches % _GUIDED_PERIOD == 0:
            directions, zero = _guided_candidates(rows, guided_starts, tol, gen)
            _consider(state, rows, directions, zero, tol, min_zeros)
            if len(state.q) == width:
                break
        count = min(batch_chunk, max_samples - state.sampled)
        directions, zero = _sample_candidates(rows, _row_weights(state, rows), count, tol, gen)
        state.sampled += directions.shape[0]
        _consider(state, rows, directions, zero, tol, min_zeros)
        batches += 1
    if dual is not None and len(state.q) == width:
        _repair(state, rows, dual, tol)
    return state
