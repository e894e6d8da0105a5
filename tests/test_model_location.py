"""Models that travel with their tables (issue 29): the database's model store, moved and copied databases
reopened in fresh processes, ``relocate_model``, model URIs, and ``OnnxEncoder`` pickling its bytes."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pytest
from lancedb.embeddings import get_registry

import hashplug
from hashplug._locations import write_once
from hashplug.integrations import lancedb as hl
from hashplug.integrations.function import clear_function_cache
from hashplug.integrations.store import STORE_DIR, db_reference, store_model
from hashplug.runtime import OnnxEncoder, clear_session_cache
from hashplug.validation import HashplugError, ModelFileError, ModelMismatchError, ModelNotFoundError

pytest.importorskip("onnx")  # the fixtures export models; the library under test never imports onnx


@pytest.fixture(scope="module")
def models(tmp_path_factory, digits):
    """Two LSH models of the digits (32 bits; seeds 0 and 1), exported to ONNX."""
    from hashplug.export import to_onnx

    X = digits[0]
    root = tmp_path_factory.mktemp("models")
    out = []
    for seed in (0, 1):
        enc = hashplug.get_encoder("lsh", k=32, random_state=seed).fit(X)
        out.append(Path(to_onnx(enc, root / f"lsh{seed}.onnx")))
    return out


def _forget_models() -> None:
    """This process forgets every model it has read (as a fresh process would)."""
    clear_session_cache()
    clear_function_cache()


def _config(tbl) -> dict:
    return json.loads(tbl.schema.metadata[b"embedding_functions"])[0]["model"]


def _codes(tbl) -> np.ndarray:
    t = tbl.to_arrow().sort_by("id")
    return np.stack(t["code"].to_numpy(zero_copy_only=False))


def _run(script: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], capture_output=True, text=True,
                         cwd="/", env={**os.environ, "PYTHONPATH": ""}, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------- the model store
def test_tables_made_by_hashplug_keep_their_model_in_the_database(tmp_path, digits, models):
    X = digits[0]
    sha = hashlib.sha256(models[0].read_bytes()).hexdigest()
    db_path = tmp_path / "db"
    tbl = hashplug.ingest(db_path, X[:50], name="t", model=str(models[0]), columns={"id": np.arange(50)},
                          progress=False).table
    stored = db_path / STORE_DIR / f"{sha}.onnx"
    assert stored.read_bytes() == models[0].read_bytes()
    cfg = _config(tbl)
    assert cfg["model"] == db_reference(sha) == f"{{db}}/_hashplug/models/{sha}.onnx"
    assert cfg["file_sha256"] == sha and cfg["layout"] == "packed" and (cfg["m"], cfg["k"]) == (32, 32)
    db = lancedb.connect(db_path)
    assert list(db.list_tables().tables) == ["t"]  # the store is no table
    # the same model for a second table (create_table, and schema(func, db=) + LanceDB's own add): one copy
    func = get_registry().get("hashplug").create(model=str(models[0]))
    hl.create_table(db, "u", func, data={"id": np.arange(5), "vector": X[:5]})
    v = db.create_table("v", schema=hl.schema(func, db=db, extra={"id": pa.int64()}))
    v.add(pa.table({"id": np.arange(5), "vector": list(X[:5])}))
    assert sorted(p.name for p in (db_path / STORE_DIR).iterdir()) == [f"{sha}.onnx"]
    assert _config(db.open_table("u"))["model"] == _config(v)["model"] == db_reference(sha)
    np.testing.assert_array_equal(_codes(v), OnnxEncoder(models[0]).encode(X[:5]))
    # store_model=False keeps 0.2's config: the model's absolute path
    w = hl.create_table(db, "w", func, data={"id": np.arange(5), "vector": X[:5]}, store_model=False)
    assert _config(w)["model"] == str(models[0].resolve())


def test_concurrent_writers_store_a_model_exactly_once(tmp_path, models):
    data = models[0].read_bytes()
    folder = tmp_path / "db" / STORE_DIR
    n = 8
    gate = threading.Barrier(n)
    results: list = [None] * n

    def one(i: int) -> None:
        gate.wait()
        results[i] = write_once(str(folder), data)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sha = hashlib.sha256(data).hexdigest()
    assert {loc for loc, _ in results} == {str(folder / f"{sha}.onnx")}
    assert sum(created for _, created in results) == 1  # exactly one writer created the file
    assert [p.name for p in folder.iterdir()] == [f"{sha}.onnx"]  # no temporary file left
    assert (folder / f"{sha}.onnx").read_bytes() == data
    # a corrupt copy under the name is refused, never served or silently replaced
    (folder / f"{sha}.onnx").write_bytes(data[:-1] + b"\0")
    with pytest.raises(ModelFileError, match="is corrupt"):
        store_model(tmp_path / "db", models[0])


def test_a_file_system_without_hard_links_still_stores_whole_files(tmp_path, models, monkeypatch):
    import errno

    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    data = models[0].read_bytes()
    loc, created = write_once(str(tmp_path / "store"), data)
    again = write_once(str(tmp_path / "store"), data)
    assert created and again == (loc, False) and Path(loc).read_bytes() == data
    assert [p.name for p in (tmp_path / "store").iterdir()] == [Path(loc).name]


# ------------------------------------------------------------------------------------------- moved databases
_WITH_HASHPLUG = """
import json, sys
import numpy as np
import lancedb
import hashplug
db = lancedb.connect(sys.argv[1])
X = np.load(sys.argv[2])
out = {}
for name in ("t", "v"):
    tbl = db.open_table(name)
    res = hashplug.search(tbl, X[7], limit=5)
    hashplug.add(tbl, X[300:303], columns={"id": np.arange(1000, 1003)})
    lance = tbl.search(hashplug.Query(X[7])).distance_type("hamming").limit(5).to_arrow()
    new = tbl.search().where("id >= 1000").to_arrow().sort_by("id")
    out[name] = {"ids": res["id"].to_pylist(), "dist": res["_distance"].to_pylist(),
                 "lance_dist": lance["_distance"].to_pylist(), "new": new["code"].to_pylist(),
                 "rows": tbl.count_rows()}
