"""An exact Hamming index over one code column: rows by id, added and deleted in place, saved without pickle.

:class:`HammingIndex` holds the codes of a table's rows (``row_ids`` in insertion order: positions; stored as runs of
consecutive ids, :class:`RowIdRuns`) in the
form its kernel needs (dense: uint64 words; sparse: CSC postings, the rows of each unit, and row lengths) and answers
``search(query_codes, limit, allowed=None) -> (row_ids, distances)`` exactly as a brute-force scan in
position order would, ties to the earlier position. ``add`` appends rows, ``delete`` drops rows by id (the
survivors keep their relative order). An index is safe to share between threads: ``add`` / ``delete`` build
new arrays and swap them in under a lock, and a search reads one consistent set of arrays (taken under the
lock) and ranks outside it.

``save(folder)`` is atomic as a whole: the arrays go to a file of their own under a unique name
(``index-<token>.npz``), then the manifest ``index.json`` (layout, m, row count, the index's ``metadata`` (what
its owner records about the codes' source: :mod:`hashplug.integrations.index` writes the table version, binding
and model sha256 there), the arrays file's name, size and sha256) is written under a unique temporary name
and moved over the old one with ``os.replace``; files no manifest names are removed afterwards. Writers hold
an inter-process lock (``fcntl.flock`` on ``index.lock`` in the folder), so two processes saving at once
leave one whole index; a kill at any point leaves the old index or the new one. ``load`` checks all of it
(and still reads ``hashplug-index/1`` folders: ``index.npz`` + ``index.json``). numpy only; the index knows
nothing of LanceDB (the binding to a table, which reads the table and catches up, is
:class:`hashplug.integrations.index.BoundIndex`).
"""

from __future__ import annotations

import contextlib
import json
import numbers
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .._files import fsync_dir, sha256_arrays
from ..codes import unpack_bits
from ..ranking import order_rows
from ..validation import HashplugError, ModelFileError
from .kernels import (
    BACKENDS,
    build_postings,
    dense_topk,
    merge_postings,
    repeated_unit,
    sparse_topk,
    words_of,
)

__all__ = ["HammingIndex", "RowIdRuns", "INDEX_FORMAT", "folder_lock", "prepare_folder"]

#: The manifest format written today; ``hashplug-index/1`` (``index.npz`` + ``index.json``) is still read.
INDEX_FORMAT = "hashplug-index/2"
_READ_FORMATS = ("hashplug-index/1", INDEX_FORMAT)
#: Names of the arrays files a manifest may name (one path component, written by :meth:`HammingIndex.save`).
_ARRAYS_NAME = re.compile(r"index(-[0-9a-f]{32})?\.npz")
#: Files a save owns in its folder: its arrays files, the legacy arrays file and temporary files of writers.
_OWNED = re.compile(r"(index-[0-9a-f]{32}\.npz|index\.npz|index\.npz\.tmp|index\.json\.tmp|\.index-.*\.tmp)")
#: The manifest keys the index writes itself; every other key is its ``metadata``.
_OWN_KEYS = frozenset({"format", "layout", "m", "n_rows", "arrays_file", "arrays_bytes", "arrays_sha256",
                       "saved_at"})
#: The metadata keys every ``hashplug-index/2`` manifest carries (null when the owner sets none): what they
#: mean is the owner's (:mod:`hashplug.integrations.index`: the table version, model sha256 and table binding).
_FORMAT_KEYS = ("table_version", "model_sha256", "table")
#: The 0.2 attributes that are now ``metadata`` keys (read and set with a DeprecationWarning).
_OLD_ATTRS = {"table_version": "table_version", "model_sha256": "model_sha256", "binding": "table"}


def prepare_folder(folder: str | Path) -> Path:
    """Create an index folder (and its parents); a clear error when it cannot be made or is not a folder."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HashplugError(f"cannot create the index folder {str(folder)!r} ({type(exc).__name__}: {exc}); pass "
                            "a writable folder=.") from None
    if not folder.is_dir():
        raise HashplugError(f"{str(folder)!r} is not a folder; pass a folder for the index.")
    return folder


@contextlib.contextmanager
def folder_lock(folder: str | Path) -> Iterator[None]:
    """Hold the inter-process write lock of an index folder (``fcntl.flock`` on ``<folder>/index.lock``).

    Writers of one folder (``save``, ``build_hamming_index``, ``refresh_hamming_index``) take it, so two processes saving at
    once run one after the other. Readers never need it: the manifest is replaced atomically. Where ``fcntl``
    does not exist (Windows) only the atomic replace protects concurrent writers.
    """
    folder = Path(folder)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(folder / "index.lock", "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _check_limit(limit: Any) -> int:
    if isinstance(limit, bool) or not isinstance(limit, numbers.Integral):
        raise HashplugError(f"limit must be an int >= 1; got {limit!r}.")
    if int(limit) < 1:
        raise HashplugError(f"limit must be >= 1; got {limit}.")
    return int(limit)


def _check_int_ids(values: Any, what: str) -> np.ndarray:
    a = np.asarray(values)
    if a.size and a.dtype.kind not in "iu":
        raise HashplugError(f"{what} must be integers; got dtype {a.dtype}.")
    return a.astype(np.int64).reshape(-1)


def _length_dtype(m: int) -> Any:
    """The smallest unsigned type holding a row's number of active units (at most m)."""
    return np.uint16 if m < 2**16 else np.uint32


