"""A hashplug Hamming index bound to a LanceDB table: built from its code column, caught up with the table.

:func:`build_index` reads the code column with LanceDB's ``_rowid`` (the Arrow buffers viewed as numpy: the
packed bytes become the index's uint64 words, the ``list<int32>`` values its postings) into a
:class:`hashplug.index.HammingIndex`, records the table version and the model file's sha256, and saves it
beside the table (``<table>.lance.hashplug-index/<column>/``) or in a folder the user names.
:func:`open_index` loads it, checks it against the table (model, layout, length) and catches up on the
rows added or deleted since (only those are read). :func:`index_search` answers exactly what a brute-force
scan of the table would (ids and distances, ties to the earlier position), a ``where`` filter running
through LanceDB first (prefilter).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..index import HammingIndex
from ..index.kernels import BACKENDS
from ..validation import HashplugError, ModelFileError, ModelMismatchError
from .arrow import codes_from_arrow
from .tables import get_function

__all__ = ["build_index", "open_index", "index_search", "default_index_folder", "catch_up", "prefilter_positions"]


def default_index_folder(table: Any, column: str) -> Path:
    """``<table>.lance.hashplug-index/<column>`` beside the table's data (local tables)."""
    uri = str(getattr(table, "uri", "") or "")
    if not uri or "://" in uri:
        raise HashplugError(
            f"table {getattr(table, 'name', '?')!r} is not on a local path ({uri!r}); pass folder= to keep its index."
        )
    return Path(uri + ".hashplug-index") / column


def _read_codes(table: Any, column: str, where: str | None = None) -> tuple[np.ndarray, Any, str]:
    """(row ids, codes, layout) of the table's rows (optionally those matching ``where``)."""
    q = table.search().with_row_id(True).select([column])
    if where:
        q = q.where(where)
    t = q.limit(None).to_arrow()
    ids = t["_rowid"].to_numpy().astype(np.int64)
    layout, codes = codes_from_arrow(t[column]) if t.num_rows else (None, None)
    return ids, codes, layout or ""


def build_index(table: Any, *, column: str | None = None, folder: str | Path | None = None, threads: int = 1,
                save: bool = True, backend: str = "auto") -> HammingIndex:
    """Build the exact Hamming index of a hashplug table's code column (and save it unless ``save=False``).

    ``backend`` picks the dense kernel (:class:`~hashplug.index.HammingIndex`), e.g. ``"mih"`` for short codes.

    The index holds the rows of the version ``table`` reads. A handle from LanceDB's default connection never
    sees commits made after it was opened by another process: build (and search) with a handle from
    ``lancedb.connect(path, read_consistency_interval=datetime.timedelta(0))``, or call
    ``table.checkout_latest()`` first (see :func:`hashplug.search`).
    """
    col, _, func = get_function(table, column)
    layout, m = func.layout, int(func.m)
    idx = HammingIndex(layout, m, threads=threads, backend=backend)
    version = int(table.version)
    ids, codes, _ = _read_codes(table, col)
    if ids.size:
        idx.add(codes, ids)
    idx.table_version = version
    idx.model_sha256 = func.file_sha256
    idx.folder = Path(folder) if folder is not None else default_index_folder(table, col)  # type: ignore[attr-defined]
    idx.column = col  # type: ignore[attr-defined]
    if save:
        idx.save(idx.folder)  # type: ignore[attr-defined]
        _remember(idx.folder, idx)  # type: ignore[attr-defined]
    return idx


def catch_up(idx: HammingIndex, table: Any, column: str) -> dict[str, Any]:
    """Bring ``idx`` to the table's current version: drop deleted rows, read and add only the new ones."""
    t0 = time.perf_counter()
    version = int(table.version)
    if idx.table_version == version:
        return {"added": 0, "deleted": 0, "seconds": 0.0, "version": version}
    now = table.search().with_row_id(True).select([]).limit(None).to_arrow()["_rowid"].to_numpy().astype(np.int64)
    deleted = idx.delete(idx.row_ids[~np.isin(idx.row_ids, now)])
    new = np.setdiff1d(now, idx.row_ids, assume_unique=True)
    added = 0
    if new.size:
        new = np.sort(new)
        for s in range(0, new.size, 20_000):  # only the new rows are read
            chunk = new[s : s + 20_000]
            ids, codes, _ = _read_codes(table, column, where=f"_rowid IN ({', '.join(map(str, chunk.tolist()))})")
            order = np.argsort(ids, kind="stable")
            ids = ids[order]
            if idx.layout == "packed":
                codes = codes[order]
            else:
                offs, vals = codes
                rows = [vals[offs[i] : offs[i + 1]] for i in order]
                codes = (np.concatenate([[0], np.cumsum([len(r) for r in rows])]), np.concatenate(rows) if rows else vals[:0])
            idx.add(codes, ids)
            added += ids.size
    idx.table_version = version
    return {"added": int(added), "deleted": int(deleted), "seconds": round(time.perf_counter() - t0, 4),
            "version": version}


#: Loaded indexes by folder: (mtime_ns of index.json when loaded or saved by us, index).
_CACHE: dict[str, tuple[int, HammingIndex]] = {}