out["torch"] = "torch" in sys.modules
print(json.dumps(out))
"""

_LANCEDB_ONLY = """
import json, sys
import numpy as np
import lancedb
db = lancedb.connect(sys.argv[1])
X = np.load(sys.argv[2])
tbl = db.open_table("t")
tbl.add([{"id": 2000, "vector": X[9].tolist()}])  # LanceDB's add runs the rebuilt function
res = tbl.search(sys.argv[3]).distance_type("hamming").limit(3).to_arrow()  # a hashplug.Query's text form
print(json.dumps({"rows": tbl.count_rows(), "code": tbl.search().where("id = 2000").to_arrow()["code"].to_pylist(),
                  "ids": res["id"].to_pylist(), "dist": res["_distance"].to_pylist()}))
"""


def test_a_moved_database_searches_in_a_fresh_process(tmp_path, digits, models):
    X = digits[0]
    np.save(tmp_path / "X.npy", X)
    work = tmp_path / "first"
    work.mkdir()
    model = work / "enc.onnx"
    shutil.copy(models[0], model)
    db_path = work / "db"
    hashplug.ingest(db_path, X[:300], name="t", model=str(model), columns={"id": np.arange(300)}, progress=False)
    db = lancedb.connect(db_path)
    func = get_registry().get("hashplug").create(model=str(model))
    v = db.create_table("v", schema=hl.schema(func, db=db, extra={"id": pa.int64()}))
    v.add(pa.table({"id": np.arange(300), "vector": list(X[:300])}))  # LanceDB's own add
    before = {n: _codes(db.open_table(n)) for n in ("t", "v")}
    expect = hashplug.search(db.open_table("t"), X[7], limit=5)
    moved = tmp_path / "elsewhere" / "db"
    shutil.copytree(db_path, moved)
    shutil.rmtree(work)  # the original database and the original model file are gone

    ref = OnnxEncoder.from_bytes(models[0].read_bytes())
    r = _run(_WITH_HASHPLUG, str(moved), str(tmp_path / "X.npy"))
    assert r["torch"] is False
    for name in ("t", "v"):
        assert r[name]["ids"] == expect["id"].to_pylist() and r[name]["dist"] == expect["_distance"].to_pylist()
        assert r[name]["lance_dist"] == r[name]["dist"] and r[name]["rows"] == 303
        np.testing.assert_array_equal(np.array(r[name]["new"], np.uint8), ref.encode(X[300:303]))
    after = lancedb.connect(moved)
    for name in ("t", "v"):  # the rows written before the move are untouched: identical codes
        np.testing.assert_array_equal(_codes(after.open_table(name))[:300], before[name])

    # LanceDB alone (no `import hashplug` in the script: the installed .pth hook registers the function)
    r = _run(_LANCEDB_ONLY, str(moved), str(tmp_path / "X.npy"), str(hashplug.Query(X[9])))
    assert r["rows"] == 304
    np.testing.assert_array_equal(np.array(r["code"], np.uint8), ref.encode(X[9:10]))
    assert r["dist"][0] == 0.0 and 9 in r["ids"] and 2000 in r["ids"]


def test_a_database_copied_without_its_store_names_the_fix(tmp_path, digits, models):
    X = digits[0]
    db_path = tmp_path / "db"
    hashplug.ingest(db_path, X[:20], name="t", model=str(models[0]), columns={"id": np.arange(20)}, progress=False)
    bare = tmp_path / "bare"
    shutil.copytree(db_path, bare, ignore=shutil.ignore_patterns("_hashplug"))
    _forget_models()
    tbl = lancedb.connect(bare).open_table("t")
    with pytest.raises(ModelNotFoundError, match=r"relocate_model") as ei:
        hashplug.search(tbl, X[0], limit=3)
    assert str(bare / STORE_DIR) in str(ei.value)
    with pytest.raises(ModelNotFoundError):  # LanceDB's own add: the same error, nothing written
        tbl.add([{"id": 99, "vector": X[0].tolist()}])
    assert tbl.count_rows() == 20


# ------------------------------------------------------------------------------------------- relocate_model
def _old_style_table(tmp_path: Path, X: np.ndarray, model: Path):
    """A table as hashplug 0.2 wrote it: the model's absolute path in its config."""
    func = get_registry().get("hashplug").create(model=str(model))
    db = lancedb.connect(tmp_path / "db")
    tbl = db.create_table("t", schema=hl.schema(func, extra={"id": pa.int64()}))
    tbl.add(pa.table({"id": np.arange(100), "vector": list(X[:100])}))
    return tbl