class RowIdRuns:
    """Row ids by position, stored as runs of consecutive ids: ``(start id, first position)`` per run.

    LanceDB's ``_rowid`` is ``fragment << 32 | offset``, so a table's ids are long runs of consecutive
    integers (one per fragment, split by deletions): the runs take 16 bytes each instead of 8 bytes per row,
    which keeps the index of 64-bit codes near the size of the codes themselves.

    Parameters
    ----------
    ids : array-like of int64, optional
        Row ids in position order.
    """

    def __init__(self, ids: Any = None) -> None:
        a = np.zeros(0, np.int64) if ids is None else np.asarray(ids, dtype=np.int64).reshape(-1)
        self._lengths: np.ndarray | None = None
        self.n = int(a.shape[0])
        if self.n:
            brk = np.flatnonzero(np.diff(a) != 1) + 1
            self.run_pos = np.concatenate([[0], brk]).astype(np.int64)
            self.starts = a[self.run_pos].astype(np.int64)
        else:
            self.run_pos = np.zeros(0, np.int64)
            self.starts = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return self.n

    @property
    def nbytes(self) -> int:
        return int(self.starts.nbytes + self.run_pos.nbytes)

    @property
    def n_runs(self) -> int:
        return int(self.starts.shape[0])

    def take(self, pos: Any) -> np.ndarray:
        """The ids at positions ``pos`` (any shape): ndarray of the same shape, int64."""
        p = np.asarray(pos, dtype=np.int64)
        if not self.n_runs:
            return np.zeros(p.shape, np.int64)
        r = np.searchsorted(self.run_pos, p, side="right") - 1
        return self.starts[r] + (p - self.run_pos[r])

    @property
    def max_id(self) -> int:
        """The largest id held (-1 when empty)."""
        if not self.n:
            return -1
        ends = np.append(self.run_pos[1:], self.n) - self.run_pos  # run lengths
        return int(np.max(self.starts + ends - 1))

    def lengths(self) -> np.ndarray:
        """The length of each run: ndarray of shape (n_runs,), int64 (computed once: the runs never change
        after they are made; read-only)."""
        if self._lengths is None:
            lengths = np.diff(np.append(self.run_pos, self.n))
            lengths.flags.writeable = False
            self._lengths = lengths
        return self._lengths

    def to_array(self) -> np.ndarray:
        """Every id in position order: ndarray of shape (n,), int64 (materialised in O(n), no search)."""
        return np.repeat(self.starts - self.run_pos, self.lengths()) + np.arange(self.n, dtype=np.int64)

    def disjoint(self, other: RowIdRuns | None = None) -> bool:
        """Whether every id of this object (and of ``other``) is distinct: the runs as intervals, sorted, must
        not overlap. O(runs log runs)."""
        parts = [self] if other is None else [self, other]
        starts = np.concatenate([p.starts for p in parts])
        ends = np.concatenate([p.starts + p.lengths() for p in parts])
        if starts.size < 2:
            return True
        order = np.argsort(starts, kind="stable")
        s, e = starts[order], ends[order]
        return bool(np.all(s[1:] >= np.maximum.accumulate(e)[:-1]))

    def concat(self, other: RowIdRuns) -> RowIdRuns:
        """The runs of this object's ids followed by ``other``'s, in O(runs) (a run continued across the join is
        merged)."""
        if not self.n or not other.n:
            return self if not other.n else other
        sb, pb = other.starts, other.run_pos + self.n
        if sb[0] == self.starts[-1] + (self.n - self.run_pos[-1]):  # other's first run continues our last
            sb, pb = sb[1:], pb[1:]
        return RowIdRuns.from_arrays(np.concatenate([self.starts, sb]), np.concatenate([self.run_pos, pb]),
                                     self.n + other.n)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"id_starts": self.starts, "id_run_pos": self.run_pos, "id_n": np.array([self.n], np.int64)}

    @classmethod
    def from_arrays(cls, starts: np.ndarray, run_pos: np.ndarray, n: int) -> RowIdRuns:
        out = cls()
        starts, run_pos = np.asarray(starts, np.int64), np.asarray(run_pos, np.int64)
        if starts.shape != run_pos.shape or (run_pos.size and (run_pos[0] != 0 or np.any(np.diff(run_pos) <= 0)
                                                                or run_pos[-1] >= n)) or (n and not run_pos.size):
            raise HashplugError("row id runs are inconsistent (positions must start at 0 and increase below n).")
        out.starts, out.run_pos, out.n, out._lengths = starts, run_pos, int(n), None
        return out


