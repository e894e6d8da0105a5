"""A hashplug Hamming index bound to a LanceDB table: built from its code column, caught up with the table.

:func:`build_hamming_index` reads the code column with LanceDB's ``_rowid`` (the Arrow buffers viewed as numpy: the
packed bytes become the index's uint64 words, the ``list<int32>`` values its postings) into a
:class:`hashplug.index.HammingIndex` and saves it beside the table (``<table>.lance.hashplug-index/<column>/``,
the column name encoded as one safe path component) or in a folder the user names.

An index is bound to the table's identity, not its name: the table version it covers, that version's commit
timestamp in the table's history (a dropped and re-created table, even of the same name and model, has
another history), the kind of row ids (physical addresses, which LanceDB never gives to another row of the
same table, or stable ids, which an ``update`` keeps for new content) and the model file's sha256.
:func:`open_hamming_index` loads it, checks the binding and catches up on the rows added or deleted since (only those
are read), in memory, on a copy that then replaces the shared one (copy-on-write: searches in other threads
keep their consistent snapshot). An index it cannot prove right (another table's, torn or corrupt files, a
table with stable row ids that changed, a format without a binding) is never used: it is rebuilt from the
table in memory, with a warning. Reads never write: only :func:`build_hamming_index` and :func:`refresh_hamming_index`
save, atomically and under the folder's inter-process lock. :func:`hamming_index_search` answers exactly what a
brute-force scan of the table at the index's version would (ids and distances, ties to the earlier
position), a ``where`` filter running through LanceDB first (prefilter) at that same version.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .._deprecation import renamed_function
from ..index import HammingIndex
from ..index.core import folder_lock, prepare_folder
from ..index.kernels import BACKENDS
from ..validation import (
    HashplugError,
    HashplugTypeError,
    ModelFileError,
    ModelMismatchError,
    check_int_param,
    check_path,
)
from .arrow import codes_from_arrow
from .tables import get_function

__all__ = ["BoundIndex", "build_hamming_index", "open_hamming_index", "refresh_hamming_index", "hamming_index_search",
           "default_index_folder", "column_folder_name", "catch_up", "prefilter_positions", "rows_by_id",
           # 0.1.0 names, deprecated (removed in 0.3.0):
           "build_index", "open_index", "refresh_index", "index_search"]

#: Column names used as the folder name unchanged (one path component, no leading dot, at most 100 chars).
_PLAIN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}")


def column_folder_name(column: str) -> str:
    """The column's index folder name: one path component whatever the name (``/``, ``\\``, ``..``, NUL...).

    Plain names (letters, digits, ``_``, ``-`` and inner dots) are kept; any other character is written as
    ``%XX`` of its UTF-8 bytes (``%`` itself included, so two names never share a folder), and a long result
    is cut and suffixed with a digest of the name.
    """
    if not isinstance(column, str) or not column:
        raise HashplugError(f"an index column name must be a non-empty str; got {column!r}.")
    if _PLAIN.fullmatch(column):
        return column
    out = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "".join(f"%{b:02X}" for b in c.encode())
                  for c in column)
    if len(out) > 100:
        out = out[:60] + "~" + hashlib.sha256(column.encode()).hexdigest()[:32]
    return out


def default_index_folder(table: Any, column: str) -> Path:
    """``<table>.lance.hashplug-index/<column>`` beside the table's data (local tables), always inside it."""
    uri = str(getattr(table, "uri", "") or "")
    if not uri or "://" in uri:
        raise HashplugError(
            f"table {getattr(table, 'name', '?')!r} is not on a local path ({uri!r}); pass folder= to keep its index."
        )
    return Path(uri + ".hashplug-index") / column_folder_name(column)


def _index_folder(table: Any, column: str, folder: Any, owner: str) -> Path:
    if folder is None:
        return default_index_folder(table, column)
    return check_path(folder, "folder", owner)


