"""A small 1-D convolutional network for signals, ``cnn1d`` in :mod:`.architectures`.

Two blocks of ``Conv1d -> act -> MaxPool1d(2)`` (``width=16`` then ``2 * width`` channels,
kernels 7 and 5, padded to keep the length), then one ``Linear`` to the classes: the shape of
the small fully convolutional baselines of time-series classification (Wang et al., "Time
Series Classification from Scratch with Deep Neural Networks: A Strong Baseline", IJCNN 2017),
shrunk to train in seconds on a CPU. Flat ``(L,)`` inputs are read as one channel.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from fedleak.simulator.models.architectures import ModelSpec


def cnn1d(spec: ModelSpec, act: Callable[[], nn.Module]) -> nn.Module:
    """The 1-D CNN for ``spec.input_shape``: ``(L,)`` is one channel of length L, and
    ``(C, ...)`` is C channels of the remaining axes flattened (an image becomes C rows).

    Raises
    ------
    ValueError
        For a series too short to pool twice (fewer than 4 samples).
    """
    shape = spec.input_shape
    channels = 1 if len(shape) == 1 else shape[0]
    length = math.prod(shape) // max(channels, 1)
    if length < 4:
        raise ValueError(f"model {spec.name!r} needs series of >= 4 samples, got shape {shape}")
    width = spec.width or 16
    features = nn.Sequential(
        nn.Flatten(),
        nn.Unflatten(1, (channels, length)),
        nn.Conv1d(channels, width, kernel_size=7, padding=3),
        act(),
        nn.MaxPool1d(2),
        nn.Conv1d(width, 2 * width, kernel_size=5, padding=2),
        act(),
        nn.MaxPool1d(2),
        nn.Flatten(),
    )
    with torch.no_grad():
        flat = int(features(torch.zeros(1, *shape)).shape[1])
    return nn.Sequential(*features, nn.Linear(flat, spec.num_classes))
