"""Reproducible randomness on the client: one stream per (seed, round, partition, purpose).

Flower's ``LocalDpMod`` and ``secaggplus_mod`` draw from numpy's global generator; fedleak
seeds it from such a stream for the call and restores it afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np


def client_stream(
    seed: int, server_round: int, partition: int, purpose: str
) -> np.random.Generator:
    """An independent generator for ``purpose`` (e.g. ``"dp"``) of one client in one round."""
    tag = int.from_bytes(purpose.encode()[:8].ljust(8, b"\0"), "little")
    return np.random.default_rng([seed, server_round, partition, tag])


@contextmanager
def numpy_global_seed(seed: int) -> Iterator[None]:
    """Seed numpy's global generator for the block, then put its previous state back."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)
