"""Incremental catch-up of the Hamming index (issue 31, item 1): only the fragments that changed since the
indexed version are read (never a ``_rowid IN (...)`` query or a scan of every row id), the caught-up index
holds exactly what a fresh build holds, and a writer can refresh it in the background."""

from __future__ import annotations

import sys
import threading
import warnings
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from _index_helpers import assert_exact, at_version, index_rows, model  # noqa: E402

import hashplug  # noqa: E402
from hashplug.index import HammingIndex  # noqa: E402
from hashplug.integrations import index as ix  # noqa: E402
from hashplug.integrations.search import query_code  # noqa: E402
from hashplug.validation import HashplugError  # noqa: E402

lancedb = pytest.importorskip("lancedb")


@pytest.fixture(autouse=True)
def _fresh_cache():
    ix._CACHE.clear()
    yield
    ix._CACHE.clear()


@pytest.fixture
def no_lancedb_queries(monkeypatch):
    """A catch-up may not run LanceDB queries (the per-id ``_rowid IN`` reads and the scan of every row id
    were both ``_read``); building through Lance does not need them either."""
    def refuse(*args, **kwargs):
        raise AssertionError("a LanceDB query was run to catch the index up")

    monkeypatch.setattr(ix, "_read", refuse)


def _same_as_fresh(table, idx):
    """The caught-up snapshot holds exactly the rows and codes a fresh build at its version holds."""
    fresh = hashplug.build_hamming_index(at_version(table, idx.table_version), save=False)
    got, want = index_rows(idx), index_rows(fresh)
    assert len(got) == len(idx) and got.keys() == want.keys()
    assert got == want
    return fresh


@pytest.mark.parametrize("layout", ["packed", "indices"])
def test_catch_up_reads_only_what_changed_and_equals_a_fresh_build(tmp_path, digits, layout, no_lancedb_queries):
    X, _ = digits
    t = hashplug.ingest(tmp_path / "db", X[:600], name="t", model=model(tmp_path, X, layout), layout=layout,
                        chunk_size=200, progress=False).table  # three fragments of 200 rows
    hashplug.build_hamming_index(t)

    def caught_up():
        idx = ix.open_hamming_index(t)
        assert idx.table_version == t.version and len(idx) == t.count_rows()
        assert not idx.last_catch_up["rebuilt"]
        assert idx.last_catch_up["rows_read"] <= idx.last_catch_up["rows_in_table"] == len(idx)
        _same_as_fresh(t, idx)
        return idx.last_catch_up

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # every step below is provable: no rebuild
        hashplug.add(t, {"vector": list(X[600:850])})  # appended: one new fragment, read alone
        s = caught_up()
        assert (s["added"], s["deleted"], s["rows_read"], s["fragments_read"]) == (250, 0, 250, 1)
        t.delete("_rowid % 16 = 1")  # deletions in every fragment: their row ids, no codes read
        s = caught_up()
        assert s["deleted"] == 3 * 13 + 16  # offsets 1, 17, ... below 200 (three fragments) and 250
        assert s["read"] == "fragments" and s["rows_read"] == 0 and s["fragments_trimmed"] == 4
        n = t.count_rows()
        t.delete("_rowid % 2 = 0")  # half the rows: dropping them may cost more than reading the table
        s = caught_up()
        assert s["deleted"] == n - t.count_rows() and s["fragments_trimmed"] == 4
        whole = ix._DROP[layout] * n > t.count_rows()  # the catch-up's work against a build's
        assert s["read"] == ("table" if whole else "fragments")
        assert s["rows_read"] == (t.count_rows() if whole else 0)
        row = int(t.search().with_row_id(True).select([]).limit(1).to_arrow()["_rowid"][0].as_py())
        hashplug.update(t, where=f"_rowid = {row}", values={"vector": X[1500].tolist()})
        s = caught_up()  # the updated row moved to a new fragment: one row dropped, one read
        assert (s["added"], s["deleted"], s["rows_read"]) == (1, 1, 1)
        idx = ix.open_hamming_index(t)
        code = query_code(t, X[1500])
        ids, dist = ix.hamming_index_search(idx, t, code.reshape(1, -1) if layout == "packed" else [code], 1)
        assert dist[0, 0] == 0 and ids[0, 0] != row
        n = t.count_rows()
        t.optimize()  # compaction rewrites every fragment: all rows read again, never more than a build
        s = caught_up()
        assert s["fragments_dropped"] >= 2 and s["deleted"] == s["added"] == s["rows_read"] == n
        hashplug.add(t, {"vector": list(X[900:1000])})
        hashplug.add(t, {"vector": list(X[1000:1030])})
        t.delete("_rowid % 7 = 3")
        s = caught_up()  # two commits at once, one of their rows deleted before the catch-up
        assert s["fragments_read"] == 2 and s["rows_read"] == s["added"] < 130