def test_relocate_model_repoints_a_moved_0_2_table(tmp_path, digits, models):
    X = digits[0]
    model = tmp_path / "old" / "enc.onnx"
    model.parent.mkdir()
    shutil.copy(models[0], model)
    tbl = _old_style_table(tmp_path, X, model)
    assert _config(tbl)["model"] == str(model.resolve())
    codes = _codes(tbl)
    moved_model = tmp_path / "new" / "enc.onnx"
    moved_model.parent.mkdir()
    shutil.move(model, moved_model)
    _forget_models()
    tbl = lancedb.connect(tmp_path / "db").open_table("t")
    with pytest.raises(ModelNotFoundError, match=r"relocate_model"):
        hashplug.search(tbl, X[0], limit=3)
    version, rows = tbl.version, tbl.count_rows()
    with pytest.raises(ModelMismatchError, match="Nothing was changed"):  # another model: refused
        hashplug.relocate_model(tbl, models[1])
    assert tbl.version == version and not (tmp_path / "db" / "_hashplug").exists()

    ref = hashplug.relocate_model(tbl, moved_model)
    sha = hashlib.sha256(moved_model.read_bytes()).hexdigest()
    assert ref == db_reference(sha) and (tmp_path / "db" / STORE_DIR / f"{sha}.onnx").is_file()
    assert tbl.version == version + 1 and tbl.count_rows() == rows  # one commit, schema metadata only
    np.testing.assert_array_equal(_codes(tbl), codes)
    _forget_models()
    os.remove(moved_model)  # the table now finds its own copy
    again = lancedb.connect(tmp_path / "db").open_table("t")
    assert _config(again)["model"] == ref
    res = hashplug.search(again, X[5], limit=1)
    assert res["id"][0].as_py() == 5 and res["_distance"][0].as_py() == 0.0
    assert hl.model_location(again)["exists"] is True


