"""The search for the columns of ``Q`` behind :mod:`fedleak.attacks.spear`, bounded by time.

``rows`` are the live rows of ``L = U_B`` (M' x B). Candidates come from four sources, all
batched on the device:

1. Inputs the next layer's activations confirm (:func:`fedleak.attacks.spear_dual.input_patterns`),
   when the next layer is ``nn.Linear``: their ReLU patterns are zero sets of columns.
2. Random (B-1)-row submatrices of ``L`` and their null vectors (Dimitrov et al., "SPEAR:
   Exact Gradient Inversion of Batches in Federated Learning", NeurIPS 2024), with rows drawn
   uniformly or with weights learnt from the columns already found
   (:mod:`fedleak.attacks.spear_sampling`).
3. Guided proposals: reweighted least squares, every :data:`_GUIDED_PERIOD` random batches.
4. Completion, once at most two columns are missing
   (:func:`fedleak.attacks.spear_dual.completion_patterns`); once all are found, the same
   leave-one-out completion repairs a single wrong column.

The search stops when B columns are known or the deadline passes; it always finishes the
batch it is working on, so it may overrun the deadline by one batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from fedleak.attacks.spear_dual import (
    ActivationSpace,
    assemble_inputs,
    completion_patterns,
    input_patterns,
    repair,
)
from fedleak.attacks.spear_sampling import (
    consider,
    guided_candidates,
    row_weights,
    sample_candidates,
)
from fedleak.attacks.spear_state import DualData, SearchState, accept_patterns

_GUIDED_PERIOD = 8
"""Random-sampling batches between two guided (reweighted least-squares) rounds."""
_NOISY = 1e-2
"""``s_(B+1) / s_B`` above which the gradient's zeros are no longer exact enough to find."""
_ROUNDING = 1e-5
"""``s_B / s_1`` below which the B-th direction is float rounding: the gradient has rank < B."""


@dataclass(frozen=True)
class SearchBudget:
    """How much searching one update gets.

    Attributes
    ----------
    deadline : float
        ``time.monotonic()`` after which no new batch starts.
    batch_chunk : int
        Random submatrices per batch.
    guided_starts : int
        Reweighted least-squares proposals per guided round (0: none).
    input_starts : int
        Starts of the input-side search per round (0: none).
    """

    deadline: float
    batch_chunk: int
    guided_starts: int
    input_starts: int


def _complete(
    state: SearchState,
    rows: torch.Tensor,
    dual: DualData,
    known: list[torch.Tensor],
    thresholds: tuple[float, int],
) -> None:
    """Propose the columns missing from ``known`` (the ones that fit the next layer, or all)."""
    masks = completion_patterns(dual, torch.stack(known, dim=1))
    accept_patterns(state, rows, masks, *thresholds)


def _completion_base(
    fitting: list[torch.Tensor], columns: list[torch.Tensor], width: int
) -> list[torch.Tensor] | None:
    """The columns completion starts from: those that fit the next layer when at most two
    are missing from them, else all known ones (mixtures standing in) when at most two are
    missing; ``None`` when neither."""
    for known in (fitting, columns):
        if known and 0 < width - len(known) <= 2:
            return known
    return None


def _primal_batch(
    state: SearchState,
    rows: torch.Tensor,
    budget: SearchBudget,
    batches: int,
    thresholds: tuple[float, int],
    gen: torch.Generator,
) -> None:
    """One batch of random submatrices, preceded every few batches by guided proposals."""
    tol, min_zeros = thresholds
    width = rows.shape[1]
    if budget.guided_starts and batches % _GUIDED_PERIOD == 0:
        directions, zero = guided_candidates(rows, budget.guided_starts, tol, gen)
        consider(state, rows, directions, zero, tol, min_zeros)
        if len(state.q) == width:
            return
    directions, zero = sample_candidates(
        rows, row_weights(state, rows), budget.batch_chunk, tol, gen
    )
    state.sampled += directions.shape[0]
    consider(state, rows, directions, zero, tol, min_zeros)


