"""SPEAR: exact recovery of a whole batch through a first Linear + ReLU layer (seed 002).

Notation of seed 002 (columns are samples): the layer computes ``Z = W X + b`` with ``X``
(N x B), ``W`` (M x N), and ``Y = ReLU(Z)``. Its gradients are

    dL/dW = dL/dZ . X^T      (M x N, a product of M x B and B x N: rank B < min(N, M))
    dL/db = dL/dZ . 1        (M,)

and ``dL/dZ = dL/dY * 1[Z > 0]`` is sparse: entry ``(j, i)`` is zero whenever neuron ``j`` is
inactive for sample ``i``. Treating the bias as the weight of a constant input,
``A = [dL/dW | dL/db] = dL/dZ . [X^T | 1]`` (M x (N+1)) still has rank B.

Derivation. Take the rank-B SVD ``A = U_B S_B V_B^T`` and split it as ``A = L R`` with
``L = U_B`` (M x B, orthonormal columns) and ``R = S_B V_B^T`` (B x (N+1)). ``dL/dZ`` and
``L`` span the same column space, so ``dL/dZ = L Q`` for one invertible B x B matrix ``Q``
(unique under seed 002's mild conditions). Then ``L Q [X^T | 1] = L R`` and, ``L`` having
full column rank, ``Q [X^T | 1] = R``: ``[X^T | 1] = Q^{-1} R``, the slides' ``X^T = Q^{-1} R``
(in PyTorch's row-per-sample layout, ``[X | 1]`` has the rows of ``Q^{-1} R``).

Finding Q (:mod:`attacks.spear_search`). Column ``q_i`` makes ``L q_i`` the column of ``dL/dZ``
for sample ``i``, zero on its inactive neurons. If B - 1 sampled rows of ``L`` are all
inactive for sample ``i`` (probability ~ 2^-(B-1) for uniform rows), the null space of that
(B-1) x B submatrix is spanned by ``q_i`` (seed 002's theorem). Candidates whose ``L q`` has
at least ``sparsity_threshold`` of the live neurons exactly zero are refined, checked and
deduplicated, until B independent directions are found.

Scale. Each direction is found up to a factor: ``Q = Q' diag(c)``. Then ``Q^{-1} R =
diag(1/c) Q'^{-1} R``, whose last column must be all ones, so ``c`` is the last column of
``Q'^{-1} R`` (the slides' "the gradient of the bias recovers the scale").

Beyond the slides, to keep B = 20 tractable on a CPU (inactive fractions near 0.4 on digits
make uniform sampling need ~1e7 submatrices): rows are drawn with weights learnt from the
columns already found, guided reweighted least-squares proposals complement the random
submatrices, and the last one or two columns come from the known ones and ``R`` directly
(the unknown inputs lie in a known one- or two-dimensional family, and their ReLU
patterns ``W x + b <= 0`` give their zero rows). ``guided_starts=0`` leaves seed 002's
random submatrices alone to find all but the last two columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from attacks.base import Attack, AttackConfig
from attacks.labels import infer_labels
from attacks.losses import effective_batch_size
from attacks.registry import register_attack
from attacks.spear_search import DualData, spear_search
from attacks.types import InterceptedUpdate, Reconstruction

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
class SpearConfig(AttackConfig):
    """Settings of :class:`SpearAttack`.

    Attributes
    ----------
    max_samples : int
        Most (B-1)-row submatrices of ``L`` to try before giving up.
    batch_chunk : int
        Submatrices per device batch (at least 16: they come in groups sharing a base).
    sparsity_threshold : float
        Minimum fraction of the live neurons (those active for some sample) at which a
        candidate column of ``dL/dZ`` must be exactly zero (seed 002's sparsity filter);
        ReLU makes it ~0.3-0.5 for a genuine column.
    guided_starts : int
        Reweighted least-squares proposals per guided round; 0 keeps to random submatrices.

    The search is seeded by ``reconstruct``'s ``seed`` (random rows, guided starts).
    """

    max_samples: int = 4_000_000
    batch_chunk: int = 8192
    sparsity_threshold: float = 0.2
    guided_starts: int = 256

    def __post_init__(self) -> None:
        if self.max_samples < 1 or self.batch_chunk < 16:
            raise ValueError(
                "max_samples must be >= 1 and batch_chunk >= 16, got "
                f"max_samples={self.max_samples}, batch_chunk={self.batch_chunk}"
            )
        if not 0.0 < self.sparsity_threshold < 1.0:
            raise ValueError(f"sparsity_threshold must be in (0, 1), got {self.sparsity_threshold}")
        if self.guided_starts < 0:
            raise ValueError(f"guided_starts must be >= 0, got {self.guided_starts}")


def relu_input_layer(model: nn.Module, input_numel: int) -> tuple[str, nn.Linear] | str:
    """The model's first layer if it is ``nn.Linear`` (with bias) on the input, then ReLU.

    Returns the layer's name and module, or the reason it does not qualify. Layers are
    taken in ``named_modules()`` order, the forward order of ``nn.Sequential`` models.
    """
    leaves = [(n, m) for n, m in model.named_modules() if next(m.children(), None) is None]
    for index, (name, module) in enumerate(leaves):
        if next(module.parameters(recurse=False), None) is None:
            continue
        if not isinstance(module, nn.Linear) or module.bias is None:
            what = (
                "nn.Linear without bias" if isinstance(module, nn.Linear) else type(module).__name__
            )
            return (
                f"the model's first parametrised layer {name!r} is a {what}: SPEAR needs an "
                "nn.Linear with bias on the input"
            )
        if module.in_features != input_numel:
            return (
                f"layer {name!r} has in_features={module.in_features}, not the "
                f"{input_numel}-dimensional input: it would recover features, not the data"
            )
        follower = leaves[index + 1][1] if index + 1 < len(leaves) else None
        if not isinstance(follower, nn.ReLU):
            return (
                f"layer {name!r} is followed by {type(follower).__name__}, not ReLU: SPEAR needs "
                "the zeros ReLU puts in dL/dZ"
            )
        return name, module
    return "the model has no parametrised layer"


def _prefixed(prefix: str, leaf: str) -> str:
    return f"{prefix}.{leaf}" if prefix else leaf


class SpearAttack(Attack):
    """SPEAR (Dimitrov et al., NeurIPS 2024; seed 002): exact batch recovery, no optimisation.

    Applies to a single gradient (FedSGD, or FedAvg with one local step) of a model whose
    first layer is ``nn.Linear`` with bias on the flattened input, followed by ReLU, with
    batch size B < min(N, M). Samples come back in no particular order.

    ``details``: ``gradient_residual``, the relative error of ``[dL/dW | dL/db]`` rebuilt
    from the recovered ``dL/dZ`` (zeroed where the recovered inputs leave a neuron
    inactive) and ``[X | 1]``; ``reproduces``, 1 when that residual is within
    :data:`_REPRODUCE_FACTOR` times the gradient's part beyond rank B (or 1e-6);
    ``candidates_sampled``, the random submatrices tried; ``candidates_kept``, the
    candidates that passed the sparsity filter. ``confidence`` is, per sample, the fraction
    of live neurons where the recovered ``dL/dZ`` is zero exactly where the recovered input
    leaves the neuron inactive.
    """

    name = "spear"
    config_class = SpearConfig

    def not_applicable_reason(self, model: nn.Module, update: InterceptedUpdate) -> str | None:
        """Return why SPEAR's low-rank-and-sparse structure is missing, or ``None``."""
        hp = update.hyperparams
        if hp.mode != "fedsgd" and hp.local_steps > 1:
            return (
                f"{hp.mode} with {hp.local_steps} local steps: the update is a sum of gradients "
                "at different weights, not the single low-rank gradient SPEAR inverts"
            )
        found = relu_input_layer(model, math.prod(update.input_shape))
        if isinstance(found, str):
            return found
        name, layer = found
        batch = effective_batch_size(update)
        if batch >= min(layer.in_features, layer.out_features):
            return (
                f"batch size {batch} >= min(N, M) = min({layer.in_features}, "
                f"{layer.out_features}) of layer {name!r}: dL/dW is not low-rank (seed 002 "
                "needs B < min(N, M))"
            )
        return None

    def reconstruct(
        self,
        model: nn.Module,
        update: InterceptedUpdate,
        *,
        device: torch.device,
        seed: int,
    ) -> Reconstruction:
        """Recover the batch as ``[X | 1] = Q^{-1} R`` (module docstring).

        Raises
        ------
        ValueError
            If the layer does not qualify, the gradient's rank is below B, or fewer than B
            directions were found within ``max_samples`` submatrices.
        """
        assert isinstance(self.config, SpearConfig)
        found = relu_input_layer(model, math.prod(update.input_shape))
        if isinstance(found, str):
            raise ValueError(found)
        name, layer = found
        batch = effective_batch_size(update)
        f64 = torch.float64
        pseudo = update.pseudo_gradient()
        grad = torch.cat(
            [pseudo[_prefixed(name, "weight")], pseudo[_prefixed(name, "bias")][:, None]], dim=1
        ).to(device=device, dtype=f64)
        weight = layer.weight.detach().to(device=device, dtype=f64)
        bias = layer.bias.detach().to(device=device, dtype=f64)

        left, sing, right_t = torch.linalg.svd(grad, full_matrices=False)
        if float(sing[batch - 1]) <= 1e-12 * float(sing[0]):
            raise ValueError(f"[dL/dW | dL/db] of layer {name!r} has rank < B = {batch}")
        basis, right = left[:, :batch], sing[:batch, None] * right_t[:batch]
        # The gradient's noise perturbs every row of U_B alike, whatever its norm: zeros are
        # judged on unnormalised rows against an absolute tolerance.
        nonzero = grad.abs().amax(dim=1) > 0
        size = int(nonzero.sum())
        noise = float(sing[batch] / sing[batch - 1]) if batch < sing.numel() else 0.0
        tol = max(_TOL_FLOOR * math.sqrt(batch / size), _NOISE_FACTOR * noise / math.sqrt(size))
        live = nonzero & (basis.norm(dim=1) > _LIVE_FACTOR * tol)
        rows = basis[live]

        config = self.config
        state = spear_search(
            rows,
            DualData(right, weight[live], bias[live]),
            tol=tol,
            min_zeros=max(batch + 1, math.ceil(config.sparsity_threshold * rows.shape[0])),
            max_samples=config.max_samples,
            batch_chunk=config.batch_chunk,
            guided_starts=config.guided_starts,
            gen=torch.Generator(device=device).manual_seed(seed),
        )
        if len(state.q) < batch:
            raise ValueError(
                f"found {len(state.q)} of {batch} columns of Q after {state.sampled} "
                "submatrices; raise max_samples or lower sparsity_threshold"
            )
        # polish each direction by an SVD of its zero rows (the search used Gram matrices)
        directions = torch.stack(
            [torch.linalg.svd(rows[z], full_matrices=False)[2][-1] for z in state.zeros] or state.q,
            dim=1,
        )
        factors = torch.linalg.solve(directions, right)  # Q'^{-1} R = diag(c) [X | 1]
        scale = factors[:, -1]
        inputs = factors[:, :-1] / scale[:, None]
        dz = basis @ directions * scale  # dL/dZ, M x B

        # Does the batch reproduce A? dL/dZ must vanish where the recovered inputs leave a
        # neuron inactive: mask it with their ReLU pattern before rebuilding A.
        active = (inputs @ weight.T + bias).T > 0
        ones = torch.ones(batch, 1, dtype=f64, device=device)
        rebuilt = (dz * active) @ torch.cat([inputs, ones], dim=1)
        residual = float((rebuilt - grad).norm() / grad.norm())
        beyond_rank = float(sing[batch:].norm() / sing.norm())
        zero = (basis @ directions).abs() <= tol
        agreement = (zero != active)[live].to(f64).mean(dim=0)

        if update.disclosed_labels is not None:
            labels = np.asarray(update.disclosed_labels, dtype=np.int64)
        else:
            labels = infer_labels(model, update)
        dtype = update.global_params[_prefixed(name, "weight")].dtype
        return Reconstruction(
            inputs=inputs.reshape(batch, *update.input_shape).cpu().numpy().astype(dtype),
            labels=labels,
            confidence=agreement.cpu().numpy(),
            iterations=0,
            details={
                "layer": name,
                "gradient_residual": residual,
                "reproduces": int(residual <= max(1e-6, _REPRODUCE_FACTOR * beyond_rank)),
                "candidates_sampled": state.sampled,
                "candidates_kept": state.kept,
            },
        )


register_attack("spear", SpearAttack)
