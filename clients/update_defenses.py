"""Transformations of a client's update ``delta = client - global`` before it leaves the client.

Pure numpy functions, one per defense; :mod:`fedleak.clients.defense_mods` applies them to the
reply message as Flower mods. Each is seeded by the caller, so a run is reproducible.
"""

from __future__ import annotations

import numpy as np


def prune_smallest(delta: np.ndarray, fraction: float) -> np.ndarray:
    """Top-k sparsification: zero the ``fraction`` of entries of smallest magnitude.

    Gradient pruning as in DLG's defense section (Zhu et al. 2019, "defenses: pruning"): per tensor,
    the ``ceil(fraction * n)`` entries with the smallest ``|delta|`` become 0 and the rest
    (the top ``k = n - ceil(fraction * n)``) are kept exactly. Ties are broken by position,
    so exactly that many entries are zeroed.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    flat = delta.reshape(-1)
    drop = int(np.ceil(fraction * flat.size))
    if drop == 0:
        return delta.copy()
    out = flat.copy()
    order = np.argsort(np.abs(flat), kind="stable")
    out[order[:drop]] = 0
    return out.reshape(delta.shape)


def quantize_stochastic(delta: np.ndarray, bits: int, rng: np.random.Generator) -> np.ndarray:
    """Unbiased uniform quantisation of ``delta`` to ``2**bits`` levels over its own range.

    The levels are ``lo + i * (hi - lo) / (2**bits - 1)`` with ``lo, hi`` the tensor's min
    and max (sent alongside, as QSGD-style schemes do); each entry is rounded up with
    probability equal to its fractional position between two levels, so the expected value
    equals the input. What is returned is the dequantised tensor the server reconstructs.
    """
    if not 1 <= bits <= 32:
        raise ValueError(f"bits must be in [1, 32], got {bits}")
    if delta.size == 0 or float(delta.max()) == float(delta.min()):
        return delta.copy()
    lo, hi = float(delta.min()), float(delta.max())
    steps = float(2**bits - 1)
    position = (delta.astype(np.float64) - lo) / (hi - lo) * steps
    floor = np.floor(position)
    level = floor + (rng.random(delta.shape) < (position - floor))
    return (lo + level * (hi - lo) / steps).astype(delta.dtype)


def dp_noise_epsilon(noise_multiplier: float, delta: float) -> float:
    """The epsilon to give Flower's ``LocalDpMod`` so that its noise std is ``noise * clip``.

    ``LocalDpMod`` adds N(0, s^2) with ``s = sensitivity * sqrt(2 ln(1.25/delta)) / epsilon``
    (the classic Gaussian mechanism); with ``sensitivity = clip`` this epsilon makes
    ``s = noise_multiplier * clip``. It is a parametrisation, not the reported budget:
    :mod:`fedleak.simulator.runtime.privacy` accounts for the composition over rounds.
    """
    if noise_multiplier <= 0:
        return float("inf")
    return float(np.sqrt(2.0 * np.log(1.25 / delta)) / noise_multiplier)