def test_relocate_model_to_a_uri(tmp_path, digits, models):
    fsspec = pytest.importorskip("fsspec")
    X = digits[0]
    tbl = _old_style_table(tmp_path, X, models[0])
    mem = fsspec.filesystem("memory")
    prefix = f"/hashplug-test-{os.getpid()}-{tmp_path.name}"
    try:
        mem.pipe(f"{prefix}/enc.onnx", models[0].read_bytes())
        mem.pipe(f"{prefix}/other.onnx", models[1].read_bytes())
        uri = f"memory://{prefix}/enc.onnx"
        with pytest.raises(ModelMismatchError, match="is not the model"):
            hashplug.relocate_model(tbl, f"memory://{prefix}/other.onnx", copy=False)
        assert hashplug.relocate_model(tbl, uri, copy=False) == uri
        assert _config(tbl)["model"] == uri
        _forget_models()
        t = lancedb.connect(tmp_path / "db").open_table("t")
        assert hashplug.search(t, X[3], limit=1)["id"][0].as_py() == 3  # read from the URI, sha256 checked
        # the object replaced by another model: refused on load, never used
        mem.pipe(f"{prefix}/enc.onnx", models[1].read_bytes())
        _forget_models()
        t = lancedb.connect(tmp_path / "db").open_table("t")
        with pytest.raises(ModelMismatchError, match="not the expected model"):
            hashplug.search(t, X[3], limit=1)
    finally:
        mem.rm(prefix, recursive=True)


def test_relocate_model_of_a_0_1_0_table_upgrades_its_keys(tmp_path):
    fixture = Path(__file__).parent / "fixtures" / "v0_1_0"
    shutil.copytree(fixture / "db", tmp_path / "db")
    X = np.load(fixture / "X.npy")
    db = lancedb.connect(tmp_path / "db")
    for name, onnx in (("dense", "itq_k16.onnx"), ("sparse", "biohash_k4.onnx")):
        tbl = db.open_table(name)
        old = _config(tbl)
        assert "code" in old and "sha256" in old  # 0.1.0's keys, a path under /tmp
        codes = tbl.to_arrow().sort_by("id")["code"].to_pylist()
        ref = hashplug.relocate_model(tbl, fixture / onnx)
        new = _config(tbl)
        assert new["model"] == ref and new["file_sha256"] == old["sha256"]
        assert new["layout"] == {"dense": "packed", "sparse": "indices"}[old["code"]]
        assert "code" not in new and "sha256" not in new
        t = db.open_table(name)
        assert t.to_arrow().sort_by("id")["code"].to_pylist() == codes
        assert hashplug.search(t, X[7], limit=1)["_distance"][0].as_py() == 0


def test_relocate_model_refuses_bad_arguments(tmp_path, digits, models):
    tbl = _old_style_table(tmp_path, digits[0], models[0])
    version = tbl.version
    with pytest.raises(ModelNotFoundError):
        hashplug.relocate_model(tbl, tmp_path / "missing.onnx")
    with pytest.raises(HashplugError, match="copy=False"):
        hashplug.relocate_model(tbl, copy=False)
    with pytest.raises(hashplug.HashplugTypeError, match="location must be"):
        hashplug.relocate_model(tbl, 42)
    assert tbl.version == version
    # location=None: the model the table opens with now, copied into the database
    ref = hashplug.relocate_model(tbl)
    assert ref.startswith("{db}/") and hashplug.relocate_model(tbl) == ref and tbl.version == version + 1


# ------------------------------------------------------------------------------------------- URIs, $var
def test_onnx_encoder_reads_uris_checked_by_sha256(tmp_path, digits, models):
    fsspec = pytest.importorskip("fsspec")
    mem = fsspec.filesystem("memory")
    prefix = f"/hashplug-test-{os.getpid()}-{tmp_path.name}"
    data = models[0].read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    try:
        mem.pipe(f"{prefix}/enc.onnx", data)
        enc = OnnxEncoder(f"memory://{prefix}/enc.onnx", sha256=sha)
        assert enc.location == f"memory://{prefix}/enc.onnx" and enc.path.name == "enc.onnx"
        np.testing.assert_array_equal(enc.encode(digits[0][:20]), OnnxEncoder(models[0]).encode(digits[0][:20]))
        with pytest.raises(ModelMismatchError, match="not the expected model"):
            OnnxEncoder(f"memory://{prefix}/enc.onnx", sha256="0" * 64)
        with pytest.raises(ModelNotFoundError, match="No ONNX model file"):
            OnnxEncoder(f"memory://{prefix}/nope.onnx")
        state = enc.__getstate__()  # a URI encoder pickles as its URI and sha256
        assert state["uri"] == f"memory://{prefix}/enc.onnx" and state["sha256"] == sha and "bytes" not in state
    finally:
        mem.rm(prefix, recursive=True)
    with pytest.raises(HashplugError, match="no filesystem for"):
        OnnxEncoder("nosuchscheme-hashplug://bucket/enc.onnx")


