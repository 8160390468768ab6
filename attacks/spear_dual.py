"""SPEAR from the input side: ReLU patterns computed from candidate inputs.

The attacked layer ``Z = W X + b`` is known to the server, and ``[X | 1] = Q^{-1} R``: every
input lies in the row space of ``R``, and its ReLU pattern ``W x + b <= 0`` is the zero set of
its column of ``dL/dZ``. Two sources of patterns work on that side:

- :func:`completion_patterns`: once at most two columns are missing, the unknown inputs lie
  in a known point or line, whose few ReLU patterns can all be tried; :func:`repair`
  replaces a single wrong column by the one the others imply.
- :func:`input_patterns`: when the next layer is ``nn.Linear``, its weight gradient
  ``dL/dZ_2 . Y^T`` has the row space ``span{ReLU(z_i)}`` (B-dimensional): an input is a
  sample's when ``ReLU(W x + b)`` lies in it. For a fixed pattern ``D`` that is linear in
  the input, so alternating ``D <- 1[z > 0]`` and ``u <- argmin |P_perp D K u| / |u|``
  (the smallest eigenvector of a B x B matrix) converges to the samples' inputs from random
  starts. It needs no sparsity: unlike the null vectors of random (B-1)-row submatrices, whose
  odds fall like ``2^-(B-1)``, a start converges with odds that fall slowly with B, and the
  unknown inputs lie in ``ann(Q_K)``, so every column found shrinks the search.

The second is this project's own addition to SPEAR (Dimitrov et al., "SPEAR: Exact Gradient
Inversion of Batches in Federated Learning", NeurIPS 2024); SPEAR++ (Bakarsky, Dimitrov,
Baader and Vechev, "SPEAR++: Scaling Gradient Inversion via Sparsely-Used Dictionary
Learning", arXiv 2510.24200, 2025) reaches larger batches from the first layer alone by
dictionary learning. A pattern becomes a column only through the first layer's zeros
(:func:`fedleak.attacks.spear_state.accept_patterns`), and B confirmed inputs become the batch only
when the first layer's gradient agrees with them (:func:`assemble_inputs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedleak.attacks.spear_state import DualData, SearchState, add_input, gram, least_squares

_REPAIR_GAIN = 0.1
"""A repaired set of columns must reproduce ``A`` this many times better to be kept."""
_STEPS = 30
"""Most pattern updates per start of the input-side search."""
_CHUNK_ELEMENTS = 1 << 22
"""Starts are processed in chunks of at most this many ``D K`` entries (memory bound)."""
_NOISY_SPAN = 5e-2
"""The activation span is used while ``s_(B+1) / s_B`` of the next layer's gradient is below
this. A sample the model classifies confidently has a tiny logit gradient and so a noisy
direction in the span: 1.7e-3 on the mlp after 20 rounds at lr 0.5 (float32)."""
_NEAR_NULL = 1e-2
"""A column estimated from confirmed inputs must lie this close (unit vectors) to the null
space its input's ReLU pattern defines; float32 inputs miss it by ~1e-5, wrong ones by ~1."""
_CONFIRM_FACTOR = 3.0
"""An input is confirmed by the activations when ``|P_perp ReLU(z)| / |ReLU(z)|`` is within
this many times the noise of the activation span (or :data:`_CONFIRM_FLOOR`). Measured on
the trained mlp (float32, lr 0.5, noise 1.4e-4): the batch's inputs sit below 1e-5, the
other fixed points of the iteration above 1e-2."""
_CONFIRM_FLOOR = 1e-6
"""The smallest confirmation threshold: the residual is the square root of an eigenvalue
that eigh finds to ~1e-16 of the matrix's norm, so exact inputs show ~1e-8."""


@dataclass(frozen=True)
class ActivationSpace:
    """The attacked layer seen from its inputs, and the span of its ReLU outputs.

    Coordinates: an input is ``[x | 1] = c u^T V`` for ``u`` in R^B and some ``c > 0``, with
    ``V`` (B x (N+1)) the orthonormal row basis of ``R``.

    Attributes
    ----------
    preact : torch.Tensor
        ``(M, B)``: the pre-activations of every neuron are ``preact @ u`` (times ``c``).
    span : torch.Tensor
        ``(M, B)`` orthonormal basis of ``span{ReLU(z_i)}``, the row space of the next
        ``nn.Linear`` layer's weight gradient.
    last : torch.Tensor
        ``(B,)``: the last coordinate of ``[x | 1]`` is ``last @ u`` (times ``c``), so a
        start is signed to make it positive.
    scale : torch.Tensor
        ``(B,)`` singular values ``s_1..s_B``: ``R = diag(s) V``, so a sample's ``u`` is
        ``diag(s)`` times its row of ``Q^{-1}``, orthogonal to ``diag(1/s) q`` for every
        other sample's column ``q``.
    unit_right : torch.Tensor
        ``V`` (B x (N+1)).
    live : torch.Tensor
        ``(M,)`` boolean: the neurons whose rows of ``L`` the search uses.
    noise : float
        ``s_(B+1) / s_B`` of the next layer's weight gradient (0 when it has only B).
    """

    preact: torch.Tensor
    span: torch.Tensor
    last: torch.Tensor
    scale: torch.Tensor
    unit_right: torch.Tensor
    live: torch.Tensor
    noise: float


