"""Shared by the index tests: models, tables, the brute-force check of a result, and the kernels' settings."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def model(root: Path, X: np.ndarray, layout: str = "packed") -> str:
    """An ONNX model file (LSH 32 bits for ``packed``, FlyHash k=8 of 256 for ``indices``)."""
    import hashplug
    from hashplug.export import to_onnx

    if layout == "packed":
        enc = hashplug.get_encoder("lsh", k=32, random_state=0).fit(X)
    else:
        enc = hashplug.get_encoder("flyhash", k=8, expansion=4, random_state=0).fit(X)
    return str(to_onnx(enc, Path(root) / f"{layout}.onnx"))


def at_version(table: Any, version: int) -> Any:
    """A fresh handle of ``table`` checked out at ``version``."""
    import lancedb

    h = lancedb.connect(str(Path(table.uri).parent)).open_table(table.name)
    h.checkout(int(version))
    return h


def assert_exact(ids: np.ndarray, dist: np.ndarray, handle: Any, query_code: np.ndarray, limit: int,
                 column: str = "code") -> None:
    """``(ids, dist)`` is a top-``limit`` of the rows of ``handle`` by Hamming distance: unique ids, each at its
    true distance, and the distances those of a brute-force scan (ties may be ordered either way)."""
    from hashplug.integrations.search import hamming_to_query

    t = handle.search().with_row_id(True).select([column]).limit(None).to_arrow()
    D = hamming_to_query(np.asarray(query_code), t[column])
    true = dict(zip(t["_rowid"].to_numpy().tolist(), D.tolist()))
    ids, dist = np.asarray(ids).tolist(), np.asarray(dist).tolist()
    assert len(set(ids)) == len(ids), f"a row twice: {ids}"
    assert all(i in true for i in ids), f"rows not in the table: {[i for i in ids if i not in true]}"
    assert [true[i] for i in ids] == dist, "a row at a wrong distance"
    assert dist == sorted(D.tolist())[:limit], f"not the nearest rows: {dist} vs {sorted(D.tolist())[:limit]}"


def index_rows(index: Any) -> dict[int, Any]:
    """``{row id: code}`` of a (bound) Hamming index, read from the arrays it saves (``hashplug-index/2``): the
    packed row's uint64 words as bytes, or the sorted tuple of a k-hot row's active units."""
    index = getattr(index, "index", index)
    arrays = index._arrays()
    ids = index.row_ids.tolist()
    if "words" in arrays:
        w = np.ascontiguousarray(arrays["words"])
        return {i: w[p].tobytes() for p, i in enumerate(ids)}
    uo, rows = arrays["unit_offsets"], arrays["postings"]
    units = np.repeat(np.arange(uo.shape[0] - 1), np.diff(uo))
    order = np.lexsort((units, rows))
    per_row: list[list[int]] = [[] for _ in ids]
    for p, u in zip(rows[order].tolist(), units[order].tolist()):
        per_row[p].append(u)
    return {i: tuple(per_row[p]) for p, i in enumerate(ids)}


@contextlib.contextmanager
def kernel_settings(compiled: bool = True, **values: Any) -> Iterator[None]:
    """Set module constants of :mod:`hashplug.index.kernels` (``TILE_QUERIES``, ``PARALLEL_WORDS``, ...) for one
    hypothesis example (not pytest's function-scoped ``monkeypatch``); ``compiled=False`` hides the numba kernels,
    so the numpy fallbacks run."""
    from hashplug.index import _numba, kernels

    before = {k: getattr(kernels, k) for k in values}
    before_compiled = _numba._KERNELS
    for k, v in values.items():
        setattr(kernels, k, v)
    if not compiled:
        _numba._KERNELS = False
    try:
        yield
    finally:
        for k, v in before.items():
            setattr(kernels, k, v)
        _numba._KERNELS = before_compiled