def spear_search(
    rows: torch.Tensor,
    dual: DualData | None,
    space: ActivationSpace | None,
    *,
    tol: float,
    min_zeros: int,
    budget: SearchBudget,
    gen: torch.Generator,
    head: torch.Tensor | None = None,
) -> SearchState:
    """Find the B columns of ``Q`` from the live rows of ``L`` (``(M', B)``).

    Each round: completion when at most two columns are missing (``dual``), else a round of
    the input-side search (``space``, when given), and a primal batch when that round found
    no column. Stops when B columns that fit the next layer are known (a mixture of samples'
    columns stands in until one takes its place), when B confirmed inputs explain the
    gradient (``state.assembled``), or when ``budget.deadline`` has passed. ``head``:
    ``W2^T`` on the live rows when the ReLU feeds an ``nn.Linear``
    (:func:`fedleak.attacks.spear_state.fits_head`).
    """
    size, width = rows.shape
    state = SearchState(head=head)
    if width == 1:
        state.q.append(torch.ones(1, dtype=rows.dtype, device=rows.device))
        state.mixture.append(False)
        return state
    if min_zeros > size:
        return state
    batches, completed = 0, set[tuple[int, int]]()
    use_inputs = space is not None and budget.input_starts > 0
    while (len(state.q) < width or any(state.mixture)) and time.monotonic() < budget.deadline:
        # completion extends known columns: with none known yet (B = 2) there is nothing to stack
        fitting = state.fitting()
        known = _completion_base(fitting, state.q, width) if dual is not None else None
        if dual is not None and known is not None and (len(fitting), len(state.q)) not in completed:
            completed.add((len(fitting), len(state.q)))
            _complete(state, rows, dual, known, (tol, min_zeros))
            continue
        if use_inputs and space is not None:
            masks = input_patterns(space, state, budget.input_starts, gen, min_zeros)
            if accept_patterns(state, rows, masks, tol, min_zeros):
                continue
            if dual is not None:
                state.assembled = assemble_inputs(state, rows, dual, tol)
                if state.assembled is not None:
                    break
        _primal_batch(state, rows, budget, batches, (tol, min_zeros), gen)
        batches += 1
    if dual is not None and len(state.q) == width:
        repair(state, rows, dual, tol)
    return state


@dataclass(frozen=True)
class SearchFacts:
    """What a failure message reports about the attacked layer.

    Attributes
    ----------
    batch : int
        B.
    neurons, live : int
        The layer's neurons M and the live ones M' the search used.
    noise : float
        ``s_(B+1) / s_B`` of ``[dL/dW | dL/db]``.
    min_zeros : int
        Zero rows a column needs to be accepted.
    weakest : float
        ``s_B / s_1``: how far the B-th direction stands above rounding.
    head_note : str
        What bounds the rank of the gradient above the layer below B
        (:func:`fedleak.attacks.spear_layers.head_rank_note`), or ``""``.
    alike_columns : int
        The candidate columns the search through the next layer found when they were too
        many to be unique (:class:`fedleak.attacks.spear_head.HeadSearchResult`), else 0.
    """

    batch: int
    neurons: int
    live: int
    noise: float
    min_zeros: int
    weakest: float = 1.0
    head_note: str = ""
    alike_columns: int = 0


def failure_reason(
    state: SearchState, facts: SearchFacts, elapsed: float, no_inputs: str | None
) -> str:
    """Why the search found fewer than B columns: the SPEAR assumption that broke, else the
    time budget (``no_inputs``: why there was no input-side search, if there was none)."""
    found = f"found {len(state.q)} of {facts.batch} columns of Q in {elapsed:.1f} s"
    effort = f"{state.sampled} submatrices, {state.input_starts} input-side starts"
    counts = [int(z.sum()) for z in state.zeros]
    layer = f"{facts.live} live of {facts.neurons} neurons, noise s_(B+1)/s_B {facts.noise:.1e}"
    if counts:
        layer += f", found columns zero on {min(counts)}-{max(counts)} live neurons"
    if facts.noise > _NOISY and facts.weakest < _ROUNDING:
        cause = (
            f"the gradient has rank < B = {facts.batch}: fewer than B samples left independent "
            "traces, because their ReLU patterns span fewer than B directions (alike inputs), "
            "or the model fits some so well that their loss gradient vanishes, or a defense's "
            "noise fills the spectrum; no attack on this layer can separate such a batch"
        )
    elif facts.noise > _NOISY:
        cause = (
            "the gradient is not rank B within the noise, so the exact zeros of dL/dZ "
            "that locate the columns are lost (a defense, or float rounding)"
        )
    elif state.thin_inputs:
        cause = (
            f"{state.thin_inputs} sample(s) the next layer's activations confirm leave only "
            f"{state.thinnest} live neurons inactive, fewer than the {facts.min_zeros} that pin "
            "a column down (SPEAR assumes every sample has at least B - 1 inactive neurons)"
        )
    elif facts.alike_columns:
        cause = (
            f"the batch is not unique: the search through the next layer found "
            f"{facts.alike_columns} columns that pass every check for B = {facts.batch} "
            "samples; samples whose ReLU patterns coincide on the live neurons admit every "
            "mixture of theirs as a column, and no attack on this layer can separate them"
        )
    else:
        cause = "the time budget ran out; raise time_budget_s"
        if facts.head_note:
            cause += f" ({facts.head_note})"
        if no_inputs is not None:
            cause += f" (no input-side search: {no_inputs})"
    return f"{found} ({effort}; {layer}): {cause}"
