"""``photo_patches``: grayscale patches of scikit-image's photographs, labelled by photograph."""

from __future__ import annotations

import numpy as np

PHOTOS = ("camera", "astronaut", "coffee", "chelsea")
"""The photographs (shipped with scikit-image, so the data set works offline)."""


def load_photo_patches(
    seed: int, size: int = 16, per_photo: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """Random patches of scikit-image's photographs, labelled by photograph; offline.

    ``per_photo`` patches of ``size x size`` pixels in [0, 1] from each of :data:`PHOTOS`;
    the label of a patch is the index of its photograph. fedleak passes ``seed`` (the
    experiment's) and splits the ``(inputs, labels)`` it gets back into train and test,
    stratified.
    """
    from skimage import data
    from skimage.color import rgb2gray

    rng = np.random.default_rng(seed)
    inputs, labels = [], []
    for label, name in enumerate(PHOTOS):
        image = getattr(data, name)()
        gray = rgb2gray(image) if image.ndim == 3 else image / 255.0
        rows = rng.integers(0, gray.shape[0] - size, per_photo)
        cols = rng.integers(0, gray.shape[1] - size, per_photo)
        inputs += [gray[r : r + size, c : c + size] for r, c in zip(rows, cols, strict=True)]
        labels += [label] * per_photo
    return np.stack(inputs)[:, None].astype(np.float32), np.asarray(labels)
