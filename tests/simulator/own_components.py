"""A researcher's own model, loaders and defense, named by import path in the plug-in tests."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from fedleak.simulator.data.datasets import ArrayDataset, DatasetSplits

CALLS: list[dict[str, Any]] = []


class TinyNet(nn.Sequential):
    """Flatten -> Linear(in_features, hidden) -> Tanh -> Linear(hidden, num_classes)."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 8) -> None:
        super().__init__(
            nn.Flatten(), nn.Linear(in_features, hidden), nn.Tanh(), nn.Linear(hidden, num_classes)
        )


def not_a_module(num_classes: int) -> str:
    return f"{num_classes} classes"


def blobs(n: int = 120, seed: int = 0, size: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Three classes of noisy constant images, ``(inputs, labels)`` (fedleak splits them)."""
    CALLS.append({"n": n, "seed": seed, "size": size})
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    inputs = labels[:, None, None] / 2.0 + rng.normal(0, 0.05, (n, size, size))
    return np.clip(inputs, 0, 1), labels


def ready_splits(data_dir: Any, test_fraction: float) -> DatasetSplits:
    """Already split: 10 train and 4 test samples of 1x2x2."""
    CALLS.append({"data_dir": str(data_dir), "test_fraction": test_fraction})
    x = np.linspace(0, 1, 14 * 4, dtype=np.float32).reshape(14, 1, 2, 2)
    y = np.arange(14, dtype=np.int64) % 2
    return DatasetSplits(
        ArrayDataset(x[:10], y[:10], 2, "ready"), ArrayDataset(x[10:], y[10:], 2, "ready")
    )


def sign_flip(scale: float = -1.0) -> Any:
    """A defense factory: multiply the update by ``scale``."""
    if scale == 0:
        raise ValueError("scale 0 would erase the update")
    return lambda delta, rng: delta * scale
