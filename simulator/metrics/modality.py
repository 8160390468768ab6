"""Leakage metrics that depend on what the data is: one entry per modality, no if-chain.

Each entry says how PSNR is taken per sample and which extra metrics the modality has:

- ``image``: PSNR over the data range 1 (:func:`fedleak.simulator.metrics.leakage.psnr`); SSIM and
  AVD as :func:`~fedleak.simulator.metrics.leakage.compute_leakage` gives them.
- ``tabular``: the metrics of TabLeak (Vero et al., "TabLeak: Tabular Data Leakage in
  Federated Learning", ICML 2023) and SPEAR (Dimitrov et al., "SPEAR: Exact Gradient
  Inversion of Batches in Federated Learning", NeurIPS 2024): the fraction of discrete
  features whose recovered category (argmax of its one-hot block) is the true one, and the
  mean absolute error of the continuous features in original units (the data set's
  :class:`~fedleak.simulator.data.tabular.TabularEncoder` decodes both). PSNR is over the encoded
  row, range 1.
- ``signal``: PSNR over each true signal's own range, ``10 log10((max - min)^2 / MSE)``
  (signals are z-normalised, not in [0, 1]), and the Pearson correlation of the matched series.

Matching is the same for all: :func:`fedleak.simulator.metrics.leakage.match_samples` on the
encoded inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from fedleak.attacks.name_table import Registry
from fedleak.simulator.data.tabular import TabularEncoder
from fedleak.simulator.metrics.leakage import (
    PSNR_CAP_DB,
    LeakageMetrics,
    compute_leakage,
    match_samples,
    mse,
    psnr,
)

__all__ = [
    "ModalityMetrics",
    "available_modalities",
    "measure_leakage",
    "modality_metrics",
    "pearson",
    "register_modality",
    "signal_psnr",
    "tabular_scores",
]

Extras = Callable[[np.ndarray, np.ndarray, TabularEncoder | None], dict[str, float]]
"""``extras(truth, recon, encoder) -> {LeakageMetrics field: value}`` over matched pairs."""


@dataclass(frozen=True)
class ModalityMetrics:
    """How one modality is measured: per-sample PSNR and its own extra metrics."""

    psnr: Callable[[np.ndarray, np.ndarray], np.ndarray]
    extras: Extras


MODALITIES: Registry[ModalityMetrics] = Registry("modality")
"""How each modality is measured."""


def register_modality(name: str, metrics: ModalityMetrics) -> None:
    """Register the metrics of modality ``name``; a name can be registered once."""
    MODALITIES.register(name, metrics)


def available_modalities() -> list[str]:
    """Names of the registered modalities, sorted."""
    return MODALITIES.names()


def modality_metrics(name: str) -> ModalityMetrics:
    """The metrics of modality ``name``.

    Raises
    ------
    ValueError
        For an unknown modality, naming the registered ones.
    """
    return MODALITIES.get(name)


def signal_psnr(truth: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """PSNR per series over the true series' range (capped at ``PSNR_CAP_DB`` when exact)."""
    t = np.asarray(truth, dtype=np.float64).reshape(len(truth), -1)
    span = (t.max(axis=1) - t.min(axis=1)) if t.size else np.zeros(len(t))
    errors = mse(truth, recon)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = 10.0 * np.log10(span**2 / errors)
    return np.minimum(np.nan_to_num(values, nan=PSNR_CAP_DB), PSNR_CAP_DB)


def pearson(truth: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """Pearson correlation per pair of series (NaN where one is constant)."""
    t = np.asarray(truth, dtype=np.float64).reshape(len(truth), -1)
    r = np.asarray(recon, dtype=np.float64).reshape(len(recon), -1)
    tc, rc = t - t.mean(axis=1, keepdims=True), r - r.mean(axis=1, keepdims=True)
    denominator = np.linalg.norm(tc, axis=1) * np.linalg.norm(rc, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, (tc * rc).sum(axis=1) / denominator, np.nan)


def _mean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)] if values.size else values
    return float(np.mean(finite)) if finite.size else math.nan


def tabular_scores(
    truth: np.ndarray, recon: np.ndarray, encoder: TabularEncoder | None
) -> dict[str, float]:
    """Discrete-feature accuracy and continuous MAE (original units) of matched rows.

    Raises
    ------
    ValueError
        Without an encoder: a table's metrics need its schema.
    """
    if encoder is None:
        raise ValueError("tabular metrics need the data set's TabularEncoder")
    codes_t, codes_r = encoder.discrete_codes(truth), encoder.discrete_codes(recon)
    values_t, values_r = encoder.continuous_values(truth), encoder.continuous_values(recon)
    return {
        "discrete_accuracy": _mean((codes_t == codes_r).astype(np.float64).ravel()),
        "continuous_mae": _mean(np.abs(values_t - values_r).ravel()),
    }


def _signal_scores(
    truth: np.ndarray, recon: np.ndarray, encoder: TabularEncoder | None
) -> dict[str, float]:
    return {"pearson_mean": _mean(pearson(truth, recon))}


def _no_extras(
    truth: np.ndarray, recon: np.ndarray, encoder: TabularEncoder | None
) -> dict[str, float]:
    return {}


register_modality("image", ModalityMetrics(psnr, _no_extras))
register_modality("tabular", ModalityMetrics(psnr, tabular_scores))
register_modality("signal", ModalityMetrics(signal_psnr, _signal_scores))


def measure_leakage(
    truth_inputs: np.ndarray,
    truth_labels: np.ndarray,
    recon_inputs: np.ndarray,
    recon_labels: np.ndarray,
    *,
    modality: str = "image",
    encoder: TabularEncoder | None = None,
) -> LeakageMetrics:
    """:func:`~.leakage.compute_leakage` with the modality's PSNR and extra metrics.

    Parameters
    ----------
    truth_inputs, truth_labels, recon_inputs, recon_labels : np.ndarray
        As for :func:`~fedleak.simulator.metrics.leakage.compute_leakage`.
    modality : str
        A name from :func:`available_modalities` (the data set's ``domain.modality``).
    encoder : TabularEncoder | None
        The data set's encoder; required for ``tabular``.
    """
    scorer = modality_metrics(modality)
    metrics = compute_leakage(truth_inputs, truth_labels, recon_inputs, recon_labels)
    if not (len(truth_inputs) and len(recon_inputs)):
        return metrics
    t_idx, r_idx = match_samples(truth_inputs, recon_inputs)
    t, r = np.asarray(truth_inputs)[t_idx], np.asarray(recon_inputs)[r_idx]
    values = scorer.psnr(t, r)
    extras: dict[str, Any] = scorer.extras(t, r, encoder)
    return replace(
        metrics,
        psnr_mean=_mean(values),
        psnr_min=float(np.min(values)),
        psnr_per_sample=tuple(float(v) for v in values),
        **extras,
    )
