"""Resumable, chunked ingestion into hashplug tables: :func:`ingest` and :func:`add`.

:func:`ingest`
    Load numpy arrays, pyarrow Tables / readers, parquet files or folders, pandas DataFrames or lists of
    dicts into a hashplug table in chunks. Each chunk is one atomic ``table.add`` (or ``merge_insert`` on an
    id column), and an optional JSON checkpoint records the table (rows and version) and a fingerprint of the
    source rows committed. It is written before the first commit and after each one, so rerunning the same
    call after a crash or SIGKILL at any point resumes where it stopped (nothing committed is lost, nothing is
    added twice); a checkpoint is never applied to another source or table, and rows another writer committed
    are never taken for this run's own. A new table is created by the commit of its first chunk. With an id
    column, each chunk's ``merge_insert`` holds a per-table ``flock`` and merges against the latest version,
    so concurrent jobs on one machine leave each id once.
:func:`add`
    ``table.add`` with hashplug's checks and error types, in one commit.

Serving side: numpy, pyarrow, LanceDB and :class:`hashplug.runtime.OnnxEncoder` only. If you parallelise
ingestion over processes, start them with the ``spawn`` method (``fork`` after LanceDB has started its
threads can hang).
"""

from __future__ import annotations

import contextvars
import json
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .._files import atomic_write
from ..validation import (
    HashplugError,
    HashplugTypeError,
    IngestError,
    ModelMismatchError,
    check_int_param,
    check_path,
)
from .arrow import _layout_arg, codes_to_arrow, normalize_layout, sample_converter

__all__ = ["ingest", "add", "IngestResult", "IngestCancelled", "iter_source", "arrow_source"]


# ---------------------------------------------------------------------------------------------------- sources
def _vectors_to_arrow(X: np.ndarray) -> pa.Array:
    X = np.ascontiguousarray(X)
    if X.ndim < 2:
        raise HashplugError(f"vectors must be an array of shape (n, d) or (n, *shape); got shape {X.shape}.")
    if not (np.issubdtype(X.dtype, np.integer) or np.issubdtype(X.dtype, np.floating) or X.dtype == np.bool_):
        raise HashplugError(
            f"vectors must be real numbers; got dtype {X.dtype}. Convert them with np.asarray(x, dtype=np.float32)."
        )
    arr: pa.Array = pa.array(X.reshape(-1))
    for s in reversed(X.shape[1:]):
        arr = pa.FixedSizeListArray.from_arrays(arr, int(s))
    return arr


def arrow_source(source: Any, *, batch_size: int = 65536) -> tuple[Iterator[pa.RecordBatch], int | None] | None:
    """``(batches, total rows or None)`` of Arrow data that is not a pyarrow Table / batch / reader: a
    ``pyarrow.dataset`` Dataset or Scanner, or an object exporting the Arrow C stream (``__arrow_c_stream__``:
    Polars DataFrame, DuckDB relation, ...) or array (``__arrow_c_array__``, a struct array = one batch)
    interface. None for anything else. Streams are read batch by batch (bounded memory).

    Raises
    ------
    HashplugError
        The object exports a stream that is not tabular (e.g. a single Polars Series: pass ``series.to_frame()``).
    """
    try:
        import pyarrow.dataset as pads
    except ImportError:  # pragma: no cover - part of pyarrow
        pads = None
    if pads is not None and isinstance(source, pads.Dataset):
        return iter(source.to_batches(batch_size=batch_size)), source.count_rows()
    if pads is not None and isinstance(source, pads.Scanner):
        return iter(source.to_batches()), None
    what = type(source).__name__
    if hasattr(source, "__arrow_c_stream__"):
        try:
            reader = pa.RecordBatchReader.from_stream(source)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise HashplugError(
                f"the {what} source exports an Arrow stream that is not a table of columns ({exc}); pass a table "
                "(e.g. series.to_frame() for a Polars Series)."
            ) from None
        height = getattr(source, "height", None)  # a Polars DataFrame knows its rows; others: None (a stream)
        return iter(reader), height if isinstance(height, int) and not isinstance(height, bool) else None
    if hasattr(source, "__arrow_c_array__"):
        try:
            batch = pa.record_batch(source)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise HashplugError(
                f"the {what} source exports an Arrow array that is not a struct of columns ({exc}); pass a table."
            ) from None
        return iter([batch]), batch.num_rows
    return None