def activation_space(
    layer: tuple[torch.Tensor, torch.Tensor],
    right: tuple[torch.Tensor, torch.Tensor],
    next_grad: torch.Tensor,
    live: torch.Tensor,
) -> ActivationSpace | str:
    """Build the :class:`ActivationSpace`, or say why the next layer's gradient cannot serve.

    Parameters
    ----------
    layer : tuple[torch.Tensor, torch.Tensor]
        The attacked layer's ``W`` (M x N) and ``b`` (M,).
    right : tuple[torch.Tensor, torch.Tensor]
        The singular values ``s_1..s_B`` and the orthonormal rows ``V`` (B x (N+1)) of the
        attacked layer's ``[dL/dW | dL/db]``.
    next_grad : torch.Tensor
        The next ``nn.Linear`` layer's weight gradient (M_2 x M).
    live : torch.Tensor
        ``(M,)`` boolean mask of the live rows.
    """
    scale, basis = right
    batch = scale.numel()
    sing, vt = torch.linalg.svd(next_grad, full_matrices=False)[1:]
    if sing.numel() < batch or float(sing[batch - 1]) <= 1e-12 * float(sing[0]):
        return (
            f"the next layer's weight gradient has rank < B = {batch} (its {next_grad.shape[0]}"
            " outputs, or a softmax's C - 1, bound it)"
        )
    noise = float(sing[batch] / sing[batch - 1]) if sing.numel() > batch else 0.0
    if noise > _NOISY_SPAN:
        return f"the next layer's weight gradient is not rank B = {batch} (noise {noise:.1e})"
    weight, bias = layer
    preact = torch.cat([weight, bias[:, None]], dim=1) @ basis.T
    span = vt[:batch].T.contiguous()
    return ActivationSpace(preact, span, basis[:, -1], scale, basis, live, noise)


def _unknown_basis(space: ActivationSpace, known: list[torch.Tensor]) -> torch.Tensor:
    """Orthonormal basis ``(B, k)`` of the ``u`` of the samples whose columns are unknown."""
    width = space.scale.numel()
    eye = torch.eye(width, dtype=space.preact.dtype, device=space.preact.device)
    if not known:
        return eye
    scaled = torch.stack(known, dim=1) / space.scale[:, None]
    return torch.linalg.svd(scaled, full_matrices=True)[0][:, len(known) :]


