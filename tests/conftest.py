"""Shared fixtures: a seed and the sklearn digits data scaled to [0, 1].

The registry-driven encoder list lives in ``tests/_encoders.py`` (``ALL_ENCODERS``), importable by
test modules; it is re-exported here for convenience.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _encoders import ALL_ENCODERS, ENCODER_NAMES, FAST_PARAMS  # noqa: E402

__all__ = ["ALL_ENCODERS", "ENCODER_NAMES", "FAST_PARAMS"]

try:  # One intra-op thread: on a busy 2-core machine torch's thread pool made training ~100x slower.
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a training extra
    pass


@pytest.fixture
def seed() -> int:
    """The fixed seed of the tests."""
    return 0


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """sklearn digits: X of shape (1797, 64) float32 in [0, 1] (pixels / 16), y of shape (1797,) int."""
    from sklearn.datasets import load_digits

    d = load_digits()
    X = (d.data / 16.0).astype(np.float32)
    y = np.asarray(d.target)
    return X, y