def iter_source(
    source: Any,
    *,
    source_column: str = "vector",
    columns: Mapping[str, Any] | None = None,
    batch_size: int = 65536,
) -> tuple[Iterator[pa.RecordBatch], int | None, str]:
    """Normalise an ingest source to ``(batches, total rows or None, description)``.

    ``source`` is an ndarray of samples (with optional ``columns`` of the same length), a mapping of column
    name to arrays, a ``pyarrow.Table``, ``RecordBatchReader`` or iterable of ``RecordBatch``, Arrow data of
    any library (:func:`arrow_source`: a ``pyarrow.dataset``, a Polars DataFrame, a DuckDB relation, anything
    with ``__arrow_c_stream__`` / ``__arrow_c_array__``), a pandas DataFrame, or the path of a parquet file or
    folder of parquet files (read in sorted file order).
    """
    if columns is not None and not isinstance(columns, Mapping):
        raise HashplugTypeError(
            f"columns must be a mapping of column name to values (e.g. {{'id': ids}}); got {type(columns).__name__}."
        )
    if columns and not isinstance(source, np.ndarray):
        raise HashplugError(
            f"columns= is for an ndarray source; this {type(source).__name__} source carries its columns itself."
        )
    if isinstance(source, np.ndarray):
        cols = {source_column: _vectors_to_arrow(source)}
        for name, vals in (columns or {}).items():
            if isinstance(vals, (pa.Array, pa.ChunkedArray)):
                cols[name] = vals
                continue
            v = np.asarray(vals)
            if v.ndim != 1:
                raise HashplugError(
                    f"columns[{name!r}] must be one value per row (a 1-D array or list); got shape {v.shape}."
                )
            try:
                cols[name] = pa.array(v)
            except (pa.ArrowException, ValueError, TypeError) as exc:
                raise HashplugError(f"columns[{name!r}] cannot be stored in a table column: {exc}.") from None
        lens = {k: len(v) for k, v in cols.items()}
        if len(set(lens.values())) > 1:
            raise HashplugError(f"columns have different lengths: {lens}.")
        source = pa.table(cols)
        desc = f"ndarray{tuple(np.shape(source[source_column]))}"
    elif isinstance(source, Mapping):
        cols = {
            k: (_vectors_to_arrow(np.asarray(v)) if isinstance(v, np.ndarray) and v.ndim >= 2 else v)
            for k, v in source.items()
        }
        try:
            source = pa.table(cols)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            lens = {k: len(v) if hasattr(v, "__len__") else None for k, v in cols.items()}
            raise HashplugError(f"the mapping's columns do not make a table (lengths {lens}): {exc}.") from None
        desc = "mapping"
    elif isinstance(source, list) and source and all(isinstance(r, Mapping) or hasattr(r, "model_dump") for r in source):
        rows = [r if isinstance(r, Mapping) else r.model_dump() for r in source]  # dicts or LanceModel rows
        source = pa.Table.from_pylist([{k: v for k, v in r.items() if v is not None} for r in rows])
        desc = f"list of {len(rows)} rows"
    else:
        desc = type(source).__name__
    if type(source).__module__.startswith("pandas"):
        df = source
        vec = {}
        if source_column in df.columns:
            if len(df):
                try:
                    stacked = np.stack([np.asarray(v, dtype=np.float32) for v in df[source_column].to_numpy()])
                except (ValueError, TypeError) as exc:
                    raise HashplugError(
                        f"the DataFrame's column {source_column!r} must hold one numeric vector of the same length "
                        f"per row: {exc}."
                    ) from None
                vec[source_column] = _vectors_to_arrow(stacked)
            else:
                vec[source_column] = pa.array([], type=pa.list_(pa.float32()))
            df = df.drop(columns=[source_column])
        try:
            t = pa.Table.from_pandas(df, preserve_index=False)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise HashplugError(f"the DataFrame's columns cannot be stored in a table: {exc}.") from None
        for k, v in vec.items():
            t = t.append_column(k, v)
        source, desc = t, "DataFrame"
    if isinstance(source, (str, os.PathLike)):
        import pyarrow.parquet as pq

        p = Path(source)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*.parquet") if f.is_file())
        elif p.is_file():
            files = [p]
        else:
            raise HashplugError(f"no parquet file or folder at {str(p)!r}.")
        if not files:
            raise HashplugError(f"no .parquet files under {str(p)!r}.")
        total = 0
        for f in files:
            try:
                total += pq.ParquetFile(f).metadata.num_rows
            except (pa.ArrowException, OSError) as exc:
                raise HashplugError(
                    f"{str(f)!r} is not a readable parquet file ({exc}); pass a parquet file or folder, an .npy/.npz "
                    "array (CLI), or an array / Arrow table (API)."
                ) from None

        def read() -> Iterator[pa.RecordBatch]:
            for f in files:
                yield from pq.ParquetFile(f).iter_batches(batch_size=batch_size)

        return read(), total, f"parquet:{p}"
    if isinstance(source, pa.Table):
        return iter(source.to_batches(max_chunksize=batch_size)), source.num_rows, desc
    if isinstance(source, pa.RecordBatch):
        return iter([source]), source.num_rows, desc
    if isinstance(source, pa.RecordBatchReader):
        return iter(source), None, desc
    arrow = arrow_source(source, batch_size=batch_size)
    if arrow is not None:
        return arrow[0], arrow[1], desc
    if isinstance(source, Iterable) and not isinstance(source, (str, bytes, Mapping)):
        return iter(source), None, desc
    raise HashplugError(
        f"cannot ingest a {type(source).__name__}; pass an ndarray, Arrow data (a pyarrow Table, RecordBatchReader "
        "or dataset, or any object with __arrow_c_stream__ / __arrow_c_array__ such as a Polars DataFrame or a "
        "DuckDB relation), a pandas DataFrame, or the path of a parquet file or folder."
    )


def _fit_source(col: Any, want: pa.DataType) -> Any:
    """A column of numeric samples re-nested as the table declares ``want``, when the values per row agree:
    the flat rows of an ``(n, *shape)`` array into nested fixed-size lists (``fixed_size_list<...>[s1]...``),
    or nested rows (a Polars ``List(List(Float64))`` of images) into the flat ``list<float>`` a new table
    declares. Else ``col`` unchanged (LanceDB casts it, or refuses with its own error). Called on chunks whose
    samples were converted and checked already (each row holds the model's number of values)."""
    sizes: list[int] = []
    t = want
    while pa.types.is_fixed_size_list(t):
        sizes.append(int(t.list_size))
        t = t.value_type
    flat_list = not sizes and (pa.types.is_list(t) or pa.types.is_large_list(t))
    if flat_list:
        t = t.value_type
    if not (len(sizes) >= 2 or flat_list) or not (pa.types.is_floating(t) or pa.types.is_integer(t)):
        return col
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if arr.null_count:
        return col
    vals: Any = arr
    depth = 0
    while pa.types.is_fixed_size_list(vals.type) or pa.types.is_list(vals.type) or pa.types.is_large_list(vals.type):
        if vals.null_count:
            return col
        vals = vals.flatten()
        depth += 1
    n = len(arr)
    if not (pa.types.is_floating(vals.type) or pa.types.is_integer(vals.type)) or not n or len(vals) % n:
        return col
    per_row = len(vals) // n
    if flat_list:
        if depth < 2:
            return col  # one level already: LanceDB's cast handles list -> list
        offsets = pa.array(np.arange(0, n * per_row + 1, per_row, dtype=np.int64 if pa.types.is_large_list(want)
                                     else np.int32))
        cls = pa.LargeListArray if pa.types.is_large_list(want) else pa.ListArray
        return cls.from_arrays(offsets, vals.cast(t))
    if per_row != int(np.prod(sizes)):
        return col
    out: pa.Array = vals.cast(t)
    for size in reversed(sizes):
        out = pa.FixedSizeListArray.from_arrays(out, size)
    return out


def _rechunk(batches: Iterator[pa.RecordBatch], size: int, skip: int) -> Iterator[pa.Table]:
    """Regroup a batch stream into tables of ``size`` rows, after skipping the first ``skip`` rows."""
    buf: list[pa.RecordBatch] = []
    n = 0
    for b in batches:
        if isinstance(b, pa.Table):
            parts = b.to_batches()
        elif isinstance(b, pa.RecordBatch):
            parts = [b]
        else:
            raise HashplugTypeError(
                f"an iterable source must yield pyarrow RecordBatches (or Tables); got a {type(b).__name__}. Pass "
                "an ndarray, a list of dicts or a pyarrow Table for in-memory rows."
            )
        for part in parts:
            if skip:
                if part.num_rows <= skip:
                    skip -= part.num_rows
                    continue
                part = part.slice(skip)
                skip = 0
            while part.num_rows:
                take = min(size - n, part.num_rows)
                buf.append(part.slice(0, take))
                n += take
                part = part.slice(take)
                if n == size:
                    yield pa.Table.from_batches(buf)
                    buf, n = [], 0
    if n:
        yield pa.Table.from_batches(buf)


# ---------------------------------------------------------------------------------------------------- cancel
#: Set by :func:`hashplug.aingest` around the worker thread that runs :func:`ingest`: when the awaiting task is
#: cancelled the event is set, and the ingest stops before its next chunk (never inside a commit).
_CANCEL: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("hashplug_ingest_cancel",
                                                                                 default=None)


