"""Resumable, chunked ingestion into hashplug tables: :func:`ingest` and :func:`add`.

:func:`ingest`
    Load numpy arrays, pyarrow Tables / readers, parquet files or folders, pandas DataFrames or lists of
    dicts into a hashplug table in chunks. Each chunk is one atomic ``table.add`` (or ``merge_insert`` on an
    id column), and an optional JSON checkpoint records the table and a fingerprint of the source rows
    committed, so rerunning the same call after a crash resumes where it stopped (nothing committed is lost,
    nothing is added twice) and a checkpoint is never applied to another source or table.
:func:`add`
    ``table.add`` with hashplug's checks and error types, in one commit.

Serving side: numpy, pyarrow, LanceDB and :class:`hashplug.runtime.OnnxEncoder` only. If you parallelise
ingestion over processes, start them with the ``spawn`` method (``fork`` after LanceDB has started its
threads can hang).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..validation import HashplugError, IngestError, ModelMismatchError, check_int_param, check_path
from .arrow import _layout_arg, encode_batches, normalize_layout, sample_converter

__all__ = ["ingest", "add", "IngestResult", "iter_source"]


# ---------------------------------------------------------------------------------------------------- sources
def _vectors_to_arrow(X: np.ndarray) -> pa.Array:
    X = np.ascontiguousarray(X)
    if X.ndim < 2:
        raise HashplugError(f"vectors must be an array of shape (n, d) or (n, *shape); got shape {X.shape}.")
    arr: pa.Array = pa.array(X.reshape(-1))
    for s in reversed(X.shape[1:]):
        arr = pa.FixedSizeListArray.from_arrays(arr, int(s))
    return arr


def iter_source(
    source: Any,
    *,
    source_column: str = "vector",
    columns: Mapping[str, Any] | None = None,
    batch_size: int = 65536,
) -> tuple[Iterator[pa.RecordBatch], int | None, str]:
    """Normalise an ingest source to ``(batches, total rows or None, description)``.

    ``source`` is an ndarray of samples (with optional ``columns`` of the same length), a mapping of column
    name to arrays, a ``pyarrow.Table``, ``RecordBatchReader`` or iterable of ``RecordBatch``, a pandas
    DataFrame, or the path of a parquet file or folder of parquet files (read in sorted file order).
    """
    if isinstance(source, np.ndarray):
        cols = {source_column: _vectors_to_arrow(source)}
        for name, vals in (columns or {}).items():
            cols[name] = (
                pa.array(np.asarray(vals)) if not isinstance(vals, (pa.Array, pa.ChunkedArray)) else vals
            )
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
        source = pa.table(cols)
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
            vec[source_column] = (
                _vectors_to_arrow(
                    np.stack([np.asarray(v, dtype=np.float32) for v in df[source_column].to_numpy()])
                )
                if len(df)
                else pa.array([], type=pa.list_(pa.float32()))
            )
            df = df.drop(columns=[source_column])
        t = pa.Table.from_pandas(df, preserve_index=False)
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
        total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)

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
    if isinstance(source, Iterable) and not isinstance(source, (str, bytes, Mapping)):
        return iter(source), None, desc
    raise HashplugError(
        f"cannot ingest a {type(source).__name__}; pass an ndarray, pyarrow Table/RecordBatchReader, a pandas "
        "DataFrame, or the path of a parquet file or folder."
    )


def _rechunk(batches: Iterator[pa.RecordBatch], size: int, skip: int) -> Iterator[pa.Table]:
    """Regroup a batch stream into tables of ``size`` rows, after skipping the first ``skip`` rows."""
    buf: list[pa.RecordBatch] = []
    n = 0
    for b in batches:
        if isinstance(b, pa.Table):
            parts = b.to_batches()
        else:
            parts = [b]
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


def _open_table(
    table_or_uri: Any,
    name: str | None,
    model: Any,
    layout: str | None,
    source_column: str,
    code_column: str,
    first: pa.Table | None,
) -> Any:
    if hasattr(table_or_uri, "add") and hasattr(table_or_uri, "schema"):
        return table_or_uri
    import lancedb

    check_path(table_or_uri, "table_or_uri (an open LanceDB table, or a database path)", "hashplug.ingest")

    p = Path(table_or_uri)
    if name is None:
        if p.suffix != ".lance":
            raise HashplugError(
                "ingest(uri, ...) needs name= (the table in the database at uri), or the path of a '<name>.lance' table."
            )
        p, name = p.parent, p.stem
    db = lancedb.connect(str(p))
    try:
        return db.open_table(name)
    except (ValueError, FileNotFoundError):  # LanceDB: "Table '...' was not found"
        pass
    if model is None:
        raise HashplugError(f"table {name!r} does not exist at {str(p)!r}; pass model= to create it.")
    from .tables import schema

    func = _as_function(model, layout)
    extra = (
        [f for f in first.schema if f.name not in (source_column, code_column)] if first is not None else []
    )
    return db.create_table(name, schema=schema(func, source=source_column, target=code_column, extra=extra))


def _as_function(model: Any, layout: str | None) -> Any:
    from .function import HashplugEmbeddings

    if isinstance(model, HashplugEmbeddings):
        return model
    from lancedb.embeddings import get_registry

    path = getattr(model, "path", model)  # an OnnxEncoder or a path
    kwargs: dict[str, Any] = {"model": str(path)}
    if layout is not None:
        kwargs["layout"] = layout
    return get_registry().get("hashplug").create(**kwargs)


_CKPT_VERSION = 2
#: Every ``_DIGEST_STRIDE``-th source row (by its index in the whole source) enters the checkpoint's digest.
_DIGEST_STRIDE = 61


class _SourceDigest:
    """A fingerprint of a source's first rows: the row count and every ``_DIGEST_STRIDE``-th sample's values.

    It depends only on the rows and their positions (not on how the source is split into batches), so a rerun
    recomputes it over the rows its checkpoint says were committed and refuses a different source. Hashing a
    sample of rows keeps its cost negligible next to encoding and writing.
    """

    def __init__(self, column: str, conv: Any) -> None:
        import hashlib

        self.column, self.conv = column, conv
        self.rows = 0
        self._h = hashlib.blake2b(digest_size=16)

    def update(self, batch: pa.RecordBatch | pa.Table) -> None:
        n = batch.num_rows
        first = (-self.rows) % _DIGEST_STRIDE
        idx = np.arange(first, n, _DIGEST_STRIDE)
        if idx.size:
            col = batch.column(self.column).take(pa.array(idx))
            X = self.conv(col, name=f"column {self.column!r}", row_offset=self.rows)
            self._h.update((self.rows + idx).astype("<i8").tobytes())
            for v in (X.values() if isinstance(X, dict) else (X,)):
                self._h.update(v.astype("<f4").tobytes())
        self.rows += n

    def hexdigest(self) -> str:
        h = self._h.copy()
        h.update(np.int64(self.rows).tobytes())
        return h.hexdigest()


def _table_identity(table: Any) -> dict[str, Any]:
    return {"name": getattr(table, "name", None), "uri": str(getattr(table, "uri", "") or "") or None}


def _read_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise HashplugError(
            f"checkpoint {str(path)!r} is unreadable ({exc}); delete it to start over."
        ) from None
    if not isinstance(state, dict) or state.get("version") != _CKPT_VERSION:
        raise HashplugError(
            f"checkpoint {str(path)!r} is not a hashplug ingest checkpoint of version {_CKPT_VERSION} (found "
            f"version {state.get('version') if isinstance(state, dict) else None!r}); it cannot prove which rows "
            "it covers. Delete it and rerun with id_column= (merge_insert), which never duplicates rows."
        )
    return state


def _write_checkpoint(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, path)  # atomic: a crash leaves the old or the new checkpoint, never half of one


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
    code: str | None = None,
) -> IngestResult:
    """Encode and load data into a hashplug table in atomic chunks, resumably.

    Parameters
    ----------
    table_or_uri : lancedb.table.Table, or str / PathLike
        An open table; a database URI together with ``name``; or a ``<name>.lance`` path. A missing table is
        created (needs ``model``) with :func:`hashplug.integrations.lancedb.schema`.
    source : ndarray, mapping, pyarrow Table / RecordBatchReader / iterable of RecordBatch, DataFrame or path
        The rows. An ndarray holds the samples (shape ``(n, *input_shape)``); give other columns in ``columns``.
        A path is a parquet file or a folder of parquet files.
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
        ones), so a retried chunk never duplicates rows even without a checkpoint.
    chunk_size : int
        Rows per commit (each commit is atomic: a failing chunk leaves the table unchanged).
    checkpoint : str, PathLike or None
        JSON file recording the rows committed so far. Rerun the same call with the same checkpoint after a
        crash to resume; if the crash fell between a commit and the checkpoint update, the committed rows are
        derived from the table's row count (for append mode, this assumes no other writer touched the table).
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    IngestResult

    Raises
    ------
    HashplugError
        Bad input (wrong dimension, NaN, nulls, an empty source); chunks committed before the bad one stay.
    ModelMismatchError
        The model does not match the table.
    """
    from .tables import check_table

    layout = _layout_arg(layout, code, "hashplug.ingest")
    if layout is not None:
        layout = normalize_layout(layout, owner="hashplug.ingest")
    chunk_size = check_int_param(chunk_size, "chunk_size", "hashplug.ingest", 1)
    batches, total, desc = iter_source(
        source, source_column=source_column, columns=columns, batch_size=chunk_size
    )
    chunks = _rechunk(batches, chunk_size, 0)
    first = next(chunks, None)
    if first is None or first.num_rows == 0:
        raise HashplugError(f"the source ({desc}) is empty; nothing to ingest.")

    table = _open_table(table_or_uri, name, model, layout, source_column, code_column, first)
    func = _as_function(model, layout) if model is not None else None
    col, src, func = check_table(table, func, code_column if code_column in table.schema.names else None)
    if src not in first.column_names:
        raise HashplugError(
            f"the source has no column {src!r} (the table's input column); columns: {first.column_names}."
        )
    if id_column is not None and id_column not in first.column_names:
        raise HashplugError(f"id_column {id_column!r} is not in the source columns {first.column_names}.")

    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    table_rows = table.count_rows()
    state = _read_checkpoint(ckpt_path) if ckpt_path is not None else None
    digest = _SourceDigest(src, sample_converter(func.encoder))
    skip = 0
    checks: dict[int, str] = {}
    if state is not None:
        where = f"checkpoint {str(ckpt_path)!r}"
        if state.get("model_sha256") != func.encoder.file_sha256:
            raise ModelMismatchError(
                f"{where} was written with model sha256 {state.get('model_sha256')}, but the "
                f"table's model is {func.encoder.file_sha256}; delete the checkpoint to start over."
            )
        if state.get("table") != _table_identity(table):
            raise HashplugError(
                f"{where} belongs to table {state.get('table')}, not to {_table_identity(table)}; "
                "use one checkpoint file per table and source (or delete it to start over)."
            )
        if state.get("chunk_size") != chunk_size:
            raise HashplugError(
                f"{where} used chunk_size={state.get('chunk_size')}; resume with the same value."
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
            derived = table_rows - int(state["base_rows"])
            if derived != skip:
                if skip < derived <= skip + chunk_size:
                    skip = derived  # the crash fell between a commit and the checkpoint update
                else:
                    raise HashplugError(
                        f"{where} records {skip} rows committed on top of {state['base_rows']}, "
                        f"but the table has {table_rows} rows; another writer changed it. Use id_column= "
                        "(merge_insert) or delete the checkpoint."
                    )
    else:
        state = {
            "version": _CKPT_VERSION,
            "source": desc,
            "table": _table_identity(table),
            "model_sha256": func.encoder.file_sha256,
            "chunk_size": chunk_size,
            "base_rows": table_rows,
            "rows_done": 0,
            "digest": digest.hexdigest(),
            "finished": False,
        }

    def mismatch(rows: int, got: str | None, want: str | None) -> None:
        if got is None:
            raise HashplugError(
                f"checkpoint {str(ckpt_path)!r} records {skip} rows of its source committed, but this source "
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

    rest = _skip_verified(all_batches(), skip, checks, digest, mismatch)
    stream = _rechunk(rest, chunk_size, 0)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=skip, unit="rows", desc=f"ingest {getattr(table, 'name', '')}")
    written = n_chunks = 0
    target_type = table.schema.field(col).type
    try:
        for chunk in stream:
            start = skip + written
            try:
                enc = encode_batches(
                    chunk.to_reader(), func, source=src, target=col, row_offset=start
                ).read_all()
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
            enc = enc.set_column(
                enc.schema.get_field_index(col), pa.field(col, target_type), enc[col].cast(target_type)
            )
            if id_column is None:
                table.add(enc)
            else:
                (
                    table.merge_insert(id_column)
                    .when_matched_update_all()
                    .when_not_matched_insert_all()
                    .execute(enc)
                )
            digest.update(chunk)
            written += chunk.num_rows
            n_chunks += 1
            state["rows_done"] = skip + written
            state["digest"] = digest.hexdigest()
            state["finished"] = False
            if ckpt_path is not None:
                _write_checkpoint(ckpt_path, state)
            if bar is not None:
                bar.update(chunk.num_rows)
    finally:
        if bar is not None:
            bar.close()
    state["finished"] = True
    if ckpt_path is not None:
        _write_checkpoint(ckpt_path, state)
    return IngestResult(table, written, skip, n_chunks)


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
        Passed to :func:`ingest` (``source_column``, ``code_column``, ``id_column``).

    Returns
    -------
    IngestResult
    """
    kwargs.setdefault("progress", False)
    return ingest(table, data, columns=columns, chunk_size=_ONE_COMMIT, **kwargs)


_ONE_COMMIT = 1 << 62

