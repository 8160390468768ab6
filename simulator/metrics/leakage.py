"""Leakage metrics: how close a reconstructed batch is to the client's true batch.

Inputs are batches in the data's ``[0, 1]`` range, shaped ``(B, C, H, W)`` for images or
``(B, n)`` for vectors (vectors get MSE and PSNR; SSIM and AVD, which need a 2-D layout, are
``nan``). Values are taken as given, not clipped. Reconstructed samples come in the attack's
order, so :func:`compute_leakage` first pairs them with true samples by a Hungarian assignment
on pairwise MSE (:func:`match_samples`).

AVD is the absolute variation distance of Eloul et al. (Eloul et al. 2024, eq. 13); a sample counts
as
recovered when its normalised AVD is below 0.6 (digits start to emerge) or, loosely, below 0.8
(beyond which nothing is visible to a human), the paper's two thresholds (sec. 4.2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torchmetrics.functional.image import structural_similarity_index_measure

__all__ = [
    "AVD_THRESHOLD",
    "AVD_THRESHOLD_LOOSE",
    "PSNR_CAP_DB",
    "LeakageMetrics",
    "avd",
    "compute_leakage",
    "match_samples",
    "mse",
    "psnr",
    "recovered",
    "ssim",
]

AVD_THRESHOLD = 0.6
"""Normalised AVD below which a sample is recovered (Eloul et al. 2024, sec. 4.2)."""
AVD_THRESHOLD_LOOSE = 0.8
"""Normalised AVD beyond which no information is visible (Eloul et al. 2024, sec. 4.2)."""
PSNR_CAP_DB = 300.0
"""PSNR reported for a bit-exact match (MSE = 0), instead of infinity, so means stay finite.
Exact float32 recoveries (SPEAR, analytic attacks) have MSE ~1e-15 or more, i.e. PSNR
below ~150 dB, so the cap never hides a difference between real reconstructions."""
_AVD_REFERENCE_DRAWS = 64
_AVD_REFERENCE_SEED = 0


def _as_batch(x: np.ndarray | torch.Tensor) -> np.ndarray:
    array = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if array.ndim not in (2, 4):
        raise ValueError(f"expected a (B, C, H, W) or (B, n) batch, got shape {array.shape}")
    return array.astype(np.float64)


def _pair(truth: np.ndarray, recon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t, r = _as_batch(truth), _as_batch(recon)
    if t.shape != r.shape:
        raise ValueError(f"truth {t.shape} and reconstruction {r.shape} shapes differ")
    return t, r


def mse(truth: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """Mean squared error per sample, shape ``(B,)``."""
    t, r = _pair(truth, recon)
    return np.mean((t - r) ** 2, axis=tuple(range(1, t.ndim)))


def psnr(truth: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """Peak signal-to-noise ratio per sample in dB, ``10 log10(1 / MSE)`` (data range 1).

    The definition of torchmetrics' ``peak_signal_noise_ratio(data_range=1.0)``, computed
    here in float64 throughout (torchmetrics uses a float32 ``log(10)``, off by ~5e-8
    relative). A bit-exact sample (MSE = 0) gets :data:`PSNR_CAP_DB` instead of infinity.
    """
    errors = mse(truth, recon)
    with np.errstate(divide="ignore"):
        values = -10.0 * np.log10(errors)
    return np.minimum(values, PSNR_CAP_DB)


def _ssim_window(height: int, width: int) -> tuple[int, float]:
    # The standard 11x11 window with sigma 1.5 does not fit 8x8 digits: use the largest odd
    # window that fits, with sigma scaled by the same factor.
    size = min(11, height, width)
    size -= 1 - size % 2
    return size, 1.5 * size / 11


def ssim(truth: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """Structural similarity per sample (Gaussian window, data range 1); ``nan`` for vectors.

    The window is 11x11 with sigma 1.5, shrunk for small images to the largest odd size that
    fits (7x7 with sigma ~0.95 for 8x8 digits).
    """
    t, r = _pair(truth, recon)
    if t.ndim != 4 or len(t) == 0:
        return np.full(len(t), np.nan)
    size, sigma = _ssim_window(t.shape[2], t.shape[3])
    values = structural_similarity_index_measure(
        torch.from_numpy(r),
        torch.from_numpy(t),
        data_range=1.0,
        kernel_size=size,
        sigma=sigma,
        reduction="none",
    )
    assert isinstance(values, torch.Tensor)
    return values.numpy().astype(np.float64)


def _abs_spatial_gradient(v: np.ndarray) -> np.ndarray:
    # Seed 004, eq. 13: grad v = dv/dx + dv/dy, forward differences on the (H-1, W-1) grid.
    dx = v[..., :-1, 1:] - v[..., :-1, :-1]
    dy = v[..., 1:, :-1] - v[..., :-1, :-1]
    return np.abs(dx + dy)


@lru_cache(maxsize=32)
def _avd_reference(shape: tuple[int, ...]) -> float:
    # Fig. 4 divides AVD by the AVD between the attack's uniform-noise start and a black
    # image; that start is not known here, so use the mean over fixed-seed U(0,1) draws.
    noise = np.random.default_rng(_AVD_REFERENCE_SEED).random((_AVD_REFERENCE_DRAWS, *shape))
    grads = _abs_spatial_gradient(noise).reshape(_AVD_REFERENCE_DRAWS, -1)
    return float(np.mean(np.linalg.norm(grads, axis=1)))


def avd(truth: np.ndarray, recon: np.ndarray, *, normalise: bool = True) -> np.ndarray:
    """Absolute variation distance per sample (Eloul et al. 2024, eq. 13); ``nan`` for vectors.

    ``AVD = || |grad v_truth| - |grad v_recon| ||_2`` with ``grad v = dv/dx + dv/dy`` (forward
    differences, summed over channels' pixels). With ``normalise`` (the default, as in the
    paper's fig. 4) it is divided by the AVD between uniform ``U(0, 1)`` noise and a black
    image of the same shape (averaged over 64 fixed-seed draws), so ~1 means "no more
    structure than the attack's noise start" and 0 means identical edges.
    """
    t, r = _pair(truth, recon)
    if t.ndim != 4 or len(t) == 0:
        return np.full(len(t), np.nan)
    diff = _abs_spatial_gradient(t) - _abs_spatial_gradient(r)
    values = np.linalg.norm(diff.reshape(len(t), -1), axis=1)
    if normalise:
        values = values / _avd_reference(t.shape[1:])
    return values


def recovered(avd_norm: np.ndarray, threshold: float = AVD_THRESHOLD) -> np.ndarray:
    """Whether each sample counts as recovered: normalised AVD below ``threshold``.

    Seed 004 uses 0.6 (:data:`AVD_THRESHOLD`) and 0.8 (:data:`AVD_THRESHOLD_LOOSE`).
    ``nan`` (no AVD for vectors) is never recovered.
    """
    values = np.asarray(avd_norm, dtype=np.float64)
    return np.less(values, threshold, where=~np.isnan(values), out=np.zeros(values.shape, bool))


def match_samples(truth: np.ndarray, recon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pair reconstructed with true samples by a minimum-total-MSE assignment (Hungarian).

    Batches may differ in size: ``min(len(truth), len(recon))`` pairs are returned.

    Returns
    -------
    tuple[np.ndarray, np.ndarray]
        ``(truth_idx, recon_idx)``, sorted by ``truth_idx``: ``recon[recon_idx[k]]`` is the
        reconstruction of ``truth[truth_idx[k]]``.
    """
    t = _as_batch(truth).reshape(len(truth), -1)
    r = _as_batch(recon).reshape(len(recon), -1)
    if t.shape[1] != r.shape[1]:
        raise ValueError(f"sample sizes differ: truth {t.shape[1]}, reconstruction {r.shape[1]}")
    # ||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b avoids a (B_t, B_r, n) temporary.
    sq = (t**2).sum(1)[:, None] + (r**2).sum(1)[None, :] - 2.0 * t @ r.T
    cost = np.maximum(sq, 0.0) / max(t.shape[1], 1)
    truth_idx, recon_idx = linear_sum_assignment(cost)
    return truth_idx.astype(np.int64), recon_idx.astype(np.int64)


@dataclass(frozen=True)
class LeakageMetrics:
    """How much of one client batch one reconstruction reveals, after matching.

    Attributes
    ----------
    psnr_mean, psnr_min : float
        Mean and worst PSNR (dB) over matched pairs.
    ssim_mean : float
        Mean SSIM over matched pairs (``nan`` for vectors).
    mse_mean : float
        Mean MSE over matched pairs.
    avd_mean : float
        Mean normalised AVD over matched pairs (``nan`` for vectors).
    label_accuracy : float
        Fraction of matched pairs whose reconstructed label equals the true one.
    recovery_rate, recovery_rate_loose : float
        Fraction of the *true* batch recovered at AVD < 0.6 and < 0.8 (Eloul et al. 2024); unmatched
        true samples count as not recovered. ``nan`` for vectors.
    num_samples : int
        Number of matched pairs, ``min(num_truth, num_reconstructed)``.
    num_truth, num_reconstructed : int
        Batch sizes of the ground truth and of the reconstruction.
    psnr_per_sample, avd_per_sample : tuple[float, ...]
        Per matched pair, in the order of the true batch.
    discrete_accuracy, continuous_mae : float
        Tables only (:mod:`fedleak.simulator.metrics.modality`): the fraction of discrete features
        recovered, and the mean absolute error of continuous ones in original units.
    pearson_mean : float
        Signals only: mean Pearson correlation of matched series.
    """

    psnr_mean: float
    psnr_min: float
    ssim_mean: float
    mse_mean: float
    avd_mean: float
    label_accuracy: float
    recovery_rate: float
    recovery_rate_loose: float
    num_samples: int
    num_truth: int
    num_reconstructed: int
    psnr_per_sample: tuple[float, ...] = ()
    avd_per_sample: tuple[float, ...] = ()
    discrete_accuracy: float = math.nan
    continuous_mae: float = math.nan
    pearson_mean: float = math.nan

    def to_row(self) -> dict[str, float | int]:
        """The scalar fields as a flat dict (one JSONL row); per-sample tuples are left out."""
        return {
            name: value
            for name, value in vars(self).items()
            if isinstance(value, float | int) and not isinstance(value, bool)
        }


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def compute_leakage(
    truth_inputs: np.ndarray,
    truth_labels: np.ndarray,
    recon_inputs: np.ndarray,
    recon_labels: np.ndarray,
) -> LeakageMetrics:
    """Match a reconstruction to the true batch and measure the leakage.

    Parameters
    ----------
    truth_inputs, recon_inputs : np.ndarray
        ``(B_t, ...)`` and ``(B_r, ...)`` batches with the same per-sample shape, in [0, 1].
    truth_labels, recon_labels : np.ndarray
        ``(B_t,)`` and ``(B_r,)`` integer labels.

    Returns
    -------
    LeakageMetrics
        Metrics over the ``min(B_t, B_r)`` pairs of :func:`match_samples`.
    """
    truth, recon = _as_batch(truth_inputs), _as_batch(recon_inputs)
    truth_labels, recon_labels = np.asarray(truth_labels), np.asarray(recon_labels)
    if len(truth_labels) != len(truth) or len(recon_labels) != len(recon):
        raise ValueError(
            f"labels do not match inputs: truth {len(truth_labels)} vs {len(truth)}, "
            f"reconstruction {len(recon_labels)} vs {len(recon)}"
        )
    if truth.shape[1:] != recon.shape[1:]:
        raise ValueError(f"sample shapes differ: truth {truth.shape}, reconstruction {recon.shape}")
    if len(truth) and len(recon):
        t_idx, r_idx = match_samples(truth, recon)
    else:
        t_idx = r_idx = np.zeros(0, dtype=np.int64)
    t, r = truth[t_idx], recon[r_idx]
    psnr_values, avd_values = psnr(t, r), avd(t, r)
    is_image = truth.ndim == 4
    denominator = max(len(truth), 1)

    def rate(threshold: float) -> float:
        return float(recovered(avd_values, threshold).sum()) / denominator if is_image else math.nan

    return LeakageMetrics(
        psnr_mean=_mean(psnr_values),
        psnr_min=float(np.min(psnr_values)) if len(psnr_values) else math.nan,
        ssim_mean=_mean(ssim(t, r)),
        mse_mean=_mean(mse(t, r)),
        avd_mean=_mean(avd_values),
        label_accuracy=_mean((truth_labels[t_idx] == recon_labels[r_idx]).astype(np.float64)),
        recovery_rate=rate(AVD_THRESHOLD),
        recovery_rate_loose=rate(AVD_THRESHOLD_LOOSE),
        num_samples=len(t_idx),
        num_truth=len(truth),
        num_reconstructed=len(recon),
        psnr_per_sample=tuple(float(v) for v in psnr_values),
        avd_per_sample=tuple(float(v) for v in avd_values),
    )
