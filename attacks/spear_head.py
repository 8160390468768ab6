"""SPEAR behind a narrow next layer: each column of ``dL/dZ`` is a masked image of a k-vector.

When the ReLU feeds an ``nn.Linear`` with weight ``W2``, sample ``i``'s column of ``dL/dZ``
is ``a_i * (W2^T delta_i)``: its ReLU mask ``a_i`` times the next layer's weights applied to
its gradient there, ``delta_i``. Behind a C-output head under cross-entropy ``delta_i`` sums
to zero, so ``W2^T delta_i = H g_i`` with ``H = W2^T P`` for an orthonormal basis ``P`` of the
zero-sum vectors (k = C - 1); behind a hidden layer of k outputs ``H = W2^T`` (:func:`head_space`).
The binary head is k = 1 (:mod:`fedleak.attacks.spear_binary`).

When k < B the samples' columns span fewer directions at the next layer than there are
samples, and with alike ReLU patterns a sample's zero rows no longer pin its column: the
sparse search (:mod:`fedleak.attacks.spear_search`) finds none on an MLP trained for 10 rounds
on photos at B = 8. Zero rows and active rows together do: in the augmented unknown
``(q_i, g_i)`` of ``B + k`` entries, row ``j`` of ``L`` gives ``[r_j, 0]`` when neuron ``j`` is
inactive for the sample and ``[r_j, -h_j]`` when active (``h_j`` row ``j`` of ``H``), since
``r_j q_i = h_j g_i`` there. ``B + k - 1`` such constraints on distinct rows, each form drawn
with a fixed share, with the batch's typical pattern (:func:`affine_prior`) or, once columns
are known, with each neuron's rate of activity among them (:func:`_proposals`), leave a
one-dimensional null space, which is ``(q_i, g_i)`` when every form is right. A candidate is
kept when, refitted by least squares on every live row with the mask it implies, every row
matches within the noise. Once B - 2 columns are known, the last one or two are completed
from the others (:func:`completed_columns`). The batch is then assembled from the candidates
as behind a binary head (:func:`fedleak.attacks.spear_binary.binary_head_batch`).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import torch
from torch import nn

from fedleak.attacks.spear_binary import (
    DRAWS,
    NOISE_FACTOR,
    TwoValued,
    binary_head_batch,
    two_valued_columns,
)
from fedleak.attacks.spear_dual import completion_patterns
from fedleak.attacks.spear_head_map import always_active_map, mapped_columns
from fedleak.attacks.spear_layers import binary_head, next_layer
from fedleak.attacks.spear_sampling import null_basis, weighted_draws
from fedleak.attacks.spear_solve import LayerFactors
from fedleak.attacks.spear_state import DualData
from fedleak.attacks.types import InterceptedUpdate

NARROW_HEAD_SHARE = 0.75
"""Share of SPEAR's time budget for this search behind a narrow head (k < B, k > 1).