# ---------------------------------------------------------------------------------------------- the binding
class BoundIndex:
    """A :class:`~hashplug.index.HammingIndex` bound to a LanceDB table's code column.

    The Hamming index holds codes by row id and knows nothing of LanceDB; this object holds it with what ties
    it to a table: the code ``column``, the index ``folder``, the ``table_version`` it covers, the
    ``model_sha256`` of the codes, the ``binding`` (that version's commit timestamp in the table's history,
    whether row ids are addresses, the table's uri), a handle of the table pinned at that version and the
    prefilter cache (``where`` -> index positions, per version). :func:`build_hamming_index` and :func:`open_hamming_index`
    return one; it answers what the index answers (``search``, ``len``, ``m``, ``layout``, ``row_ids``, ...:
    every other attribute is the index's). Saved, the binding is the index's ``metadata``
    (``table_version``, ``model_sha256``, ``table``: the manifest keys of ``hashplug-index/2``).

    Parameters
    ----------
    index : HammingIndex
    column : str or None
    folder : Path or None
    table_version : int or None
    model_sha256 : str or None
    binding : dict or None
    """

    def __init__(self, index: HammingIndex, *, column: str | None = None, folder: Path | None = None,
                 table_version: int | None = None, model_sha256: str | None = None,
                 binding: dict[str, Any] | None = None) -> None:
        self.index = index
        self.column = column
        self.folder = folder
        self.table_version = table_version
        self.model_sha256 = model_sha256
        self.binding = binding
        self._pinned: tuple[int | None, Any] | None = None
        self._prefilter_cache: dict[tuple[Any, str], np.ndarray] = {}

    @classmethod
    def from_saved(cls, index: HammingIndex, where: Any = "the index") -> BoundIndex:
        """The binding a loaded index's ``metadata`` records; :class:`ModelFileError` for a malformed one."""
        meta = index.metadata
        tv = meta.get("table_version")
        if tv is not None and (isinstance(tv, bool) or not isinstance(tv, int)):
            raise ModelFileError(f"{str(where)!r}: index.json has table_version={tv!r}; rebuild the index.")
        if meta.get("table") is not None and not isinstance(meta.get("table"), dict):
            raise ModelFileError(f"{str(where)!r}: index.json has a table binding of type "
                                 f"{type(meta.get('table')).__name__}; rebuild the index.")
        return cls(index, table_version=tv, model_sha256=meta.get("model_sha256"), binding=meta.get("table"))

    def __getattr__(self, name: str) -> Any:  # the index's own attributes and methods
        if name.startswith("__") or "index" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["index"], name)

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return (f"BoundIndex(column={self.column!r}, table_version={self.table_version}, "
                f"{self.index.layout}, m={self.index.m}, rows={len(self.index)})")

    @property
    def backend(self) -> str:
        """The index's dense kernel (a runtime choice, not saved)."""
        return self.index.backend

    @backend.setter
    def backend(self, value: str) -> None:
        self.index.backend = value

    def search(self, query_codes: Any, limit: int = 10, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`HammingIndex.search <hashplug.index.HammingIndex.search>`."""
        return self.index.search(query_codes, limit, **kwargs)

    def copy(self) -> BoundIndex:
        """A copy of the index (sharing its arrays) and of the binding, without the caches."""
        return BoundIndex(self.index.copy(), column=self.column, folder=self.folder,
                          table_version=self.table_version, model_sha256=self.model_sha256,
                          binding=None if self.binding is None else dict(self.binding))

    def saved_metadata(self) -> dict[str, Any]:
        """The binding as the index's saved ``metadata``."""
        return {"table_version": self.table_version, "model_sha256": self.model_sha256, "table": self.binding}

    def save(self, folder: str | Path) -> Path:
        """Save the index with its binding (:meth:`HammingIndex.save <hashplug.index.HammingIndex.save>`)."""
        self.index.metadata = self.saved_metadata()
        return self.index.save(folder)

    def _save_locked(self, folder: Path) -> None:
        self.index.metadata = self.saved_metadata()
        self.index._save_locked(folder)

    def _become(self, other: BoundIndex) -> None:
        """Take another binding's index and state (a rebuild in place)."""
        self.index = other.index
        self.table_version, self.model_sha256, self.binding = other.table_version, other.model_sha256, other.binding
        self._pinned, self._prefilter_cache = None, {}


def _bound(idx: Any) -> BoundIndex:
    """``idx`` as a :class:`BoundIndex` (a bare HammingIndex, as 0.2 returned, is read through its metadata)."""
    return idx if isinstance(idx, BoundIndex) else BoundIndex.from_saved(idx)


class _Unprovable(Exception):
    """Catch-up cannot prove the rows it keeps unchanged: rebuild."""


def _versions(table: Any) -> dict[int, Any] | None:
    """{version: timestamp} of the table's history (None when LanceDB cannot list it)."""
    try:
        return {int(v["version"]): str(v["timestamp"]) for v in table.list_versions()}
    except Exception:  # noqa: BLE001 - a table class without a history: nothing can be proved
        return None


def _binding(table: Any, version: int, address_ids: bool, history: dict[int, Any] | None = None) -> dict[str, Any]:
    history = _versions(table) if history is None else history
    return {"version": int(version), "timestamp": None if history is None else history.get(int(version)),
            "row_ids": "address" if address_ids else "stable", "uri": str(getattr(table, "uri", ""))}


def _lineage_problem(table: Any, binding: Any, history: dict[int, Any] | None = None) -> str | None:
    """Why the index's binding is not a state of this table's history (None: it is)."""
    if not isinstance(binding, dict) or "version" not in binding or binding.get("timestamp") is None:
        return "it was saved without a table binding (an older hashplug, or a table without a history)"
    history = _versions(table) if history is None else history
    if history is None:
        return "the table's history cannot be listed, so the index cannot be matched to it"
    v = binding.get("version")
    if v not in history:
        return (f"the table has no version {v} in its history (dropped and re-created, or old versions cleaned "
                "up)")
    if history[v] != binding.get("timestamp"):
        return (f"version {v} of this table was committed at {history[v]}, the indexed one at "
                f"{binding.get('timestamp')}: another table of the same name (dropped and re-created)")
    return None


def _manifest_sig(table: Any, version: int) -> tuple[Any, ...] | None:
    """A cheap identity of the table's manifest file for ``version`` (local tables; write-once files)."""
    uri = str(getattr(table, "uri", "") or "")
    if not uri or "://" in uri:
        return None
    for name in (f"{2**64 - 1 - int(version):020d}.manifest", f"{int(version)}.manifest"):
        try:
            st = (Path(uri) / "_versions" / name).stat()
        except OSError:
            continue
        return (name, st.st_ino, st.st_mtime_ns, st.st_size)
    return None


def _pinned(table: Any, version: int) -> Any:
    """A private handle of the table checked out at ``version`` (reads of other handles' commits cannot mix in);
    the table itself when LanceDB cannot open one."""
    try:
        h = type(table).open(table._conn, table.name, namespace_path=list(getattr(table, "namespace", None) or []) or None)
        h.checkout(int(version))
        return h
    except Exception:  # noqa: BLE001 - another table class: read through the table, the version re-checked
        return table


def _snapshot_handle(idx: BoundIndex, table: Any) -> Any:
    """The handle at the version ``idx`` covers, kept on ``idx`` (a snapshot never changes version)."""
    hit = idx._pinned
    if hit is not None and hit[0] == idx.table_version:
        return hit[1]
    h = table if idx.table_version is None else _pinned(table, idx.table_version)
    idx._pinned = (idx.table_version, h)
    return h


def _read(h: Any, column: str | None, where: str | None = None) -> tuple[np.ndarray, np.ndarray | None, Any]:
    """(row ids, row addresses or None, codes or None) of the rows of handle ``h`` (matching ``where``)."""
    sel = ([column] if column else []) + ["_rowaddr"]
    try:
        q = h.search().with_row_id(True).select(sel)
        t = (q.where(where) if where else q).limit(None).to_arrow()
        addrs = t["_rowaddr"].to_numpy().astype(np.int64)
    except Exception:  # noqa: BLE001 - a LanceDB without _rowaddr: the ids cannot be shown to be addresses
        q = h.search().with_row_id(True).select([column] if column else [])
        t = (q.where(where) if where else q).limit(None).to_arrow()
        addrs = None
    ids = t["_rowid"].to_numpy().astype(np.int64)
    codes = codes_from_arrow(t[column])[1] if column and t.num_rows else None
    return ids, addrs, codes


def _fresh(table: Any, col: str, func: Any, version: int, *, threads: int, backend: str) -> BoundIndex:
    """The index of the table at ``version``, read from a handle pinned there."""
    for _ in range(5):
        h = _pinned(table, version)
        ids, addrs, codes = _read(h, col)
        if h is not table or int(table.version) == version:
            break
        version = int(table.version)  # the table moved during the read (no private handle): read again
    else:  # pragma: no cover - a table committed to without pause
        raise HashplugError(f"table {getattr(table, 'name', '?')!r} changed during every read; retry the index "
                            "build when writes pause.")
    idx = HammingIndex(func.layout, int(func.m), threads=threads, backend=backend)
    if ids.size:
        idx.add(codes, ids)
    return BoundIndex(idx, column=col, table_version=int(version), model_sha256=func.file_sha256,
                      binding=_binding(table, version, addrs is not None and np.array_equal(ids, addrs)))


def catch_up(idx: BoundIndex, table: Any, column: str, *, version: int | None = None) -> dict[str, Any]:
    """Bring ``idx`` (changed in place: pass a copy of a shared index) to the table's version.

    Deleted rows are dropped and only the new rows read, when that is provably exact: the rows kept must have
    the same codes as when indexed, which holds when the table's row ids are physical addresses (LanceDB never
    gives an address to another row of the same table; compaction and updates move rows to new addresses).
    Otherwise (stable row ids, another table's index) the index is rebuilt from the table
    (``"rebuilt": True`` in the returned stats). A bare :class:`~hashplug.index.HammingIndex` (0.2's form) is
    caught up through the binding its ``metadata`` records, which is then updated.
    """
    if isinstance(idx, HammingIndex):
        bound = _bound(idx)
        stats = catch_up(bound, table, column, version=version)
        if bound.index is not idx:  # rebuilt: the bare index takes the new arrays
            with idx._lock:
                idx.__dict__.update({k: v for k, v in bound.index.__dict__.items() if k != "_lock"})
        idx.metadata = {**idx.metadata, **bound.saved_metadata()}
        return stats
    t0 = time.perf_counter()
    if not isinstance(idx, BoundIndex):
        raise HashplugTypeError(f"catch_up takes the index that open_hamming_index / build_hamming_index return; got "
                                f"{type(idx).__name__}.")
    version = int(table.version) if version is None else int(version)
    if idx.table_version == version and not _lineage_problem(table, idx.binding):
        return {"added": 0, "deleted": 0, "seconds": 0.0, "version": version, "rebuilt": False}
    try:
        added, deleted = _catch_up(idx, table, column, version)
        rebuilt = False
    except _Unprovable:
        _, _, func = get_function(table, column)
        fresh = _fresh(table, column, func, version, threads=idx.threads, backend=idx.backend)
        idx._become(fresh)
        added, deleted, rebuilt = len(fresh), 0, True
    return {"added": int(added), "deleted": int(deleted), "seconds": round(time.perf_counter() - t0, 4),
            "version": version, "rebuilt": rebuilt}


def _catch_up(idx: BoundIndex, table: Any, column: str, version: int) -> tuple[int, int]:
    history = _versions(table)
    problem = _lineage_problem(table, idx.binding, history)
    if problem or (idx.binding or {}).get("row_ids") != "address":
        raise _Unprovable(problem or "stable row ids")
    h = _pinned(table, version)
    now, addrs, _ = _read(h, None)
    if h is table and int(table.version) != version:
        raise _Unprovable("the table moved during the read")
    if addrs is None or not np.array_equal(now, addrs):
        raise _Unprovable("the table's row ids are not addresses (stable row ids): an id may hold new content")
    old = idx.row_ids
    deleted = idx.delete(old[~np.isin(old, now)])
    new = np.setdiff1d(now, old, assume_unique=True)
    added = 0
    if new.size:
        new = np.sort(new)
        for s in range(0, new.size, 20_000):  # only the new rows are read
            chunk = new[s : s + 20_000]
            ids, _, codes = _read(h, column, where=f"_rowid IN ({', '.join(map(str, chunk.tolist()))})")
            if ids.size != chunk.size:
                raise _Unprovable("rows vanished during the catch-up")
            order = np.argsort(ids, kind="stable")
            ids = ids[order]
            if idx.layout == "packed":
                codes = codes[order]
            else:
                offs, vals = codes
                rows = [vals[offs[i] : offs[i + 1]] for i in order]
                codes = (np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64),
                         np.concatenate(rows) if rows else vals[:0])
            idx.add(codes, ids)
            added += ids.size
    idx.table_version = version
    idx.binding = _binding(table, version, True, history if version in history else None)
    return added, deleted