def _iterate(space: ActivationSpace, basis: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """Alternate patterns and smallest eigenvectors from starts ``coef`` ``(S, k)``.

    Returns the relative residual ``|P_perp D z| / |D z|`` of each start's last input, with
    the final coefficients written into ``coef``.
    """
    preact = space.preact @ basis  # (M, k)
    last = basis.T @ space.last
    previous = None
    for _ in range(_STEPS):
        active = (coef @ preact.T > 0).to(preact.dtype)
        masked = active[:, :, None] * preact  # (S, M, k): D K per start
        inside = torch.matmul(space.span.T, masked)  # (S, B, k)
        outer = masked.transpose(1, 2) @ masked
        evals, evecs = torch.linalg.eigh(outer - inside.transpose(1, 2) @ inside)
        step = evecs[:, :, 0]
        coef.copy_(step * torch.where(step @ last < 0, -1.0, 1.0)[:, None])
        if previous is not None and bool(torch.equal(previous, active)):
            break
        previous = active
    total = outer.diagonal(dim1=1, dim2=2).sum(-1).clamp_min(1e-300)
    return evals[:, 0].clamp_min(0.0) / total


def input_patterns(
    space: ActivationSpace,
    state: SearchState,
    starts: int,
    gen: torch.Generator,
    min_zeros: int,
) -> torch.Tensor:
    """Zero masks ``(P, M')`` of inputs the next layer's activations confirm.

    ``starts`` random inputs in the span of the unknown samples run :func:`_iterate`; each
    confirmed input joins ``state.inputs``, and each distinct pattern with at least
    ``min_zeros`` inactive live neurons is returned once (the others are counted in
    ``state``: their zeros cannot pin a column).
    """
    basis = _unknown_basis(space, state.fitting())  # a mixture is no sample's column
    size = basis.shape[1]
    chunk = max(1, _CHUNK_ELEMENTS // (space.preact.shape[0] * size))
    found = []
    for first in range(0, starts, chunk):
        count = min(chunk, starts - first)
        coef = torch.randn(count, size, generator=gen, dtype=basis.dtype, device=basis.device)
        residual = _iterate(space, basis, coef).sqrt()
        keep = residual <= max(_CONFIRM_FLOOR, _CONFIRM_FACTOR * space.noise)
        confirmed = coef[keep] @ basis.T
        for row, distance in zip(confirmed @ space.unit_right, residual[keep], strict=True):
            if float(row[-1]) > 0:
                add_input(state, row / row[-1], float(distance))
        found.append((confirmed @ space.preact.T <= 0)[:, space.live])
    state.input_starts += starts
    masks = torch.unique(torch.cat(found), dim=0)
    thin = masks.sum(dim=1) < min_zeros
    if bool(thin.any()):
        state.thin_inputs = max(state.thin_inputs, int(thin.sum()))
        fewest = int(masks[thin].sum(dim=1).min())
        state.thinnest = fewest if state.thinnest < 0 else min(state.thinnest, fewest)
    return masks[~thin]


def _column_near(rows: torch.Tensor, approx: torch.Tensor, tol: float) -> torch.Tensor | None:
    """The direction in the null space of ``rows`` nearest the unit ``approx``, if it is near."""
    evals, evecs = torch.linalg.eigh(rows.T @ rows)
    null = evecs[:, evals <= tol**2 * rows.shape[0]]
    if null.shape[1] == 0:
        return None
    near = null @ (null.T @ approx)
    if float((near - approx).norm()) > _NEAR_NULL:
        return None
    return near / near.norm()


def assemble_inputs(
    state: SearchState, basis: torch.Tensor, dual: DualData, tol: float
) -> torch.Tensor | None:
    """``[X | 1]`` from the B best-confirmed inputs, when the first layer agrees with them.

    ``basis`` holds the live rows of ``L`` (M' x B). With ``[X | 1]`` of rank B,
    ``dL/dZ = A [X | 1]^+ = L Q`` gives approximate columns; each is replaced by the nearest
    direction that vanishes on the live neurons its input leaves inactive (exact where that
    null space is one-dimensional; where it is not, the sample's inactive neurons are a
    subset of another sample's, and only that other sample's input keeps the activations'
    precision). ``None`` when a column is not near such a null space: not the batch.
    """
    width = basis.shape[1]
    if len(state.inputs) < width:
        return None
    best = sorted(state.inputs, key=lambda item: item[0])[:width]
    stacked = torch.stack([row for _, row in best])
    sing = torch.linalg.svdvals(stacked)
    if float(sing[-1]) <= 1e-9 * float(sing[0]):
        return None
    dz = least_squares(stacked.T, dual.grad.T).T  # (M', B)
    approx = least_squares(basis, dz)
    approx = approx / approx.norm(dim=0, keepdim=True)
    inactive = (stacked[:, :-1] @ dual.weight.T + dual.bias).T <= 0  # (M', B)
    columns = []
    for index in range(width):
        column = _column_near(basis[inactive[:, index]], approx[:, index], tol)
        if column is None:
            return None
        columns.append(column)
    unscaled = torch.linalg.solve(torch.stack(columns, dim=1), dual.right)
    return unscaled / unscaled[:, -1:]


def completion_patterns(dual: DualData, known: torch.Tensor) -> torch.Tensor:
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


def repair(state: SearchState, rows: torch.Tensor, dual: DualData, tol: float) -> None:
    """Replace one wrong column by the one the others imply, if that reproduces ``A`` better.

    With noisy gradients a spurious direction can pass :func:`_refine`; the B - 1 others
    then fix the last input (see :func:`_dual_candidates`), so leaving each column out in
    turn finds the wrong one when there is only one.
    """
    best, current = None, _inconsistency(dual, rows, torch.stack(state.q, dim=1))
    for index in range(len(state.q)):
        others = [q for j, q in enumerate(state.q) if j != index]
        masks = completion_patterns(dual, torch.stack(others, dim=1))
        if masks.shape[0] != 1 or bool(torch.equal(masks[0], state.zeros[index])):
            continue
        q = torch.linalg.eigh(gram(rows, masks))[1][0, :, 0]
        if float((rows[masks[0]] @ q).abs().max()) > tol:
            continue
        trial = torch.stack([*others[:index], q, *others[index:]], dim=1)
        score = _inconsistency(dual, rows, trial)
        if score < _REPAIR_GAIN * current:
            best, current = (index, q, masks[0]), score
    if best is not None:
        index, q, mask = best
        state.q[index], state.zeros[index] = q, mask