There the sparse search is the weaker one: on an untrained MLP on photos at B = 16 (6-output
head) it finds 3 of 16 columns in 30 s; this search, with the affine prior and completion,
the whole batch in 15 s."""
_MOST_COLUMNS = 4
"""Candidates per sample beyond which the columns are taken as not unique (samples sharing a
ReLU pattern admit every mixture of theirs) and the search stops."""
_COMPLETION_SUBSETS = 512
"""Subsets of the known columns tried per completion and number missing (one or two)."""
_CONFIDENCE_POWER = 8.0
"""Rows are drawn with weight ``max(rate, 1 - rate) ** this`` once columns are known."""


def head_space(
    model: nn.Module, layer: nn.Linear, update: InterceptedUpdate
) -> torch.Tensor | None:
    """``H`` ``(M, k)``: every sample's column of ``dL/dZ`` is ``a_i * (H g_i)``.

    ``k`` is :attr:`~fedleak.attacks.spear_layers.NextLayer.rank`: behind a cross-entropy
    head ``H = W2^T P`` with ``P`` an orthonormal basis of the zero-sum vectors, elsewhere
    ``H = W2^T``. ``None`` when ``layer``'s ReLU does not feed an ``nn.Linear`` directly.
    """
    after = next_layer(model, layer, update)
    if after is None:
        return None
    weight = after.linear.weight.detach().to(torch.float64)  # (C, M)
    outputs = weight.shape[0]
    if after.rank == outputs:
        return weight.T
    centred = torch.eye(outputs, dtype=torch.float64) - 1.0 / outputs
    basis = torch.linalg.svd(centred).U[:, : after.rank]  # zero-sum vectors (C, C-1)
    return weight.T @ basis


def _candidates(
    rows: torch.Tensor,
    head: torch.Tensor,
    activity: torch.Tensor,
    weight: torch.Tensor,
    gen: torch.Generator,
) -> torch.Tensor:
    """Null vectors ``(P, B + k)`` of ``B + k - 1`` augmented rows of ``rows``.

    Rows are drawn without replacement with probability proportional to ``weight``, each
    row's form is active with probability ``activity`` (both ``(M',)``).
    """
    width, k = rows.shape[1], head.shape[1]
    chosen = weighted_draws(weight.expand(DRAWS, -1), width + k - 1, gen)
    draw = torch.rand(chosen.shape, generator=gen, device=rows.device, dtype=rows.dtype)
    forms = (draw < activity[chosen]).to(rows.dtype)
    augmented = torch.cat([rows[chosen], -forms[..., None] * head[chosen]], dim=-1)
    return null_basis(augmented, 1)[:, :, 0]


def _proposals(
    found: list[TwoValued], rows: torch.Tensor, prior: torch.Tensor | None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(activity, weight)`` per batch of draws: fixed shares, the batch's affine prior
    (:func:`affine_prior`), then what the found columns say.

    Samples alike in their inputs are alike in their ReLU patterns, so a neuron active for most
    columns found so far is likely active for the others: drawing its form with that rate
    (Laplace-smoothed), and drawing the rows whose rate is nearest 0 or 1 more often, makes a
    draw with every form right far likelier than a fixed share does.
    """
    ones = torch.ones(rows.shape[0], dtype=rows.dtype, device=rows.device)
    plans = [(ones * share, ones) for share in (0.5, 0.75, 0.25)]
    rates = [] if prior is None else [prior]
    if found:
        masks = torch.stack([column.active for column in found]).to(rows.dtype)
        rates.append((masks.sum(dim=0) + 1) / (len(found) + 2))
    for rate in rates:
        plans.append((rate, torch.maximum(rate, 1 - rate) ** _CONFIDENCE_POWER))
    return plans


def affine_prior(dual: DualData) -> torch.Tensor | None:
    """Each live neuron's guessed rate of activity over the batch, before any column is known.

    Every ``[x_i | 1]`` lies in the row space of ``R``, so the point of least norm there with
    last coordinate 1 is an affine combination of the batch's inputs; for natural images,
    which share much of their content, its ReLU pattern is the batch's typical one. A neuron
    far from its threshold there (its margin, in units of the median margin) is likely on
    the same side for every sample: the rate is ``sigmoid(2 margin / median |margin|)``. On
    an MLP on photos at B = 16 the neurons in the top quarter by margin have the side the
    point says for 95-97 % of the samples. ``None`` where ``R`` has no such point.
    """
    last = dual.right[:, -1]
    if float(last.norm()) <= 1e-12 * float(dual.right.norm()):
        return None
    point = (last / last.dot(last)) @ dual.right
    margin = (dual.weight @ point[:-1] + dual.bias) / dual.weight.norm(dim=1).clamp_min(1e-30)
    scale = margin.abs().median().clamp_min(1e-30)
    return torch.sigmoid(2.0 * margin / scale)


