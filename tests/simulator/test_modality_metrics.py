"""Metrics per modality: tables in categories and original units, signals over their range."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedleak.simulator.data.tabular import fit_encoder
from fedleak.simulator.metrics.leakage import PSNR_CAP_DB
from fedleak.simulator.metrics.modality import (
    available_modalities,
    measure_leakage,
    modality_metrics,
    pearson,
    signal_psnr,
)

COLUMNS = {"colour": ["red", "blue", "green", "red"], "age": [20.0, 30.0, 40.0, 50.0]}
ENCODER = fit_encoder(COLUMNS, ["colour"], ["age"])


def test_registry_covers_the_three_modalities_and_names_them_on_error() -> None:
    assert available_modalities() == ["image", "signal", "tabular"]
    with pytest.raises(ValueError, match=r"unknown modality 'audio'; available: \['image'"):
        modality_metrics("audio")


def test_tabular_metrics_in_categories_and_years() -> None:
    truth = ENCODER.encode(COLUMNS)
    recon = truth.copy()
    recon[0, :3] = [1.0, 0.0, 0.0]  # red -> blue: one of four categories wrong
    recon[:, 3] += 1.0 / ENCODER.features[1].std  # every age one year off
    labels = np.zeros(4, dtype=np.int64)
    # shuffled: the metrics must first match rows
    order = np.array([2, 0, 3, 1])
    m = measure_leakage(truth, labels, recon[order], labels, modality="tabular", encoder=ENCODER)
    assert m.discrete_accuracy == pytest.approx(0.75)
    assert m.continuous_mae == pytest.approx(1.0)
    assert math.isnan(m.pearson_mean)


def test_erroneous_tabular_metrics_without_encoder() -> None:
    x = ENCODER.encode(COLUMNS)
    with pytest.raises(ValueError, match="TabularEncoder"):
        measure_leakage(x, np.zeros(4), x, np.zeros(4), modality="tabular")


def test_signal_psnr_is_over_the_series_range() -> None:
    t = np.linspace(0, 2 * np.pi, 100)
    truth = np.stack([np.sin(t), 10 * np.sin(t)])
    recon = truth + 0.1  # the same error on a 10x larger series is 20 dB better
    values = signal_psnr(truth, recon)
    assert values[0] == pytest.approx(10 * np.log10(2.0**2 / 0.01), rel=1e-3)
    assert values[1] - values[0] == pytest.approx(20.0, rel=1e-3)
    assert signal_psnr(truth, truth).tolist() == [PSNR_CAP_DB, PSNR_CAP_DB]


def test_pearson_per_series() -> None:
    t = np.linspace(0, 1, 50)
    truth = np.stack([t, t, t])
    recon = np.stack([3 * t + 1, -t, np.zeros_like(t)])
    values = pearson(truth, recon)
    assert values[0] == pytest.approx(1.0) and values[1] == pytest.approx(-1.0)
    assert math.isnan(values[2])


def test_signal_rows_record_psnr_over_range_and_correlation() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(4, 150))
    labels = np.arange(4)
    m = measure_leakage(truth, labels, truth[::-1] + 1e-3, labels[::-1], modality="signal")
    assert m.pearson_mean == pytest.approx(1.0, abs=1e-6)
    assert m.psnr_mean > 70 and m.label_accuracy == 1.0
    assert math.isnan(m.discrete_accuracy)


def test_image_modality_keeps_the_image_metrics() -> None:
    x = np.random.default_rng(0).random((2, 1, 8, 8))
    m = measure_leakage(x, np.zeros(2), x * 0.9, np.zeros(2))
    assert not math.isnan(m.ssim_mean) and math.isnan(m.discrete_accuracy)
    assert m.psnr_mean == pytest.approx(
        float(np.mean(-10 * np.log10(((x * 0.1) ** 2).mean((1, 2, 3)))))
    )