def _load_cached(where: Path, threads: int) -> HammingIndex:
    key = str(where.resolve())
    mtime = (where / "index.json").stat().st_mtime_ns
    hit = _CACHE.get(key)
    if hit is not None and hit[0] == mtime:
        return hit[1]
    idx = HammingIndex.load(where, threads=threads)
    _CACHE[key] = (mtime, idx)
    return idx


def _remember(where: Path, idx: HammingIndex) -> None:
    _CACHE[str(where.resolve())] = ((where / "index.json").stat().st_mtime_ns, idx)


def open_index(table: Any, *, column: str | None = None, folder: str | Path | None = None, threads: int = 1,
               update: bool = True, backend: str | None = None) -> HammingIndex | None:
    """Load the saved index of a table's code column (None when there is none) and catch it up with the table.

    ``backend`` (a runtime choice, not saved) sets the loaded index's dense kernel, e.g. ``"mih"``; the index
    stays cached in this process with it.

    Raises :class:`~hashplug.validation.ModelMismatchError` when the index was built from another model file
    (or code layout) than the table's function uses, and :class:`ModelFileError` for a corrupt index.
    """
    col, _, func = get_function(table, column)
    where = Path(folder) if folder is not None else default_index_folder(table, col)
    if not (where / "index.json").is_file():
        return None
    idx = _load_cached(where, threads)
    if backend is not None:
        if backend not in BACKENDS:
            raise HashplugError(f"backend must be one of {list(BACKENDS)}; got {backend!r}.")
        idx.backend = backend
    if hasattr(idx, "last_catch_up"):
        del idx.last_catch_up
    layout, m = func.layout, int(func.m)
    if idx.model_sha256 != func.file_sha256:
        raise ModelMismatchError(
            f"the index at {str(where)!r} was built from model sha256 {str(idx.model_sha256)[:12]}... but the table's "
            f"function uses {str(func.file_sha256)[:12]}...; rebuild it with hashplug.build_index(table)."
        )
    if (idx.layout, idx.m) != (layout, m):
        raise ModelFileError(f"the index at {str(where)!r} holds {idx.layout} codes of m={idx.m}; the table has "
                             f"{layout} codes of m={m}. Rebuild it.")
    idx.folder, idx.column = where, col  # type: ignore[attr-defined]
    if update and idx.table_version != int(table.version):
        idx.last_catch_up = catch_up(idx, table, col)  # type: ignore[attr-defined]
        idx.save(where)
        _remember(where, idx)
    return idx


def index_search(idx: HammingIndex, table: Any, query_codes: Any, limit: int = 10, *, where: str | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Exact search through the index; ``where`` runs in LanceDB first and restricts the candidates."""
    if not where:
        return idx.search(query_codes, limit)
    return idx.search(query_codes, limit, positions=prefilter_positions(idx, table, where))


#: Entries kept per index in the prefilter cache.
_PREFILTER_ENTRIES = 16


def prefilter_positions(idx: HammingIndex, table: Any, where: str) -> np.ndarray:
    """Index positions of the rows matching ``where`` (run by LanceDB), cached per (table version, where).

    A table at the same version has the same rows, so a repeated filter (the usual case: a fixed tenant or
    category over many queries) costs a dict lookup instead of a LanceDB scan and an id lookup.
    """
    version = int(table.version)
    cache: dict[tuple[int, str], np.ndarray] = idx.__dict__.setdefault("_prefilter_cache", {})
    key = (version, where)
    hit = cache.get(key)
    if hit is not None and idx.table_version == version:
        return hit
    allowed = table.search().where(where).with_row_id(True).select([]).limit(None).to_arrow()["_rowid"]
    pos = idx.positions_of(allowed.to_numpy().astype(np.int64))
    for old in [k for k in cache if k[0] != version]:
        del cache[old]
    if len(cache) >= _PREFILTER_ENTRIES:
        cache.pop(next(iter(cache)))
    if idx.table_version == version:
        cache[key] = pos
    return pos


def rows_by_id(table: Any, row_ids: np.ndarray, columns: list[str] | None = None) -> pa.Table:
    """The table's rows with these ``_rowid`` values, in the given order (with ``_rowid``)."""
    if row_ids.size == 0:
        empty = table.schema.empty_table()
        return empty if columns is None else empty.select(columns)
    ids = [int(r) for r in row_ids]
    if hasattr(table, "take_row_ids"):  # a direct take (LanceDB >= 0.2x), not a filtered scan
        q = table.take_row_ids(ids).with_row_id()
    else:  # pragma: no cover - older LanceDB
        q = table.search().where(f"_rowid IN ({', '.join(map(str, ids))})").with_row_id(True).limit(None)
    if columns is not None:
        q = q.select(list(columns))
    t = q.to_arrow()
    pos = {int(r): i for i, r in enumerate(t["_rowid"].to_numpy())}
    return t.take(pa.array([pos[r] for r in ids])).set_column(
        t.schema.get_field_index("_rowid"), "_rowid", pa.array(np.asarray(ids, dtype=np.int64)))