# ---------------------------------------------------------------------------------------------- the cache
@dataclass
class _Entry:
    """A published snapshot (never changed after publication) and the manifest identity it was checked at."""

    idx: BoundIndex
    sig: tuple[Any, ...] | None
    disk: tuple[int, int, int] | None = None  # index.json's (inode, mtime_ns, size) when published


def _disk_sig(where: Path) -> tuple[int, int, int] | None:
    """Identity of the saved manifest (None when there is none): a save by anyone replaces it."""
    try:
        st = (where / "index.json").stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


#: Snapshots by resolved index folder; replaced whole (copy-on-write), never changed in place.
_CACHE: dict[str, _Entry] = {}
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _thread_lock(key: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


def _fits(idx: BoundIndex, func: Any) -> bool:
    return idx.model_sha256 == func.file_sha256 and (idx.layout, idx.m) == (func.layout, int(func.m))


def _current(entry: _Entry | None, table: Any, version: int, func: Any, disk: Any) -> bool:
    """Is the cached snapshot the table's state at ``version``, with the saved index unchanged since? (a stat of
    the table's manifest file, local tables)"""
    if entry is None or entry.idx.table_version != version or not _fits(entry.idx, func) or entry.disk != disk:
        return False
    if entry.sig is not None:
        return _manifest_sig(table, version) == entry.sig
    return _lineage_problem(table, entry.idx.binding) is None


def _load_checked(where: Path, table: Any, func: Any, threads: int) -> tuple[BoundIndex | None, str | None]:
    """The saved index if it belongs to this table (else None and why); a foreign model is an error."""
    try:
        idx = BoundIndex.from_saved(HammingIndex.load(where, threads=threads), where)
    except ModelFileError as exc:
        return None, f"its files are torn or corrupt ({exc})"
    problem = _lineage_problem(table, idx.binding)
    if problem:
        return None, problem
    if idx.model_sha256 != func.file_sha256:
        raise ModelMismatchError(
            f"the index at {str(where)!r} was built from model sha256 {str(idx.model_sha256)[:12]}... but the table's "
            f"function uses {str(func.file_sha256)[:12]}...; rebuild it with hashplug.build_hamming_index(table)."
        )
    if (idx.layout, idx.m) != (func.layout, int(func.m)):
        raise ModelFileError(f"the index at {str(where)!r} holds {idx.layout} codes of m={idx.m}; the table has "
                             f"{func.layout} codes of m={func.m}. Rebuild it with hashplug.build_hamming_index(table).")
    return idx, None


def _check_args(threads: Any, backend: Any, owner: str) -> int:
    threads = check_int_param(threads, "threads", owner, 1, 1024)
    if backend is not None and backend not in BACKENDS:
        raise HashplugError(f"backend must be one of {list(BACKENDS)}; got {backend!r}.")
    return threads


def open_hamming_index(table: Any, *, column: str | None = None, folder: str | Path | None = None, threads: int = 1,
               update: bool = True, backend: str | None = None) -> BoundIndex | None:
    """The index of a table's code column at the table's current version (None when none was built).

    The saved index is loaded once per process and checked against the table (history, row ids, model);
    rows added or deleted since are caught up in memory on a copy, which then replaces the shared snapshot
    (searches running in other threads keep theirs). Nothing is written: save a caught-up index with
    :func:`refresh_hamming_index`. An index that cannot be proved to be this table's (the table was dropped and
    re-created, its files are torn or corrupt, it predates table bindings, the table has stable row ids and
    changed) is rebuilt from the table in memory, with a ``RuntimeWarning``.

    ``backend`` (a runtime choice, not saved) sets the index's dense kernel, e.g. ``"mih"``. ``update=False``
    returns the saved index as it is (None when it is not this table's), without catching up.

    Raises :class:`~hashplug.validation.ModelMismatchError` when an index of this table was built from
    another model file, and :class:`ModelFileError` when it holds another code layout or length.
    """
    threads = _check_args(threads, backend, "hashplug.open_hamming_index")
    if not isinstance(update, bool):
        raise HashplugError(f"update must be True or False; got {update!r}.")
    col, _, func = get_function(table, column)
    return _open(table, col, func, folder, threads=threads, update=update, backend=backend)


def open_bound_index(table: Any, column: str, func: Any) -> BoundIndex | None:
    """:func:`open_hamming_index` for a caller that already holds the table's code column and function (a search: the
    function is looked up once per call). A table not on a local path (object storage, ``memory://``) has no
    index beside it: None (the search is LanceDB's)."""
    uri = str(getattr(table, "uri", "") or "")
    if not uri or "://" in uri:
        return None
    return _open(table, column, func, None, threads=1, update=True, backend=None)


def _open(table: Any, col: str, func: Any, folder: Any, *, threads: int, update: bool, backend: str | None
          ) -> BoundIndex | None:
    where = _index_folder(table, col, folder, "hashplug.open_hamming_index")
    disk = _disk_sig(where)
    if disk is None or not (where / "index.json").is_file():
        return None
    version = int(table.version)
    if not update:
        idx, _ = _load_checked(where, table, func, threads)
        if idx is not None:
            idx.folder, idx.column = where, col
            if backend is not None:
                idx.backend = backend
        return idx
    key = str(where.resolve())
    entry = _CACHE.get(key)
    if not _current(entry, table, version, func, disk):
        with _thread_lock(key):  # one catch-up per folder at a time; the others then take its snapshot
            entry = _CACHE.get(key)
            disk = _disk_sig(where)
            if not _current(entry, table, version, func, disk):
                entry = _Entry(_snapshot(entry, table, col, func, where, version, threads, disk),
                               _manifest_sig(table, version), disk)
                _CACHE[key] = entry
    idx = entry.idx
    if backend is not None:
        idx.backend = backend
    return idx


def _snapshot(entry: _Entry | None, table: Any, col: str, func: Any, where: Path, version: int, threads: int,
              disk: Any) -> BoundIndex:
    """The table's index at ``version``: the saved one (when saved anew since) or the cached one, caught up on a
    copy; or rebuilt."""
    base, problem, loaded = None, None, False
    if entry is None or entry.disk != disk:  # saved by someone since: it may be newer, or of another model
        base, problem = _load_checked(where, table, func, threads)
        loaded = True
    if base is None and entry is not None and _fits(entry.idx, func) and _lineage_problem(table, entry.idx.binding) is None:
        base, problem = entry.idx, None
    if base is None and not loaded:
        base, problem = _load_checked(where, table, func, threads)
    idx = None
    if base is not None:
        idx = base.copy()
        if base.table_version != version:
            try:
                t0 = time.perf_counter()
                added, deleted = _catch_up(idx, table, col, version)
                idx.last_catch_up = {"added": int(added), "deleted": int(deleted),
                                     "seconds": round(time.perf_counter() - t0, 4), "version": version,
                                     "rebuilt": False}
            except _Unprovable as exc:
                idx, problem = None, f"a catch-up could not be proved exact ({exc})"
    if idx is None:
        idx = _fresh(table, col, func, version, threads=threads, backend=base.backend if base else "auto")
        idx.last_catch_up = {"added": len(idx), "deleted": 0, "seconds": 0.0, "version": version,
                             "rebuilt": True, "reason": problem}
        warnings.warn(f"the hashplug index at {str(where)!r} was not used: {problem}. It was rebuilt from the table "
                      "in memory for this process (searches stay exact); save it with hashplug.refresh_hamming_index(table) "
                      "or hashplug.build_hamming_index(table).", RuntimeWarning, stacklevel=4)
    idx.folder, idx.column = where, col
    return idx


def build_hamming_index(table: Any, *, column: str | None = None, folder: str | Path | None = None, threads: int = 1,
                save: bool = True, backend: str = "auto") -> BoundIndex:
    """Build the exact Hamming index of a hashplug table's code column (and save it unless ``save=False``).

    The index covers the table's current version, read from a handle pinned there; it is saved atomically
    under the folder's inter-process lock (:meth:`HammingIndex.save`). ``backend`` picks the dense kernel
    (:class:`~hashplug.index.HammingIndex`), e.g. ``"mih"`` for short codes.

    The index holds the rows of the version ``table`` reads. A handle from LanceDB's default connection never
    sees commits made after it was opened by another process: build (and search) with a handle from
    ``lancedb.connect(path, read_consistency_interval=datetime.timedelta(0))``, or call
    ``table.checkout_latest()`` first (see :func:`hashplug.search`).
    """
    threads = _check_args(threads, backend, "hashplug.build_hamming_index")
    if not isinstance(save, bool):
        raise HashplugError(f"save must be True or False; got {save!r}.")
    if backend is None:
        backend = "auto"
    col, _, func = get_function(table, column)
    where = _index_folder(table, col, folder, "hashplug.build_hamming_index")
    version = int(table.version)
    if save:
        prepare_folder(where)
    idx = _fresh(table, col, func, version, threads=threads, backend=backend)
    idx.folder = where
    if save:
        with folder_lock(where):
            idx._save_locked(where)
        # the shared snapshot is a copy: changing the returned index never changes other threads' searches
        _CACHE[str(where.resolve())] = _Entry(_published(idx), _manifest_sig(table, idx.table_version),
                                              _disk_sig(where))
    return idx


def refresh_hamming_index(table: Any, *, column: str | None = None, folder: str | Path | None = None, threads: int = 1
                  ) -> BoundIndex:
    """Catch the saved index up with the table (or rebuild it) and save it: the write side of :func:`open_hamming_index`.

    Runs under the folder's inter-process lock; a save by another process that already covers a later
    version of the same table is kept. Builds the index when there is none.
    """
    threads = _check_args(threads, None, "hashplug.refresh_hamming_index")
    col, _, func = get_function(table, column)
    where = _index_folder(table, col, folder, "hashplug.refresh_hamming_index")
    prepare_folder(where)
    with folder_lock(where):
        if not (where / "index.json").is_file():
            idx = _fresh(table, col, func, int(table.version), threads=threads, backend="auto")
            idx.folder = where
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a rebuild is what this call is for
                idx = open_hamming_index(table, column=col, folder=folder, threads=threads)
        try:
            disk = HammingIndex.read_manifest(where)
            newer = (isinstance(disk.get("table_version"), int) and disk["table_version"] > idx.table_version
                     and _lineage_problem(table, disk.get("table")) is None)
        except ModelFileError:
            newer = False
        if not newer:
            idx._save_locked(where)
        _CACHE[str(where.resolve())] = _Entry(_published(idx), _manifest_sig(table, idx.table_version),
                                              _disk_sig(where))
    return idx


def _published(idx: BoundIndex) -> BoundIndex:
    return idx.copy()


# ---------------------------------------------------------------------------------------------- search
def hamming_index_search(idx: BoundIndex, table: Any, query_codes: Any, limit: int = 10, *, where: str | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Exact search through the index; ``where`` runs in LanceDB first (at the index's version) and restricts
    the candidates."""
    idx = _bound(idx)
    if not where:
        return idx.search(query_codes, limit)
    return idx.search(query_codes, limit, positions=prefilter_positions(idx, table, where))


#: Entries kept per index in the prefilter cache.
_PREFILTER_ENTRIES = 16


def prefilter_positions(idx: BoundIndex, table: Any, where: str) -> np.ndarray:
    """Index positions of the rows matching ``where`` (run by LanceDB at the index's version), cached per filter.

    A snapshot never changes version, so a repeated filter (the usual case: a fixed tenant or category over
    many queries) costs a dict lookup instead of a LanceDB scan and an id lookup.
    """
    if not isinstance(where, str):
        raise HashplugError(f"where must be an SQL filter string; got {type(where).__name__}.")
    idx = _bound(idx)
    version = idx.table_version
    cache = idx._prefilter_cache
    key = (version, where)
    hit = cache.get(key)
    if hit is not None:
        return hit
    h = _snapshot_handle(idx, table)
    try:
        allowed = h.search().where(where).with_row_id(True).select([]).limit(None).to_arrow()["_rowid"]
    except Exception as exc:  # noqa: BLE001 - LanceDB's SQL errors come as several types
        msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise HashplugError(f"the where filter {where!r} failed in LanceDB ({msg}); give an SQL condition on the "
                            f"table's columns.") from None
    pos = idx.positions_of(allowed.to_numpy().astype(np.int64))
    for old in [k for k in list(cache) if k[0] != version]:
        cache.pop(old, None)
    if len(cache) >= _PREFILTER_ENTRIES:
        cache.pop(next(iter(cache)), None)
    cache[key] = pos
    return pos


def rows_by_id(table: Any, row_ids: np.ndarray, columns: list[str] | None = None, *, at: BoundIndex | None = None
               ) -> pa.Table:
    """The table's rows with these ``_rowid`` values, in the given order (with ``_rowid``).

    ``at``: read them at the version this index snapshot covers (the rows its search returned exist there).
    """
    h = table if at is None else _snapshot_handle(_bound(at), table)
    if row_ids.size == 0:
        empty = table.schema.empty_table()
        return empty if columns is None else empty.select(columns)
    ids = [int(r) for r in row_ids]
    if hasattr(h, "take_row_ids"):  # a direct take (LanceDB >= 0.2x), not a filtered scan
        q = h.take_row_ids(ids).with_row_id()
    else:  # pragma: no cover - older LanceDB
        q = h.search().where(f"_rowid IN ({', '.join(map(str, ids))})").with_row_id(True).limit(None)
    if columns is not None:
        q = q.select(list(columns))
    t = q.to_arrow()
    pos = {int(r): i for i, r in enumerate(t["_rowid"].to_numpy())}
    missing = [r for r in ids if r not in pos]
    if missing:
        raise HashplugError(f"rows {missing[:5]} of the search result are gone from table "
                            f"{getattr(table, 'name', '?')!r} (deleted meanwhile); search again.")
    return t.take(pa.array([pos[r] for r in ids])).set_column(
        t.schema.get_field_index("_rowid"), "_rowid", pa.array(np.asarray(ids, dtype=np.int64)))


# 0.1.0 names: "index" alone also named LanceDB's IVF / LABEL_LIST indexes (create_lancedb_index); they keep
# working for one release with a DeprecationWarning.
build_index = renamed_function(build_hamming_index, "build_index", "hashplug.build_hamming_index")
open_index = renamed_function(open_hamming_index, "open_index", "hashplug.open_hamming_index")
refresh_index = renamed_function(refresh_hamming_index, "refresh_index", "hashplug.refresh_hamming_index")
index_search = renamed_function(hamming_index_search, "index_search", "hashplug.hamming_index_search")
