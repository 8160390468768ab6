"""Which intercepted updates get attacked: rounds, a seeded fraction of clients, node ids."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AttackPolicy:
    """Selection of the updates to attack.

    Parameters
    ----------
    rounds : Sequence[int] | None
        Rounds to attack; ``None`` means every round.
    client_fraction : float
        Fraction of each round's updates, ``ceil(fraction * n)`` drawn without replacement
        from a generator seeded with ``(seed, round)``: the same draw in every run.
    client_ids : Sequence[int] | None
        Only these node ids; ``None`` means any.
    seed : int
        The experiment seed.
    """

    rounds: Sequence[int] | None = None
    client_fraction: float = 1.0
    client_ids: Sequence[int] | None = None
    seed: int = 0

    def select(self, server_round: int, node_ids: Sequence[int]) -> set[int]:
        """The node ids among ``node_ids`` whose updates of ``server_round`` are attacked."""
        if self.rounds is not None and server_round not in self.rounds:
            return set()
        ordered = sorted(node_ids)
        if self.client_fraction < 1.0 and ordered:
            count = max(1, math.ceil(self.client_fraction * len(ordered)))
            rng = np.random.default_rng([self.seed, server_round])
            # draw positions, not ids: Flower's 64-bit node ids do not survive numpy's casts
            picked = rng.choice(len(ordered), size=count, replace=False)
            ordered = sorted(ordered[i] for i in picked)
        if self.client_ids is not None:
            allowed = set(self.client_ids)
            ordered = [n for n in ordered if n in allowed]
        return set(ordered)