def test_a_lancedb_memory_database_keeps_its_model_in_the_process(digits, models):
    pytest.importorskip("fsspec")
    import fsspec

    X = digits[0]
    db = lancedb.connect("memory://")
    tbl = hashplug.ingest(db, X[:60], name="t", model=str(models[0]), columns={"id": np.arange(60)},
                          progress=False).table
    sha = hashlib.sha256(models[0].read_bytes()).hexdigest()
    assert _config(tbl)["model"] == db_reference(sha)
    mem = fsspec.filesystem("memory")
    try:
        assert mem.cat(f"/_hashplug/models/{sha}.onnx") == models[0].read_bytes()
        res = hashplug.search(tbl, X[11], limit=1)  # no Hamming index beside a memory:// table: LanceDB answers
        assert res["id"][0].as_py() == 11 and res.schema.metadata[b"hashplug.search_path"] == b"lancedb"
    finally:
        mem.rm("/_hashplug", recursive=True)


def test_lancedb_variables_name_the_model(tmp_path, digits, models):
    X = digits[0]
    reg = get_registry()
    reg.set_var("hashplug_test_model", str(models[0]))
    func = reg.get("hashplug").create(model="$var:hashplug_test_model")
    db = lancedb.connect(tmp_path / "db")
    tbl = db.create_table("t", schema=hl.schema(func, extra={"id": pa.int64()}))
    tbl.add(pa.table({"id": np.arange(30), "vector": list(X[:30])}))
    assert _config(tbl)["model"] == "$var:hashplug_test_model"
    copy = tmp_path / "copy.onnx"
    shutil.copy(models[0], copy)
    reg.set_var("hashplug_test_model", str(copy))  # another process points the variable at its own copy
    _forget_models()
    assert hashplug.search(db.open_table("t"), X[4], limit=1)["id"][0].as_py() == 4
    reg.set_var("hashplug_test_model", str(models[1]))  # the variable at another model: refused
    _forget_models()
    with pytest.raises(ModelMismatchError):
        hashplug.search(db.open_table("t"), X[4], limit=1)


# ------------------------------------------------------------------------------------------- pickling
_UNPICKLE = """
import json, pickle, sys
import numpy as np
enc = pickle.loads(open(sys.argv[1], "rb").read())
X = np.load(sys.argv[2])
print(json.dumps({"codes": enc.encode(X[:10]).tolist(), "sha": enc.file_sha256, "torch": "torch" in sys.modules}))
"""


def test_onnx_encoder_pickles_its_bytes_not_its_path(tmp_path, digits, models):
    X = digits[0]
    model = tmp_path / "enc.onnx"
    shutil.copy(models[0], model)
    enc = OnnxEncoder(model)
    blob = pickle.dumps(enc)
    state = enc.__getstate__()
    assert state["bytes"] == model.read_bytes() and state["sha256"] == enc.file_sha256
    assert "path" not in state and "uri" not in state
    (tmp_path / "enc.pkl").write_bytes(blob)
    np.save(tmp_path / "X.npy", X)
    os.remove(model)  # the other side has no such file
    r = _run(_UNPICKLE, str(tmp_path / "enc.pkl"), str(tmp_path / "X.npy"))
    assert r["sha"] == enc.file_sha256 and r["torch"] is False
    np.testing.assert_array_equal(np.array(r["codes"], np.uint8), enc.encode(X[:10]))
    # bytes that do not hash to the recorded sha256 are refused on unpickling
    bad = dict(state, bytes=models[1].read_bytes())
    with pytest.raises(ModelMismatchError, match="not the expected model"):
        OnnxEncoder.__new__(OnnxEncoder).__setstate__(bad)
    # a table made from an encoder that has no file (unpickled) stores its bytes in the database
    twin = pickle.loads(blob)
    assert twin.location is None
    tbl = hashplug.ingest(tmp_path / "db", X[:10], name="t", model=twin, columns={"id": np.arange(10)},
                          progress=False).table
    assert _config(tbl)["model"] == db_reference(enc.file_sha256)
    assert (tmp_path / "db" / STORE_DIR / f"{enc.file_sha256}.onnx").read_bytes() == models[0].read_bytes()