def test_catching_up_to_an_older_version_reads_back_what_was_deleted(tmp_path, digits, no_lancedb_queries):
    """A reader pinned at an older version (or a restore) gets rows back that the index no longer holds: the
    fragments that regained rows are read again, and the index equals a fresh build there."""
    X, _ = digits
    t = hashplug.ingest(tmp_path / "db", X[:500], name="t", model=model(tmp_path, X), chunk_size=250,
                        progress=False).table
    v_full = t.version
    t.delete("_rowid % 3 = 0")
    hashplug.add(t, {"vector": list(X[500:600])})
    hashplug.build_hamming_index(t)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        old = ix.open_hamming_index(at_version(t, v_full))
        assert old.table_version == v_full and not old.last_catch_up["rebuilt"] and len(old) == 500
        _same_as_fresh(t, old)
        t.restore(v_full)
        idx = ix.open_hamming_index(t)
        assert idx.table_version == t.version and len(idx) == 500
        _same_as_fresh(t, idx)
    code = query_code(t, X[3])
    ids, dist = ix.hamming_index_search(idx, t, code.reshape(1, -1), 5)
    assert_exact(ids[0], dist[0], at_version(t, idx.table_version), code, 5)


def test_this_process_snapshot_is_proved_by_its_manifest_file_else_by_the_history(tmp_path, digits, monkeypatch,
                                                                                  no_lancedb_queries):
    """A snapshot this process published at version v catches up from the Lance dataset it read at v, without
    checking v out again, while v's manifest file is the one it was published with (name, inode, mtime, size);
    a manifest file that is not (touched here) sends the catch-up through the history's lineage check."""
    X, _ = digits
    t = hashplug.ingest(tmp_path / "db", X[:400], name="t", model=model(tmp_path, X), chunk_size=200,
                        progress=False).table
    v0 = hashplug.build_hamming_index(t).table_version
    checks, checkouts = [], []
    real_lineage, real_checkout = ix._lineage_problem, ix._checkout
    monkeypatch.setattr(ix, "_lineage_problem", lambda *a: checks.append(1) or real_lineage(*a))
    monkeypatch.setattr(ix, "_checkout", lambda ds, v: checkouts.append(v) or real_checkout(ds, v))
    hashplug.add(t, {"vector": list(X[400:500])})
    idx = ix.open_hamming_index(t)
    assert (checks, v0 in checkouts) == ([], False)
    assert idx.last_catch_up["fragments_read"] == 1 and not idx.last_catch_up["rebuilt"]
    _same_as_fresh(t, idx)

    v1 = idx.table_version
    manifest = next(p for p in (Path(ix._table_uri(t)) / "_versions").iterdir()
                    if p.name in (f"{2**64 - 1 - v1:020d}.manifest", f"{v1}.manifest"))
    st = manifest.stat()
    import os

    os.utime(manifest, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    hashplug.add(t, {"vector": list(X[500:560])})
    idx = ix.open_hamming_index(t)
    assert checks and v1 in checkouts  # proved through the history instead
    assert idx.last_catch_up["fragments_read"] == 1 and not idx.last_catch_up["rebuilt"] and len(idx) == 560
    _same_as_fresh(t, idx)


def test_an_index_that_does_not_match_its_version_is_rebuilt_not_caught_up(tmp_path, digits):
    """The index's rows per fragment must be those of the indexed version's manifest: an index missing a row
    (saved with a valid checksum) cannot be caught up by fragments; it is rebuilt, with a warning."""
    X, _ = digits
    t = hashplug.ingest(tmp_path / "db", X[:400], name="t", model=model(tmp_path, X), progress=False).table
    folder = hashplug.build_hamming_index(t).folder
    saved = HammingIndex.load(folder)
    saved.delete(saved.row_ids[7:8])
    saved.save(folder)  # the same binding, one row short
    hashplug.add(t, {"vector": list(X[400:500])})
    ix._CACHE.clear()
    with pytest.warns(RuntimeWarning, match="not those of version"):
        idx = ix.open_hamming_index(t)
    assert idx.last_catch_up["rebuilt"] and len(idx) == t.count_rows() == 500
    _same_as_fresh(t, idx)


def test_a_table_without_a_lance_dataset_is_rebuilt(tmp_path, digits, monkeypatch):
    """When LanceDB gives no Lance dataset of the table (another table class), the catch-up cannot read the
    manifests: the index is rebuilt (through a LanceDB query), never caught up by guessing."""
    X, _ = digits
    t = hashplug.ingest(tmp_path / "db", X[:300], name="t", model=model(tmp_path, X), progress=False).table
    hashplug.build_hamming_index(t)
    hashplug.add(t, {"vector": list(X[300:350])})
    monkeypatch.setattr(ix._History, "dataset", lambda self: None)
    with pytest.warns(RuntimeWarning, match="Lance dataset cannot be read"):
        idx = ix.open_hamming_index(t)
    assert idx.last_catch_up["rebuilt"] and idx.binding["row_ids"] == "address"
    monkeypatch.undo()
    _same_as_fresh(t, idx)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-1, 5), st.integers(0, 2**32 - 3), st.integers(1, 4)), max_size=90))
