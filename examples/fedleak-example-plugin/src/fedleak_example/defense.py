"""``random_mask``: random sparsification of the update, unbiased.

Each entry of the update is kept with probability ``keep`` and divided by ``keep``, so the
expected update is unchanged (the random mask of Konečný et al., "Federated Learning:
Strategies for Improving Communication Efficiency", arXiv:1610.05492, 2016, used here as a
defense).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def random_mask(keep: float = 0.7) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    """A transform keeping each update entry with probability ``keep`` (rescaled by 1/keep).

    Raises
    ------
    ValueError
        If ``keep`` is not in (0, 1].
    """
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1], got {keep}")

    def transform(delta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        mask = rng.random(delta.shape) < keep
        return (delta * mask / keep).astype(delta.dtype)

    return transform