class IngestCancelled(Exception):  # noqa: N818 - not an error: the caller asked for it
    """An ingest stopped between two chunks because its :func:`hashplug.aingest` task was cancelled.

    Attributes
    ----------
    rows_committed : int
        Source rows committed (by this call and earlier runs); they stay, and the checkpoint records them.
    rows_written, chunks : int
        Rows and commits of this call.
    """

    def __init__(self, rows_committed: int, rows_written: int, chunks: int) -> None:
        super().__init__(
            f"hashplug.aingest was cancelled after {rows_written} rows in {chunks} commits ({rows_committed} rows of "
            "the source are committed); rerun it with the same checkpoint to resume."
        )
        self.rows_committed, self.rows_written, self.chunks = rows_committed, rows_written, chunks


def _stop_if_cancelled(committed: int, written: int, chunks: int) -> None:
    ev = _CANCEL.get()
    if ev is not None and ev.is_set():
        raise IngestCancelled(committed, written, chunks)


# ---------------------------------------------------------------------------------------------------- ingest
@dataclass
class IngestResult:
    """What :func:`ingest` did.

    Attributes
    ----------
    table : lancedb.table.Table
    rows_written : int
        Rows committed by this call.
    rows_skipped : int
        Rows skipped because an earlier run had committed them (resume).
    chunks : int
        Commits made by this call.
    """

    table: Any
    rows_written: int
    rows_skipped: int
    chunks: int


def _connect(table_or_uri: Any, name: str | None) -> tuple[Path, str]:
    """``(database path, table name)`` for a database path + ``name`` or a ``<name>.lance`` path (nothing
    created or opened)."""
    p = check_path(table_or_uri, "table_or_uri (an open LanceDB table, or a database path)", "hashplug.ingest")
    if name is None:
        if p.suffix != ".lance":
            raise HashplugError(
                "ingest(uri, ...) needs name= (the table in the database at uri), or the path of a '<name>.lance' table."
            )
        p, name = p.parent, p.stem
    if not isinstance(name, str) or not name:
        raise HashplugTypeError(f"hashplug.ingest: name must be a non-empty str (the table name); got {name!r:.60}.")
    if "://" not in str(p):
        if p.exists() and not p.is_dir():
            raise HashplugError(
                f"hashplug.ingest: the database path {str(p)!r} is a file, not a folder; pass the folder of a LanceDB "
                "database (it is created if missing)."
            )
        if not p.exists() and p.parent != p and not p.parent.is_dir():
            raise HashplugError(
                f"hashplug.ingest: the database folder {str(p)!r} cannot be created: its parent {str(p.parent)!r} is "
                "not an existing folder."
            )
    return p, name


def _is_connection(obj: Any) -> bool:
    """A LanceDB (sync) connection: it opens and creates tables and is no table itself."""
    return hasattr(obj, "open_table") and hasattr(obj, "create_table") and not hasattr(obj, "add")


def _db(p: Any) -> Any:
    """``lancedb.connect(p)`` (LanceDB creates a missing local folder); a connection is returned as it is."""
    import lancedb

    if _is_connection(p):
        return p
    try:
        return lancedb.connect(str(p))
    except (OSError, ValueError) as exc:
        raise HashplugError(f"hashplug.ingest: cannot open the database at {str(p)!r}: {exc}") from None


def _open_existing(p: Any, name: str) -> Any:
    """The table ``name`` of the database at ``p`` (a path or a connection), or None when it does not exist
    (nothing is created)."""
    if not _is_connection(p) and "://" not in str(p) and not p.is_dir():
        return None
    try:
        return _db(p).open_table(name)
    except (ValueError, FileNotFoundError):  # LanceDB: "Table '...' was not found"
        return None


def _as_function(model: Any, layout: str | None) -> Any:
    from .function import HashplugEmbeddings

    if isinstance(model, HashplugEmbeddings):
        return model
    from lancedb.embeddings import get_registry

    kwargs: dict[str, Any]
    if hasattr(model, "file_sha256") and hasattr(model, "model_bytes"):  # an OnnxEncoder
        from .store import db_reference

        # where it was read from, or (bytes: unpickled, or from_bytes) its content, which this process holds
        where = model.location if model.location is not None else db_reference(model.file_sha256)
        kwargs = {"model": where, "file_sha256": model.file_sha256}
    else:
        kwargs = {"model": str(model)}
    if layout is not None:
        kwargs["layout"] = layout
    return get_registry().get("hashplug").create(**kwargs)


_CKPT_VERSION = 2
#: Every ``_DIGEST_STRIDE``-th source row (by its index in the whole source) enters the checkpoint's digest.
_DIGEST_STRIDE = 61
#: A checkpoint is a few hundred bytes; anything much larger is not one (and is not read into memory).
_CKPT_MAX_BYTES = 1 << 20
#: The keys of a checkpoint and their types (``table_version`` / ``table_rows``: since 0.2, optional when read).
_CKPT_KEYS: dict[str, type | tuple[type, ...]] = {
    "version": int,
    "source": str,
    "table": dict,
    "model_sha256": str,
    "chunk_size": int,
    "base_rows": int,
    "rows_done": int,
    "digest": str,
    "finished": bool,
}
_CKPT_OPTIONAL: dict[str, type | tuple[type, ...]] = {"table_version": int, "table_rows": int, "digest_rule": str}


class _SourceDigest:
    """A fingerprint of a source's first rows: the row count and every ``_DIGEST_STRIDE``-th sample's values.

    It depends only on the rows and their positions (not on how the source is split into batches: each sampled
    row enters as its index followed by its values), so a rerun recomputes it over the rows its checkpoint says
    were committed and refuses a different source. Hashing a sample of rows keeps its cost negligible next to
    encoding and writing. ``legacy=True`` is the rule of checkpoints written before ``"digest_rule": "row"``
    (indices and values per batch, which depended on the batch split); it is kept to resume them.
    """

    def __init__(self, column: str, conv: Any, legacy: bool = False) -> None:
        import hashlib

        self.column, self.conv, self.legacy = column, conv, legacy
        self.rows = 0
        self._h = hashlib.blake2b(digest_size=16)

    def update(self, batch: pa.RecordBatch | pa.Table, samples: Any = None) -> None:
        """Add a batch; ``samples``: its source column already converted (what was encoded), so the sampled
        rows are taken from it instead of being converted and checked a second time."""
        n = batch.num_rows
        first = (-self.rows) % _DIGEST_STRIDE
        idx = np.arange(first, n, _DIGEST_STRIDE)
        if idx.size:
            if samples is not None:
                X = {k: v[idx] for k, v in samples.items()} if isinstance(samples, dict) else samples[idx]
            else:
                col = batch.column(self.column).take(pa.array(idx))
                X = self.conv(col, name=f"column {self.column!r}", row_offset=self.rows)
            vals = list(X.values()) if isinstance(X, dict) else [X]
            pos = (self.rows + idx).astype("<i8")
            if self.legacy:
                self._h.update(pos.tobytes())
                for v in vals:
                    self._h.update(v.astype("<f4").tobytes())
            else:
                parts = [pos.view(np.uint8).reshape(idx.size, 8)]
                parts += [np.ascontiguousarray(v, "<f4").reshape(idx.size, -1).view(np.uint8) for v in vals]
                self._h.update(np.hstack(parts).tobytes())
        self.rows += n

    def hexdigest(self) -> str:
        h = self._h.copy()
        h.update(np.int64(self.rows).tobytes())
        return h.hexdigest()


