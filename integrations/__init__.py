"""Serving-side integrations of hashplug encoders (ONNX files) with LanceDB and Arrow.

Modules (imported on demand, so ``import hashplug.integrations`` stays light), one idea each, imports
running down this list only:

:mod:`hashplug.integrations.lancedb`
    The face: re-exports the names below; importing it registers the ``"hashplug"`` embedding function.
:mod:`hashplug.integrations.aio`
    :func:`~hashplug.integrations.aio.asearch`, :func:`~hashplug.integrations.aio.aingest` and
    :func:`~hashplug.integrations.aio.aadd` for LanceDB's async API (``AsyncTable`` / ``AsyncConnection``).
:mod:`hashplug.integrations.ray`
    Beside the face (extra ``hashplug[ray]``): Ray Data encodes with one ONNX session per actor and Lance's Ray
    sink writes hashplug tables in one commit; per-fragment backfill; the Ray-built IVF_FLAT Hamming index.
:mod:`hashplug.integrations.reranker`
    :class:`~hashplug.integrations.reranker.HammingReranker` and
    :class:`~hashplug.integrations.reranker.FloatRescoreReranker`.
:mod:`hashplug.integrations.ingest`
    :func:`~hashplug.integrations.ingest.ingest` (resumable, chunked) and :func:`~hashplug.integrations.ingest.add`.
:mod:`hashplug.integrations.search`
    :func:`~hashplug.integrations.search.search`: dense codes natively, sparse (``indices``) codes exactly.
:mod:`hashplug.integrations.tables`
    Schema helpers, table checks (:func:`~hashplug.integrations.tables.check_code_column`), the index and
    :func:`~hashplug.integrations.tables.update`.
:mod:`hashplug.integrations.function`
    The embedding function :class:`~hashplug.integrations.function.HashplugEmbeddings` and
    :class:`~hashplug.integrations.function.Query`.
:mod:`hashplug.integrations.store`
    Where a table's model lives: the database's model store (``<db>/_hashplug/models/<sha256>.onnx``), model
    URIs, and how a config LanceDB rebuilds finds its model (checked by sha256).
:mod:`hashplug.integrations.arrow`
    Arrow <-> numpy for sample and code columns, the pure :func:`~hashplug.integrations.arrow.encode_batch`
    and the streaming :func:`~hashplug.integrations.arrow.encode_batches` (no LanceDB).

None of them imports torch or onnx: encoders are known only as ONNX files opened with
:class:`hashplug.runtime.OnnxEncoder`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["register_lancedb"]


def register_lancedb() -> Any:
    """Register the ``"hashplug"`` embedding function with LanceDB (idempotent); returns its class."""
    from .lancedb import HashplugEmbeddings

    return HashplugEmbeddings
