"""Natural 32x32 RGB photographs, offline: crops of scikit-image's bundled colour photos.

The benchmarks calibrate and compare attacks on natural images, not only on 8x8 digits. Each
photo is downscaled so its shorter side is ``2 * size`` pixels, then a ``size`` x ``size``
crop is taken at a seeded position: a batch looks like CIFAR-style natural images.
"""

from __future__ import annotations

import numpy as np
from skimage import data, transform

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")
"""scikit-image's bundled colour photographs (no download)."""


def photo_batch(
    size: int, seed: int, *, pixels: int = 32, num_classes: int = 10, crop: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """``size`` photos, distinct where possible, ``(B, 3, pixels, pixels)`` in [0, 1].

    ``crop``: a seeded crop of the photo downscaled to ``2 * pixels`` on its shorter side;
    otherwise the whole photo squeezed to ``pixels`` x ``pixels``. Labels are distinct while
    ``size <= num_classes`` (drawn with ``seed``), else they repeat.
    """
    rng = np.random.default_rng(seed)
    names = rng.choice(PHOTOS, size=size, replace=size > len(PHOTOS))
    crops = []
    for name in names:
        image = getattr(data, name)()[..., :3]
        if not crop:
            whole = transform.resize(image, (pixels, pixels), anti_aliasing=True)
            crops.append(np.transpose(whole, (2, 0, 1)))
            continue
        scale = 2 * pixels / min(image.shape[:2])
        shape = (round(image.shape[0] * scale), round(image.shape[1] * scale))
        small = transform.resize(image, shape, anti_aliasing=True)
        top = rng.integers(0, small.shape[0] - pixels + 1)
        left = rng.integers(0, small.shape[1] - pixels + 1)
        crops.append(np.transpose(small[top : top + pixels, left : left + pixels], (2, 0, 1)))
    labels = rng.choice(num_classes, size=size, replace=size > num_classes).astype(np.int64)
    return np.stack(crops).astype(np.float32), labels
