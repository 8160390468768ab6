"""Leakage metrics: PSNR, SSIM, AVD (Eloul et al. 2024 eq. 13), matching and the leakage summary."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from fedleak.simulator.data.datasets import load_dataset
from fedleak.simulator.metrics.leakage import (
    AVD_THRESHOLD,
    AVD_THRESHOLD_LOOSE,
    PSNR_CAP_DB,
    LeakageMetrics,
    avd,
    compute_leakage,
    match_samples,
    mse,
    psnr,
    recovered,
    ssim,
)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    train = load_dataset("digits", data_dir=Path("."), seed=0, test_fraction=0.2).train
    return train.inputs[:32], train.labels[:32]


def test_identical_batches_are_perfect(digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = digits
    np.testing.assert_array_equal(mse(x, x), 0.0)
    np.testing.assert_array_equal(psnr(x, x), PSNR_CAP_DB)
    np.testing.assert_allclose(ssim(x, x), 1.0, atol=1e-9)
    np.testing.assert_array_equal(avd(x, x), 0.0)
    assert recovered(avd(x, x), AVD_THRESHOLD).all()


def test_psnr_is_10_log10_of_inverse_mse(digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = digits
    noisy = np.clip(x + np.random.default_rng(0).normal(0, 0.1, x.shape), 0, 1)
    np.testing.assert_allclose(psnr(x, noisy), 10 * np.log10(1.0 / mse(x, noisy)), rtol=1e-10)


def test_near_exact_float32_recovery_is_not_capped(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    x, _ = digits
    almost = x + np.float32(1e-6)
    values = psnr(x, almost)
    assert (values > 100).all() and (values < PSNR_CAP_DB).all()


def test_pure_noise_is_not_recovered(digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = digits
    noise = np.random.default_rng(1).random(x.shape).astype(np.float32)
    values = avd(x, noise)
    # normalised by noise-vs-black, noise-vs-digit sits near the paper's 0.8 "not visible" mark
    assert 0.7 < values.mean() < 1.1
    assert not recovered(values, AVD_THRESHOLD).any()
    assert ssim(x, noise).mean() < 0.1 and psnr(x, noise).mean() < 10


def test_avd_is_eq_13_on_a_hand_example() -> None:
    truth = np.zeros((1, 1, 3, 3))
    truth[0, 0, 1, 1] = 1.0
    # grad v = dv/dx + dv/dy on the 2x2 grid: [[0, 1], [1, -2]] -> |.| = [[0, 1], [1, 2]]
    raw = avd(truth, np.zeros_like(truth), normalise=False)
    np.testing.assert_allclose(raw, math.sqrt(0 + 1 + 1 + 4))
    # AVD measures edges, not intensity: a constant offset changes nothing
    np.testing.assert_allclose(avd(truth, truth + 0.5, normalise=False), 0.0, atol=1e-12)


def test_avd_ranks_closer_reconstructions_lower(digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = digits
    rng = np.random.default_rng(2)
    slightly = np.clip(x + rng.normal(0, 0.02, x.shape), 0, 1)
    heavily = np.clip(x + rng.normal(0, 0.3, x.shape), 0, 1)
    assert recovered(avd(x, slightly), AVD_THRESHOLD).all()
    assert avd(x, slightly).mean() < avd(x, heavily).mean()


def test_recovered_thresholds_and_nan() -> None:
    values = np.array([0.1, 0.7, 0.9, np.nan])
    assert recovered(values, AVD_THRESHOLD).tolist() == [True, False, False, False]
    assert recovered(values, AVD_THRESHOLD_LOOSE).tolist() == [True, True, False, False]


def test_matching_recovers_a_permutation(digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = digits
    perm = np.random.default_rng(3).permutation(len(x))
    truth_idx, recon_idx = match_samples(x, x[perm])
    np.testing.assert_array_equal(truth_idx, np.arange(len(x)))
    np.testing.assert_array_equal(perm[recon_idx], truth_idx)


def test_leakage_of_a_shuffled_exact_batch(digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = digits
    perm = np.random.default_rng(4).permutation(len(x))
    wrong = y[perm].copy()
    wrong[:8] = (wrong[:8] + 1) % 10  # 8 of 32 labels wrong
    result = compute_leakage(x, y, x[perm], wrong)
    assert result.num_samples == result.num_truth == result.num_reconstructed == 32
    assert result.mse_mean == 0.0 and result.psnr_min == PSNR_CAP_DB
    assert result.recovery_rate == result.recovery_rate_loose == 1.0
    assert result.label_accuracy == pytest.approx(24 / 32)
    assert len(result.psnr_per_sample) == 32


def test_leakage_with_fewer_reconstructions(digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = digits
    result = compute_leakage(x[:8], y[:8], x[[6, 2, 4]], y[[6, 2, 4]])
    assert (result.num_truth, result.num_reconstructed, result.num_samples) == (8, 3, 3)
    assert result.mse_mean == 0.0 and result.label_accuracy == 1.0
    assert result.recovery_rate == pytest.approx(3 / 8)  # unmatched truth is not recovered


def test_leakage_on_vectors_skips_image_metrics() -> None:
    x = np.random.default_rng(5).random((4, 20))
    result = compute_leakage(x, np.arange(4), x, np.arange(4))
    assert result.psnr_mean == PSNR_CAP_DB
    assert math.isnan(result.ssim_mean) and math.isnan(result.avd_mean)
    assert math.isnan(result.recovery_rate)


def test_to_row_is_flat_scalars(digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = digits
    row = compute_leakage(x[:4], y[:4], x[:4], y[:4]).to_row()
    assert set(row) == {
        f for f in LeakageMetrics.__dataclass_fields__ if not f.endswith("per_sample")
    }
    assert all(isinstance(v, float | int) for v in row.values())


def test_erroneous_shapes() -> None:
    with pytest.raises(ValueError, match="sample shapes differ"):
        compute_leakage(np.zeros((2, 1, 8, 8)), np.zeros(2), np.zeros((2, 1, 4, 4)), np.zeros(2))
    with pytest.raises(ValueError, match="labels do not match"):
        compute_leakage(np.zeros((2, 1, 8, 8)), np.zeros(3), np.zeros((2, 1, 8, 8)), np.zeros(2))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        psnr(np.zeros((2, 8, 8)), np.zeros((2, 8, 8)))


def test_psnr_agrees_with_torchmetrics(digits: tuple[np.ndarray, np.ndarray]) -> None:
    import torch
    from torchmetrics.functional.image import peak_signal_noise_ratio

    x, _ = digits
    noisy = np.clip(x + np.random.default_rng(6).normal(0, 0.05, x.shape), 0, 1)
    reference = peak_signal_noise_ratio(
        torch.from_numpy(noisy),
        torch.from_numpy(x.astype(np.float64)),
        data_range=1.0,
        reduction="none",
        dim=(1, 2, 3),
    )
    np.testing.assert_allclose(psnr(x, noisy), reference.numpy(), rtol=1e-6)
