"""An exact Hamming index over one code column: rows by id, added and deleted in place, saved without pickle.

:class:`HammingIndex` holds the codes of a table's rows (``row_ids`` in insertion order: positions; stored as runs of
consecutive ids, :class:`RowIdRuns`) in the
form its kernel needs (dense: uint64 words; sparse: CSC postings, the rows of each unit, and row lengths) and answers
``search(query_codes, limit, allowed=None) -> (row_ids, distances)`` exactly as a brute-force scan in
position order would, ties to the earlier position. ``add`` appends rows, ``delete`` drops rows by id (the
survivors keep their relative order). ``save(folder)`` writes ``index.npz`` (arrays) + ``index.json``
(layout, m, row count, the table version and model sha256 it covers, the arrays' sha256); ``load`` checks
all of them. numpy only (the LanceDB side, which reads the table and catches up, is
:mod:`hashplug.integrations.index`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._files import sha256_arrays
from ..codes import unpack_bits
from ..validation import HashplugError, ModelFileError
from .kernels import BACKENDS, build_postings, dense_topk, sparse_topk, words_of

__all__ = ["HammingIndex", "RowIdRuns", "INDEX_FORMAT"]

INDEX_FORMAT = "hashplug-index/1"


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

    def to_array(self) -> np.ndarray:
        """Every id in position order: ndarray of shape (n,), int64 (materialised)."""
        return self.take(np.arange(self.n))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"id_starts": self.starts, "id_run_pos": self.run_pos, "id_n": np.array([self.n], np.int64)}

    @classmethod
    def from_arrays(cls, starts: np.ndarray, run_pos: np.ndarray, n: int) -> RowIdRuns:
        out = cls()
        starts, run_pos = np.asarray(starts, np.int64), np.asarray(run_pos, np.int64)
        if starts.shape != run_pos.shape or (run_pos.size and (run_pos[0] != 0 or np.any(np.diff(run_pos) <= 0)
                                                                or run_pos[-1] >= n)) or (n and not run_pos.size):
            raise HashplugError("row id runs are inconsistent (positions must start at 0 and increase below n).")
        out.starts, out.run_pos, out.n = starts, run_pos, int(n)
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
    table_version : int or None
        The table version the index covers (set by the LanceDB side).
    model_sha256 : str or None
        sha256 of the model file whose codes the index holds.
    """

    def __init__(self, layout: str, m: int, *, threads: int = 1, backend: str = "auto") -> None:
        if layout not in ("packed", "indices"):
            raise HashplugError(f"layout must be 'packed' or 'indices'; got {layout!r}.")
        if backend not in BACKENDS:
            raise HashplugError(f"backend must be one of {list(BACKENDS)}; got {backend!r}.")
        self.backend = backend
        if int(m) < 1:
            raise HashplugError(f"m must be >= 1; got {m}.")
        self.layout = layout
        self.m = int(m)
        self.threads = int(threads)
        self._ids = RowIdRuns()
        self.table_version: int | None = None
        self.model_sha256: str | None = None
        self._words = np.zeros((0, -(-self.m // 64)), dtype=np.uint64)
        # indices layout: CSC postings only (the rows of each unit, ascending positions) and each row's length;
        # rows added since the last search wait as CSR chunks and are merged in by the next one
        self._uo = np.zeros(self.m + 1, dtype=np.int64)
        self._rows = np.zeros(0, dtype=np.int32)
        self._lengths = np.zeros(0, dtype=_length_dtype(self.m))
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._zero: Any = None  # rows sharing no unit, in order: a range (uniform lengths) or an array
        self._change = 0  # bumped by add / delete: invalidates cached subsets

    # ------------------------------------------------------------------ size
    def __len__(self) -> int:
        return len(self._ids)

    @property
    def row_ids(self) -> np.ndarray:
        """The row id at every position: ndarray of shape (n,), int64 (materialised from the runs)."""
        return self._ids.to_array()

    @property
    def nbytes(self) -> int:
        """Bytes held (codes, postings, row-id runs)."""
        if self.layout == "packed":
            return int(self._words.nbytes + self._ids.nbytes)
        pending = sum(int(o.nbytes + v.nbytes) for o, v in self._pending)
        zero = int(self._zero.nbytes) if isinstance(self._zero, np.ndarray) else 0
        return int(self._uo.nbytes + self._rows.nbytes + self._lengths.nbytes + self._ids.nbytes + pending + zero)

    # ------------------------------------------------------------------ contents
    def _check_ids(self, row_ids: Any, n: int) -> np.ndarray:
        ids = np.asarray(row_ids, dtype=np.int64).reshape(-1)
        if ids.shape[0] != n:
            raise HashplugError(f"{ids.shape[0]} row ids for {n} codes; give one id per code.")
        if np.unique(ids).size != ids.size or (len(self) and np.isin(ids, self.row_ids).any()):
            raise HashplugError("row ids must be unique and not already in the index.")
        return ids

    def add(self, codes: Any, row_ids: Any) -> None:
        """Append rows: packed codes (n, ceil(m / 8)) uint8, or ``(offsets (n + 1,), values)`` for ``indices``."""
        if self.layout == "packed":
            c = np.asarray(codes)
            nb = -(-self.m // 8)
            if c.dtype != np.uint8 or c.ndim != 2 or c.shape[1] != nb:
                raise HashplugError(f"packed codes must be uint8 of shape (n, {nb}); got {c.dtype} {c.shape}.")
            ids = self._check_ids(row_ids, c.shape[0])
            self._words = np.concatenate([self._words, words_of(c)]) if len(self) else words_of(c).copy()
        else:
            offsets, values = codes
            offsets = np.asarray(offsets, dtype=np.int64)
            values = np.asarray(values, dtype=np.int64)
            n = offsets.shape[0] - 1
            if values.size and (values.min() < 0 or values.max() >= self.m):
                raise HashplugError(f"active units must lie in [0, m={self.m}).")
            ids = self._check_ids(row_ids, n)
            lens = np.diff(offsets)
            vals = values[offsets[0] : offsets[-1]]
            if vals.size and lens.min() == lens.max():  # k-hot rows: sort each row, look for a repeat
                dup = bool(np.any(np.diff(np.sort(vals.reshape(n, -1), axis=1), axis=1) == 0))
            else:
                dup = vals.size > 0 and np.unique(np.repeat(np.arange(n), lens) * self.m + vals).size != vals.size
            if dup:
                raise HashplugError("a row lists an active unit twice; give each row's units once.")
            self._pending.append((offsets - offsets[0], vals.astype(np.int32)))
            self._lengths = np.concatenate([self._lengths, lens.astype(self._lengths.dtype)])
            self._zero = None
        self._change += 1
        self._ids = RowIdRuns(np.concatenate([self.row_ids, ids]))

    def delete(self, row_ids: Any) -> int:
        """Drop the rows with these ids (ids not in the index are ignored); returns how many were dropped."""
        ids = self.row_ids  # materialised once from the runs
        gone = np.isin(ids, np.asarray(row_ids, dtype=np.int64).reshape(-1))
        k = int(gone.sum())
        if not k:
            return 0
        keep = ~gone
        if self.layout == "packed":
            self._words = np.ascontiguousarray(self._words[keep])
        else:
            self._uo, self._rows, self._lengths = self._postings_of(keep)
            self._zero = None
        self._change += 1
        self._ids = RowIdRuns(ids[keep])
        return k

    def _merge_pending(self) -> None:
        """Merge the rows added since the last search into the postings (each unit: old rows, then new)."""
        if not self._pending:
            return
        n_new = sum(o.shape[0] - 1 for o, _ in self._pending)
        base = self._lengths.shape[0] - n_new
        offs = [self._pending[0][0]]
        for o, _ in self._pending[1:]:
            offs.append(offs[-1][-1] + o[1:])
        offsets = np.concatenate(offs)
        values = np.concatenate([v for _, v in self._pending])
        uo2, rows2, _ = build_postings(offsets, values, self.m)
        c1, c2 = np.diff(self._uo), np.diff(uo2)
        uo = np.zeros(self.m + 1, dtype=np.int64)
        np.cumsum(c1 + c2, out=uo[1:])
        rows = np.empty(uo[-1], dtype=np.int32)
        units = np.arange(self.m)
        u1 = np.repeat(units, c1)
        rows[uo[u1] + (np.arange(self._rows.size) - self._uo[u1])] = self._rows
        u2 = np.repeat(units, c2)
        rows[uo[u2] + c1[u2] + (np.arange(rows2.size) - uo2[u2])] = rows2 + base
        self._uo, self._rows = uo, rows
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
        return np.lexsort((np.arange(lengths.shape[0]), lengths))

    def _sparse_postings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
        self._merge_pending()
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
        if int(limit) < 1:
            raise HashplugError(f"limit must be >= 1; got {limit}.")
        if allowed is not None and positions is not None:
            raise HashplugError("give allowed= (row ids) or positions=, not both.")
        sub = None
        if allowed is not None:
            sub = self.positions_of(allowed)
        elif positions is not None:
            sub = np.asarray(positions, dtype=np.int64).reshape(-1)
            if sub.size and (sub.min() < 0 or sub.max() >= len(self) or np.any(np.diff(sub) <= 0)):
                raise HashplugError(f"positions must be ascending and in [0, {len(self)}).")
        if self.layout == "packed":
            q = np.asarray(queries)
            if q.dtype != np.uint8 or q.ndim != 2:
                raise HashplugError(f"queries must be packed uint8 codes (nq, {-(-self.m // 8)}); got {q.dtype} {q.shape}.")
            words = self._words if sub is None else self._words[sub]
            backend = self.backend if sub is None or self.backend in ("numpy", "numba") else "auto"
            pos, dist = dense_topk(q, words, limit, threads=self.threads, backend=backend)
        else:
            if isinstance(queries, np.ndarray) and queries.dtype == np.uint8 and queries.ndim == 2:
                qs = [np.flatnonzero(r) for r in unpack_bits(queries, self.m)]
            else:
                qs = [np.unique(np.asarray(u, dtype=np.int64)) for u in queries]
            if sub is None:
                uo, rows, lengths, zero = self._sparse_postings()
            else:
                uo, rows, lengths, zero = self._subset_postings(sub)
            pos, dist = sparse_topk(qs, uo, rows, lengths, limit, zero_order=zero)
        return self._ids.take(pos if sub is None else sub[pos]), dist

    # ------------------------------------------------------------------ persistence
    def _arrays(self) -> dict[str, np.ndarray]:
        if self.layout == "packed":
            return {**self._ids.arrays(), "words": self._words}
        self._merge_pending()
        return {**self._ids.arrays(), "unit_offsets": self._uo, "postings": self._rows, "lengths": self._lengths}

    def save(self, folder: str | Path) -> Path:
        """Write ``index.npz`` + ``index.json`` into ``folder`` (created); returns the folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = self._arrays()
        meta = {"format": INDEX_FORMAT, "layout": self.layout, "m": self.m, "n_rows": len(self),
                "table_version": self.table_version, "model_sha256": self.model_sha256,
                "arrays_sha256": sha256_arrays(arrays), "saved_at": time.time()}
        tmp = folder / "index.npz.tmp"
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        tmp.replace(folder / "index.npz")
        (folder / "index.json.tmp").write_text(json.dumps(meta, indent=1))
        (folder / "index.json.tmp").replace(folder / "index.json")
        return folder

    @classmethod
    def load(cls, folder: str | Path, *, threads: int = 1, backend: str = "auto") -> HammingIndex:
        """Read an index saved by :meth:`save`; any inconsistency raises :class:`ModelFileError`."""
        folder = Path(folder)
        where = str(folder)
        try:
            meta = json.loads((folder / "index.json").read_text())
        except FileNotFoundError:
            raise ModelFileError(f"{where!r} holds no hashplug index (index.json missing); build one first.") from None
        except Exception as exc:
            raise ModelFileError(f"{where!r}: index.json is corrupt ({exc}); rebuild the index.") from exc
        if meta.get("format") != INDEX_FORMAT:
            raise ModelFileError(f"{where!r}: index format {meta.get('format')!r}; expected {INDEX_FORMAT!r}.")
        try:
            with np.load(folder / "index.npz", allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:
            raise ModelFileError(f"{where!r}: index.npz is missing or corrupt ({exc}); rebuild the index.") from exc
        if sha256_arrays(arrays) != meta.get("arrays_sha256"):
            raise ModelFileError(f"{where!r}: index.npz does not match its recorded sha256; rebuild the index.")
        idx = cls(meta["layout"], int(meta["m"]), threads=threads, backend=backend)
        try:
            if "row_ids" in arrays:  # indexes saved before the runs
                idx._ids = RowIdRuns(arrays["row_ids"])
            else:
                idx._ids = RowIdRuns.from_arrays(arrays["id_starts"], arrays["id_run_pos"], int(arrays["id_n"][0]))
        except (KeyError, HashplugError) as exc:
            raise ModelFileError(f"{where!r}: the row ids in index.npz are missing or corrupt ({exc}); rebuild the index.") from None
        if idx.layout == "packed":
            idx._words = np.ascontiguousarray(arrays["words"])
        elif "offsets" in arrays:  # indexes saved before the postings-only layout: CSR codes
            try:
                idx._pending = [(arrays["offsets"].astype(np.int64), arrays["values"].astype(np.int32))]
                idx._lengths = np.diff(arrays["offsets"]).astype(idx._lengths.dtype)
                if idx._lengths.shape[0] != len(idx):
                    raise ValueError(f"{idx._lengths.shape[0]} coded rows for {len(idx)} row ids")
                idx._merge_pending()
            except (KeyError, ValueError, IndexError, HashplugError) as exc:
                raise ModelFileError(f"{where!r}: the codes in index.npz are corrupt ({exc}); rebuild the index.") from None
        else:
            try:
                uo, rows, lengths = arrays["unit_offsets"], arrays["postings"], arrays["lengths"]
            except KeyError as exc:
                raise ModelFileError(f"{where!r}: index.npz lacks {exc}; rebuild the index.") from None
            n = len(idx)
            if (uo.shape != (idx.m + 1,) or uo[0] != 0 or np.any(np.diff(uo) < 0) or uo[-1] != rows.size
                    or lengths.shape != (n,) or (rows.size and (rows.min() < 0 or rows.max() >= n))
                    or int(lengths.sum()) != rows.size):
                raise ModelFileError(f"{where!r}: the postings in index.npz are inconsistent with m={idx.m} and "
                                     f"{n} rows; rebuild the index.")
            idx._uo, idx._rows = uo.astype(np.int64), rows.astype(np.int32)
            idx._lengths = lengths.astype(idx._lengths.dtype)
        if len(idx) != int(meta.get("n_rows", -1)):
            raise ModelFileError(f"{where!r}: {len(idx)} rows stored but the header says {meta.get('n_rows')}.")
        idx.table_version = meta.get("table_version")
        idx.model_sha256 = meta.get("model_sha256")
        return idx