def _table_identity(table: Any) -> dict[str, Any]:
    return {"name": getattr(table, "name", None), "uri": str(getattr(table, "uri", "") or "") or None}


def _new_table_identity(db_path: Any, name: str) -> dict[str, Any]:
    """What :func:`_table_identity` returns for the table ``name`` once it is created in ``db_path`` (a path or
    a connection)."""
    if _is_connection(db_path):
        db_path = str(getattr(db_path, "uri", "") or "")
    uri = str(db_path) if "://" in str(db_path) else os.path.abspath(db_path)
    return {"name": name, "uri": f"{uri.rstrip('/')}/{name}.lance"}


def _identity_key(identity: dict[str, Any]) -> tuple[Any, Any]:
    """A table identity for comparison: the same table reached by ``a/../a/db`` or ``./db`` is the same."""
    uri = identity.get("uri")
    if uri and "://" not in uri:
        uri = os.path.normpath(uri)
    return identity.get("name"), uri


def _check_checkpoint_path(checkpoint: Any) -> Path:
    """``checkpoint`` as a Path whose folder exists and is writable; refused before anything is written."""
    path = check_path(checkpoint, "checkpoint (the path of a JSON file)", "hashplug.ingest")
    where = f"hashplug.ingest: checkpoint {str(path)!r}"
    if path.is_dir():
        raise HashplugError(f"{where} is a folder; pass the path of a file in it, e.g. {str(path / 'ingest.json')!r}.")
    if path.exists() and not path.is_file():
        raise HashplugError(f"{where} exists but is not a regular file; pass the path of a JSON file.")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise HashplugError(
            f"{where}: its folder {str(parent)!r} does not exist; create it first (mkdir -p {str(parent)!r}) or "
            "choose another path. Nothing was written."
        )
    if not parent.is_dir():
        raise HashplugError(f"{where}: {str(parent)!r} is not a folder. Nothing was written.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise HashplugError(
            f"{where}: its folder {str(parent)!r} is not writable; choose a writable folder. Nothing was written."
        )
    return path


def _read_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (None if there is none), every key checked; anything else is refused."""
    if not path.exists():
        return None
    size = path.stat().st_size
    if size > _CKPT_MAX_BYTES:
        raise HashplugError(
            f"checkpoint {str(path)!r} is {size} bytes, not a hashplug ingest checkpoint (a small JSON file); pass "
            "another path, or delete it to start over."
        )
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HashplugError(
            f"checkpoint {str(path)!r} is unreadable ({exc}); delete it to start over."
        ) from None
    if not isinstance(state, dict) or state.get("version") != _CKPT_VERSION:
        raise HashplugError(
            f"checkpoint {str(path)!r} is not a hashplug ingest checkpoint of version {_CKPT_VERSION} (found "
            f"version {state.get('version') if isinstance(state, dict) else None!r}); it cannot prove which rows "
            "it covers. Delete it and rerun with id_column= (merge_insert), which never duplicates rows."
        )
    bad = []
    for key, typ in {**_CKPT_KEYS, **_CKPT_OPTIONAL}.items():
        if key not in state:
            if key in _CKPT_KEYS:
                bad.append(f"{key!r} missing")
            continue
        val = state[key]
        ok = isinstance(val, typ) and not (typ is int and isinstance(val, bool))
        if ok and typ is int and val < 0:
            ok = False
        if ok and key == "table":
            ok = set(val) == {"name", "uri"} and all(v is None or isinstance(v, str) for v in val.values())
        if not ok:
            bad.append(f"{key!r} is {val!r:.40}")
    if not bad and state["chunk_size"] < 1:
        bad.append(f"'chunk_size' is {state['chunk_size']}")
    if not bad and state.get("digest_rule", "row") != "row":
        bad.append(f"'digest_rule' is {state['digest_rule']!r}")
    if bad:
        raise HashplugError(
            f"checkpoint {str(path)!r} is not a valid hashplug ingest checkpoint ({'; '.join(bad)}); it cannot prove "
            "which rows it covers. Delete it to start over (with id_column= a restart never duplicates rows)."
        )
    return state


def _atomic_write(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` as JSON: a temporary file, flushed to disk, then renamed over ``path``."""
    try:
        # atomic: a crash leaves the old or the new checkpoint, never half of one
        atomic_write(path, lambda f: f.write(json.dumps(state, indent=1).encode()))
    except OSError as exc:
        raise HashplugError(f"cannot write checkpoint {str(path)!r}: {exc}.") from None


def _start_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write the first checkpoint, before the first commit: the table's rows and version it starts from."""
    _atomic_write(path, state)


