"""The update transforms do what their definitions say (pruning, quantisation, DP noise scale)."""

from __future__ import annotations

import numpy as np
import pytest

from fedleak.clients.update_defenses import dp_noise_epsilon, prune_smallest, quantize_stochastic


def test_prune_zeroes_exactly_the_smallest_fraction_and_keeps_the_rest() -> None:
    delta = np.random.default_rng(0).normal(size=(10, 10)).astype(np.float32)
    pruned = prune_smallest(delta, 0.9)
    kept = pruned != 0
    assert kept.sum() == 10
    assert np.array_equal(pruned[kept], delta[kept])
    assert np.abs(delta[kept]).min() >= np.abs(delta[~kept]).max()
    assert np.array_equal(prune_smallest(delta, 0.0), delta)


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_quantize_lands_on_levels_and_is_unbiased(bits: int) -> None:
    rng = np.random.default_rng(1)
    delta = rng.normal(size=64).astype(np.float32)
    levels = np.linspace(delta.min(), delta.max(), 2**bits)
    draws = np.stack([quantize_stochastic(delta, bits, rng) for _ in range(4000)])
    nearest = np.abs(draws[..., None] - levels).min(axis=-1)
    assert nearest.max() < 1e-5 * np.abs(delta).max()
    step = (delta.max() - delta.min()) / (2**bits - 1)
    assert np.abs(draws.mean(axis=0) - delta).max() < 0.05 * step + 1e-6
    assert len(np.unique(draws)) <= 2**bits


def test_quantize_with_many_bits_is_nearly_lossless() -> None:
    delta = np.random.default_rng(2).normal(size=1000).astype(np.float32)
    out = quantize_stochastic(delta, 24, np.random.default_rng(0))
    assert np.abs(out - delta).max() < 1e-5


def test_dp_epsilon_parametrises_flowers_gaussian_to_the_noise_multiplier() -> None:
    clip, delta, noise = 0.5, 1e-5, 0.3
    epsilon = dp_noise_epsilon(noise, delta)
    # LocalDpMod's std (flwr.clientapp.mod.localdp_mod): sensitivity * sqrt(2 ln(1.25/d)) / eps
    std = clip * np.sqrt(2 * np.log(1.25 / delta)) / epsilon
    assert std == pytest.approx(noise * clip)
    assert dp_noise_epsilon(0.0, delta) == float("inf")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: prune_smallest(np.ones(3), 1.0), "fraction"),
        (lambda: quantize_stochastic(np.ones(3), 0, np.random.default_rng(0)), "bits"),
    ],
)
def test_erroneous_defense_settings_are_refused(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]
