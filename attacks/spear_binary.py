"""SPEAR behind a binary head: every column of ``dL/dZ`` takes two values.

When the ReLU feeds a two-output ``nn.Linear`` trained with cross-entropy, the gradient
reaching the ReLU is the same direction for every sample: with ``W2`` the head's weight and
``p_i``, ``y_i`` sample ``i``'s softmax and one-hot label, ``p_i - y_i = (d_i, -d_i)``, so

    dL/dY[:, i] = W2^T (p_i - y_i) / B = (d_i / B) v,      v = W2[0] - W2[1],

and ``dL/dZ[j, i] = v_j (d_i / B) 1[neuron j active for sample i]``. Dividing row ``j`` of
``L`` by ``v_j`` (the server knows ``W2``) leaves rows ``r_j`` with ``r_j q_i`` equal to ``0``
on sample ``i``'s inactive neurons and to one constant ``c_i`` on its active ones. Neurons
with the same activation pattern give the same ``r_j``.

That is what the sparse search of :mod:`fedleak.attacks.spear_search` cannot use, and where it
breaks on inputs that look alike (GunPoint's series: 66 live neurons fall into 8 distinct patterns
for a batch of 4). Rows sharing a pattern are parallel, so a sample's zero rows span fewer
than B - 1 directions and do not pin its column; the column is pinned by its zero rows and
its active rows together, which span B directions as soon as the patterns do.

Search: in the augmented space ``(q, c)``, row ``j`` gives the constraint ``[r_j, 0]`` (an
inactive neuron) or ``[r_j, -1]`` (an active one). B constraints on distinct rows, each form
drawn with the share of active neurons as its probability, have a one-dimensional null space;
when every form is right it is ``(q_i, c_i)``. A candidate is kept when every live row gives
``0`` or ``c`` within the noise, then refined by least squares on the mask it defines. Two
valued vectors that are not columns (a column minus a column whose active set it contains)
can pass that test: the batch kept is the B-subset of candidates whose recovered inputs
reproduce the gradient with ReLU patterns that agree with the masks
(:func:`fedleak.attacks.spear_solve.check_batch`).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np
import torch

from fedleak.attacks.spear_sampling import null_basis
from fedleak.attacks.spear_solve import LayerFactors, check_batch, scaled_inputs
from fedleak.attacks.spear_state import DualData

DRAWS = 4096
"""Candidate constraint sets per device batch."""
NOISE_FACTOR = 10.0
"""A row matches ``0`` or ``c`` within this many zero tolerances (scaled by ``|q|``)."""
_SUBSETS_PER_BATCH = 2048
"""B-subsets of the candidates checked together."""


@dataclass(frozen=True)
class TwoValued:
    """One two-valued column: ``r q`` is ``1`` on ``active`` rows and ``0`` elsewhere.

    Attributes
    ----------
    q : torch.Tensor
        ``(B,)`` in ``L``'s coordinates, scaled so that the active value is 1.
    active : torch.Tensor
        ``(M',)`` boolean mask of the live rows where the sample is active.
    """

    q: torch.Tensor
    active: torch.Tensor


def _distinct_rows(unit: torch.Tensor, tol: torch.Tensor) -> torch.Tensor:
    """Indices of one row per distinct normalised row (rows within the noise are one)."""
    gap = torch.cdist(unit, unit)
    near = gap <= (tol[:, None] + tol[None, :]) * NOISE_FACTOR
    first = near.to(torch.int64).argmax(dim=1)  # the first row each row coincides with
    return torch.unique(first)


def _candidates(
    unit: torch.Tensor, picks: torch.Tensor, share: float, gen: torch.Generator
) -> torch.Tensor:
    """Null vectors ``(P, B + 1)`` of B random augmented rows of the distinct rows ``picks``."""
    width = unit.shape[1]
    keys = torch.rand(DRAWS, picks.numel(), generator=gen, device=unit.device)
    chosen = picks[keys.topk(width, dim=1).indices]  # (P, B) distinct rows each
    forms = torch.rand(DRAWS, width, generator=gen, device=unit.device) < share
    augmented = torch.cat([unit[chosen], -forms.to(unit.dtype)[..., None]], dim=-1)
    return null_basis(augmented, 1)[:, :, 0]


def _two_valued(
    unit: torch.Tensor, pinv: torch.Tensor, tol: torch.Tensor, candidates: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Refined columns ``(P, B)``, their active masks ``(P, M')`` and verdicts ``(P,)``.

    Each candidate's rows are rounded to ``0`` or ``1`` (its value ``c`` scaled to 1), the
    column is refitted by least squares on every row (``pinv`` is ``unit``'s pseudo-inverse,
    so the B noisy rows that proposed it do not decide it) and kept when every row then
    matches its rounded value within the noise.
    """
    value = candidates[:, -1:]
    q = candidates[:, :-1] / torch.where(value.abs() > 1e-12, value, torch.nan)
    active = (q @ unit.T) > 0.5
    refit = active.to(unit.dtype) @ pinv.T  # (P, B): least squares on every row
    off = (refit @ unit.T - active.to(unit.dtype)).abs()
    bound = NOISE_FACTOR * tol[None, :] * refit.norm(dim=1, keepdim=True)
    ok = (off <= bound).all(dim=1) & active.any(dim=1) & q.isfinite().all(dim=1)
    return refit, active, ok


def two_valued_columns(
    rows: torch.Tensor, head: torch.Tensor, tol: float, deadline: float, gen: torch.Generator
) -> list[TwoValued]:
    """Distinct two-valued columns of the live rows ``rows`` ``(M', B)``, found by deadline.

    ``head`` is ``v`` on the live rows (module docstring). Stops early once a batch of
    draws adds nothing new after at least B columns were found.
    """
    width = rows.shape[1]
    usable = head.abs() > 1e-12 * float(head.abs().max())
    unit = torch.where(usable[:, None], rows / head[:, None], 0.0)
    row_tol = torch.where(usable, tol / head.abs(), torch.inf)
    pinv = torch.linalg.pinv(unit)
    picks = _distinct_rows(unit, row_tol)
    picks = picks[usable[picks]]
    if picks.numel() < width:
        return []
    found: dict[bytes, TwoValued] = {}
    while time.monotonic() < deadline:
        before = len(found)
        for share in (0.5, 0.75, 0.25):
            proposed = _candidates(unit, picks, share, gen)
            refit, masks, ok = _two_valued(unit, pinv, row_tol, proposed)
            for q, mask in zip(refit[ok], masks[ok], strict=True):
                found.setdefault(mask.cpu().numpy().tobytes(), TwoValued(q, mask))
        if len(found) >= width and len(found) == before:
            break
    return list(found.values())


def realisable(
    columns: list[TwoValued],
    factors: LayerFactors,
    layer: DualData,
    deadline: float = float("inf"),
) -> list[TwoValued]:
    """The columns whose mask is the ReLU pattern of some input the gradient allows.

    A sample's ``[x | 1]`` lies in the row space of ``R``: ``[x | 1] = a R``. The mask of a
    column is kept when a linear programme finds ``a`` with ``a R[:, -1] = 1`` and
    ``W x + b`` positive on the mask's live rows and negative on the others, by a positive
    margin. On GunPoint's B = 8 updates this removes 8 of the 11 two-valued vectors that
    are not columns, and no column.
    """
    from scipy.optimize import linprog

    live = factors.live
    right = factors.right.cpu().numpy()
    # W x + b for [x | 1] = a R, as a linear map of a: (M', B)
    response = (layer.weight[live] @ factors.right[:, :-1].T).T + (
        factors.right[:, -1:] * layer.bias[live][None, :]
    )
    response_np = response.T.cpu().numpy()
    width = right.shape[0]
    scale = float(np.abs(response_np).max()) or 1.0
    kept = []
    for column in columns:
        if time.monotonic() > deadline:  # one linear programme per column: bounded by time
            break
        sign = np.where(column.active.cpu().numpy(), 1.0, -1.0)
        bounds = [(-1e6, 1e6)] * width + [(None, 1.0)]
        found = linprog(
            np.r_[np.zeros(width), -1.0],
            A_ub=np.hstack([-(sign[:, None] * response_np) / scale, np.ones((sign.size, 1))]),
            b_ub=np.zeros(sign.size),
            A_eq=np.r_[right[:, -1], 0.0][None],
            b_eq=[1.0],
            bounds=bounds,
        )
        if found.status == 0 and -found.fun > 1e-9:
            kept.append(column)
    return kept


def _consistent(
    factors: LayerFactors, layer: DualData, columns: list[TwoValued], subsets: torch.Tensor
) -> torch.Tensor:
    """``(P,)``: the subsets whose inputs' ReLU patterns are exactly their masks."""
    live = factors.live
    directions = torch.stack([c.q for c in columns])[subsets].transpose(1, 2)  # (P, B, B)
    masks = torch.stack([c.active for c in columns])[subsets]  # (P, B, M')
    solvable = torch.linalg.svdvals(directions)[:, -1] > 1e-9 * directions.norm(dim=(1, 2))
    safe = torch.where(solvable[:, None, None], directions, torch.eye(directions.shape[1]))
    unscaled = torch.linalg.solve(safe, factors.right.expand(safe.shape[0], -1, -1))
    scale = unscaled[:, :, -1:]
    stacked = unscaled / torch.where(scale.abs() > 1e-12, scale, torch.nan)
    active = stacked[:, :, :-1] @ layer.weight[live].T + layer.bias[live] > 0
    return solvable & (active == masks).all(dim=(1, 2))


def binary_head_batch(
    factors: LayerFactors, layer: DualData, columns: list[TwoValued], deadline: float
) -> torch.Tensor | None:
    """``[X | 1]`` ``(B, N+1)`` from the B-subset of ``columns`` that explains the gradient.

    Subsets of the realisable columns (:func:`realisable`) are tried in device batches
    until ``deadline``: the first whose inputs (``Q^{-1} R`` rescaled to a last column of
    ones) have exactly the subset's masks as ReLU patterns and reproduce ``A``
    (:func:`fedleak.attacks.spear_solve.check_batch`) is kept. ``None`` when none does.
    """
    width = factors.right.shape[0]
    columns = realisable(columns, factors, layer, deadline)
    subsets = itertools.combinations(range(len(columns)), width)
    while time.monotonic() < deadline:
        chunk = list(itertools.islice(subsets, _SUBSETS_PER_BATCH))
        if not chunk:
            return None
        picked = torch.tensor(chunk, dtype=torch.int64, device=factors.right.device)
        for subset in picked[_consistent(factors, layer, columns, picked)]:
            directions = torch.stack([columns[int(i)].q for i in subset], dim=1)
            stacked = scaled_inputs(directions, factors.right)
            if check_batch(factors, stacked, layer).reproduces:
                return stacked
    return None