def _write_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Update the checkpoint after a commit."""
    _atomic_write(path, state)


def _skip_verified(
    batches: Iterator[pa.RecordBatch],
    skip: int,
    checks: dict[int, str],
    digest: _SourceDigest,
    mismatch: Any,
) -> Iterator[pa.RecordBatch]:
    """Drop the first ``skip`` rows of a stream, feeding them to ``digest``; at each row count in ``checks`` the
    digest must equal the recorded one (else ``mismatch(rows, got, want)`` raises). Yields the rest."""
    pending = sorted(c for c in checks if 0 < c <= skip)
    for b in batches:
        for part in b.to_batches() if isinstance(b, pa.Table) else [b]:
            while part.num_rows and digest.rows < skip:
                stop = min(pending[0] if pending else skip, skip)
                take = min(part.num_rows, stop - digest.rows)
                digest.update(part.slice(0, take))
                part = part.slice(take)
                if pending and digest.rows == pending[0]:
                    got = digest.hexdigest()
                    if got != checks[pending[0]]:
                        mismatch(pending[0], got, checks[pending[0]])
                    pending.pop(0)
            if part.num_rows:
                yield part
    if digest.rows < skip:
        mismatch(digest.rows, None, None)


def _resume_point(
    state: dict[str, Any], rows_now: int, version_now: int, exists: bool, chunk_size: int, where: str
) -> tuple[int, int]:
    """Where an append-mode run resumes: ``(rows the checkpoint records, rows committed after it)``.

    The checkpoint holds the table's rows and version after this run's last recorded commit (or before its
    first). The table may be at that version (resume there) or one commit later with up to one chunk more (the
    run was killed between a commit and its checkpoint update: those rows are committed, and
    :func:`_verify_tail` checks that they are the next rows of this source before skipping them). Anything
    else means another writer changed the table, and which rows of this source it holds cannot be known: an
    error, never a guess.
    """
    skip = int(state["rows_done"])
    recorded_rows = int(state.get("table_rows", int(state["base_rows"]) + skip))
    recorded_version = state.get("table_version")
    fix = (
        "Rerun with id_column= (an upsert by id never duplicates rows), or delete the checkpoint and ingest the "
        "rows that are missing."
    )
    if not exists:
        if skip == 0 and not recorded_version:
            return 0, 0  # killed before the table was created with the first chunk
        raise HashplugError(
            f"{where} records {skip} rows committed to table {state['table']}, which does not exist any more "
            f"(dropped?). Delete the checkpoint to start over."
        )
    derived = rows_now - recorded_rows
    moved = None if recorded_version is None else version_now - int(recorded_version)
    if derived == 0 and moved in (None, 0):
        return skip, 0
    if 0 < derived <= chunk_size and moved in (None, 1):
        return skip, derived  # a kill between a commit and its checkpoint update, if these rows are this source's
    at = "" if recorded_version is None else f" at version {recorded_version}"
    raise HashplugError(
        f"{where} records {skip} rows of its source committed and the table at {recorded_rows} rows{at}, but the "
        f"table now has {rows_now} rows at version {version_now}: another writer changed it, so the rows of this "
        f"source it holds cannot be known. {fix}"
    )


def _row_keys(X: Any) -> list[bytes]:
    """Each sample's float32 bytes (a multi-input sample: its inputs' bytes joined), sorted: an order-free
    fingerprint of a set of rows."""
    parts = list(X.values()) if isinstance(X, dict) else [X]
    rows = [np.ascontiguousarray(np.asarray(v, "<f4")).reshape(len(v), -1) for v in parts]
    return sorted(b"".join(r[i].tobytes() for r in rows) for i in range(len(rows[0])))


def _verify_tail(
    batches: Iterator[pa.RecordBatch],
    n: int,
    table: Any,
    src: str,
    conv: Any,
    digest: _SourceDigest,
    mismatch: Any,
) -> Iterator[pa.RecordBatch]:
    """Take the next ``n`` source rows and check that they are the table's last ``n`` rows (the commit a kill
    left out of the checkpoint); feed them to ``digest`` and yield the rest. ``mismatch()`` raises if not."""
    got: list[pa.RecordBatch] = []
    have, verified = 0, n == 0
    for b in batches:
        for part in b.to_batches() if isinstance(b, pa.Table) else [b]:
            if have < n:
                take = min(n - have, part.num_rows)
                got.append(part.slice(0, take))
                have += take
                part = part.slice(take)
            if have == n and not verified:
                mine = pa.Table.from_batches(got)
                rows = table.count_rows()
                tail = table.take_offsets(list(range(rows - n, rows))).select([src]).to_arrow()
                if tail.num_rows != n or _row_keys(conv(tail[src])) != _row_keys(conv(mine[src])):
                    mismatch()
                digest.update(mine)
                verified = True
            if part.num_rows:
                yield part
    if not verified:
        mismatch()


class _TableLock:
    """An advisory lock on one table for ``id_column`` writers (``fcntl.flock`` on a file beside the table).

    Held around each chunk's ``merge_insert`` (and the table's creation): two processes upserting into one
    table commit one at a time, each merging against the latest version, so the same id is never inserted
    twice. The OS releases it when a process dies. It covers processes on one machine (local disk); not
    several machines, a network file system without working ``flock``, object storage, or Windows.
    """

    def __init__(self, uri: str | None) -> None:
        self.path = None
        if uri and "://" not in uri:
            try:
                import fcntl  # noqa: F401 - POSIX only
            except ImportError:  # pragma: no cover - Windows
                pass
            else:
                self.path = Path(uri.rstrip("/") + ".hashplug-ingest.lock")
        self._fd: int | None = None

    def __enter__(self) -> _TableLock:
        if self.path is not None:
            import fcntl

            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)  # the database folder of a new table
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _show_ids(values: list[Any], n: int = 8) -> str:
    shown = ", ".join(repr(v) for v in values[:n])
    return f"[{shown}{', ...' if len(values) > n else ''}] ({len(values)} id{'s' if len(values) != 1 else ''})"


def _id_values(col: Any) -> np.ndarray | list[Any]:
    """An id column as int64 numpy (integer ids) or a Python list (any other type)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_integer(col.type):
        return col.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return col.to_pylist()


class _SeenIds:
    """The ids this call has written; a source id seen twice is an error naming it (never a silent update)."""

    def __init__(self, id_column: str) -> None:
        self.id_column = id_column
        self._sorted = np.empty(0, np.int64)
        self._set: set[Any] = set()

    def check(self, col: Any, start: int, committed: int) -> None:
        """Refuse nulls and duplicates in ``col`` (source rows from ``start``), within it or with earlier chunks."""
        name = self.id_column
        if col.null_count:
            row = start + int(np.flatnonzero(np.asarray(col.is_null()))[0])
            raise IngestError(
                f"id_column {name!r} is null at source row {row}; every row needs an id to upsert by. Nothing of "
                f"the chunk from row {start} was written ({committed} rows of this source are committed).",
                rows_committed=committed,
                row=row,
            )
        vals = _id_values(col)
        if isinstance(vals, np.ndarray):
            u, counts = np.unique(vals, return_counts=True)
            dup = u[counts > 1].tolist()
            if self._sorted.size:
                pos = np.minimum(np.searchsorted(self._sorted, u), self._sorted.size - 1)
                dup += u[self._sorted[pos] == u].tolist()
        else:
            seen_here: set[Any] = set()
            dup = []
            for v in vals:
                if v in seen_here or v in self._set:
                    dup.append(v)
                seen_here.add(v)
            u = None
        if dup:
            try:
                dup = sorted(set(dup))
            except TypeError:  # ids of mixed types
                dup = sorted(set(dup), key=repr)
            first = next(start + i for i, v in enumerate(vals) if v in set(dup))
            raise IngestError(
                f"the source has duplicate ids in id_column {name!r}: {_show_ids(dup)} (first repeat in the chunk from "
                f"source row {start}, row {first} holds one). With id_column= each id is one row: a repeat would "
                f"silently overwrite the earlier row. Make the ids unique. {committed} rows of this source are "
                "committed; nothing of this chunk was written.",
                rows_committed=committed,
                row=first,
            )
        if u is not None:
            self._sorted = np.union1d(self._sorted, u)
        else:
            self._set.update(vals)


