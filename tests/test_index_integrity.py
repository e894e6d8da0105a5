"""Index integrity (issue 27, items 1, 2, 5, 8, 9): an index is its table's, exact after any change, shared
safely by threads, never written by a read, and a torn one is rebuilt rather than an error."""

from __future__ import annotations

import sys
import threading
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

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
    ix._CACHE.clear()  # each test starts as a new process would
    yield
    ix._CACHE.clear()


def _search_exact(table, X, rows, limit=10, **kw):
    """Search through the index (as hashplug.search does) and check each result against brute force at the
    version the index covers."""
    idx = ix.open_hamming_index(table, **kw)
    assert idx is not None
    h = at_version(table, idx.table_version)
    for r in rows:
        code = query_code(table, X[r])
        q = code.reshape(1, -1) if idx.layout == "packed" else [code]
        ids, dist = ix.hamming_index_search(idx, table, q, limit)
        assert_exact(ids[0], dist[0], h, code, limit)
    return idx


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# --------------------------------------------------------------------------------------------- item 1
def test_a_dropped_and_recreated_table_never_uses_the_old_index(tmp_path, digits):
    """Old code: the new table ``t`` answered from the old table's index (wrong rows, 1 of 5 distances right)."""
    X, _ = digits
    path = model(tmp_path, X)
    db = tmp_path / "db"
    t = hashplug.ingest(db, X[:1000], name="t", model=path, progress=False).table
    hashplug.build_hamming_index(t)
    hashplug.search(t, X[3], limit=3)  # the old index cached in this process too
    lancedb.connect(str(db)).drop_table("t")
    t = hashplug.ingest(db, X[500:1500], name="t", model=path, progress=False).table
    with pytest.warns(RuntimeWarning, match="another table of the same name|no version"):
        res = hashplug.search(t, X[1005], limit=5)
    assert res.schema.metadata[b"hashplug.search_path"] == b"hashplug-index"
    for r in (1005, 1133, 1222, 1300, 1444):
        got = hashplug.search(t, X[r], limit=5)
        want = hashplug.search(t, X[r], limit=5, use_hamming_index=False)
        np.testing.assert_array_equal(got["_distance"].to_numpy(), np.sort(want["_distance"].to_numpy()))
    _search_exact(t, X, [1005, 1133, 1700])
    # saved again by the explicit write call, the index is bound to the new table and used without a rebuild
    hashplug.refresh_hamming_index(t)
    ix._CACHE.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        _search_exact(t, X, [1005])


def test_stable_row_ids_updated_in_place_rebuild_the_index(tmp_path, digits):
    """With stable row ids an update keeps a row's id for new content: a catch-up by id difference cannot see
    it. Old code kept the old code of the updated row (its query found it at distance > 0)."""
    X, _ = digits
    path = model(tmp_path, X)
    db = lancedb.connect(str(tmp_path / "db"), storage_options={"new_table_enable_stable_row_ids": "true"})
    like = hashplug.ingest(tmp_path / "scratch", X[:1], name="t", model=path, progress=False).table
    t = db.create_table("t", schema=like.schema)  # hashplug's schema, in a table with stable row ids
    hashplug.add(t, {"vector": list(X[:400])})
    hashplug.add(t, {"vector": list(X[400:600])})
    hashplug.build_hamming_index(t)
    hashplug.update(t, where="_rowid = 1", values={"vector": X[1500].tolist()})
    with pytest.warns(RuntimeWarning, match="stable row ids"):
        idx = _search_exact(t, X, [1500, 7, 450])
    ids, dist = ix.hamming_index_search(idx, t, query_code(t, X[1500]).reshape(1, -1), 1)
    assert dist[0, 0] == 0