def test_rows_by_fragment_counts_each_fragment_and_refuses_what_cannot_be_addresses(runs):
    """``{fragment: rows}`` of row addresses held as runs (plain ints for a few runs, numpy for many) is the
    count of the materialised ids per ``id >> 32``; None for a negative id or a run across a fragment's end."""
    from hashplug.index.core import RowIdRuns

    ids = np.concatenate([np.arange((f << 32) + o, (f << 32) + o + n) for f, o, n in runs] or [np.zeros(0)])
    ids = ids.astype(np.int64)
    got = ix._rows_by_fragment(RowIdRuns(ids))
    across = np.any((np.diff(ids) == 1) & ((ids[1:] >> 32) != (ids[:-1] >> 32)))  # a run over a fragment's end
    if ids.size and (ids.min() < 0 or across):
        assert got is None
    else:
        frag, count = np.unique(ids >> 32, return_counts=True)
        assert got == dict(zip(frag.tolist(), count.tolist()))


def test_commit_times_match_within_the_float_conversion_only():
    """pylance and LanceDB may give one commit's time 1 us apart; another commit is never taken for it."""
    assert ix._same_commit_time("2026-12-07 19:27:02.420780", "2026-12-07 19:27:02.420781")
    assert ix._same_commit_time("2026-12-07 19:27:02.420780", "2026-12-07 19:27:02.420780")
    assert not ix._same_commit_time("2026-12-07 19:27:02.420780", "2026-12-07 19:27:02.420790")
    assert not ix._same_commit_time("2026-12-07 19:27:02.420780", "2026-12-07 19:27:03.420780")
    assert not ix._same_commit_time("2026-12-07 19:27:02.420780", None)
    assert not ix._same_commit_time("2026-12-07 19:27:02.420780", "2026-12-07 19:27:02.420780+00:00")


