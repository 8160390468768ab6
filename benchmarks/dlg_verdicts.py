"""The DLG / iDLG study's conclusions, each checked on the runs of a sweep.

Every comparison is paired: a group's mean is taken only over the runs whose other factors
(model, init family and distribution, activation, batch size, pruning, seed) also occur in
every other group of that comparison. A subset run in parts (a full grid plus a pruning slice
at one batch size, a few ResNet-18 runs beside a CNN grid) is therefore compared like with
like, and the number of runs each verdict rests on is printed with it.

A verdict is "holds", "does not hold here" (the study's claim did not replicate on these runs:
a finding, not an error) or "not measured" (the runs lack the factor).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

HOLDS, FAILS, UNMEASURED = "holds", "does not hold here", "not measured"
FACTORS = ("model", "family", "dist", "activation", "batch", "prune", "seed")


@dataclass(frozen=True)
class Run:
    """One finished combination: its factors and the attack's mean PSNR over the batch."""

    model: str
    init: str
    activation: str
    batch: int
    prune: str
    seed: int
    psnr: float

    def factor(self, name: str) -> str | int:
        """A factor by name; ``family`` and ``dist`` split ``init`` (``xavier``, ``uniform``)."""
        if name in ("family", "dist"):
            family, _, dist = self.init.partition("_")
            return family if name == "family" else dist
        value: str | int = getattr(self, name)
        return value


Verdict = tuple[str, str, str]
"""(claim, HOLDS | FAILS | UNMEASURED, the numbers behind it)."""


def paired_means(
    runs: Iterable[Run], group_of: Callable[[Run], str | None], groups: list[str], varied: set[str]
) -> tuple[list[float], int]:
    """Mean PSNR per group over the cells (other factors) that every group has.

    Parameters
    ----------
    runs : iterable of Run
        The runs to compare; those ``group_of`` maps to ``None`` or to no listed group are left out.
    group_of : callable
        The group a run belongs to.
    groups : list of str
        The groups, in the order of the returned means.
    varied : set of str
        The factors (names in ``FACTORS``) that define the groups; the others make a cell.

    Returns
    -------
    (means, cells) : the groups' means (NaN for all when no cell is shared) and the number of
        shared cells.
    """
    rest = [f for f in FACTORS if f not in varied]
    cells: dict[str, dict[tuple[str | int, ...], list[float]]] = {
        g: defaultdict(list) for g in groups
    }
    for run in runs:
        group = group_of(run)
        if group in cells and not math.isnan(run.psnr):
            cells[group][tuple(run.factor(f) for f in rest)].append(run.psnr)
    common = set.intersection(*(set(c) for c in cells.values())) if groups else set()
    if not common:
        return [math.nan] * len(groups), 0
    means = [float(np.mean([v for cell in common for v in cells[g][cell]])) for g in groups]
    return means, len(common)


def _verdict(claim: str, holds: bool, detail: str) -> Verdict:
    return claim, HOLDS if holds else FAILS, detail


def batch_verdict(runs: list[Run]) -> Verdict:
    """PSNR falls as B rises: at each step to the next batch size measured, paired over the
    runs that have both sizes (a slice may stop at a smaller largest B)."""
    claim = "PSNR falls as the batch size rises"
    sizes = sorted({r.batch for r in runs})
    steps = []
    for small, large in itertools.pairwise(sizes):
        (a, b), cells = paired_means(
            runs, lambda r: str(r.batch), [str(small), str(large)], {"batch"}
        )
        if cells:
            steps.append((small, large, a, b, cells))
    if not steps:
        return claim, UNMEASURED, "needs two batch sizes over the same other factors"
    detail = "; ".join(f"B={s}: {a:.1f} -> B={t}: {b:.1f} ({n} pairs)" for s, t, a, b, n in steps)
    return _verdict(claim, all(a > b for _, _, a, b, _ in steps), detail)


