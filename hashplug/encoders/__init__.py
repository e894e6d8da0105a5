"""Encoders: one API (fit / encode / save / load) and a registry.

Importing this package registers every method without importing torch; torch loads only when an
encoder that trains with it is fitted.
"""

from __future__ import annotations

from .base import ENCODERS, BaseEncoder, available_encoders, get_encoder, load_encoder, register_encoder

__all__ = ["ENCODERS", "BaseEncoder", "available_encoders", "get_encoder", "load_encoder", "register_encoder"]

from . import baselines, biohash  # noqa: E402,F401  (registers the methods)
from .baselines import ITQ, LSH, FlyHash, PCAHash, SpectralHash  # noqa: E402
from .biohash import BioHash, NaiveBioHash  # noqa: E402

__all__ += ["BioHash", "NaiveBioHash", "LSH", "PCAHash", "ITQ", "SpectralHash", "FlyHash"]