def test_without_pylance_the_rebuild_warning_names_the_extra(tmp_path, digits, monkeypatch):
    """A base install has no pylance: the manifests cannot be read, so the index is rebuilt (exact), and the
    warning says which install makes it catch up instead."""
    import importlib.util

    X, _ = digits
    t = hashplug.ingest(tmp_path / "db", X[:300], name="t", model=model(tmp_path, X), progress=False).table
    hashplug.build_hamming_index(t)
    hashplug.add(t, {"vector": list(X[300:350])})
    real = importlib.util.find_spec
    monkeypatch.setattr(ix._History, "dataset", lambda self: None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lance" else real(name, *a))
    with pytest.warns(RuntimeWarning, match=r"pylance is not installed.*hashplug\[lance\]"):
        idx = ix.open_hamming_index(t)
    assert idx.last_catch_up["rebuilt"]
    monkeypatch.undo()
    _same_as_fresh(t, idx)


def test_refresh_in_the_background_for_a_writer(tmp_path, digits, monkeypatch):
    X, _ = digits
    t = hashplug.ingest(tmp_path / "db", X[:500], name="t", model=model(tmp_path, X), progress=False).table
    folder = hashplug.build_hamming_index(t).folder
    with pytest.raises(HashplugError, match="background must be True or False"):
        hashplug.refresh_hamming_index(t, background="yes")
    hashplug.add(t, {"vector": list(X[500:900])})
    catch_ups = []
    real = ix._catch_up
    monkeypatch.setattr(ix, "_catch_up", lambda idx, table, col, version, *rest, **kw: catch_ups.append(version)
                        or real(idx, table, col, version, *rest, **kw))
    future = hashplug.refresh_hamming_index(t, background=True)
    assert isinstance(future, Future)
    code = query_code(t, X[700])
    res = hashplug.search(t, X[700], limit=3)  # meanwhile: waits for the one catch-up, or runs it
    idx = future.result(timeout=120)
    assert catch_ups == [t.version]  # one catch-up between the refresh and the search
    assert idx.table_version == t.version and len(idx) == 900
    assert HammingIndex.read_manifest(folder)["table_version"] == t.version  # saved
    assert res["_distance"][0].as_py() == 0
    snap = ix.open_hamming_index(t)
    assert not hasattr(snap, "last_catch_up")  # the next search has nothing left to catch up
    ids, dist = ix.hamming_index_search(snap, t, code.reshape(1, -1), 6)
    assert_exact(ids[0], dist[0], at_version(t, t.version), code, 6)
    # an error of the work is the future's
    monkeypatch.setattr(ix, "_refresh", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        hashplug.refresh_hamming_index(t, background=True).result(timeout=60)


def test_searches_in_threads_during_a_background_refresh_stay_exact(tmp_path, digits):
    X, _ = digits
    t = hashplug.ingest(tmp_path / "db", X[:600], name="t", model=model(tmp_path, X), progress=False).table
    hashplug.build_hamming_index(t)
    errors: list[BaseException] = []

    def reader(seed):
        rng = np.random.default_rng(seed)
        try:
            for _ in range(6):
                idx = ix.open_hamming_index(t)
                r = int(rng.integers(0, 1797))
                code = query_code(t, X[r])
                ids, dist = ix.hamming_index_search(idx, t, code.reshape(1, -1), 5)
                assert_exact(ids[0], dist[0], at_version(t, idx.table_version), code, 5)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    futures = []
    threads = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    for th in threads:
        th.start()
    for s in range(600, 1200, 200):
        hashplug.add(t, {"vector": list(X[s : s + 200])})
        futures.append(hashplug.refresh_hamming_index(t, background=True))
    for th in threads:
        th.join(120)
    assert not errors, errors[:3]
    final = [f.result(timeout=120) for f in futures][-1]
    assert final.table_version == t.version and len(final) == 1200
    _same_as_fresh(t, final)
