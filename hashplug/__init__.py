"""hashplug: learned binary hash codes for LanceDB.

Training side (extra ``train``): :mod:`hashplug.encoders` (BioHash and baselines), ``hashplug.export``.
Serving side (base install): :mod:`hashplug.codes`, :mod:`hashplug.hamming`, :mod:`hashplug.metrics`,
``hashplug.OnnxEncoder`` and ``hashplug.integrations`` (LanceDB, Arrow).

The face is light: ``import hashplug`` loads numpy and the error types only; every other name below is
imported on first use. The ``"hashplug"`` LanceDB embedding function is registered as soon as LanceDB is
imported (before or after hashplug, or in a process that never imports hashplug: the installed
``hashplug-lancedb-hook.pth`` adds the import hook at start-up), so tables written with it reopen in a fresh
process.
"""

from __future__ import annotations

from typing import Any

from . import _lancedb_hook
from ._version import __version__
from .validation import (
    HashplugError,
    HashplugTypeError,
    IngestError,
    ModelFileError,
    ModelMismatchError,
    ModelNotFoundError,
    TableSchemaError,
)

_LAZY = {
    "available_encoders": ("hashplug.encoders", "available_encoders"),
    "get_encoder": ("hashplug.encoders", "get_encoder"),
    "load_encoder": ("hashplug.encoders", "load_encoder"),
    "register_encoder": ("hashplug.encoders", "register_encoder"),
    "OnnxEncoder": ("hashplug.runtime", "OnnxEncoder"),
    "Query": ("hashplug.integrations.lancedb", "Query"),
    "search": ("hashplug.integrations.lancedb", "search"),
    "asearch": ("hashplug.integrations.lancedb", "asearch"),
    "aingest": ("hashplug.integrations.lancedb", "aingest"),
    "aadd": ("hashplug.integrations.lancedb", "aadd"),
    "relocate_model": ("hashplug.integrations.lancedb", "relocate_model"),
    "update": ("hashplug.integrations.lancedb", "update"),
    "ingest": ("hashplug.integrations.ingest", "ingest"),
    "add": ("hashplug.integrations.ingest", "add"),
    "encode_batches": ("hashplug.integrations.arrow", "encode_batches"),
    "build_hamming_index": ("hashplug.integrations.index", "build_hamming_index"),
    "open_hamming_index": ("hashplug.integrations.index", "open_hamming_index"),
    "refresh_hamming_index": ("hashplug.integrations.index", "refresh_hamming_index"),
    # 0.1.0 names of the three above (DeprecationWarning on call; removed in 0.3.0):
    "build_index": ("hashplug.integrations.index", "build_index"),
    "open_index": ("hashplug.integrations.index", "open_index"),
    "refresh_index": ("hashplug.integrations.index", "refresh_index"),
    "HammingReranker": ("hashplug.integrations.reranker", "HammingReranker"),
    "FloatRescoreReranker": ("hashplug.integrations.reranker", "FloatRescoreReranker"),
    "StaleTableWarning": ("hashplug.integrations.lancedb", "StaleTableWarning"),
}

__all__ = [
    "__version__",
    "HashplugError",
    "HashplugTypeError",
    "IngestError",
    "ModelFileError",
    "ModelMismatchError",
    "ModelNotFoundError",
    "TableSchemaError",
    *_LAZY,
]

_lancedb_hook.install()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(mod), attr)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'hashplug' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