def test_overwrite_compaction_and_restore_stay_exact(tmp_path, digits):
    """LanceDB never gives a row address to other content in one table (overwrite, optimize, restore, adds
    after a restore): the catch-up by row id difference stays exact through all of them, without rebuilds."""
    X, _ = digits
    path = model(tmp_path, X)
    t = hashplug.ingest(tmp_path / "db", X[:300], name="t", model=path, progress=False).table
    hashplug.add(t, {"vector": list(X[300:500])})
    hashplug.build_hamming_index(t)
    v_built = t.version
    other = hashplug.ingest(tmp_path / "db2", X[600:700], name="o", model=path, progress=False).table.to_arrow()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no rebuild needed anywhere below
        t.add(other, mode="overwrite")
        assert not ix.open_hamming_index(t).last_catch_up["rebuilt"]
        _search_exact(t, X, [650, 5])
        hashplug.add(t, {"vector": list(X[700:800])})
        t.delete("_rowid % 3 = 0")
        t.optimize()
        _search_exact(t, X, [750, 690])
        t.restore(v_built)
        _search_exact(t, X, [5, 450])
        hashplug.add(t, {"vector": list(X[1000:1100])})
        idx = _search_exact(t, X, [1050, 5, 650])
    assert len(idx) == t.count_rows() == 600


# --------------------------------------------------------------------------------------------- item 9
@pytest.mark.parametrize("column", ["/abs/dir/x", "../../x", "..", ".", "a/b", "a\\b", "a\x00b", "~/x", "%2F",
                                    "é" * 200])
def test_the_index_folder_is_one_component_inside_the_table_folder(tmp_path, column):
    """Old code: ``Path(uri + '.hashplug-index') / column`` put '/abs/dir/x' at /abs/dir/x, '../../x' above."""
    table = types.SimpleNamespace(uri=str(tmp_path / "db" / "t.lance"), name="t")
    base = (tmp_path / "db" / "t.lance.hashplug-index").resolve()
    folder = ix.default_index_folder(table, column)
    assert folder.parent == base and len(folder.name.encode()) <= 255 and folder.name not in (".", "..")
    assert "/" not in folder.name and "\\" not in folder.name and "\x00" not in folder.name
    assert ix.default_index_folder(table, "code").name == "code"  # plain names unchanged: old indexes still found
    names = {ix.column_folder_name(c) for c in ["a/b", "a%2Fb", "a_2Fb", "a.b", "a%2Eb"]}
    assert len(names) == 5  # two columns never share a folder