def order_verdict(runs: list[Run]) -> Verdict:
    """Xavier-ReLU < Kaiming-ReLU < Kaiming-Sigmoid < Xavier-Sigmoid (McMahan CNN)."""
    claim = "Xavier-ReLU < Kaiming-ReLU < Kaiming-Sigmoid < Xavier-Sigmoid (CNN)"
    order = ["xavier-relu", "kaiming-relu", "kaiming-sigmoid", "xavier-sigmoid"]
    cnn = [r for r in runs if r.model == "cnn"]
    means, cells = paired_means(
        cnn, lambda r: f"{r.factor('family')}-{r.activation}", order, {"family", "activation"}
    )
    if cells == 0:
        return claim, UNMEASURED, "needs cnn runs of both init families and both activations"
    detail = " | ".join(f"{g}: {m:.1f}" for g, m in zip(order, means, strict=True))
    ordered = all(a < b for a, b in itertools.pairwise(means))
    return _verdict(claim, ordered, f"{detail} ({cells} runs each)")


def activation_verdict(runs: list[Run]) -> Verdict:
    """ReLU leaks less than Sigmoid (the study: ``max()`` loses information)."""
    claim = "ReLU below Sigmoid"
    (relu, sigmoid), cells = paired_means(
        runs, lambda r: r.activation, ["relu", "sigmoid"], {"activation"}
    )
    if cells == 0:
        return claim, UNMEASURED, "needs both activations over the same other factors"
    return _verdict(
        claim, relu < sigmoid, f"ReLU {relu:.1f} vs Sigmoid {sigmoid:.1f} ({cells} runs each)"
    )


def architecture_verdict(runs: list[Run]) -> Verdict:
    """McMahan CNN below ResNet-18 (the study: with Xavier initialisation, ReLU)."""
    claim = "McMahan CNN below ResNet-18 (Xavier, ReLU)"
    xavier_relu = [r for r in runs if r.factor("family") == "xavier" and r.activation == "relu"]
    (cnn, resnet), cells = paired_means(
        xavier_relu, lambda r: r.model, ["cnn", "resnet18"], {"model"}
    )
    if cells == 0:
        return claim, UNMEASURED, "needs cnn and resnet18 runs with Xavier init and ReLU"
    return _verdict(
        claim, cnn < resnet, f"CNN {cnn:.1f} vs ResNet-18 {resnet:.1f} ({cells} runs each)"
    )


def pruning_verdict(runs: list[Run]) -> Verdict:
    """The study: pruning has little effect with Kaiming init, a big one with Xavier."""
    claim = "pruning costs Xavier more PSNR than Kaiming"
    drop, counts = {}, {}
    for family in ("xavier", "kaiming"):
        of_family = [r for r in runs if r.factor("family") == family]
        (kept, pruned), counts[family] = paired_means(
            of_family,
            lambda r: "none" if r.prune == "none" else "pruned",
            ["none", "pruned"],
            {"prune"},
        )
        drop[family] = kept - pruned
    if not all(counts.values()):
        return claim, UNMEASURED, "needs pruned and unpruned runs of both init families"
    detail = (
        f"drop Xavier {drop['xavier']:.1f} dB, Kaiming {drop['kaiming']:.1f} dB "
        f"({counts['xavier']} + {counts['kaiming']} pairs)"
    )
    return _verdict(claim, drop["xavier"] > drop["kaiming"], detail)


def distribution_verdict(runs: list[Run]) -> Verdict:
    """The study: no big variation of PSNR between uniform and normal initialisation."""
    claim = "uniform vs normal init: within 3 dB"
    (uniform, normal), cells = paired_means(
        runs, lambda r: str(r.factor("dist")), ["uniform", "normal"], {"dist"}
    )
    if cells == 0:
        return claim, UNMEASURED, "needs uniform and normal inits over the same other factors"
    detail = f"uniform {uniform:.1f} vs normal {normal:.1f} ({cells} runs each)"
    return _verdict(claim, abs(uniform - normal) <= 3.0, detail)


def study_verdicts(runs: list[Run]) -> list[Verdict]:
    """Every sweep-measured conclusion of the study, in the order the study states them."""
    checks = (
        batch_verdict,
        order_verdict,
        activation_verdict,
        architecture_verdict,
        pruning_verdict,
        distribution_verdict,
    )
    return [check(runs) for check in checks]