# ------------------------------------------------------------------------------------------- how LanceDB builds it
def test_constructing_the_function_checks_the_model_like_create(tmp_path, models):
    """LanceDB >= 0.41 rebuilds a table's function with ``cls(**config)``, not ``create``: the same checks."""
    from hashplug.integrations.function import HashplugEmbeddings

    model = tmp_path / "enc.onnx"
    shutil.copy(models[0], model)
    made = get_registry().get("hashplug").create(model=str(model))
    config = made.safe_model_dump() if hasattr(made, "safe_model_dump") else dict(made._original_args)
    _forget_models()
    rebuilt = HashplugEmbeddings(**config)
    assert rebuilt.file_sha256 == made.file_sha256 == hashlib.sha256(model.read_bytes()).hexdigest()
    assert (rebuilt.m, rebuilt.k, rebuilt.code_kind) == (32, 32, made.code_kind)
    bare = HashplugEmbeddings(model=str(model))  # nothing recorded yet: filled from the file, as create does
    assert (bare.file_sha256, bare.m) == (made.file_sha256, 32)
    shutil.copy(models[1], model)  # another model at the saved path: refused at construction, not at a later read
    _forget_models()
    with pytest.raises(ModelMismatchError, match="is not the model this table was built with"):
        HashplugEmbeddings(**config)
    with pytest.raises(HashplugError, match="layout"):
        HashplugEmbeddings(model=str(model), layout="bits")


def test_endpoints_name_the_uris_a_table_reads_its_model_from(tmp_path, models):
    from hashplug.integrations.function import HashplugEmbeddings

    local = get_registry().get("hashplug").create(model=str(models[0]))
    assert local.endpoints() == []
    probe = HashplugEmbeddings.model_construct(model="s3://bucket/enc.onnx?endpoint_override=evil.example:9000",
                                               file_sha256="0" * 64)
    assert probe.endpoints() == ["s3://bucket/enc.onnx?endpoint_override=evil.example:9000"]
    for model in (db_reference("0" * 64), "memory://x/enc.onnx", "file:///tmp/enc.onnx"):
        assert HashplugEmbeddings.model_construct(model=model).endpoints() == []


@pytest.mark.skipif(not hasattr(get_registry(), "allow_endpoint"), reason="LanceDB < 0.41 has no endpoint trust")
def test_a_config_naming_an_untrusted_uri_is_not_read(tmp_path):
    """A table's metadata names a URI this process never used: LanceDB >= 0.41 stands in its untrusted function
    (nothing is fetched), whose message names ``allow_endpoint``."""
    uri = "s3://hashplug-nowhere/enc.onnx?endpoint_override=127.0.0.1:9"
    meta = {b"embedding_functions": json.dumps([{"name": "hashplug", "vector_column": "code",
                                                 "source_column": "vector",
                                                 "model": {"model": uri, "file_sha256": "0" * 64}}]).encode()}
    func = get_registry().parse_functions(meta)["code"].function
    assert type(func).__name__ == "UntrustedEmbeddingFunction"
    with pytest.raises(PermissionError, match="allow_endpoint"):
        func.compute_query_embeddings("q")


def _blocked_on_worker(self, fn):  # noqa: ANN001 - `self` is the table, as in LanceTable's own methods
    t = threading.Thread(target=fn)
    t.start()
    t.join()


async def _awaiting_worker(self, fn):  # noqa: ANN001 - `self` is the table, as in AsyncTable's own coroutines
    import asyncio

    await asyncio.to_thread(fn)


def test_caller_roots_find_the_database_from_a_worker_thread(tmp_path, digits, models):
    """The databases a worker thread's call is made for: a table waiting in another thread's frames (LanceDB's
    sync API), and one held by a suspended asyncio task (the async API)."""
    import asyncio

    from hashplug.integrations.store import caller_roots

    X = digits[0]
    for name in ("a", "b"):
        hashplug.ingest(tmp_path / name, X[:10], name="t", model=str(models[0]), progress=False)
    seen: list[list[str]] = []
    _blocked_on_worker(lancedb.connect(tmp_path / "a").open_table("t"), lambda: seen.append(caller_roots()))
    assert seen[-1][:1] == [str((tmp_path / "a").resolve())]

    async def main():
        atbl = await (await lancedb.connect_async(str(tmp_path / "b"))).open_table("t")
        await _awaiting_worker(atbl, lambda: seen.append(caller_roots()))

    asyncio.run(main())
    assert str((tmp_path / "b").resolve()) in seen[-1] and str((tmp_path / "a").resolve()) not in seen[-1]
    assert caller_roots() == []  # from the calling thread itself, with no other caller waiting: none
