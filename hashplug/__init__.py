"""hashplug: learned binary hash codes for LanceDB.

Training side (extra ``train``): :mod:`hashplug.encoders` (BioHash and baselines), ``hashplug.export``.
Serving side (base install): :mod:`hashplug.codes`, :mod:`hashplug.hamming`, :mod:`hashplug.metrics`,
``hashplug.OnnxEncoder`` and ``hashplug.integrations`` (LanceDB, Arrow). Heavy modules load lazily.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from .encoders import available_encoders, get_encoder, load_encoder  # noqa: E402  (numpy-only at import)
from .validation import (  # noqa: E402
    HashplugError,
    HashplugTypeError,
    IngestError,
    ModelFileError,
    ModelMismatchError,
    ModelNotFoundError,
    TableSchemaError,
)

try:  # registers the "hashplug" LanceDB embedding function, so saved tables reopen
    from .integrations import lancedb as _lancedb_registration  # noqa: E402, F401
except ImportError:  # pragma: no cover - lancedb not installed
    pass

__all__ = [
    "__version__",
    "available_encoders",
    "get_encoder",
    "load_encoder",
    "HashplugError",
    "HashplugTypeError",
    "IngestError",
    "ModelFileError",
    "ModelMismatchError",
    "ModelNotFoundError",
    "TableSchemaError",
]

_LAZY = {
    "OnnxEncoder": ("hashplug.runtime", "OnnxEncoder"),
    "Query": ("hashplug.integrations.lancedb", "Query"),
    "search": ("hashplug.integrations.lancedb", "search"),
    "ingest": ("hashplug.integrations.arrow", "ingest"),
    "add": ("hashplug.integrations.arrow", "add"),
    "update": ("hashplug.integrations.lancedb", "update"),
    "encode_batches": ("hashplug.integrations.arrow", "encode_batches"),
    "HammingReranker": ("hashplug.integrations.reranker", "HammingReranker"),
    "FloatRescoreReranker": ("hashplug.integrations.reranker", "FloatRescoreReranker"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'hashplug' has no attribute {name!r}")