def _check_table_ids(table: Any, id_column: str) -> None:
    """Refuse ``id_column`` upserts into a table whose id column is missing or already holds an id twice."""
    if id_column not in table.schema.names:
        raise HashplugError(
            f"id_column {id_column!r} is not a column of table {getattr(table, 'name', '?')!r} (columns: "
            f"{table.schema.names}); pass the table's id column, or ingest without id_column."
        )
    if table.count_rows() == 0:
        return
    import pyarrow.compute as pc

    col = table.search().select([id_column]).limit(None).to_arrow()[id_column]
    counts = pc.value_counts(col)
    dup = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1)).to_pylist()
    if dup:
        raise HashplugError(
            f"table {getattr(table, 'name', '?')!r} already holds duplicate ids in column {id_column!r}: "
            f"{_show_ids(dup)}; an upsert by id (id_column=) would update every copy. Delete the extra rows first "
            f"(e.g. table.delete(\"{id_column} IN (...)\") and re-ingest those ids). Nothing was written."
        )


def _check_columns(table: Any, first: pa.Table, src: str, col: str) -> None:
    """The source's other columns must exist in the table with types LanceDB can cast to (else LanceDB raises
    its own errors mid-commit)."""
    names = table.schema.names
    extra = [c for c in first.column_names if c not in names and c != col]
    if extra:
        raise HashplugError(
            f"the source has column(s) {extra} that table {getattr(table, 'name', '?')!r} does not have (columns: "
            f"{names}); drop them from the source, or add them to the table first (table.add_columns)."
        )
    for c in first.column_names:
        if c in (src, col):
            continue
        want = table.schema.field(c).type
        try:
            first[c].cast(want)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise HashplugError(
                f"column {c!r} of the source ({first.schema.field(c).type}) cannot be stored in column {c!r} of "
                f"table {getattr(table, 'name', '?')!r} ({want}): {exc}. Convert it first."
            ) from None
    missing = [f.name for f in table.schema if f.name not in first.column_names and f.name != col and not f.nullable]
    if missing:
        raise HashplugError(
            f"table {getattr(table, 'name', '?')!r} requires column(s) {missing}, which the source does not have."
        )


