"""What SPEAR's column searches share: the columns found so far, and how a column is accepted.

``rows`` are the live rows of ``L = U_B`` (M' x B) of the attacked layer (see
:mod:`fedleak.attacks.spear`). Column ``q_i`` of ``Q`` makes ``L q_i`` the column of ``dL/dZ`` of
sample ``i``, exactly zero on the neurons inactive for it. Every candidate source
(:mod:`fedleak.attacks.spear_sampling`, :mod:`fedleak.attacks.spear_dual`) ends in
:func:`add_column`; the input-side sources, which come with a whole zero set (a ReLU pattern
computed from an input), are accepted by :func:`accept_patterns`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

GAP_FACTOR = 10.0
"""The second null direction of a genuine zero set leaves residuals this far above ``tol``."""
_SAME_DIRECTION = 1e-4
"""Refined directions with ``|cos| > 1 - _SAME_DIRECTION`` are one column of ``Q``."""
_HEAD_FACTOR = 10.0
"""A column's active values match ``W2^T delta`` within this many zero tolerances."""


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
    input_starts : int
        Starts of the input-side search (:func:`fedleak.attacks.spear_dual.input_patterns`).
    inputs : list[tuple[float, torch.Tensor]]
        Distinct inputs ``[x | 1]`` ``(N+1,)`` the next layer's activations confirm
        (:func:`fedleak.attacks.spear_dual.input_patterns`), whether or not they pinned a column,
        each with its relative distance from the activation span.
    thin_inputs : int
        Largest number of distinct confirmed inputs, in one round of the input-side search,
        whose ReLU leaves fewer than ``min_zeros`` live neurons inactive.
    thinnest : int
        Fewest inactive live neurons among those inputs (``-1`` when there is none).
    assembled : torch.Tensor | None
        ``[X | 1]`` ``(B, N+1)`` put together from B confirmed inputs and checked against the
        gradient (:func:`fedleak.attacks.spear_dual.assemble_inputs`), when the columns alone did
        not all come out: a sample whose inactive neurons are a subset of another's leaves a
        two-dimensional null space, which no zero set resolves, but its input is confirmed.
    head : torch.Tensor | None
        ``W2^T`` on the live rows ``(M', k)`` when the ReLU feeds an ``nn.Linear`` of ``k``
        outputs (:func:`fits_head`); ``None`` skips that check.
    mixture : list[bool]
        Per column: it failed :func:`fits_head` (a mixture of samples' columns, kept until a
        fitting column takes its place; the search goes on while one is left).
    """

    q: list[torch.Tensor] = field(default_factory=list)
    zeros: list[torch.Tensor] = field(default_factory=list)
    sampled: int = 0
    kept: int = 0
    input_starts: int = 0
    inputs: list[tuple[float, torch.Tensor]] = field(default_factory=list)
    thin_inputs: int = 0
    thinnest: int = -1
    assembled: torch.Tensor | None = None
    head: torch.Tensor | None = None
    mixture: list[bool] = field(default_factory=list)

    def fitting(self) -> list[torch.Tensor]:
        """The known columns that fit the next layer: samples' own, not mixtures."""
        return [q for q, mixed in zip(self.q, self.mixture, strict=True) if not mixed]


@dataclass(frozen=True)
class DualData:
    """The layer seen from the input side, on the live rows.

    Attributes
    ----------
    right : torch.Tensor
        ``R`` (B x (N+1)): ``[X | 1] = Q^{-1} R``.
    weight, bias : torch.Tensor
        The layer's ``W`` (M' x N) and ``b`` (M',) on the live rows: an input's ReLU pattern.
    grad : torch.Tensor
        ``A = [dL/dW | dL/db]`` on the live rows (M' x (N+1)).
    """

    right: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    grad: torch.Tensor

    def on_rows(self, rows: torch.Tensor) -> DualData:
        """The same layer on the neurons ``rows`` selects (the live ones, say)."""
        return DualData(self.right, self.weight[rows], self.bias[rows], self.grad[rows])


def least_squares(system: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``argmin |system @ x - target|``, bit-reproducible: LAPACK's gelsd on the CPU.

    torch's default CPU driver (gelsy) returns last-bit different answers from one call to
    the next, and CUDA offers only gels; the systems here are B columns wide.
    """
    solution = torch.linalg.lstsq(system.cpu(), target.cpu(), driver="gelsd").solution
    return solution.to(system.device)


def gram(rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``sum_{j in mask} L_j L_j^T`` per mask: ``(P, B, B)`` from ``rows`` and ``(P, M')``."""
    return torch.matmul(rows.T * mask[:, None, :].to(rows.dtype), rows)


def fits_head(
    head: torch.Tensor | None, values: torch.Tensor, mask: torch.Tensor, tol: float
) -> bool:
    """Whether ``values = L q`` ``(M',)`` is ``W2^T delta`` off its zero rows ``mask``.

    Sample ``i``'s column of ``dL/dZ`` is ``W2^T delta_i`` on its active neurons, one
    ``delta_i`` (its gradient at the next layer's outputs) for all of them. A mixture of
    samples' columns takes one sample's ``delta`` on some rows and another's elsewhere, so it
    fails this test where it passes the sparsity filter: when the samples' ``delta`` span
    fewer than B directions (a head of C <= B outputs), mixtures cancel on the neurons the
    mixed samples all activate, and alike ReLU patterns make them as sparse as a sample's
    own column. No test (``True``) without a head or with no more active rows than ``k``.
    """
    active = ~mask
    if head is None or int(active.sum()) <= head.shape[1]:
        return True
    delta = least_squares(head[active], values[active, None])
    misfit = (head[active] @ delta)[:, 0] - values[active]
    return float(misfit.abs().max()) <= _HEAD_FACTOR * tol


def _independent(columns: list[torch.Tensor]) -> bool:
    return float(torch.linalg.svdvals(torch.stack(columns, dim=1))[-1]) >= 1e-6


def add_column(
    state: SearchState, rows: torch.Tensor, q: torch.Tensor, mask: torch.Tensor, tol: float
) -> bool:
    """Keep ``q`` unless it repeats a known column or depends linearly on the known ones.

    A ``q`` that does not fit the next layer (:func:`fits_head`: a mixture of samples'
    columns) is kept, marked, until a column that fits takes its place: with the batch
    complete or ``q`` dependent on the known columns, a fitting ``q`` replaces the first
    mixture whose place it can take.
    """
    if state.q:
        same = (torch.stack(state.q) @ q).abs() > 1.0 - _SAME_DIRECTION
        if bool(same.any()) or any(bool(torch.equal(mask, z)) for z in state.zeros):
            return False
    fits = fits_head(state.head, rows @ q, mask, tol)
    if len(state.q) < q.numel() and _independent([*state.q, q]):
        state.q.append(q)
        state.zeros.append(mask)
        state.mixture.append(not fits)
        return True
    if not fits:
        return False
    for index, mixed in enumerate(state.mixture):
        if mixed and _independent([*state.q[:index], q, *state.q[index + 1 :]]):
            state.q[index], state.zeros[index], state.mixture[index] = q, mask, False
            return True
    return False


_SAME_INPUT = 1e-3
"""Confirmed inputs closer than this (relative) are one sample seen through float rounding."""


def add_input(state: SearchState, row: torch.Tensor, residual: float) -> None:
    """Keep the confirmed input ``[x | 1]``, or the better-confirmed copy of a known one."""
    for index, (known_residual, known) in enumerate(state.inputs):
        if float((known - row).norm()) <= _SAME_INPUT * float(row.norm()):
            if residual < known_residual:
                state.inputs[index] = (residual, row)
            return
    state.inputs.append((residual, row))


def pattern_nulls(
    rows: torch.Tensor, masks: torch.Tensor, tol: float, min_zeros: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Null directions of the rows each pattern zeroes, and whether each is a column of ``Q``.

    A pattern (a ReLU pattern computed from an input) is taken as it is: a ReLU-active entry
    of ``dL/dZ`` may be tiny, below ``tol``. It names a column when its at least
    ``min_zeros`` rows leave a one-dimensional null space with residuals within ``tol``:
    dozens of rows in B dimensions do that only for the right pattern (or a part of it).
    Returns the directions ``(P, B)`` and the verdicts ``(P,)``.
    """
    count = masks.sum(dim=1)
    evals, evecs = torch.linalg.eigh(gram(rows, masks))
    ok = (count >= min_zeros) & (evals[:, 0] <= tol**2 * count)
    ok &= evals[:, 1] > (GAP_FACTOR * tol) ** 2 * count
    return evecs[:, :, 0], ok


def accept_patterns(
    state: SearchState, rows: torch.Tensor, masks: torch.Tensor, tol: float, min_zeros: int
) -> int:
    """Add the columns whose zero rows are the patterns ``masks`` ``(P, M')``; returns how many."""
    if masks.shape[0] == 0:
        return 0
    directions, ok = pattern_nulls(rows, masks, tol, min_zeros)
    return sum(
        add_column(state, rows, q, mask, tol)
        for q, mask in zip(directions[ok], masks[ok], strict=True)
    )