def _refit(
    rows: torch.Tensor, head: torch.Tensor, tol: float, candidates: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Refitted columns ``q`` ``(P, B)``, their active masks ``(P, M')`` and verdicts ``(P,)``.

    A row is active where ``r_j q`` is nearer ``h_j g`` than 0; :func:`_fit_masks` refits
    with that mask.
    """
    width = rows.shape[1]
    q, g = candidates[:, :width], candidates[:, width:]
    value, predicted = q @ rows.T, g @ head.T  # (P, M')
    return _fit_masks(rows, head, tol, (value - predicted).abs() < value.abs())


def _fit_masks(
    rows: torch.Tensor, head: torch.Tensor, tol: float, active: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Columns ``q`` ``(P, B)`` fitted to the active masks ``(P, M')``, the masks, verdicts.

    With the mask, ``(q, g)`` is fitted on every row: the least singular vector of
    ``[r_j, -m_j h_j]``. Kept when every row's residual is within the noise, the mask has an
    active row, and ``g`` is not zero.
    """
    width = rows.shape[1]
    mask = active.to(rows.dtype)
    # normal matrix of the (M', B + k) system per mask, without building it row by row
    cross = -torch.einsum("pm,mb,mk->pbk", mask, rows, head)
    gram_rows = (rows.T @ rows).expand(len(mask), -1, -1)
    gram_head = torch.einsum("pm,mk,ml->pkl", mask, head, head)
    normal = torch.cat(
        [torch.cat([gram_rows, cross], dim=2), torch.cat([cross.transpose(1, 2), gram_head], 2)],
        dim=1,
    )
    fitted = torch.linalg.eigh(normal).eigenvectors[:, :, 0]
    q, g = fitted[:, :width], fitted[:, width:]
    scale = q.norm(dim=1, keepdim=True).clamp_min(1e-30)
    q, g = q / scale, g / scale
    residual = (q @ rows.T - mask * (g @ head.T)).abs()
    ok = (residual <= NOISE_FACTOR * tol).all(dim=1) & active.any(dim=1)
    ok &= (g @ head.T).abs().amax(dim=1) > NOISE_FACTOR * tol
    return q, active, ok & fitted.isfinite().all(dim=1)


def completed_columns(
    columns: list[TwoValued],
    rows: torch.Tensor,
    head: torch.Tensor,
    tol: float,
    dual: DualData,
    deadline: float,
) -> list[TwoValued]:
    """The columns of the samples missing when B - 1 or B - 2 of ``columns`` are known.

    The known columns fix the missing samples' inputs up to a point (one missing) or a line
    (two) (:func:`fedleak.attacks.spear_dual.completion_patterns`), hence their ReLU
    patterns, hence their columns (:func:`_fit_masks`) with every row's form known. A
    mixture among ``columns`` spoils the subsets that hold it, so every subset of that size
    is tried, at most :data:`_COMPLETION_SUBSETS` of each, until ``deadline``. ``dual`` is
    the layer on the live rows.
    """
    width, found = rows.shape[1], list[TwoValued]()
    for known in (width - 1, width - 2):
        if known < 1 or len(columns) < known:
            continue
        subsets = itertools.combinations(range(len(columns)), known)
        for subset in itertools.islice(subsets, _COMPLETION_SUBSETS):
            if time.monotonic() > deadline:
                return found
            directions = torch.stack([columns[i].q for i in subset], dim=1)
            inactive = completion_patterns(dual, directions)
            if len(inactive):
                q, masks, ok = _fit_masks(rows, head, tol, ~inactive)
                found += [TwoValued(c, m) for c, m in zip(q[ok], masks[ok], strict=True)]
    return found


class HeadColumnSearch:
    """Distinct masked columns of the live rows ``rows`` ``(M', B)``, searched in rounds.

    ``head`` is ``H`` on the live rows. Once the batch's always-active neurons give ``g`` as a
    map of ``q`` (:mod:`fedleak.attacks.spear_head_map`), looked for at the start and after
    every round (among the neurons active for every column found, once two are), the draws
    need B - 1 rows instead of B + k - 1. With ``dual`` (the layer on the live rows), the
    last one or two columns are completed from the others (:func:`completed_columns`).
    """

    def __init__(
        self,
        rows: torch.Tensor,
        head: torch.Tensor,
        tol: float,
        gen: torch.Generator,
        dual: DualData | None = None,
    ) -> None:
        self.rows, self.head, self.tol, self.gen, self.dual = rows, head, tol, gen, dual
        self.found: dict[bytes, TwoValued] = {}
        self._completed_from = 0
        self.prior = None if dual is None else affine_prior(dual)
        self.everywhere = torch.ones(rows.shape[0], dtype=torch.bool, device=rows.device)
        self.mapping = always_active_map(rows, head, tol, self.everywhere, gen)

    @property
    def possible(self) -> bool:
        """Whether there are rows enough for one draw."""
        return self.rows.shape[0] >= self.rows.shape[1] + self.head.shape[1] - 1

    def columns(self, deadline: float) -> list[TwoValued]:
        """Every column found so far, after rounds until one adds nothing new while at least
        B are known, or until ``deadline``."""
        width = self.rows.shape[1]
        while time.monotonic() < deadline and len(self.found) <= _MOST_COLUMNS * width:
            before = len(self.found)
            self._round()
            self._complete(deadline)
            if len(self.found) >= width and len(self.found) == before:
                break
        return list(self.found.values())

    def _complete(self, deadline: float) -> None:
        """Add :func:`completed_columns` once B - 2 columns are known, again when more are."""
        known = len(self.found)
        if self.dual is None or known < self.rows.shape[1] - 2 or known <= self._completed_from:
            return
        self._completed_from = known
        columns = list(self.found.values())
        self._keep(completed_columns(columns, self.rows, self.head, self.tol, self.dual, deadline))

    def _keep(self, columns: list[TwoValued]) -> None:
        """Add the columns whose masks are new (one column per ReLU pattern)."""
        for column in columns:
            self.found.setdefault(column.active.cpu().numpy().tobytes(), column)

    def _round(self) -> None:
        rows, head, tol, gen = self.rows, self.head, self.tol, self.gen
        for plan in _proposals(list(self.found.values()), rows, self.prior):
            if self.mapping is not None:
                new = mapped_columns(rows, rows - head @ self.mapping, tol, plan, gen)
            else:
                q, masks, ok = _refit(rows, head, tol, _candidates(rows, head, *plan, gen))
                new = [TwoValued(c, m) for c, m in zip(q[ok], masks[ok], strict=True)]
            self._keep(new)
        if self.mapping is None:  # once 2 columns are known, among the rows active for both
            among = self.everywhere
            if len(self.found) >= 2:
                among = torch.stack([c.active for c in self.found.values()]).all(dim=0)
            self.mapping = always_active_map(rows, head, tol, among, gen)


@dataclass(frozen=True)
class HeadSearchResult:
    """What the search through the next layer gave.

    Attributes
    ----------
    stacked : torch.Tensor | None
        ``[X | 1]`` ``(B, N+1)`` of the batch that explains the gradient, or None.
    candidates : int
        Candidate columns found.
    not_unique : bool
        More than :data:`_MOST_COLUMNS` candidates per sample were found, so the search
        stopped: samples sharing a ReLU pattern admit every mixture of theirs.
    """

    stacked: torch.Tensor | None
    candidates: int
    not_unique: bool = False


def _narrow_head_batch(
    factors: LayerFactors, full: DualData, search: HeadColumnSearch, deadline: float
) -> HeadSearchResult:
    """Search and assemble until a batch explains the gradient, or ``deadline``.

    A column that passes every check may still not be one (a realisable mixture); the batch
    assembled from B candidates then fails, and the search goes on for the missing column.
    """
    assembled_from, columns = 0, list[TwoValued]()
    while search.possible and time.monotonic() < deadline:
        columns = search.columns(deadline)
        if len(columns) > _MOST_COLUMNS * factors.right.shape[0]:
            return HeadSearchResult(None, len(columns), not_unique=True)
        if len(columns) > assembled_from:
            assembled_from = len(columns)
            stacked = binary_head_batch(factors, full, columns, deadline)
            if stacked is not None:
                return HeadSearchResult(stacked, len(columns))
    return HeadSearchResult(None, len(columns))


def head_search_batch(
    model: nn.Module,
    update: InterceptedUpdate,
    layer: tuple[nn.Linear, DualData],
    factors: LayerFactors,
    budget: tuple[float, torch.Generator],
) -> HeadSearchResult | None:
    """The batch from the search through the next layer, or None where it does not apply.

    Behind a two-output head the two-valued search of :mod:`fedleak.attacks.spear_binary`, for
    a quarter of the attack's seconds in ``budget`` (with the generator that draws the rows);
    behind any other next ``nn.Linear`` whose gradient has rank k < B this module's, for
    :data:`NARROW_HEAD_SHARE` of them. The batch is assembled by
    :func:`fedleak.attacks.spear_binary.binary_head_batch`. Where no B columns explain the
    gradient in time, the sparse search has the rest of the budget.
    """
    module, full = layer
    seconds, gen = budget
    start = time.monotonic()
    live, batch, device = factors.live, factors.right.shape[0], factors.grad.device
    rows = factors.basis[live]
    binary = binary_head(model, module, update)
    space = None if binary is not None else head_space(model, module, update)
    if binary is not None:
        head, deadline = binary.to(device, torch.float64)[live], start + seconds / 4
        columns = two_valued_columns(rows, head, factors.tol, deadline, gen)
    elif space is not None and space.shape[1] < batch:
        dual = full.on_rows(live)
        search = HeadColumnSearch(rows, space.to(device)[live], factors.tol, gen, dual)
        return _narrow_head_batch(factors, full, search, start + seconds * NARROW_HEAD_SHARE)
    else:
        return None
    return HeadSearchResult(binary_head_batch(factors, full, columns, deadline), len(columns))
