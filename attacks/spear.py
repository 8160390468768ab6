"""SPEAR: exact recovery of a whole batch through a first Linear + ReLU layer.

Dimitrov, Baader, Müller and Vechev, "SPEAR: Exact Gradient Inversion of Batches in Federated
Learning", NeurIPS 2024 (arXiv 2403.03945). Their notation (columns are samples): the layer
computes ``Z = W X + b`` with ``X`` (N x B), ``W`` (M x N), and ``Y = ReLU(Z)``. Its
gradients are

    dL/dW = dL/dZ . X^T      (M x N, a product of M x B and B x N: rank B < min(N, M))
    dL/db = dL/dZ . 1        (M,)

and ``dL/dZ = dL/dY * 1[Z > 0]`` is sparse: entry ``(j, i)`` is zero whenever neuron ``j`` is
inactive for sample ``i``. Treating the bias as the weight of a constant input,
``A = [dL/dW | dL/db] = dL/dZ . [X^T | 1]`` (M x (N+1)) still has rank B.

Derivation. Take the rank-B SVD ``A = U_B S_B V_B^T`` and split it as ``A = L R`` with
``L = U_B`` (M x B, orthonormal columns) and ``R = S_B V_B^T`` (B x (N+1)). ``dL/dZ`` and
``L`` span the same column space, so ``dL/dZ = L Q`` for one invertible B x B matrix ``Q``
(unique under the paper's mild conditions). Then ``L Q [X^T | 1] = L R`` and, ``L`` having
full column rank, ``Q [X^T | 1] = R``: ``[X^T | 1] = Q^{-1} R``, the paper's
``X^T = Q^{-1} R`` (in PyTorch's row-per-sample layout, ``[X | 1]`` has the rows of
``Q^{-1} R``).

Finding Q (:mod:`fedleak.attacks.spear_search`). Column ``q_i`` makes ``L q_i`` the column of
``dL/dZ`` for sample ``i``, zero on its inactive neurons. If B - 1 sampled rows of ``L`` are all
inactive for sample ``i`` (probability ~ 2^-(B-1) for uniform rows), the null space of that
(B-1) x B submatrix is spanned by ``q_i`` (the paper's theorem). Candidates whose ``L q`` has
at least B + 1 (and ``sparsity_threshold`` of the live) neurons exactly zero are refined,
checked and deduplicated, until B independent directions are found or ``time_budget_s``
has passed.

Scale. Each direction is found up to a factor: ``Q = Q' diag(c)``. Then ``Q^{-1} R =
diag(1/c) Q'^{-1} R``, whose last column must be all ones, so ``c`` is the last column of
``Q'^{-1} R`` ("the gradient of the bias recovers the scale").

Beyond the paper (``2^-(B-1)`` makes B = 32 cost minutes and B = 50 out of reach): when the
ReLU feeds an ``nn.Linear``, that layer's weight gradient spans the batch's activations, and
inputs whose activations lie in that span are found by a cheap alternating iteration from
random starts (:mod:`fedleak.attacks.spear_dual`); their ReLU patterns are zero sets of columns.
B = 50 on the 6-layer fcnn then takes seconds. Otherwise rows are drawn with weights learnt
from the columns already found, guided reweighted least-squares proposals complement the
random submatrices, and in every case the last one or two columns come from the known ones
and ``R`` directly (the unknown inputs lie in a known one- or two-dimensional family, and
their ReLU patterns ``W x + b <= 0`` give their zero rows). ``guided_starts=0`` and
``input_starts=0`` leave the paper's random submatrices alone to find all but the last two.

When the columns cannot all be found, the failure names the assumption that broke
(:func:`fedleak.attacks.spear_search.failure_reason`): a gradient too noisy for exact zeros, samples
that leave fewer than B + 1 live neurons inactive, or just the time budget. A sample whose
inactive neurons are a subset of another's breaks the uniqueness of ``Q``: the recovered
batch says so (:class:`fedleak.attacks.spear_solve.BatchCheck`).

Labels come from the recovered inputs (:func:`fedleak.attacks.input_labels.labels_from_inputs`):
the labels under which the batch reproduces the last layer's gradient.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from fedleak.attacks.base import Attack, AttackConfig
from fedleak.attacks.input_labels import labels_from_inputs
from fedleak.attacks.losses import effective_batch_size
from fedleak.attacks.registry import register_attack
from fedleak.attacks.spear_dual import ActivationSpace, activation_space
from fedleak.attacks.spear_head import head_search_batch
from fedleak.attacks.spear_layers import (
    following_linear,
    head_rank_note,
    parameter_name,
    relu_input_layer,
    wrong_batch_cause,
)
from fedleak.attacks.spear_search import SearchBudget, SearchFacts, failure_reason, spear_search
from fedleak.attacks.spear_solve import (
    BatchCheck,
    LayerFactors,
    check_batch,
    factorise,
    from_columns,
)
from fedleak.attacks.spear_state import DualData, SearchState
from fedleak.attacks.types import InterceptedUpdate, Reconstruction

_HOPELESS = 5e-2
"""``s_(B+1) / s_B`` beyond which the search is not started: measured on float32 fcnn
updates, B = 40 at 1.8e-2 still comes out (53 dB), B = 50 at 1.4e-2 no longer does, and
local DP noise puts the ratio near 1."""


@dataclass(frozen=True)
class SpearConfig(AttackConfig):
    """Settings of :class:`SpearAttack`.

    Attributes
    ----------
    time_budget_s : float
        Seconds the column search may take before giving up (it finishes the batch it is
        on). A search that succeeds is over long before: B=50 on the 6-layer fcnn takes
        seconds with the input-side search (``benchmarks/spear.py``).
    batch_chunk : int
        Random submatrices per device batch (at least 16: they come in groups sharing a base).
    sparsity_threshold : float
        Minimum fraction of the live neurons (those active for some sample) at which a
        candidate column of ``dL/dZ`` must be exactly zero (the paper's sparsity filter), on
        top of the B + 1 zero rows a column needs to be checked at all. 0 keeps only that
        minimum: a randomly initialised network leaves ~0.3-0.5 of the live neurons inactive
        per sample, but a trained one as few as 0.13 (the mlp on digits after 12 rounds at
        lr 0.5), which a threshold calibrated on random networks rejects.
    guided_starts : int
        Reweighted least-squares proposals per guided round; 0 keeps to random submatrices.
    input_starts : int
        Random starts per round of the input-side search (``fedleak.attacks.spear_dual``), used when
        the layer after the ReLU is ``nn.Linear``; 0 switches it off.
    head_search : bool
        First search through the next layer when its gradient has rank below B (a binary head,
        for up to a quarter of the budget, or any k < B outputs, for up to three quarters:
        :mod:`fedleak.attacks.spear_head`). ``False`` goes straight to the sparse search.

    The search is seeded by ``reconstruct``'s ``seed`` (random rows, guided and input starts).
    """

    time_budget_s: float = 30.0
    batch_chunk: int = 8192
    sparsity_threshold: float = 0.0
    guided_starts: int = 256
    input_starts: int = 256
    head_search: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.time_budget_s > 0 or self.batch_chunk < 16:
            raise ValueError(
                "time_budget_s must be > 0 and batch_chunk >= 16, got "
                f"time_budget_s={self.time_budget_s}, batch_chunk={self.batch_chunk}"
            )
        if not 0.0 <= self.sparsity_threshold < 1.0:
            raise ValueError(f"sparsity_threshold must be in [0, 1), got {self.sparsity_threshold}")
        if self.guided_starts < 0 or self.input_starts < 0:
            raise ValueError(
                "guided_starts and input_starts must be >= 0, got "
                f"guided_starts={self.guided_starts}, input_starts={self.input_starts}"
            )


def _space_for(
    model: nn.Module, update: InterceptedUpdate, layer: nn.Linear, factors: LayerFactors
) -> ActivationSpace | str:
    """The input-side view of the layer, or why the next layer cannot provide one."""
    found = following_linear(model, layer)
    if found is None:
        return "the ReLU does not feed an nn.Linear"
    grad = update.pseudo_gradient()[parameter_name(found[0], "weight")]
    dtype, device = factors.grad.dtype, factors.grad.device
    return activation_space(
        (layer.weight.detach().to(device, dtype), layer.bias.detach().to(device, dtype)),
        (factors.sing[: factors.basis.shape[1]], factors.unit_right),
        grad.to(device, dtype),
        factors.live,
    )


class SpearAttack(Attack):
    """SPEAR (Dimitrov et al., NeurIPS 2024): exact batch recovery, no optimisation.

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
                f"{layer.out_features}) of layer {name!r}: dL/dW is not low-rank "
                "(Dimitrov et al. 2024 need B < min(N, M))"
            )
        return None

    def architecture_reason(
        self, model: nn.Module, input_shape: tuple[int, ...], num_classes: int
    ) -> str | None:
        """Return why the model has no Linear + ReLU layer on its input, or ``None``."""
        found = relu_input_layer(model, math.prod(input_shape))
        return found if isinstance(found, str) else None

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
            directions were found within ``time_budget_s`` (the message says why).
        """
        config = self.config
        assert isinstance(config, SpearConfig)
        start = time.monotonic()
        found = relu_input_layer(model, math.prod(update.input_shape))
        if isinstance(found, str):
            raise ValueError(found)
        name, layer = found
        batch = effective_batch_size(update)
        pseudo = update.pseudo_gradient()
        grad = torch.cat(
            [pseudo[parameter_name(name, "weight")], pseudo[parameter_name(name, "bias")][:, None]],
            dim=1,
        ).to(device=device, dtype=torch.float64)
        factors = factorise(grad, batch, name)
        size = int(factors.live.sum())
        min_zeros = max(batch + 1, math.ceil(config.sparsity_threshold * size))
        weakest = float(factors.sing[batch - 1] / factors.sing[0])
        facts = SearchFacts(
            batch,
            factors.basis.shape[0],
            size,
            factors.noise,
            min_zeros,
            weakest,
            head_rank_note(model, layer, update, batch),
        )
        if factors.noise > _HOPELESS:  # no exact zeros to find: do not spend the budget
            raise ValueError(failure_reason(SearchState(), facts, 0.0, None))
        full = DualData(
            factors.right,
            layer.weight.detach().to(device=device, dtype=torch.float64),
            layer.bias.detach().to(device=device, dtype=torch.float64),
            factors.grad,
        )
        state, facts = self._head_search(model, update, (layer, full), factors, (facts, seed))
        if state is None:
            state = self._search(model, update, (layer, full), factors, facts, (seed, start))
        if len(state.q) < batch and state.assembled is None:
            space = _space_for(model, update, layer, factors)
            why_not = space if isinstance(space, str) and config.input_starts else None
            raise ValueError(failure_reason(state, facts, time.monotonic() - start, why_not))
        stacked = state.assembled
        if stacked is None:
            stacked = from_columns(factors.basis[factors.live], state, factors.right)
        check = check_batch(factors, stacked, full)
        details: dict[str, float | int | str] = {}
        if not check.reproduces and state.assembled is None:  # B columns, some of them wrong
            details = {"cause": wrong_batch_cause(model, layer, update, batch)}
        return self._result(model, update, stacked[:, :-1], check, factors, state, details)

    def _head_search(
        self,
        model: nn.Module,
        update: InterceptedUpdate,
        layer: tuple[nn.Linear, DualData],
        factors: LayerFactors,
        facts_seed: tuple[SearchFacts, int],
    ) -> tuple[SearchState | None, SearchFacts]:
        """:func:`fedleak.attacks.spear_head.head_search_batch` within its share of the budget.

        Returns the state holding the assembled batch (None where ``head_search`` is off, the
        search does not apply or found no batch), and the failure facts, which name the
        candidates when they were too many to be unique.
        """
        config = self.config
        assert isinstance(config, SpearConfig)
        facts, seed = facts_seed
        if not config.head_search:
            return None, facts
        gen = torch.Generator(device=factors.grad.device).manual_seed(seed)
        budget = (config.scaled(config.time_budget_s), gen)
        head = head_search_batch(model, update, layer, factors, budget)
        if head is not None and head.stacked is not None:
            return SearchState(kept=head.candidates, assembled=head.stacked), facts
        if head is not None and head.not_unique:
            return None, replace(facts, alike_columns=head.candidates)
        return None, facts

    def _search(
        self,
        model: nn.Module,
        update: InterceptedUpdate,
        layer: tuple[nn.Linear, DualData],
        factors: LayerFactors,
        facts: SearchFacts,
        seed_start: tuple[int, float],
    ) -> SearchState:
        """Run :func:`fedleak.attacks.spear_search.spear_search` until the time budget, counted
        from the attack's start (``seed_start``: the seed and that start), is spent; nothing
        when the head search found the batch not unique (``facts.alike_columns``)."""
        if facts.alike_columns:  # the head search found the batch not unique: no search can
            return SearchState()  # separate samples that share a ReLU pattern
        seed, start = seed_start
        config = self.config
        assert isinstance(config, SpearConfig)
        module, full = layer
        space = _space_for(model, update, module, factors) if config.input_starts else None
        live = factors.live
        after = following_linear(model, module)
        budget = SearchBudget(
            start + config.scaled(config.time_budget_s),
            config.batch_chunk,
            config.guided_starts,
            config.input_starts,
        )
        return spear_search(
            factors.basis[live],
            full.on_rows(live),
            space if isinstance(space, ActivationSpace) else None,
            tol=factors.tol,
            min_zeros=facts.min_zeros,
            budget=budget,
            gen=torch.Generator(device=factors.grad.device).manual_seed(seed),
            head=None if after is None else after[1].weight.detach().T[live].to(full.grad),
        )

    def _result(
        self,
        model: nn.Module,
        update: InterceptedUpdate,
        inputs: torch.Tensor,
        check: BatchCheck,
        factors: LayerFactors,
        state: SearchState,
        details: dict[str, float | int | str],
    ) -> Reconstruction:
        """Labels (disclosed, else derived from the inputs) and the recorded details.

        A sample the first layer leaves undetermined gets confidence 0 unless the next
        layer's activations fixed it (``state.assembled``).
        """
        batch = inputs.shape[0]
        dtype = next(model.parameters()).dtype
        shaped = inputs.reshape(batch, *update.input_shape)
        if update.disclosed_labels is not None:
            labels = np.asarray(update.disclosed_labels, dtype=np.int64)
        else:
            labels, _, details["label_residual"] = labels_from_inputs(
                model, update, shaped.to(dtype)
            )
        confidence = check.agreement
        if state.assembled is None:
            confidence = torch.where(check.undetermined, 0.0, confidence)
        out_dtype = update.global_params[parameter_name(factors.layer, "weight")].dtype
        return Reconstruction(
            inputs=shaped.cpu().numpy().astype(out_dtype),
            labels=labels,
            confidence=confidence.cpu().numpy(),
            iterations=0,
            details={
                "layer": factors.layer,
                "gradient_residual": check.residual,
                "reproduces": int(check.reproduces),
                "undetermined": int(check.undetermined.sum()),
                "assembled": int(state.assembled is not None),
                "candidates_sampled": state.sampled,
                "candidates_kept": state.kept,
                "input_starts": state.input_starts,
                "mixed_columns": sum(state.mixture),
                **details,
            },
        )


register_attack(SpearAttack)
