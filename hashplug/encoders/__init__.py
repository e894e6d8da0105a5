"""Encoders: one API (fit / encode / save / load) and a registry.

Importing this package registers every method without importing torch; torch loads only when an
encoder that trains with it is fitted.
"""

from __future__ import annotations

from .base import ENCODERS, BaseEncoder, available_encoders, get_encoder, load_encoder, register_encoder

__all__ = ["ENCODERS", "BaseEncoder", "available_encoders", "get_encoder", "load_encoder", "register_encoder"]
