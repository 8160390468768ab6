"""Orders in which a restart assigns a known label multiset to the unknown samples.

On a FedAvg update of several local steps, the labels say which classes the client held but not
which step used which sample; each restart of an optimisation attack tries one assignment.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np


def _next_permutation(values: list[int]) -> bool:
    """Advance ``values`` in place to its next lexicographic order; ``False`` after the last."""
    pivot = len(values) - 2
    while pivot >= 0 and values[pivot] >= values[pivot + 1]:
        pivot -= 1
    if pivot < 0:
        return False
    swap = len(values) - 1
    while values[swap] <= values[pivot]:
        swap -= 1
    values[pivot], values[swap] = values[swap], values[pivot]
    values[pivot + 1 :] = reversed(values[pivot + 1 :])
    return True


def label_orders(labels: np.ndarray, count: int, seed: int) -> list[np.ndarray]:
    """``count`` assignments of the label multiset ``labels`` to the unknowns' slots.

    The first is ``labels`` sorted. When the multiset has at most ``count`` distinct orders,
    all of them come in lexicographic order and then repeat; otherwise the rest are random
    permutations drawn with ``seed``.
    """
    ordered = sorted(int(v) for v in labels)
    distinct = math.factorial(len(ordered))
    for multiplicity in Counter(ordered).values():
        distinct //= math.factorial(multiplicity)
    if distinct <= count:
        orders = [np.array(ordered, dtype=np.int64)]
        current = list(ordered)
        while _next_permutation(current):
            orders.append(np.array(current, dtype=np.int64))
        return [orders[i % len(orders)] for i in range(count)]
    rng = np.random.default_rng(seed)
    first = np.array(ordered, dtype=np.int64)
    return [first] + [rng.permutation(first) for _ in range(count - 1)]
