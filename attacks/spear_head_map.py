"""The narrow-head search once the batch's always-active neurons give ``g`` as a map of ``q``.

In the notation of :mod:`fedleak.attacks.spear_head`, a neuron ``j`` active for every sample
of the batch has ``r_j Q = h_j G`` (``G`` the samples' ``g_i`` as columns), so its row of
``L`` is ``r_j = h_j M`` with one ``k x B`` matrix ``M = G Q^{-1}``. With k or more such
neurons, ``M`` is found from any k of them and confirmed by the others (:func:`always_active_map`,
random k-subsets of candidate rows: a RANSAC). Then ``g_i = M q_i`` for every sample, and each
neuron's constraint on a sample's column is a zero in one of two forms: ``r_j q_i = 0`` when
inactive, ``(r_j - h_j M) q_i = 0`` when active. ``B - 1`` such rows with guessed forms pin
``q_i`` (instead of ``B + k - 1`` in the augmented search), and a candidate is kept when every
live neuron has one of its two forms zero within the noise (:func:`mapped_columns`).

Always-active neurons are common where inputs are alike (photos through an untrained MLP: 10 of
88 live neurons at B = 16); a trained MLP on photos at B = 8 is recovered in 0.1 s this way,
against 2 s without the map.
"""

from __future__ import annotations

import torch

from fedleak.attacks.spear_binary import DRAWS, NOISE_FACTOR, TwoValued
from fedleak.attacks.spear_sampling import null_basis, weighted_draws

_TRIALS = 8192
"""Random k-subsets of rows tried per call of :func:`always_active_map`."""
_CHUNK = 2048
"""k-subsets evaluated together."""


def always_active_map(
    rows: torch.Tensor, head: torch.Tensor, tol: float, among: torch.Tensor, gen: torch.Generator
) -> torch.Tensor | None:
    """``M`` ``(k, B)`` with ``r_j = h_j M`` on at least ``k + 2`` rows, or ``None``.

    Parameters
    ----------
    rows, head : torch.Tensor
        ``L`` ``(M', B)`` and ``H`` ``(M', k)`` on the live neurons.
    tol : float
        Zero tolerance on unit rows of ``L``.
    among : torch.Tensor
        ``(M',)`` boolean: the rows the k-subsets are drawn from (every row, or those active
        for every column found so far).
    gen : torch.Generator
        Draws the subsets.
    """
    k = head.shape[1]
    pool = torch.nonzero(among)[:, 0]
    if pool.numel() < k + 2:
        return None
    best, best_count = None, k + 1
    eye = torch.eye(k, dtype=rows.dtype, device=rows.device)
    for _ in range(_TRIALS // _CHUNK):
        keys = torch.rand(_CHUNK, pool.numel(), generator=gen, device=rows.device)
        picked = pool[keys.topk(k, dim=1).indices]  # (T, k)
        heads = head[picked]
        solvable = torch.linalg.svdvals(heads)[:, -1] > 1e-6 * heads.norm(dim=(1, 2))
        maps = torch.linalg.solve(torch.where(solvable[:, None, None], heads, eye), rows[picked])
        residual = (rows[None] - head[None] @ maps).norm(dim=2)  # (T, M')
        counts = ((residual <= NOISE_FACTOR * tol).sum(dim=1) * solvable).tolist()
        index = max(range(len(counts)), key=counts.__getitem__)
        if counts[index] > best_count:
            best, best_count = maps[index], counts[index]
    if best is None:
        return None
    inliers = (rows - head @ best).norm(dim=1) <= NOISE_FACTOR * tol
    return torch.linalg.lstsq(head[inliers], rows[inliers]).solution


def mapped_columns(
    rows: torch.Tensor,
    active_rows: torch.Tensor,
    tol: float,
    plan: tuple[torch.Tensor, torch.Tensor],
    gen: torch.Generator,
) -> list[TwoValued]:
    """Columns from one batch of draws of ``B - 1`` neurons with guessed forms.

    Parameters
    ----------
    rows, active_rows : torch.Tensor
        ``r_j`` and ``r_j - h_j M`` ``(M', B)``: the zero row of an inactive and of an active
        neuron.
    tol : float
        Zero tolerance on unit rows of ``L``.
    plan : tuple[torch.Tensor, torch.Tensor]
        ``(activity, weight)`` ``(M',)``: each neuron's chance of the active form, and its
        weight in the draw (:func:`fedleak.attacks.spear_head._proposals`).
    gen : torch.Generator
        Draws the neurons and forms.
    """
    activity, weight = plan
    width = rows.shape[1]
    # always-active neurons: their active row is zero and says nothing about a column
    informative = torch.nonzero(active_rows.norm(dim=1) > NOISE_FACTOR * tol)[:, 0]
    if informative.numel() < width - 1:
        return []
    chosen = informative[weighted_draws(weight[informative].expand(DRAWS, -1), width - 1, gen)]
    draw = torch.rand(chosen.shape, generator=gen, device=rows.device, dtype=rows.dtype)
    forms = draw < activity[chosen]
    picked = torch.where(forms[..., None], active_rows[chosen], rows[chosen])
    q = null_basis(picked, 1)[:, :, 0]
    active = (q @ active_rows.T).abs() < (q @ rows.T).abs()
    mask = active.to(rows.dtype)
    # refit on every neuron with the forms the candidate implies: least singular vector
    gram = torch.einsum("pm,mb,mc->pbc", 1 - mask, rows, rows)
    gram += torch.einsum("pm,mb,mc->pbc", mask, active_rows, active_rows)
    q = torch.linalg.eigh(gram).eigenvectors[:, :, 0]
    residual = torch.where(active, (q @ active_rows.T).abs(), (q @ rows.T).abs())
    ok = (residual <= NOISE_FACTOR * tol).all(dim=1) & active.any(dim=1) & q.isfinite().all(1)
    return [TwoValued(column, mask) for column, mask in zip(q[ok], active[ok], strict=True)]