class HammingIndex:
    """Exact Hamming search over the codes of a set of rows.

    Parameters
    ----------
    layout : {"packed", "indices"}
        ``packed``: codes are packed bits (n, ceil(m / 8)) uint8; ``indices``: each row's active units.
    m : int
        Code length in units (bits).
    threads : int
        Threads of the dense kernel.
    backend : str
        The dense kernel (:func:`hashplug.index.kernels.dense_topk`): ``auto`` (numba when installed, else
        numpy), ``numpy``, ``numba``, ``faiss`` or ``mih`` (multi-index hashing: sublinear for short codes,
        about 6x the code memory, built on the first search after a change). Searches with a prefilter use
        ``auto``. Every backend returns the same rows.

    Attributes
    ----------
    row_ids : ndarray of shape (n,), dtype=int64
        The row id at every position (for a LanceDB table: ``_rowid``).
    metadata : dict
        JSON values its owner records about the codes (saved in the manifest, read back by :meth:`load`; keys
        other than the manifest's own). :class:`hashplug.integrations.index.BoundIndex` keeps a table's version,
        binding and model sha256 there. ``table_version``, ``model_sha256`` and ``binding``, 0.2's attributes
        for three of its keys, still work with a ``DeprecationWarning``.
    format : str or None
        The manifest format it was loaded from (None for an index built in memory).
    """

    def __init__(self, layout: str, m: int, *, threads: int = 1, backend: str = "auto") -> None:
        if layout not in ("packed", "indices"):
            raise HashplugError(f"layout must be 'packed' or 'indices'; got {layout!r}.")
        if backend not in BACKENDS:
            raise HashplugError(f"backend must be one of {list(BACKENDS)}; got {backend!r}.")
        self.backend = backend
        if isinstance(m, bool) or not isinstance(m, numbers.Integral) or int(m) < 1:
            raise HashplugError(f"m must be an int >= 1 (the code length in bits); got {m!r}.")
        self.layout = layout
        self.m = int(m)
        self.threads = int(threads)
        self._ids = RowIdRuns()
        self.metadata: dict[str, Any] = {}
        self.format: str | None = None
        self._lock = threading.RLock()  # guards the swap of arrays (add / delete / merge), not the kernels
        self._words = np.zeros((0, -(-self.m // 64)), dtype=np.uint64)
        # indices layout: CSC postings only (the rows of each unit, ascending positions) and each row's length;
        # rows added since the last search wait as postings of their own (unit offsets, rows from 0, row count)
        # and are merged in by the next one
        self._uo = np.zeros(self.m + 1, dtype=np.int64)
        self._rows = np.zeros(0, dtype=np.int32)
        self._lengths = np.zeros(0, dtype=_length_dtype(self.m))
        self._pending: list[tuple[np.ndarray, np.ndarray, int]] = []
        self._zero: Any = None  # rows sharing no unit, in order: a range (uniform lengths) or an array
        self._change = 0  # bumped by add / delete: invalidates cached subsets

    def copy(self) -> HammingIndex:
        """A copy sharing the (never written in place) arrays: change it without disturbing searches of this one."""
        with self._lock:
            self._merge_pending()
            out = object.__new__(type(self))
            out.__dict__.update({k: v for k, v in self.__dict__.items() if not k.startswith("_sub")})
            out._pending = []
            out._lock = threading.RLock()
            out.metadata = json.loads(json.dumps(self.metadata))
            return out

    def __getattr__(self, name: str) -> Any:
        if name in _OLD_ATTRS:  # 0.2's table_version, model_sha256, binding: now metadata keys
            _warn_old_attr(name)
            return self.__dict__.get("metadata", {}).get(_OLD_ATTRS[name])
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OLD_ATTRS:
            _warn_old_attr(name)
            self.metadata[_OLD_ATTRS[name]] = value
            return
        object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ size
    def __len__(self) -> int:
        return len(self._ids)

    @property
    def row_ids(self) -> np.ndarray:
        """The row id at every position: ndarray of shape (n,), int64 (materialised from the runs)."""
        return self._ids.to_array()

    @property
    def id_runs(self) -> RowIdRuns:
        """The row ids by position as runs of consecutive ids (not materialised; never changed in place)."""
        return self._ids

    @property
    def nbytes(self) -> int:
        """Bytes held (codes, postings, row-id runs)."""
        if self.layout == "packed":
            return int(self._words.nbytes + self._ids.nbytes)
        pending = sum(int(o.nbytes + v.nbytes) for o, v, _ in self._pending)
        zero = int(self._zero.nbytes) if isinstance(self._zero, np.ndarray) else 0
        return int(self._uo.nbytes + self._rows.nbytes + self._lengths.nbytes + self._ids.nbytes + pending + zero)

    # ------------------------------------------------------------------ contents
    def _check_ids(self, row_ids: Any, n: int) -> np.ndarray:
        ids = _check_int_ids(row_ids, "row ids")
        if ids.shape[0] != n:
            raise HashplugError(f"{ids.shape[0]} row ids for {n} codes; give one id per code.")
        # ascending ids (a table's row ids) are unique without a sort; new ids above every held one are new
        unique = ids.size < 2 or bool(np.all(ids[1:] > ids[:-1])) or bool(np.all(np.diff(np.sort(ids)) != 0))
        if not unique or (len(self) and ids.size and not ids.min() > self._ids.max_id
                          and np.isin(ids, self.row_ids).any()):
            raise HashplugError("row ids must be unique and not already in the index.")
        return ids

    def _check_runs(self, runs: RowIdRuns, n: int) -> np.ndarray:
        """:meth:`_check_ids` for ids given as runs, in O(runs log runs): no id materialised or searched."""
        if len(runs) != n:
            raise HashplugError(f"{len(runs)} row ids for {n} codes; give one id per code.")
        if not runs.disjoint(self._ids):
            raise HashplugError("row ids must be unique and not already in the index.")
        return runs.starts  # unused by the callers of a runs add (the runs are joined, never materialised)

    def add(self, codes: Any, row_ids: Any) -> None:
        """Append rows: packed codes (n, ceil(m / 8)) uint8, or ``(offsets (n + 1,), values)`` for ``indices``.

        ``row_ids``: (n,) int64, or a :class:`RowIdRuns` (checked and joined in O(runs), e.g. a table's row
        addresses, without materialising or searching the ids)."""
        with self._lock:
            self._add(codes, row_ids)

    def keep(self, mask: Any) -> int:
        """Keep the rows where ``mask`` (n,) bool is True, in position order (:meth:`delete` by position, without
        searching the ids); returns how many were dropped."""
        keep = np.asarray(mask)
        with self._lock:
            if keep.dtype != np.bool_ or keep.shape != (len(self),):
                raise HashplugError(f"mask must be a bool array of shape ({len(self)},) (one per indexed row); got "
                                    f"{keep.dtype} {keep.shape}.")
            return self._keep(keep)

    def _keep(self, keep: np.ndarray, ids: np.ndarray | None = None) -> int:
        """``keep`` by position; ``ids``: the row ids when the caller has materialised them already."""
        k = int(keep.shape[0] - np.count_nonzero(keep))
        if not k:
            return 0
        ids = self.row_ids if ids is None else ids
        if self.layout == "packed":
            self._words = np.ascontiguousarray(self._words[keep])
        else:
            self._uo, self._rows, self._lengths = self._postings_of(keep)
            self._zero = None
        self._change += 1
        self._ids = RowIdRuns(ids[keep])
        return k

    def _add(self, codes: Any, row_ids: Any) -> None:
        runs = row_ids if isinstance(row_ids, RowIdRuns) else None
        check = self._check_runs if runs is not None else self._check_ids
        if self.layout == "packed":
            c = np.asarray(codes)
            nb = -(-self.m // 8)
            if c.dtype != np.uint8 or c.ndim != 2 or c.shape[1] != nb:
                raise HashplugError(f"packed codes must be uint8 of shape (n, {nb}) for m={self.m}; got {c.dtype} "
                                    f"{c.shape}.")
            self._check_padding(c, "codes")
            ids = check(row_ids, c.shape[0])
            w = words_of(c)
            self._words = np.concatenate([self._words, w]) if len(self) else np.array(w, copy=True)
        else:
            if not isinstance(codes, (tuple, list)) or len(codes) != 2:
                raise HashplugError("indices codes must be a pair (offsets (n + 1,), values) of int arrays; got "
                                    f"{type(codes).__name__}.")
            offsets = _check_int_ids(codes[0], "offsets")
            values = _check_int_ids(codes[1], "active units")
            n = offsets.shape[0] - 1
            if n < 0 or np.any(np.diff(offsets) < 0) or (offsets.size and (offsets[0] < 0 or offsets[-1] > values.size)):
                raise HashplugError(f"offsets must be non-decreasing, start at >= 0 and end at <= {values.size} "
                                    "(the number of values).")
            if values.size and (values.min() < 0 or values.max() >= self.m):
                raise HashplugError(f"active units must lie in [0, m={self.m}); got values in [{values.min()}, "
                                    f"{values.max()}].")
            ids = check(row_ids, n)
            lens = np.diff(offsets)
            vals = values[offsets[0] : offsets[-1]]
            # the chunk's own postings (a radix sort by unit): a row listing a unit twice shows up as the same
            # row twice in a row in that unit's postings, one vectorised comparison; merged at the next search
            uo, rows, _ = build_postings(offsets - offsets[0], vals, self.m)
            dup = repeated_unit(uo, rows)
            if dup is not None:
                rid = int(runs.take(dup[0])) if runs is not None else int(ids[dup[0]])
                raise HashplugError(f"row {dup[0]} of this add (row id {rid}) lists active unit {dup[1]} "
                                    "twice; give each row's units once.")
            self._pending = [*self._pending, (uo, rows, n)]
            self._lengths = np.concatenate([self._lengths, lens.astype(self._lengths.dtype)])
            self._zero = None
        self._change += 1
        self._ids = self._ids.concat(runs) if runs is not None else RowIdRuns(np.concatenate([self.row_ids, ids]))

    def _check_padding(self, c: np.ndarray, what: str) -> None:
        """Packed codes of m bits leave the last byte's low ``8 - m % 8`` bits zero (``np.packbits``)."""
        if self.m % 8 and c.size and np.any(c[:, -1] & np.uint8((1 << (8 - self.m % 8)) - 1)):
            raise HashplugError(f"{what} set bits past m={self.m} (the padding of the last byte); these are codes "
                                "of another length: encode them with the model the index was built from.")

    def delete(self, row_ids: Any) -> int:
        """Drop the rows with these ids (ids not in the index are ignored); returns how many were dropped."""
        gone_ids = _check_int_ids(row_ids, "row ids")
        with self._lock:
            return self._delete(gone_ids)

    def _delete(self, gone_ids: np.ndarray) -> int:
        ids = self.row_ids  # materialised once from the runs
        return self._keep(~np.isin(ids, gone_ids), ids)

    def _merge_pending(self) -> None:
        """Merge the rows added since the last search into the postings (each unit: old rows, then new)."""
        with self._lock:
            if self._pending:
                self._merge_pending_locked()

    def _merge_pending_locked(self) -> None:
        base = self._lengths.shape[0] - sum(n for _, _, n in self._pending)
        parts = [(self._uo, self._rows, 0)]
        for uo, rows, n in self._pending:
            parts.append((uo, rows, base))
            base += n
        if not self._rows.size and len(parts) == 2 and parts[1][2] == 0:  # a first add: its postings as they are
            self._uo, self._rows = parts[1][0], parts[1][1]
        else:
            self._uo, self._rows = merge_postings(parts, self.m)
        self._pending = []

    def _postings_of(self, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(unit_offsets, rows, lengths)`` of the rows where ``keep`` (n,) is True, renumbered 0.. in order."""
        self._merge_pending()
        newpos = np.cumsum(keep) - 1
        sel = keep[self._rows]
        units = np.repeat(np.arange(self.m), np.diff(self._uo))
        uo = np.zeros(self.m + 1, dtype=np.int64)
        np.cumsum(np.bincount(units[sel], minlength=self.m), out=uo[1:])
        return uo, newpos[self._rows[sel]].astype(np.int32), self._lengths[keep]

    @staticmethod
    def _zero_order_of(lengths: np.ndarray) -> Any:
        """Positions by (length, position): the order of rows sharing no unit with a query (a range when every
        row has the same length, the k-hot case: no array)."""
        if lengths.size == 0 or np.all(lengths == lengths[0]):
            return range(lengths.shape[0])
        return order_rows(lengths)  # the row rule: by length, lower position first

    def _sparse_postings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
        self._merge_pending()  # under the caller's lock
        if self._zero is None:  # kept until the rows change: the uniform-length check is O(n)
            self._zero = self._zero_order_of(self._lengths)
        return self._uo, self._rows, self._lengths, self._zero

    def _subset_postings(self, sub: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
        """Postings of the rows at positions ``sub`` (the last subset's are kept: a repeated prefilter)."""
        key = (len(self), sub.size, hash(sub.tobytes()))
        hit = getattr(self, "_sub_cache", None)
        if hit is not None and hit[0] == key and self._postings_token == hit[2]:
            return hit[1]
        chosen = np.zeros(len(self), dtype=bool)
        chosen[sub] = True
        uo, rows, lengths = self._postings_of(chosen)
        out = (uo, rows, lengths, self._zero_order_of(lengths))
        self._sub_cache = (key, out, self._postings_token)
        return out

    @property
    def _postings_token(self) -> int:
        """Changes whenever the rows change (add / delete), invalidating cached subsets."""
        return self._change

    # ------------------------------------------------------------------ search
    def positions_of(self, row_ids: Any) -> np.ndarray:
        """Positions (ascending) of the rows whose id is in ``row_ids``: ndarray of int64 (unknown ids ignored)."""
        return np.flatnonzero(np.isin(self.row_ids, np.asarray(row_ids, dtype=np.int64).reshape(-1)))

    def search(
        self, queries: Any, limit: int = 10, *, allowed: Any = None, positions: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``limit`` rows of each query.

        Parameters
        ----------
        queries : ndarray of shape (nq, ceil(m / 8)), uint8, or list of ndarray of active units
            Packed codes (either layout: sparse queries are unpacked) or, for ``indices``, unit lists.
        limit : int
        allowed : array-like of int64 row ids or None
            Only these rows are candidates (a ``where`` prefilter).
        positions : array-like of int64 or None
            The same by ascending positions (:meth:`positions_of`), e.g. a cached prefilter; not with ``allowed``.

        Returns
        -------
        row_ids : ndarray of shape (nq, min(limit, n)), dtype=int64
        distances : ndarray of shape (nq, min(limit, n)), dtype=int32
            Ascending distance, ties by position (the order rows were added).
        """
        limit = _check_limit(limit)
        if allowed is not None and positions is not None:
            raise HashplugError("give allowed= (row ids) or positions=, not both.")
        q, qs = self._check_queries(queries)
        with self._lock:  # one consistent set of arrays; the ranking runs outside the lock
            runs = self._ids
            sub = None
            if allowed is not None:
                sub = self.positions_of(_check_int_ids(allowed, "allowed row ids"))
            elif positions is not None:
                sub = _check_int_ids(positions, "positions")
                if sub.size and (sub.min() < 0 or sub.max() >= len(runs) or np.any(np.diff(sub) <= 0)):
                    raise HashplugError(f"positions must be ascending and in [0, {len(runs)}).")
            if self.layout == "packed":
                words = self._words
            elif sub is None:
                postings = self._sparse_postings()
            else:
                postings = self._subset_postings(sub)
        if self.layout == "packed":
            words = words if sub is None else words[sub]
            backend = self.backend if sub is None or self.backend in ("numpy", "numba") else "auto"
            pos, dist = dense_topk(q, words, limit, threads=self.threads, backend=backend)
        else:
            uo, rows, lengths, zero = postings
            pos, dist = sparse_topk(qs, uo, rows, lengths, limit, zero_order=zero, threads=self.threads)
        return runs.take(pos if sub is None else sub[pos]), dist

    def _check_queries(self, queries: Any) -> tuple[Any, Any]:
        """(packed queries, None) for ``packed``; (None, unit lists) for ``indices``; refuses other code widths."""
        nb = -(-self.m // 8)
        if isinstance(queries, np.ndarray) and queries.dtype == np.uint8 and queries.ndim == 2 or self.layout == "packed":
            q = np.asarray(queries)
            if q.dtype != np.uint8 or q.ndim != 2 or q.shape[1] != nb:
                raise HashplugError(f"queries must be packed uint8 codes of shape (nq, {nb}) for this index of m="
                                    f"{self.m} bits; got {q.dtype} {q.shape}. Encode them with the model the "
                                    "index was built from.")
            self._check_padding(q, "queries")
            if self.layout == "packed":
                return q, None
            return None, [np.flatnonzero(r) for r in unpack_bits(q, self.m)]
        if isinstance(queries, (str, bytes)) or not hasattr(queries, "__iter__"):
            raise HashplugError(f"queries of an indices index are a list of active-unit arrays (or packed uint8 "
                                f"codes); got {type(queries).__name__}.")
        qs = []
        for u in queries:
            a = np.asarray(u)
            if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
                raise HashplugError(f"each query is a 1-d int array of active units in [0, {self.m}); got "
                                    f"{a.dtype} of shape {a.shape}.")
            a = np.unique(a.astype(np.int64))
            if a.size and (a[0] < 0 or a[-1] >= self.m):
                raise HashplugError(f"query units must lie in [0, m={self.m}); got {a[0] if a[0] < 0 else a[-1]}. "
                                    "Encode the queries with the model the index was built from.")
            qs.append(a)
        return None, qs

    # ------------------------------------------------------------------ persistence
    def _arrays(self) -> dict[str, np.ndarray]:
        with self._lock:
            if self.layout == "packed":
                return {**self._ids.arrays(), "words": self._words}
            self._merge_pending()
            return {**self._ids.arrays(), "unit_offsets": self._uo, "postings": self._rows, "lengths": self._lengths}

    def save(self, folder: str | Path) -> Path:
        """Write the index into ``folder`` (created) atomically, under the folder's write lock; returns the folder.

        The arrays go to ``index-<token>.npz`` (a new name every save), then the manifest ``index.json`` naming
        it is replaced in one ``os.replace``; arrays files and temporary files no manifest names are removed
        afterwards. A reader sees the old index or the new one, never a mix; a writer killed at any point leaves
        the old one (and a temporary file the next save removes).
        """
        folder = prepare_folder(folder)
        with folder_lock(folder):
            self._save_locked(folder)
        return folder

    def _save_locked(self, folder: Path) -> None:
        arrays = self._arrays()
        token = uuid.uuid4().hex
        name = f"index-{token}.npz"
        tmp = folder / f".index-{token}.npz.tmp"
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / name)
        clash = sorted(set(self.metadata) & _OWN_KEYS)
        if clash:
            raise HashplugError(f"the index's metadata may not use the manifest's own keys {clash}; rename them.")
        meta = {"format": INDEX_FORMAT, "layout": self.layout, "m": self.m, "n_rows": len(self),
                **dict.fromkeys(_FORMAT_KEYS), **self.metadata, "arrays_file": name, "arrays_bytes": (folder / name).stat().st_size,
                "arrays_sha256": sha256_arrays(arrays), "saved_at": time.time()}
        mtmp = folder / f".index-{token}.json.tmp"
        with open(mtmp, "w") as f:
            f.write(json.dumps(meta, indent=1))
            f.flush()
            os.fsync(f.fileno())
        os.replace(mtmp, folder / "index.json")  # the commit point
        fsync_dir(folder)
        for p in folder.iterdir():  # arrays no manifest names, temporary files of killed writers (we hold the lock)
            if p.name != name and _OWNED.fullmatch(p.name):
                with contextlib.suppress(OSError):
                    p.unlink()

    @staticmethod
    def read_manifest(folder: str | Path) -> dict[str, Any]:
        """The checked manifest (``index.json``) of a saved index; :class:`ModelFileError` when unusable."""
        where = str(folder)
        try:
            meta = json.loads((Path(folder) / "index.json").read_text())
        except FileNotFoundError:
            raise ModelFileError(f"{where!r} holds no hashplug index (index.json missing); build one first.") from None
        except NotADirectoryError:
            raise ModelFileError(f"{where!r} is not a folder (a file, or a path through one); give the index "
                                 "folder.") from None
        except IsADirectoryError:
            raise ModelFileError(f"{where!r}: index.json is a folder, not a hashplug index manifest; rebuild the "
                                 "index.") from None
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"{where!r}: index.json is corrupt ({exc}); rebuild the index.") from None
        if not isinstance(meta, dict):
            raise ModelFileError(f"{where!r}: index.json is not a hashplug index manifest (a JSON "
                                 f"{type(meta).__name__}); rebuild the index.")
        if meta.get("format") not in _READ_FORMATS:
            raise ModelFileError(f"{where!r}: index format {meta.get('format')!r}; expected {INDEX_FORMAT!r}; "
                                 "rebuild the index.")
        m, n, layout = meta.get("m"), meta.get("n_rows"), meta.get("layout")
        if (layout not in ("packed", "indices") or isinstance(m, bool) or not isinstance(m, int) or m < 1
                or isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise ModelFileError(f"{where!r}: index.json has layout={layout!r}, m={m!r}, n_rows={n!r}; expected "
                                 "'packed' / 'indices', m >= 1 and n_rows >= 0. Rebuild the index.")
        name = meta.get("arrays_file", "index.npz") if meta["format"] == INDEX_FORMAT else "index.npz"
        if not isinstance(name, str) or not _ARRAYS_NAME.fullmatch(name):
            raise ModelFileError(f"{where!r}: index.json names the arrays file {name!r}, which is not one a save "
                                 "writes (index-<32 hex>.npz); rebuild the index.")
        meta["arrays_file"] = name
        return meta

    @classmethod
    def load(cls, folder: str | Path, *, threads: int = 1, backend: str = "auto") -> HammingIndex:
        """Read an index saved by :meth:`save`; any inconsistency raises :class:`ModelFileError`.

        A save by another process between reading the manifest and its arrays (which removes the old arrays
        file) is retried with the new manifest.
        """
        folder = Path(folder)
        for attempt in range(5):
            meta = cls.read_manifest(folder)
            try:
                with open(folder / meta["arrays_file"], "rb") as fh:
                    size = os.fstat(fh.fileno()).st_size
                    if meta.get("arrays_bytes") is not None and size != meta.get("arrays_bytes"):
                        raise ModelFileError(f"{str(folder)!r}: {meta['arrays_file']} holds {size} bytes but the "
                                             f"manifest says {meta.get('arrays_bytes')} (torn or replaced); rebuild "
                                             "the index.")
                    return cls._from_arrays(folder, meta, fh, threads=threads, backend=backend)
            except FileNotFoundError:
                if attempt < 4 and cls._manifest_changed(folder, meta):
                    continue  # another writer replaced the index meanwhile: read the new one
                raise ModelFileError(f"{str(folder)!r}: index.json names {meta['arrays_file']}, which is missing; "
                                     "rebuild the index.") from None
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _manifest_changed(folder: Path, meta: dict[str, Any]) -> bool:
        try:
            now = json.loads((folder / "index.json").read_text())
        except (OSError, ValueError):
            return True
        return not isinstance(now, dict) or now.get("arrays_file", "index.npz") != meta["arrays_file"] \
            or now.get("saved_at") != meta.get("saved_at")

    @classmethod
    def _from_arrays(cls, folder: Path, meta: dict[str, Any], fh: Any, *, threads: int, backend: str
                     ) -> HammingIndex:
        where = str(folder)
        try:
            with np.load(fh, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:  # noqa: BLE001 - any failure to parse is a corrupt file
            raise ModelFileError(f"{where!r}: {meta['arrays_file']} is corrupt ({type(exc).__name__}: {exc}); "
                                 "rebuild the index.") from None
        if sha256_arrays(arrays) != meta.get("arrays_sha256"):
            raise ModelFileError(f"{where!r}: {meta['arrays_file']} does not match its recorded sha256; rebuild "
                                 "the index.")
        idx = cls(meta["layout"], int(meta["m"]), threads=threads, backend=backend)
        try:
            if "row_ids" in arrays:  # indexes saved before the runs
                idx._ids = RowIdRuns(arrays["row_ids"])
            else:
                idx._ids = RowIdRuns.from_arrays(arrays["id_starts"], arrays["id_run_pos"], int(arrays["id_n"][0]))
        except (KeyError, IndexError, ValueError) as exc:
            raise ModelFileError(f"{where!r}: the row ids in {meta['arrays_file']} are missing or corrupt ({exc}); "
                                 "rebuild the index.") from None
        if idx.layout == "packed":
            words = arrays.get("words")
            if words is None or words.dtype != np.uint64 or words.shape != (len(idx), -(-idx.m // 64)):
                raise ModelFileError(f"{where!r}: the codes in {meta['arrays_file']} are not uint64 words of shape "
                                     f"({len(idx)}, {-(-idx.m // 64)}); rebuild the index.")
            idx._words = np.ascontiguousarray(words)
            nb = -(-idx.m // 8)
            tail = idx._words.view(np.uint8).reshape(len(idx), -1)
            if len(idx) and (np.any(tail[:, nb:]) or (idx.m % 8 and np.any(tail[:, nb - 1] & np.uint8((1 << (8 - idx.m % 8)) - 1)))):
                raise ModelFileError(f"{where!r}: the codes in {meta['arrays_file']} set bits past m={idx.m}: codes "
                                     "of another length; rebuild the index.")
        elif "offsets" in arrays:  # indexes saved before the postings-only layout: CSR codes
            try:
                offsets = arrays["offsets"].astype(np.int64)
                uo, rows, _ = build_postings(offsets - offsets[0], arrays["values"][offsets[0] : offsets[-1]], idx.m)
                idx._pending = [(uo, rows, offsets.shape[0] - 1)]
                idx._lengths = np.diff(offsets).astype(idx._lengths.dtype)
                if idx._lengths.shape[0] != len(idx):
                    raise ValueError(f"{idx._lengths.shape[0]} coded rows for {len(idx)} row ids")
                idx._merge_pending()
            except (KeyError, ValueError, IndexError, HashplugError) as exc:
                raise ModelFileError(f"{where!r}: the codes in index.npz are corrupt ({exc}); rebuild the index.") from None
        else:
            try:
                uo, rows, lengths = arrays["unit_offsets"], arrays["postings"], arrays["lengths"]
            except KeyError as exc:
                raise ModelFileError(f"{where!r}: {meta['arrays_file']} lacks {exc}; rebuild the index.") from None
            n = len(idx)
            if (uo.shape != (idx.m + 1,) or uo[0] != 0 or np.any(np.diff(uo) < 0) or uo[-1] != rows.size
                    or lengths.shape != (n,) or (rows.size and (rows.min() < 0 or rows.max() >= n))
                    or int(lengths.sum()) != rows.size):
                raise ModelFileError(f"{where!r}: the postings in {meta['arrays_file']} are inconsistent with "
                                     f"m={idx.m} and {n} rows; rebuild the index.")
            idx._uo, idx._rows = uo.astype(np.int64), rows.astype(np.int32)
            idx._lengths = lengths.astype(idx._lengths.dtype)
        if len(idx) != int(meta["n_rows"]):
            raise ModelFileError(f"{where!r}: {len(idx)} rows stored but the header says {meta['n_rows']}; rebuild "
                                 "the index.")
        idx.metadata = {k: v for k, v in meta.items() if k not in _OWN_KEYS}
        idx.format = meta["format"]
        return idx


def _warn_old_attr(name: str) -> None:
    import warnings

    warnings.warn(
        f"HammingIndex.{name} is deprecated and will be removed in 0.3: the index knows nothing of tables; read "
        f"index.metadata[{_OLD_ATTRS[name]!r}], or the attribute of the table's hashplug.integrations.index."
        "BoundIndex (what build_hamming_index / open_hamming_index return).",
        DeprecationWarning,
        stacklevel=3,
    )
