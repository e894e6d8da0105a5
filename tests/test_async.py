"""Async (issue 29): ``hashplug.asearch`` / ``aingest`` / ``aadd`` on LanceDB's async API
(``lancedb.connect_async``) give the synchronous calls' answers and guarantees; a cancelled ``aingest`` stops
between two chunks and resumes exactly; the sync calls refuse async handles with the fix."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pytest

import hashplug
from hashplug.integrations.function import clear_function_cache
from hashplug.runtime import OnnxEncoder, clear_session_cache
from hashplug.validation import HashplugError, HashplugTypeError

pytest.importorskip("onnx")  # the fixture exports models; the library under test never imports onnx


@pytest.fixture(scope="module")
def models(tmp_path_factory, digits):
    from hashplug.export import to_onnx

    X = digits[0]
    root = tmp_path_factory.mktemp("m")
    lsh = hashplug.get_encoder("lsh", k=32, random_state=0).fit(X)
    fly = hashplug.get_encoder("flyhash", k=8, expansion=4, random_state=0).fit(X)
    return Path(to_onnx(lsh, root / "lsh.onnx")), Path(to_onnx(fly, root / "fly.onnx"))


@pytest.fixture(scope="module")
def db_path(tmp_path_factory, digits, models):
    """A packed table ``t`` (with a Hamming index) and an indices table ``s`` of 300 digits."""
    X, y = digits
    path = tmp_path_factory.mktemp("adb") / "db"
    cols = {"id": np.arange(300), "label": y[:300]}
    t = hashplug.ingest(path, X[:300], name="t", model=str(models[0]), columns=cols, progress=False).table
    hashplug.ingest(path, X[:300], name="s", model=str(models[1]), layout="indices", columns=cols, progress=False)
    hashplug.ingest(path, X[:300], name="plain", model=str(models[0]), columns=cols, progress=False)
    hashplug.build_hamming_index(t)
    return path


def _same(a: pa.Table, b: pa.Table) -> None:
    assert a.column_names == b.column_names
    assert a["id"].to_pylist() == b["id"].to_pylist()
    assert a["_distance"].to_pylist() == b["_distance"].to_pylist()
    assert (a.schema.metadata or {}).get(b"hashplug.search_path") == (b.schema.metadata or {}).get(
        b"hashplug.search_path")


def test_asearch_gives_the_sync_answer(db_path, digits):
    X = digits[0]
    sync = lancedb.connect(db_path)

    async def main():
        adb = await lancedb.connect_async(str(db_path))
        out = []
        for name, kw in (("t", {}), ("t", {"use_hamming_index": False}), ("s", {}), ("plain", {}),
                         ("plain", {"where": "label = 3", "columns": ["id", "label"]})):
            atbl = await adb.open_table(name)
            for i in (0, 17, 299):
                got = await hashplug.asearch(atbl, X[i], limit=7, **kw)
                out.append((name, kw, i, got))
        # many searches at once on one async table (worker threads, one shared sync handle)
        atbl = await adb.open_table("plain")
        many = await asyncio.gather(*(hashplug.asearch(atbl, X[i], limit=5) for i in range(20)))
        return out, many

    out, many = asyncio.run(main())
    for name, kw, i, got in out:
        _same(got, hashplug.search(sync.open_table(name), X[i], limit=7, **kw))
    assert {p for *_, got in out for p in [got.schema.metadata[b"hashplug.search_path"]]} == {
        b"hashplug-index", b"lancedb", b"lancedb-label-list"}
    for i, got in enumerate(many):
        _same(got, hashplug.search(sync.open_table("plain"), X[i], limit=5))


def test_aingest_and_aadd_write_what_the_sync_calls_write(tmp_path, digits, models):
    X = digits[0]
    ref = OnnxEncoder(models[0]).encode(X[:130])

    async def main():
        adb = await lancedb.connect_async(str(tmp_path / "db"))
        r1 = await hashplug.aingest(adb, X[:100], name="t", model=str(models[0]), columns={"id": np.arange(100)},
                                    chunk_size=30, progress=False)
        atbl = await adb.open_table("t")
        r2 = await hashplug.aingest(atbl, X[100:120], columns={"id": np.arange(100, 120)}, progress=False)
        r3 = await hashplug.aadd(atbl, X[120:130], columns={"id": np.arange(120, 130)})
        rows = await atbl.count_rows()
        data = await atbl.query().to_arrow()
        return r1, r2, r3, rows, data

    r1, r2, r3, rows, data = asyncio.run(main())
    assert (r1.rows_written, r1.chunks, r2.rows_written, r3.rows_written, rows) == (100, 4, 20, 10, 130)
    data = data.sort_by("id")
    np.testing.assert_array_equal(np.stack(data["code"].to_numpy(zero_copy_only=False)), ref)
    sha = OnnxEncoder(models[0]).file_sha256
    assert (tmp_path / "db" / "_hashplug" / "models" / f"{sha}.onnx").is_file()
    # bad input through the async path: the sync path's error, nothing written
    bad = X[:5].copy()
    bad[2, 3] = np.nan

    async def broken():
        adb = await lancedb.connect_async(str(tmp_path / "db"))
        atbl = await adb.open_table("t")
        with pytest.raises(HashplugError, match="NaN"):
            await hashplug.aadd(atbl, bad, columns={"id": np.arange(500, 505)})
        return await atbl.count_rows()

    assert asyncio.run(broken()) == 130


def test_a_cancelled_aingest_stops_between_chunks_and_resumes_exactly(tmp_path, digits, models):
    X = digits[0][:200]
    reached, proceed = threading.Event(), threading.Event()

    def source(pause_at: int | None):
        for i in range(10):
            if i == pause_at:
                reached.set()
                assert proceed.wait(30)
            rows = slice(20 * i, 20 * (i + 1))
            yield pa.record_batch({"id": pa.array(np.arange(rows.start, rows.stop)),
                                   "vector": pa.array(X[rows].tolist(), pa.list_(pa.float32()))})

    ckpt = tmp_path / "ingest.json"
    kw = dict(name="t", model=str(models[0]), chunk_size=20, checkpoint=ckpt, progress=False)

    async def first():
        adb = await lancedb.connect_async(str(tmp_path / "db"))
        task = asyncio.ensure_future(hashplug.aingest(adb, source(4), **kw))
        for _ in range(3000):  # the source reached its 5th batch (or the task ended: then awaiting it says why)
            if reached.is_set() or task.done():
                break
            await asyncio.sleep(0.01)
        assert not task.done(), task.result()
        task.cancel()
        await asyncio.sleep(0.1)  # the task asks the ingest to stop ...
        proceed.set()  # ... and the source goes on: the ingest stops before its next chunk
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(first())
    state = json.loads(ckpt.read_text())
    tbl = lancedb.connect(tmp_path / "db").open_table("t")
    assert tbl.count_rows() == state["rows_done"] == 80 and not state["finished"]  # whole chunks only

    async def again():
        adb = await lancedb.connect_async(str(tmp_path / "db"))
        return await hashplug.aingest(adb, source(None), **kw)

    res = asyncio.run(again())
    assert (res.rows_skipped, res.rows_written) == (80, 120)
    ids = lancedb.connect(tmp_path / "db").open_table("t").to_arrow()["id"].to_pylist()
    assert sorted(ids) == list(range(200))  # every row once


def test_lancedb_async_idioms_on_a_moved_database(tmp_path, digits, models):
    X = digits[0]
    first = tmp_path / "first"
    model = first / "enc.onnx"
    first.mkdir()
    shutil.copy(models[0], model)
    hashplug.ingest(first / "db", X[:100], name="t", model=str(model), columns={"id": np.arange(100)},
                    progress=False)
    shutil.copytree(first / "db", tmp_path / "moved")
    shutil.rmtree(first)
    clear_session_cache()
    clear_function_cache()

    async def main():
        adb = await lancedb.connect_async(str(tmp_path / "moved"))
        atbl = await adb.open_table("t")
        await atbl.add([{"id": 500, "vector": X[42].tolist()}])  # LanceDB's async add rebuilds the function
        q = await atbl.search(hashplug.Query(X[42]))
        hits = await q.distance_type("hamming").limit(2).to_arrow()
        mine = await hashplug.asearch(atbl, X[42], limit=2)
        return hits, mine

    hits, mine = asyncio.run(main())
    assert sorted(hits["id"].to_pylist()) == sorted(mine["id"].to_pylist()) == [42, 500]
    assert hits["_distance"].to_pylist() == mine["_distance"].to_pylist() == [0.0, 0.0]


def test_sync_calls_refuse_async_handles_with_the_fix(db_path, digits):
    X = digits[0]

    async def main():
        adb = await lancedb.connect_async(str(db_path))
        atbl = await adb.open_table("plain")
        errors = []
        for call in (lambda: hashplug.search(atbl, X[0]), lambda: hashplug.add(atbl, X[:2]),
                     lambda: hashplug.ingest(adb, X[:2], name="plain"), lambda: hashplug.relocate_model(atbl),
                     lambda: hashplug.build_hamming_index(atbl)):
            with pytest.raises(HashplugTypeError, match=r"await hashplug\.asearch") as ei:
                call()
            errors.append(str(ei.value))
        with pytest.raises(HashplugTypeError, match="expected a LanceDB table"):
            await hashplug.asearch("not a table", X[0])
        return errors, await atbl.count_rows()

    errors, rows = asyncio.run(main())
    assert rows == 300 and all("AsyncTable" in e or "AsyncConnection" in e for e in errors)