def ingest(
    table_or_uri: Any,
    source: Any,
    *,
    name: str | None = None,
    model: Any = None,
    layout: str | None = None,
    source_column: str = "vector",
    code_column: str = "code",
    columns: Mapping[str, Any] | None = None,
    id_column: str | None = None,
    chunk_size: int = 65536,
    checkpoint: str | os.PathLike | None = None,
    progress: bool = True,
    store_model: bool = True,
    code: str | None = None,
) -> IngestResult:
    """Encode and load data into a hashplug table in atomic chunks, resumably and exactly once.

    Parameters
    ----------
    table_or_uri : lancedb.table.Table, LanceDB connection, or str / PathLike
        An open table; a database (a ``lancedb.connect(...)`` connection, or its folder / URI) together with
        ``name``; or a ``<name>.lance`` path. A missing table is created (needs ``model``) with
        :func:`hashplug.integrations.lancedb.schema`, in the same commit as the first chunk: a call that fails
        before writing any row leaves no table behind. (``AsyncTable`` / ``AsyncConnection``: use
        :func:`hashplug.aingest`.)
    source : ndarray, mapping, Arrow data, DataFrame or path
        The rows. An ndarray holds the samples (shape ``(n, *input_shape)``); give other columns in ``columns``.
        Arrow data: a ``pyarrow.Table`` / ``RecordBatch`` / ``RecordBatchReader`` / iterable of
        ``RecordBatch``, a ``pyarrow.dataset`` Dataset or Scanner, or any object exporting the Arrow C stream
        or array interface (``__arrow_c_stream__`` / ``__arrow_c_array__``: a Polars DataFrame, a DuckDB
        relation, ...), read as a stream. A path is a parquet file or a folder of parquet files.
    name : str or None
        Table name inside the database at ``table_or_uri``.
    model : str, OnnxEncoder, HashplugEmbeddings or None
        The encoder. Default: the table's own function. If given for an existing table it must be the very
        file the table was built with (same sha256), else :class:`~hashplug.validation.ModelMismatchError`
        is raised before anything is written.
    layout : {"packed", "indices"} or None
        Code layout when a new table is created (``code="dense" | "sparse"`` is its deprecated 0.1.0 name).
    source_column, code_column : str
        Names of the sample and code columns.
    columns : mapping or None
        Extra columns for an ndarray source.
    id_column : str or None
        If given, each chunk is written with ``merge_insert(id_column)`` (update matching rows, insert new
        ones), so a retried chunk or a rerun never duplicates rows even without a checkpoint. Each chunk's
        merge holds an advisory lock on the table (a ``<table>.lance.hashplug-ingest.lock`` file beside it,
        ``fcntl.flock``) and merges against the table's latest version, so two processes ingesting into one
        table on one machine leave each id once. The lock does not reach other machines (object storage, a
        network file system): there, run one writer per table. A source id that appears twice, a null id, or a
        table that already holds an id twice is an error naming the ids (never a silent overwrite).
    chunk_size : int
        Rows per commit (each commit is atomic: a failing chunk leaves the table unchanged).
    checkpoint : str, PathLike or None
        JSON file recording the rows committed so far; its folder must exist. It is written before the first
        commit (with the table's row count and version) and after each one, so rerunning the same call after a
        crash or SIGKILL at any point resumes exactly: nothing committed is lost or written twice. If the table
        changed in a way this run cannot account for (another writer in append mode), the rerun raises
        instead of guessing.
    progress : bool
        Show a tqdm progress bar.
    store_model : bool
        When the call creates the table: copy the model into the database's model store
        (``<db>/_hashplug/models/<sha256>.onnx``, once, atomically, just before the first commit) and name that
        copy in the table's config relative to the database, so the table travels with the database folder
        (default). False: the config names the model where it was found (an absolute path or a URI).

    Returns
    -------
    IngestResult

    Raises
    ------
    HashplugError
        Bad input (wrong dimension, NaN, nulls, an empty source, a bad checkpoint path or file); chunks
        committed before the bad one stay.
    IngestError
        A bad chunk (bad values, duplicate or null ids) after earlier chunks were committed; says how many.
    ModelMismatchError
        The model does not match the table.
    """
    from .tables import check_table

    if not isinstance(store_model, (bool, np.bool_)):
        raise HashplugTypeError(f"hashplug.ingest: store_model must be True or False; got {store_model!r:.40}.")
    layout = _layout_arg(layout, code, "hashplug.ingest")
    if layout is not None:
        layout = normalize_layout(layout, owner="hashplug.ingest")
    chunk_size = check_int_param(chunk_size, "chunk_size", "hashplug.ingest", 1, _ONE_COMMIT)
    for arg, val in (("source_column", source_column), ("code_column", code_column)):
        if not isinstance(val, str) or not val:
            raise HashplugTypeError(f"hashplug.ingest: {arg} must be a non-empty str (a column name); got {val!r:.60}.")
    if id_column is not None and (not isinstance(id_column, str) or not id_column):
        raise HashplugTypeError(
            f"hashplug.ingest: id_column must be a column name (str) or None; got {id_column!r:.60}."
        )
    ckpt_path = _check_checkpoint_path(checkpoint) if checkpoint is not None else None
    state = _read_checkpoint(ckpt_path) if ckpt_path is not None else None

    from .tables import refuse_async

    refuse_async(table_or_uri, "hashplug.ingest")
    table: Any = None
    db_path: Any = None  # the database: a Path, or a LanceDB connection
    if hasattr(table_or_uri, "add") and hasattr(table_or_uri, "schema"):
        table = table_or_uri
        if name is not None:
            raise HashplugError("hashplug.ingest: name= is for a database path; an open table already has its name.")
    elif _is_connection(table_or_uri):
        if not isinstance(name, str) or not name:
            raise HashplugTypeError(
                f"hashplug.ingest: with a LanceDB connection, name= must be the table's name (a non-empty str); got "
                f"{name!r:.60}."
            )
        db_path = table_or_uri
        table = _open_existing(db_path, name)
        if table is None and model is None:
            raise HashplugError(
                f"table {name!r} does not exist in the database at {str(getattr(db_path, 'uri', '?'))!r}; pass model= "
                "to create it."
            )
    else:
        db_path, name = _connect(table_or_uri, name)
        table = _open_existing(db_path, name)
        if table is None and model is None:
            raise HashplugError(f"table {name!r} does not exist at {str(db_path)!r}; pass model= to create it.")

    batches, total, desc = iter_source(
        source, source_column=source_column, columns=columns, batch_size=chunk_size
    )
    chunks = _rechunk(batches, chunk_size, 0)
    first = next(chunks, None)
    if first is None or first.num_rows == 0:
        raise HashplugError(f"the source ({desc}) is empty; nothing to ingest.")

    if table is not None:
        if hasattr(table, "checkout_latest"):
            table.checkout_latest()  # a handle opened earlier does not see other processes' commits
        func = _as_function(model, layout) if model is not None else None
        col, src, func = check_table(table, func, code_column if code_column in table.schema.names else None)
        identity = _table_identity(table)
        rows_now, version_now = table.count_rows(), int(table.version)
        target_type = table.schema.field(col).type
    else:
        func = _as_function(model, layout)
        from .store import is_db_reference

        if not store_model and is_db_reference(func.model):
            raise HashplugError(
                "hashplug.ingest: store_model=False keeps the table's config naming the model's file, but this model "
                "has none (an OnnxEncoder made from bytes); keep store_model=True to store it in the database."
            )
        col, src = code_column, source_column
        identity = _new_table_identity(db_path, name)
        rows_now = version_now = 0
        target_type = func.arrow_type()
    if src not in first.column_names:
        raise HashplugError(
            f"the source has no column {src!r} (the table's input column); columns: {first.column_names}."
        )
    if id_column is not None and id_column not in first.column_names:
        raise HashplugError(f"id_column {id_column!r} is not in the source columns {first.column_names}.")
    if id_column is not None:
        t = first.schema.field(id_column).type
        if not (pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_large_string(t)):
            raise HashplugError(
                f"id_column {id_column!r} has type {t}; ids must be integers or strings (one per row)."
            )
    if layout is not None and table is not None and func.layout != layout:
        raise ModelMismatchError(
            f"layout={layout!r}, but table {getattr(table, 'name', '?')!r} stores {func.layout!r} codes in column "
            f"{col!r}; layout= applies to a new table only (drop it, or ingest into a new table)."
        )
    if table is not None:
        _check_columns(table, first, src, col)
        if id_column is not None:
            _check_table_ids(table, id_column)

    # an existing table's declared source type (e.g. images as nested fixed-size lists), which LanceDB's cast
    # cannot reach from the flat rows of an (n, *shape) array
    if table is not None:
        src_type = table.schema.field(src).type if src in table.schema.names else None
    else:  # what schema() declares for the new table's source column (a struct for named inputs: left alone)
        src_type = None if func.encoder.card.multi_input else pa.list_(pa.float32())
    conv = sample_converter(func.encoder)
    digest = _SourceDigest(src, conv, legacy=state is not None and "digest_rule" not in state)
    skip = unrecorded = 0
    checks: dict[int, str] = {}
    new_checkpoint = state is None
    if state is not None:
        where = f"checkpoint {str(ckpt_path)!r}"
        if state["model_sha256"] != func.encoder.file_sha256:
            raise ModelMismatchError(
                f"{where} was written with model sha256 {state['model_sha256']}, but the "
                f"table's model is {func.encoder.file_sha256}; delete the checkpoint to start over."
            )
        if _identity_key(state["table"]) != _identity_key(identity):
            raise HashplugError(
                f"{where} belongs to table {state['table']}, not to {identity}; "
                "use one checkpoint file per table and source (or delete it to start over)."
            )
        if state["chunk_size"] != chunk_size:
            raise HashplugError(
                f"{where} used chunk_size={state['chunk_size']}; resume with the same value."
            )
        skip = int(state["rows_done"])
        checks[skip] = state["digest"]
        if total is not None and total < skip:
            raise HashplugError(
                f"{where} records {skip} rows of its source committed, but this source ({desc}) has only "
                f"{total} rows: it is not the source the checkpoint was written for. Use a new checkpoint "
                "file for a new source (or delete this one to start over)."
            )
        if id_column is None:
            skip, unrecorded = _resume_point(state, rows_now, version_now, table is not None, chunk_size, where)
        elif table is None and skip:
            raise HashplugError(
                f"{where} records {skip} rows committed to table {state['table']}, which does not exist any more "
                f"(dropped?). Delete the checkpoint to start over."
            )
    else:
        state = {
            "version": _CKPT_VERSION,
            "source": desc,
            "table": identity,
            "model_sha256": func.encoder.file_sha256,
            "chunk_size": chunk_size,
            "base_rows": rows_now,
            "rows_done": 0,
            "digest": digest.hexdigest(),
            "finished": False,
            "table_version": version_now,
            "table_rows": rows_now,
            "digest_rule": "row",
        }

    recorded = skip

    def mismatch(rows: int, got: str | None, want: str | None) -> None:
        if got is None:
            raise HashplugError(
                f"checkpoint {str(ckpt_path)!r} records {recorded} rows of its source committed, but this source "
                f"({desc}) ended after {rows}: it is not the source the checkpoint was written for. Use a new "
                "checkpoint file for a new source (or delete this one to start over)."
            )
        raise HashplugError(
            f"checkpoint {str(ckpt_path)!r} was written for another source: its first {rows} rows do not match "
            f"the rows it recorded (fingerprint {got} != {want}). Nothing was written. Use a new checkpoint "
            "file for a new source, or delete this one to ingest this source from its first row."
        )

    def all_batches() -> Iterator[pa.RecordBatch]:
        yield from first.to_batches()
        for t in chunks:
            yield from t.to_batches()

    def foreign() -> None:
        raise HashplugError(
            f"checkpoint {str(ckpt_path)!r} records {recorded} rows of its source committed, and the table's last commit "
            f"added {unrecorded} rows that are not the source's next rows: another writer changed the table, so the "
            "rows of this source it holds cannot be known. Nothing was written. Rerun with id_column= (an upsert "
            "by id never duplicates rows), or delete the checkpoint and ingest the rows that are missing."
        )

    rest = _skip_verified(all_batches(), skip, checks, digest, mismatch)
    if unrecorded:
        rest = _verify_tail(rest, unrecorded, table, src, conv, digest, foreign)
        skip += unrecorded
    stream = _rechunk(rest, chunk_size, 0)
    lock = _TableLock(identity["uri"]) if id_column is not None else None
    seen = _SeenIds(id_column) if id_column is not None else None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=skip, unit="rows", desc=f"ingest {name or getattr(table, 'name', '')}")
    written = n_chunks = 0
    try:
        for chunk in stream:
            start = skip + written
            _stop_if_cancelled(start, written, n_chunks)
            try:
                # the edge: the chunk's source column is checked and converted once (Arrow -> numpy), encoded,
                # and the codes converted once (numpy -> Arrow); the digest samples the same array
                X = conv(chunk.column(src), name=f"column {src!r}", row_offset=start)
                codes = codes_to_arrow(func.encode_checked(X), func.layout).cast(target_type)
            except HashplugError as exc:
                how = (
                    f"rerun the same call with checkpoint={str(ckpt_path)!r} to resume from row {start}"
                    if ckpt_path is not None
                    else f"ingest the rest from source row {start} on (or pass checkpoint= to resume automatically)"
                )
                raise IngestError(
                    f"{exc} Ingest stopped at the chunk of source rows {start}-{start + chunk.num_rows - 1}: "
                    f"{start} rows of this source are committed and stay in the table ({written} by this call); "
                    f"nothing of this chunk was written. Fix the data and {how}.",
                    rows_committed=start,
                    row=getattr(exc, "row", None),
                ) from exc
            enc = (chunk.drop_columns([col]) if col in chunk.column_names else chunk).append_column(
                pa.field(col, target_type), codes
            )
            if src_type is not None and enc.schema.field(src).type != src_type:
                enc = enc.set_column(enc.schema.get_field_index(src), src, _fit_source(enc[src], src_type))
            if seen is not None:
                seen.check(enc[id_column], start, start)
            if ckpt_path is not None and new_checkpoint and not n_chunks:
                # before the first commit (and after the first chunk is known good, so a bad input writes
                # nothing): a kill at any later point is recovered exactly by a rerun
                _start_checkpoint(ckpt_path, state)
            table = _commit(table, enc, db_path, name, func, src, col, id_column, lock, store_model)
            digest.update(chunk, X)
            written += chunk.num_rows
            n_chunks += 1
            state["rows_done"] = skip + written
            state["digest"] = digest.hexdigest()
            state["finished"] = False
            state["table_version"] = int(table.version)
            state["table_rows"] = table.count_rows()
            if ckpt_path is not None:
                _write_checkpoint(ckpt_path, state)
            if bar is not None:
                bar.update(chunk.num_rows)
    finally:
        if bar is not None:
            bar.close()
        if lock is not None:
            lock.close()
    state["finished"] = True
    if ckpt_path is not None:
        _write_checkpoint(ckpt_path, state)
    return IngestResult(table, written, skip, n_chunks)


