"""Small synthetic data shared by fixtures in several test modules."""

from __future__ import annotations

import numpy as np


def synthetic_digits(per_class: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Smooth synthetic 28x28 digits: two Gaussian blobs per class at class-dependent places, plus noise.

    Returns
    -------
    X : ndarray of shape (10 * per_class, 28, 28), dtype=uint8
        Images, class by class (sorted by label).
    y : ndarray of shape (10 * per_class,), dtype=uint8
        Labels 0-9.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]
    imgs, labels = [], []
    for c in range(10):
        cy, cx = 6 + 2 * c, 20 - c
        base = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 18.0) + np.exp(-((yy - cx) ** 2 + (xx - cy) ** 2) / 30.0)
        for _ in range(per_class):
            img = base + 0.15 * rng.random((28, 28))
            imgs.append(np.clip(255 * img / img.max(), 0, 255).astype(np.uint8))
            labels.append(c)
    return np.stack(imgs), np.array(labels, np.uint8)
