"""Async entry points for LanceDB's async API (``lancedb.connect_async``): :func:`asearch`, :func:`aingest`,
:func:`aadd`.

Each takes an ``AsyncTable`` / ``AsyncConnection`` (or a synchronous table or connection, or a path) and runs
the synchronous call (:func:`hashplug.search`, :func:`hashplug.ingest`, :func:`hashplug.add`) on a
synchronous handle of the *same* LanceDB table in a worker thread (``asyncio.to_thread``), so the event loop
keeps running and the answers, errors and exactly-once guarantees are those of the synchronous path, not a
second implementation of them. The synchronous handle is built from the async one's native table
(``LanceTable.from_inner``): it shares its version, its ``checkout`` and its read-consistency setting.

Cancelling :func:`aingest`'s task stops the ingest **between two chunks**: the commit in flight completes,
the checkpoint records it, and the task then raises ``CancelledError``; rerunning the same call with the same
checkpoint resumes (``docs/reliability.md``). A cancelled :func:`aadd` still completes its one commit (it is
all or nothing) before ``CancelledError`` is raised; a cancelled :func:`asearch` returns at once (a search
writes nothing).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pyarrow as pa

from ..validation import HashplugTypeError
from .ingest import _CANCEL, IngestResult, add, ingest
from .search import search

__all__ = ["asearch", "aingest", "aadd", "sync_table", "sync_connection"]

#: The synchronous handle is kept on the async object itself (it references the async object, so a weak-keyed
#: cache would keep both alive for ever; as an attribute the pair is collected with the async handle).
_ATTR = "_hashplug_sync_handle"


def _async_types() -> tuple[type, type]:
    from lancedb.db import AsyncConnection
    from lancedb.table import AsyncTable

    return AsyncTable, AsyncConnection


async def sync_table(table: Any, owner: str = "hashplug") -> Any:
    """A synchronous ``LanceTable`` for an ``AsyncTable`` (sharing its native table: same version, same
    checkout); a synchronous table is returned as it is.

    Raises
    ------
    HashplugTypeError
        Not a LanceDB table (or a remote one, which has no native local table).
    """
    async_table, async_conn = _async_types()
    if isinstance(table, async_table):
        hit = getattr(table, _ATTR, None)
        if hit is None:
            from lancedb.table import LanceTable

            inner = getattr(table, "_inner", None)
            if inner is None or not hasattr(inner, "database"):
                raise HashplugTypeError(
                    f"{owner}: this AsyncTable ({type(table).__name__}) has no local native table (a LanceDB Cloud "
                    "table?); hashplug's async calls take tables of lancedb.connect_async(folder or URI)."
                )
            conn = await sync_connection(async_conn(inner.database()))
            # LanceDB's own LanceTable.from_inner wraps the *native* connection, whose methods then need a
            # running event loop in the calling thread; this handle wraps the AsyncTable itself (same native
            # table: same version and checkout) and a connection of the same native database
            hit = LanceTable(conn, table.name, _async=table)
            setattr(table, _ATTR, hit)
        return hit
    if hasattr(table, "add") and hasattr(table, "schema") and not asyncio.iscoroutinefunction(
        getattr(type(table), "schema", None)
    ):
        return table
    raise HashplugTypeError(
        f"{owner}: expected a LanceDB table (await db.open_table(name) on lancedb.connect_async(...), or a "
        f"synchronous one); got {type(table).__name__} {table!r:.60}."
    )


async def sync_connection(db: Any) -> Any:
    """A synchronous ``LanceDBConnection`` sharing an ``AsyncConnection``'s native connection (and its
    read-consistency setting); anything else is returned as it is."""
    _, async_conn = _async_types()
    if not isinstance(db, async_conn):
        return db
    hit = getattr(db, _ATTR, None)
    if hit is None:
        from lancedb.db import LanceDBConnection

        rci = await db.get_read_consistency_interval()
        # ``_inner=`` the AsyncConnection (what LanceDBConnection(uri) holds itself), not the native connection
        hit = LanceDBConnection.from_inner(db, rci)
        setattr(db, _ATTR, hit)
    return hit


async def asearch(table: Any, x: Any, limit: int = 10, **kwargs: Any) -> pa.Table:
    """:func:`hashplug.search` for an ``AsyncTable`` (or any table), without blocking the event loop.

    Parameters
    ----------
    table : lancedb.table.AsyncTable or lancedb.table.Table
        From ``await (await lancedb.connect_async(uri)).open_table(name)``.
    x : array-like or Query
        One sample.
    limit : int
        Rows to return.
    **kwargs
        :func:`hashplug.search`'s other arguments (``reranker``, ``where``, ``columns``, ``column``,
        ``nprobes``, ``exact``, ``use_hamming_index``, ...).

    Returns
    -------
    pyarrow.Table
        Exactly what :func:`hashplug.search` returns for the same table at the same version: the rows, nearest
        first, with ``_distance`` (Hamming).
    """
    sync = await sync_table(table, "hashplug.asearch")
    return await asyncio.to_thread(search, sync, x, limit, **kwargs)


async def _db_arg(table_or_db: Any, owner: str) -> Any:
    async_table, async_conn = _async_types()
    if isinstance(table_or_db, async_table):
        return await sync_table(table_or_db, owner)
    if isinstance(table_or_db, async_conn):
        return await sync_connection(table_or_db)
    return table_or_db


async def aingest(table_or_db: Any, source: Any, **kwargs: Any) -> IngestResult:
    """:func:`hashplug.ingest` for an ``AsyncTable`` or ``AsyncConnection`` (or anything ``ingest`` takes).

    The ingest runs in a worker thread on a synchronous handle of the same table or database: chunks, commits,
    checkpoint, resume and errors are :func:`hashplug.ingest`'s. Cancelling the awaiting task stops the ingest
    before its next chunk: the commit in flight completes and is recorded in the checkpoint, then
    ``CancelledError`` is raised; the same call again (same ``checkpoint=``, or ``id_column=``) resumes with
    every row once.

    Parameters
    ----------
    table_or_db : AsyncTable, AsyncConnection, or what :func:`hashplug.ingest` takes
        With a connection (or a path), pass ``name=``.
    source
        Anything :func:`hashplug.ingest` takes (numpy, Arrow data, a Polars DataFrame, ...). It is read in the
        worker thread.
    **kwargs
        :func:`hashplug.ingest`'s arguments (``name``, ``model``, ``chunk_size``, ``checkpoint``,
        ``id_column``, ...).

    Returns
    -------
    IngestResult
        Its ``table`` is the synchronous handle.
    """
    target = await _db_arg(table_or_db, "hashplug.aingest")
    return await _cancellable(ingest, target, source, **kwargs)


async def aadd(table: Any, data: Any, **kwargs: Any) -> IngestResult:
    """:func:`hashplug.add` for an ``AsyncTable`` (or any table): encode and check every row, then one atomic
    commit, in a worker thread. A cancelled task still completes the commit (all or nothing) before raising
    ``CancelledError``."""
    sync = await sync_table(table, "hashplug.aadd")
    return await _cancellable(add, sync, data, **kwargs)


async def _cancellable(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` in a worker thread; if the awaiting task is cancelled, ask it to stop between chunks, wait
    until it has, then raise ``CancelledError`` (never leave a commit running behind a task that reported
    it was done)."""
    stop = threading.Event()
    token = _CANCEL.set(stop)
    try:
        fut = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))  # the task copies the context
    finally:
        _CANCEL.reset(token)
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        stop.set()
        await asyncio.wait({fut})  # the commit in flight (if any) completes and is recorded
        if not fut.cancelled():
            fut.exception()  # retrieved (IngestCancelled is the stop asked for), so asyncio logs nothing
        raise