# --------------------------------------------------------------------------------------------- item 8
def test_reads_never_write_and_torn_indexes_are_rebuilt_not_errors(tmp_path, digits):
    """Old code: the search after a change saved the index (a write from a read), and an index torn between
    its writes (arrays of one save, header of another) made every search raise ModelFileError."""
    X, _ = digits
    path = model(tmp_path, X)
    t = hashplug.ingest(tmp_path / "db", X[:800], name="t", model=path, progress=False).table
    folder = hashplug.build_hamming_index(t).folder
    hashplug.add(t, {"vector": list(X[800:900])})
    t.delete("_rowid < 50")
    before = _files(folder)
    for r in (3, 850):
        assert hashplug.search(t, X[r], limit=4).num_rows == 4
    _search_exact(t, X, [3, 850])
    assert _files(folder) == before  # nothing written by the reads
    manifest = HammingIndex.read_manifest(folder)
    arrays = folder / manifest["arrays_file"]
    good = arrays.read_bytes()

    def torn_header_of_another_save():  # the tear: arrays of one save, index.json of another
        other = HammingIndex.load(folder)
        other.delete(other.row_ids[:5])
        arrays.write_bytes(b"")
        with open(arrays, "wb") as f:
            np.savez(f, **other._arrays())

    tears = {
        "truncated": lambda: arrays.write_bytes(good[: len(good) // 2]),
        "missing": lambda: arrays.unlink(),
        "other-save": torn_header_of_another_save,
        "garbage-manifest": lambda: (folder / "index.json").write_text("{not json"),
        "manifest-a-list": lambda: (folder / "index.json").write_text("[1, 2]"),
        "manifest-escapes": lambda: (folder / "index.json").write_text(
            (folder / "index.json").read_text().replace(manifest["arrays_file"], "../../../etc/passwd")),
    }
    saved_manifest = (folder / "index.json").read_text()
    for name, tear in tears.items():
        ix._CACHE.clear()
        tear()
        with pytest.warns(RuntimeWarning, match="torn or corrupt"):
            res = hashplug.search(t, X[850], limit=4)
        assert res.schema.metadata[b"hashplug.search_path"] == b"hashplug-index", name
        _search_exact(t, X, [850, 100])
        arrays.write_bytes(good)
        (folder / "index.json").write_text(saved_manifest)
    # the explicit write call repairs it: one whole index, the tear's leftovers gone
    arrays.write_bytes(good[:100])
    ix._CACHE.clear()
    with pytest.warns(RuntimeWarning):
        pass_through = ix.open_hamming_index(t)
    assert pass_through.last_catch_up["rebuilt"]
    hashplug.refresh_hamming_index(t)
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(["index.json", "index.lock", HammingIndex.read_manifest(folder)["arrays_file"]])
    ix._CACHE.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        idx = _search_exact(t, X, [850])
    assert not hasattr(idx, "last_catch_up")  # saved at the table's version: nothing to catch up


def test_an_index_saved_in_the_first_format_still_loads_and_is_rebuilt_for_the_table(tmp_path, digits):
    """``hashplug-index/1`` (index.npz + index.json, no table binding) loads; for a table it is rebuilt (it
    cannot be matched to the table's history), then saved in today's format by refresh_hamming_index."""
    import json

    from hashplug._files import sha256_arrays

    X, _ = digits
    path = model(tmp_path, X, "indices")
    t = hashplug.ingest(tmp_path / "db", X[:500], name="t", model=path, layout="indices", progress=False).table
    idx = hashplug.build_hamming_index(t, save=False)
    folder = ix.default_index_folder(t, "code")
    folder.mkdir(parents=True)
    arrays = idx._arrays()
    np.savez(folder / "index.npz", **arrays)
    (folder / "index.json").write_text(json.dumps({
        "format": "hashplug-index/1", "layout": "indices", "m": idx.m, "n_rows": len(idx), "table_version":
        idx.table_version, "model_sha256": idx.model_sha256, "arrays_sha256": sha256_arrays(arrays)}))
    old = HammingIndex.load(folder)
    assert len(old) == 500 and old.binding is None
    with pytest.warns(RuntimeWarning, match="without a table binding"):
        _search_exact(t, X, [3, 600])
    hashplug.refresh_hamming_index(t)
    assert HammingIndex.read_manifest(folder)["format"] == "hashplug-index/2"
    assert not (folder / "index.npz").exists()


# --------------------------------------------------------------------------------------------- item 5
def test_queries_and_codes_of_another_width_are_refused():
    """Old code: a 2-byte query against 4-byte codes was answered (distance 0 for every row), a unit id >= m
    raised a raw IndexError, a negative one was answered, and float row ids were truncated."""
    idx = HammingIndex("packed", 32)
    idx.add(np.arange(12, dtype=np.uint8).reshape(3, 4), [0, 1, 2])
    for bad in (np.zeros((1, 2), np.uint8), np.zeros((1, 5), np.uint8), np.zeros(4, np.uint8),
                np.zeros((1, 4), np.float32)):
        with pytest.raises(HashplugError, match=r"shape \(nq, 4\) for this index of m=32"):
            idx.search(bad, 2)
    with pytest.raises(HashplugError, match="limit must be"):
        idx.search(np.zeros((1, 4), np.uint8), 2.5)
    with pytest.raises(HashplugError, match="row ids must be integers"):
        idx.add(np.zeros((1, 4), np.uint8), [1.5])
    odd = HammingIndex("packed", 12)  # 2 bytes, the last 4 bits padding
    odd.add(np.zeros((1, 2), np.uint8), [0])
    with pytest.raises(HashplugError, match="bits past m=12"):
        odd.search(np.array([[0, 0x0F]], np.uint8), 1)
    with pytest.raises(HashplugError, match="bits past m=12"):
        odd.add(np.array([[0, 1]], np.uint8), [1])
    sp = HammingIndex("indices", 16)
    sp.add((np.array([0, 2, 4]), np.array([1, 2, 3, 4])), [0, 1])
    for bad in ([np.array([99, 1])], [np.array([-1])], [np.array([1.5])], [np.array([[1, 2]])], [3, 4]):
        with pytest.raises(HashplugError, match=r"\[0, (m=)?16\)"):
            sp.search(bad, 2)
    with pytest.raises(HashplugError, match=r"shape \(nq, 2\)"):
        sp.search(np.zeros((1, 3), np.uint8), 2)
    with pytest.raises(HashplugError, match=r"active units must lie in \[0, m=16\)"):
        sp.add((np.array([0, 1]), np.array([16])), [5])
    assert len(sp) == 2 and len(idx) == 3 and len(odd) == 1  # refused inputs changed nothing


# --------------------------------------------------------------------------------------------- item 2
@pytest.mark.parametrize("layout", ["packed", "indices"])
def test_threads_search_while_another_adds_and_deletes(tmp_path, digits, layout):
    """8 threads search (through the index, at the snapshot each got) while a 9th adds and deletes rows.
    Old code: 55 of 320 searches raised ("row ids must be unique", FileNotFoundError index.npz.tmp, KeyError)
    and the saved index held 16,750 rows for 15,000 ids."""
    X, _ = digits
    path = model(tmp_path, X, layout)
    t = hashplug.ingest(tmp_path / "db", X[:600], name="t", model=path, layout=layout, progress=False).table
    folder = hashplug.build_hamming_index(t).folder
    saved = _files(folder)
    seen: list[tuple[int, int, np.ndarray, np.ndarray]] = []
    errors: list[BaseException] = []
    done = threading.Event()
    codes = {r: query_code(t, X[r]) for r in range(0, 1797, 37)}

    def reader(seed):
        rng = np.random.default_rng(seed)
        try:
            while not done.is_set() or len(seen) < 40:
                idx = ix.open_hamming_index(t)
                r = int(rng.choice(list(codes)))
                q = codes[r].reshape(1, -1) if layout == "packed" else [codes[r]]
                ids, dist = ix.hamming_index_search(idx, t, q, 8, where="_rowid % 2 = 0" if seed % 2 else None)
                res = hashplug.search(t, X[r], limit=8)
                assert res.num_rows == 8 and len(set(res["code"].to_pylist().__repr__())) > 0
                seen.append((idx.table_version, r, ids[0], dist[0], seed % 2))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def writer():
        try:
            for s in range(600, 1400, 100):
                hashplug.add(t, {"vector": list(X[s : s + 100])})
                t.delete(f"_rowid % 7 = {s % 7}")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            done.set()

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)] + [threading.Thread(target=writer)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors[:3]
    assert _files(folder) == saved  # searching never wrote the index
    handles: dict[int, object] = {}
    for version, r, ids, dist, filtered in seen:
        h = handles.setdefault(version, at_version(t, version))
        if filtered:
            ok = set(h.search().where("_rowid % 2 = 0").with_row_id(True).select([]).limit(None).to_arrow()["_rowid"].to_pylist())
            assert set(ids.tolist()) <= ok
        else:
            assert_exact(ids, dist, h, codes[r], 8)
    assert len({v for v, *_ in seen}) > 1  # the readers did see the table change


# --------------------------------------------------------------------------------------------- state machine
def test_interleaved_changes_saves_reopens_and_threaded_searches_stay_exact(tmp_path_factory, digits):
    """A hypothesis state machine: adds, deletes, updates, compaction, drop and re-create, build / refresh
    (saves), reopening (a new process's view), searches and searches from threads while rows are added; every
    result checked against brute force over the table at the version the search's snapshot covers, and every
    snapshot against a fresh build there (the same rows and codes: issue 31's catch-up by fragments), caught up
    without a rebuild while the saved index is this table's."""
    from hypothesis import HealthCheck, settings
    from hypothesis import strategies as st
    from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

    X, _ = digits
    root = tmp_path_factory.mktemp("machine")
    path = model(root, X)
    paths = {"packed": path, "indices": model(root, X, "indices")}

    class IndexMachine(RuleBasedStateMachine):
        @initialize(layout=st.sampled_from(["packed", "indices"]))
        def create(self, layout):
            self.layout = layout
            self.db = tmp_path_factory.mktemp("db")
            self.next = 200
            self.t = hashplug.ingest(self.db, X[:200], name="t", model=paths[self.layout], layout=self.layout,
                                     progress=False).table
            ix._CACHE.clear()
            hashplug.build_hamming_index(self.t)  # every run starts with a saved index to keep right
            self.ours = True  # the saved index is this table's (False after a drop and re-create)

        def _check(self, r):
            idx = ix.open_hamming_index(self.t)
            if idx is None:
                return
            h = at_version(self.t, idx.table_version)
            code = query_code(self.t, X[r])
            q = code.reshape(1, -1) if idx.layout == "packed" else [code]
            ids, dist = ix.hamming_index_search(idx, self.t, q, 7)
            assert_exact(ids[0], dist[0], h, code, 7)
            assert len(idx) == h.count_rows()
            assert index_rows(idx) == index_rows(hashplug.build_hamming_index(h, save=False))
            stats = getattr(idx, "last_catch_up", None) or {}
            if self.ours:
                assert not stats.get("rebuilt"), stats
            if "rows_read" in stats:
                assert stats["rows_read"] <= stats["rows_in_table"] == len(idx)

        def _add(self, n):
            s = self.next % 1700
            hashplug.add(self.t, {"vector": list(X[s : s + n])})
            self.next += n

        @rule(n=st.integers(1, 80), r=st.integers(0, 1796))
        def add(self, n, r):
            self._add(n)
            self._check(r)

        @rule(mod=st.integers(2, 9), rem=st.integers(0, 8), r=st.integers(0, 1796))
        def delete(self, mod, rem, r):
            self.t.delete(f"_rowid % {mod} = {rem % mod}")
            self._check(r)

        @rule(mod=st.integers(2, 9), rem=st.integers(0, 8), r=st.integers(0, 1796))
        def update(self, mod, rem, r):
            hashplug.update(self.t, where=f"_rowid % {mod} = {rem % mod}", values={"vector": X[r].tolist()})
            self._check(r)

        @rule(r=st.integers(0, 1796))
        def compact(self, r):
            self.t.optimize()
            self._check(r)

        @rule(r=st.integers(0, 1796))
        def drop_and_recreate(self, r):
            lancedb.connect(str(self.db)).drop_table("t")
            s = self.next % 1500
            self.next += 150
            self.t = hashplug.ingest(self.db, X[s : s + 150], name="t", model=paths[self.layout],
                                     layout=self.layout, progress=False).table
            self.ours = False
            self._check(r)

        @rule(r=st.integers(0, 1796))
        def build(self, r):
            hashplug.build_hamming_index(self.t)
            self.ours = True
            self._check(r)

        @rule(r=st.integers(0, 1796))
        def refresh(self, r):
            hashplug.refresh_hamming_index(self.t)
            self.ours = True
            self._check(r)

        @rule(r=st.integers(0, 1796))
        def reopen(self, r):
            ix._CACHE.clear()
            self.t = lancedb.connect(str(self.db)).open_table("t")
            self._check(r)

        @rule(r=st.integers(0, 1796))
        def search(self, r):
            self._check(r)

        @rule(r=st.integers(0, 1796))
        def search_from_threads_while_adding(self, r):
            errors: list[BaseException] = []

            def one(k):
                try:
                    for j in range(3):
                        self._check((r + 97 * k + j) % 1797)
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            threads = [threading.Thread(target=one, args=(k,)) for k in range(3)]
            for th in threads:
                th.start()
            self._add(20)
            for th in threads:
                th.join(60)
            assert not errors, errors

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rebuilds after drop / re-create are expected
        run_state_machine_as_test(IndexMachine, settings=settings(
            max_examples=8, stateful_step_count=10, deadline=None,
            suppress_health_check=list(HealthCheck)))