def _commit(
    table: Any,
    enc: pa.Table,
    db_path: Any,
    name: str | None,
    func: Any,
    src: str,
    col: str,
    id_column: str | None,
    lock: _TableLock | None,
    store_model: bool = True,
) -> Any:
    """Commit one encoded chunk (one atomic LanceDB commit); creates the table with it when it is missing.

    Returns the table.
    """
    from .tables import schema

    with lock if lock is not None else nullcontext():
        if table is None:
            table = _open_existing(db_path, name)  # another process may have created it meanwhile
            if table is None:
                extra = [f for f in enc.schema if f.name not in (src, col)]
                # the model goes into the database's store, named relative to it: the table travels with its
                # database folder (written once, atomically, just before the table's first commit)
                sch = schema(func, source=src, target=col, extra=extra, db=_db(db_path) if store_model else None)
                enc = enc.replace_schema_metadata(sch.metadata)
                try:
                    return _db(db_path).create_table(name, data=enc, schema=sch)
                except ValueError as exc:
                    if "already exists" not in str(exc):
                        raise
                    table = _open_existing(db_path, name)
        if id_column is None:
            table.add(enc)
        else:
            if hasattr(table, "checkout_latest"):
                table.checkout_latest()  # merge against the latest commit, not this handle's snapshot
            table.merge_insert(id_column).when_matched_update_all().when_not_matched_insert_all().execute(enc)
    return table


def add(table: Any, data: Any, *, columns: Mapping[str, Any] | None = None, **kwargs: Any) -> IngestResult:
    """``table.add(data)`` for a hashplug table, with hashplug's checks and error types.

    ``table.add`` runs the embedding function inside LanceDB's Rust writer, which re-raises any error as
    ``RuntimeError("Arrow error: C Data interface error: Invalid: <hashplug's message> ...")``. This call
    encodes the rows first, raising :class:`~hashplug.validation.HashplugError` subclasses for bad input
    (before anything is written), then commits all rows in one atomic ``table.add``.

    Parameters
    ----------
    table : lancedb.table.Table
    data : ndarray, list of dicts or LanceModel rows, mapping, pyarrow Table / RecordBatch, DataFrame or path
        The rows (anything :func:`ingest` takes).
    columns : mapping or None
        Extra columns for an ndarray ``data``.
    **kwargs
        Passed to :func:`ingest`: ``source_column``, ``code_column``, ``id_column``, ``progress``.

    Returns
    -------
    IngestResult
    """
    from .tables import refuse_async

    refuse_async(table, "hashplug.add")
    if not (hasattr(table, "add") and hasattr(table, "schema")):
        raise HashplugTypeError(
            f"hashplug.add: table must be an open LanceDB table (db.open_table(name)); got {type(table).__name__} "
            f"{table!r:.60}. To load into a database path use hashplug.ingest(path, data, name=...)."
        )
    bad = sorted(set(kwargs) - _ADD_KWARGS)
    if bad:
        raise HashplugTypeError(
            f"hashplug.add got unexpected keyword argument(s) {bad}; it takes {sorted(_ADD_KWARGS)} (one commit: "
            "for chunks and checkpoints use hashplug.ingest)."
        )
    kwargs.setdefault("progress", False)
    return ingest(table, data, columns=columns, chunk_size=_ONE_COMMIT, **kwargs)


_ONE_COMMIT = 1 << 62
_ADD_KWARGS = {"source_column", "code_column", "id_column", "progress", "model", "layout", "code"}
