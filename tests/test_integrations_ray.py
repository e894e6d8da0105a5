"""hashplug on Ray Data and Lance (``hashplug.integrations.ray``), on a local 2-CPU Ray cluster.

One cluster for the session (conftest's ``ray_cluster``: ``local_ray(num_cpus=2)``, shared with the scale-out
smoke test and example 14 on one pytest-xdist worker),
one actor per job (``concurrency=1``). Digits (float32 / 16, (n, 64)) through ``write_table`` and reopened by
LanceDB in a fresh process; a Ray tensor source; backfill of a table written without codes (and its resume
after a failure and after a driver that died between fragments); bad rows naming their source position with
the table left at its version; reruns writing each row once; the byte-counting Hamming pitfall of
lance-ray <= 0.5.0's ``vector_search``, which hashplug never ranks with.
"""

from __future__ import annotations

import ast
import gc
import json
import logging
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytest.importorskip("lance_ray")
lance = pytest.importorskip("lance")
pytest.importorskip("onnx")  # the test models are exported here (training side)

import lancedb  # noqa: E402
from _warm import run_python  # noqa: E402
from test_integrations_lancedb import brute_hamming, make_model  # noqa: E402

import hashplug  # noqa: E402
from hashplug.data import load_digits  # noqa: E402
from hashplug.integrations import ray as hr  # noqa: E402
from hashplug.runtime import OnnxEncoder  # noqa: E402
from hashplug.validation import HashplugError, IngestError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster(ray_cluster):
    """The session's local Ray cluster of 2 CPUs (conftest's ``ray_cluster``), Ray Data's logging quieted."""
    # Ray Data logs a failed job's exception, and pytest's log capture (a handler on Ray Data's own logger)
    # keeps the record, whose traceback keeps the job's actors, and their CPUs, alive until the test ends: the
    # next job on 2 CPUs then waits forever. Ray Data's records below CRITICAL are not made here (a logging
    # handler that keeps records does the same to users: README, "Scaling out with Ray").
    data_logger = logging.getLogger("ray.data")
    saved = data_logger.level
    data_logger.setLevel(logging.CRITICAL)
    yield ray_cluster
    data_logger.setLevel(saved)


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """Digits as float32 (n, 64) in [0, 1], labels, and an LSH-64 model exported to ONNX."""
    X, y = load_digits(flat=True)
    X = (X / 16.0).astype(np.float32)
    enc = hashplug.get_encoder("lsh", k=64, random_state=0).fit(X)
    from hashplug.export import to_onnx

    path = to_onnx(enc, tmp_path_factory.mktemp("model") / "lsh64.onnx")
    return X, y, str(path)


def _table(X: np.ndarray, y: np.ndarray | None = None, start: int = 0) -> pa.Table:
    cols = {"id": np.arange(start, start + len(X), dtype=np.int64)}
    if y is not None:
        cols["label"] = np.asarray(y, dtype=np.int64)
    cols["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(X, np.float32).ravel()), X.shape[1])
    return pa.table(cols)


def _codes_by_id(tbl) -> tuple[np.ndarray, np.ndarray]:
    t = tbl.to_arrow().sort_by("id")
    return t["id"].to_numpy(), np.stack(t["code"].to_numpy(zero_copy_only=False))


# ------------------------------------------------------------------------------------------------ write_table
def test_write_table_opens_as_a_hashplug_table_in_a_fresh_process(cluster, digits_model, tmp_path):
    """...also after the database folder was moved and the model file it was written with deleted: the table
    names its model by content, stored in the database (``{db}/_hashplug/models/<sha256>.onnx``)."""
    X, y, shared_model = digits_model
    model = tmp_path / "lsh64.onnx"  # a copy of the module's model, deleted below
    shutil.copy(shared_model, model)
    ds = ray.data.from_arrow(_table(X, y)).repartition(3)  # several blocks, several Lance data files
    res = hr.write_table(ds, tmp_path / "db", "digits", str(model), job_id="digits-1")
    assert (res.rows_written, res.version, res.already_committed) == (len(X), 1, False)
    # a rerun of the same job finds its commit and writes nothing
    again = hr.write_table(ds, tmp_path / "db", "digits", str(model), job_id="digits-1")
    assert again.already_committed and again.rows_written == 0 and again.version == 1
    want = OnnxEncoder(model).encode(X)
    shutil.copytree(tmp_path / "db", tmp_path / "moved")
    shutil.rmtree(tmp_path / "db")
    model.unlink()
    queries = [0, 17, 901, 1500]
    code = f"""
        import json, sys
        import numpy as np
        import lancedb, hashplug
        tbl = lancedb.connect({str(tmp_path / 'moved')!r}).open_table("digits")
        X = np.load({str(tmp_path / 'X.npy')!r})
        t = tbl.to_arrow().sort_by("id")
        out = {{"type": str(tbl.schema.field("code").type), "ids": t["id"].to_pylist(),
               "codes": np.stack(t["code"].to_numpy(zero_copy_only=False)).tolist(), "search": []}}
        for q in {queries}:
            r = hashplug.search(tbl, X[q], limit=10)
            out["search"].append([r["id"].to_pylist(), r["_distance"].to_pylist()])
        print(json.dumps(out))
    """
    np.save(tmp_path / "X.npy", X)
    proc = run_python(["-c", textwrap.dedent(code)], cwd=tmp_path, timeout=300)  # a new process
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["type"] == "fixed_size_list<item: uint8>[8]"
    assert got["ids"] == list(range(len(X)))  # every row once
    np.testing.assert_array_equal(np.asarray(got["codes"], dtype=np.uint8), want)  # row for row
    for q, (ids, dist) in zip(queries, got["search"]):
        d = brute_hamming(want, want[q])
        np.testing.assert_array_equal(dist, d[ids])  # exact distances
        np.testing.assert_array_equal(dist, np.sort(d)[:10])  # a true top 10 (up to ties)
        assert q in ids


def test_a_ray_tensor_source_and_indices_codes(cluster, digits_model, tmp_path):
    X, _, model = digits_model
    ds = ray.data.from_numpy(X[:300].reshape(-1, 8, 8))  # ArrowTensorTypeV2 column "data"
    assert "tensor" in str(ds.schema().base_schema.field("data").type).lower()
    out = hr.encode_dataset(ds, model, source="data", batch_size=128).take_batch(300, batch_format="pyarrow")
    assert out.schema.field("code").type == pa.list_(pa.uint8(), 8)
    stored = np.asarray(out["data"].combine_chunks().to_numpy()).reshape(-1, 64)  # Ray's own reading
    np.testing.assert_array_equal(np.stack(out["code"].to_numpy(zero_copy_only=False)),
                                  OnnxEncoder(model).encode(stored))
    # written as a table: the samples stored flat as the schema declares, each row's code its own
    res = hr.write_table(ds, tmp_path / "db", "tensors", model, source="data")
    tbl = lancedb.connect(tmp_path / "db").open_table("tensors")
    assert res.rows_written == 300 and tbl.schema.field("data").type == pa.list_(pa.float32())
    t = tbl.to_arrow()
    vecs = np.asarray(t["data"].to_pylist(), dtype=np.float32)
    np.testing.assert_array_equal(np.stack(t["code"].to_numpy(zero_copy_only=False)), OnnxEncoder(model).encode(vecs))
    assert sorted(map(bytes, vecs)) == sorted(map(bytes, X[:300]))  # every sample once
    # k-hot model, layout="indices": list<int32> as the LanceDB integration writes it
    kpath, kref = make_model(tmp_path / "k.onnx", d=64, m=64, k=5)
    src = ray.data.from_arrow(_table(X[:200]))
    ind = hr.encode_dataset(src, kpath, layout="indices").take_batch(200, batch_format="pyarrow")
    assert ind.schema.field("code").type == pa.list_(pa.int32())
    order = np.argsort(ind["id"].to_numpy())
    units = np.asarray(ind["code"].to_pylist())[order]
    packed = np.packbits(np.stack([np.isin(np.arange(64), u) for u in units]), axis=1)
    np.testing.assert_array_equal(packed, kref(X[:200]))


# ------------------------------------------------------------------------------------------------ failures
def test_a_bad_row_fails_the_job_naming_it_and_commits_nothing(cluster, digits_model, tmp_path):
    X, y, model = digits_model
    db = tmp_path / "db"
    # the table the jobs append to, written without Ray (write_table appends to any hashplug table of its model)
    hashplug.ingest(db, _table(X[:500], y[:500]), name="items", model=model, progress=False)
    tbl = lancedb.connect(db).open_table("items")
    v0, n0 = tbl.version, tbl.count_rows()
    bad = X[500:900].copy()
    bad[277, 5] = np.nan  # the row with id 777
    with pytest.raises(IngestError, match=r"id=777.*NaN.*Nothing was committed: the table stays at version 1"):
        hr.write_table(ray.data.from_arrow(_table(bad, y[500:900], start=500)), db, "items", model, mode="append",
                       job_id="second")
    # a wrong width: one sample of 63 values in a list column
    rows = [np.asarray(v, dtype=np.float32) for v in X[500:600]]
    rows[42] = rows[42][:63]
    src = pa.table({"id": np.arange(500, 600), "label": y[500:600],
                    "vector": pa.array([r.tolist() for r in rows], type=pa.list_(pa.float32()))})
    with pytest.raises(IngestError, match=r"id=542.*63 features.*expects 64.*Nothing was committed"):
        hr.write_table(ray.data.from_arrow(src), db, "items", model, mode="append", job_id="third")
    # a column the table does not have, in a dataset whose schema Ray learns only by running it: the worker
    # refuses the batch (it was dropped without a word before)
    noted = ray.data.from_arrow(_table(X[500:600], y[500:600], start=500)).map_batches(
        lambda b: b.append_column("note", pa.array(["x"] * len(b))), batch_format="pyarrow")
    with pytest.raises(HashplugError, match=r"columns \['note'\] are not in the table.*Nothing was committed"):
        hr.write_table(noted, db, "items", model, mode="append", job_id="fourth")
    tbl = lancedb.connect(db).open_table("items")
    assert (tbl.version, tbl.count_rows()) == (v0, n0)
    # a new table: nothing is created
    with pytest.raises(IngestError, match=r"id=777.*no table was created"):
        hr.write_table(ray.data.from_arrow(_table(bad, start=500)), db, "fresh", model)
    assert "fresh" not in lancedb.connect(db).list_tables().tables and not (db / "fresh.lance").exists()
    # the fixed rows: the rerun of the failed job writes each row once
    res = hr.write_table(ray.data.from_arrow(_table(X[500:900], y[500:900], start=500)), db, "items", model,
                         mode="append", job_id="second")
    ids, codes = _codes_by_id(lancedb.connect(db).open_table("items"))
    assert res.rows_written == 400 and ids.tolist() == list(range(900))
    np.testing.assert_array_equal(codes, OnnxEncoder(model).encode(X[:900]))


class _DriverKilled(BaseException):
    """Stands for the driver process dying (not an Exception: nothing in hashplug may catch it)."""


def test_a_rerun_after_the_driver_died_writes_each_row_once(cluster, digits_model, tmp_path, monkeypatch):
    X, y, model = digits_model
    db = tmp_path / "db"
    hashplug.ingest(db, _table(X[:300], y[:300]), name="items", model=model, progress=False)  # without Ray
    src = ray.data.from_arrow(_table(X[300:700], y[300:700], start=300))
    # 1. the driver dies while committing: nothing is committed, the rerun writes every row
    real = lance.LanceDataset.commit

    def die(*args, **kwargs):
        raise _DriverKilled()

    monkeypatch.setattr(lance.LanceDataset, "commit", staticmethod(die))
    with pytest.raises(BaseException) as info:  # noqa: B017 - whatever Ray makes of the dying driver
        hr.write_table(src, db, "items", model, mode="append", job_id="batch-2")
    assert isinstance(info.value, _DriverKilled), repr(info.value)
    del info
    gc.collect()  # a real dead driver takes its actors with it; here Ray frees them once the exception is gone
    monkeypatch.setattr(lance.LanceDataset, "commit", real)
    assert lancedb.connect(db).open_table("items").count_rows() == 300
    first = hr.write_table(src, db, "items", model, mode="append", job_id="batch-2")
    # 2. the driver dies after its commit (before it could tell anyone): the rerun finds the job, writes nothing
    second = hr.write_table(src, db, "items", model, mode="append", job_id="batch-2")
    assert (first.rows_written, second.rows_written, second.already_committed) == (400, 0, True)
    ids, codes = _codes_by_id(lancedb.connect(db).open_table("items"))
    assert ids.tolist() == list(range(700))
    np.testing.assert_array_equal(codes, OnnxEncoder(model).encode(X[:700]))


def test_arguments_are_refused_before_anything_runs(cluster, digits_model, tmp_path):
    X, _, model = digits_model
    ds = ray.data.from_arrow(_table(X[:50]))
    with pytest.raises(HashplugError, match="need 3 CPUs.*has 2.*wait forever.*num_cpus=0.5"):
        hr.write_table(ds, tmp_path / "db", "t", model, concurrency=2, num_cpus=1)
    with pytest.raises(HashplugError, match="mode='append' needs job_id="):
        hr.write_table(ds, tmp_path / "db", "t", model, mode="append")
    with pytest.raises(HashplugError, match="no source column 'pixels'"):
        hr.encode_dataset(ds, model, source="pixels")
    with pytest.raises(HashplugError, match="plain column name"):
        hr.write_table(ds, tmp_path / "db", "../t", model)
    with pytest.raises(HashplugError, match="schema must be a pyarrow.Schema.*got dict"):
        hr.write_table(ds, tmp_path / "db", "t", model, schema={"vector": "float32"})
    assert not (tmp_path / "db").exists()


# ------------------------------------------------------------------------------------------------ backfill
def _plain_table(db: Path, name: str, X: np.ndarray, y: np.ndarray, parts: int = 3) -> None:
    """A Lance table without codes, written in ``parts`` fragments (NaN allowed, which LanceDB's add refuses)."""
    t = _table(X, y)
    lance.write_dataset(t, str(db / f"{name}.lance"), max_rows_per_file=-(-len(X) // parts))


def test_backfill_adds_the_codes_and_the_function(cluster, digits_model, tmp_path):
    X, y, model = digits_model
    db = tmp_path / "db"
    _plain_table(db, "plain", X, y)
    res = hr.backfill(db, model, name="plain")
    assert (res.fragments_encoded, res.fragments_resumed, res.already_done) == (3, 0, False)
    tbl = lancedb.connect(db).open_table("plain")
    col, src, func = hashplug.integrations.lancedb.get_function(tbl)
    assert (col, src, tbl.schema.field("code").type) == ("code", "vector", pa.list_(pa.uint8(), 8))
    ids, codes = _codes_by_id(tbl)
    assert ids.tolist() == list(range(len(X)))
    want = OnnxEncoder(model).encode(X)
    np.testing.assert_array_equal(codes, want)
    r = hashplug.search(tbl, X[33], limit=5)
    np.testing.assert_array_equal(r["_distance"].to_numpy(), np.sort(brute_hamming(want, want[33]))[:5])
    # idempotent: a second call checks the column and changes nothing
    again = hr.backfill(db, model, name="plain")
    assert again.already_done and again.version == res.version
    assert not (db / "plain.lance.hashplug-backfill.json").exists()


def test_backfill_fails_on_a_bad_row_and_resumes_after_a_dead_driver(cluster, digits_model, tmp_path, monkeypatch):
    X, y, model = digits_model
    db = tmp_path / "db"
    bad = X.copy()
    bad[1000, 7] = np.inf  # fragment 1 (rows 599 .. 1197), its row 401
    _plain_table(db, "bad", bad, y)
    v0 = lance.dataset(str(db / "bad.lance")).version
    with pytest.raises(IngestError, match=r"fragment 1, row 401 .*NaN or infinity.*stays at version 1"):
        hr.backfill(db, model, name="bad")
    assert lance.dataset(str(db / "bad.lance")).version == v0 and "code" not in lance.dataset(str(db / "bad.lance")).schema.names
    done = json.loads((db / "bad.lance.hashplug-backfill.json").read_text())
    assert set(done["fragments"]) == {"0"}  # the fragment before the bad one is kept
    # a driver that dies after two of three fragments: the rerun encodes the third only
    _plain_table(db, "plain", X, y)
    writes = []
    real = hr._atomic_write

    def write_then_die(path, state):
        real(path, state)
        writes.append(len(state["fragments"]))
        if len(writes) == 2:
            raise _DriverKilled()

    monkeypatch.setattr(hr, "_atomic_write", write_then_die)
    with pytest.raises(_DriverKilled):
        hr.backfill(db, model, name="plain")
    monkeypatch.setattr(hr, "_atomic_write", real)
    assert "code" not in lance.dataset(str(db / "plain.lance")).schema.names
    res = hr.backfill(db, model, name="plain")
    assert (res.fragments_resumed, res.fragments_encoded) == (2, 1)
    ids, codes = _codes_by_id(lancedb.connect(db).open_table("plain"))
    assert ids.tolist() == list(range(len(X)))
    np.testing.assert_array_equal(codes, OnnxEncoder(model).encode(X))


# ------------------------------------------------------------------------------------------------ ranking
def test_search_ranks_bits_not_bytes(cluster, digits_model, tmp_path):
    """lance-ray <= 0.5.0's ``vector_search`` flat fallback counts differing bytes: a row [255, 0] (8 bits
    away) ranked before [1, 1] (2 bits away). hashplug ranks by bits, on LanceDB's scan and on the IVF_FLAT
    Hamming index Ray builds, and never calls ``vector_search``."""
    X, y, model = digits_model
    db = tmp_path / "db"
    # 600 rows: IVF_FLAT with 2 partitions needs 512 (Lance samples 256 rows per partition)
    hashplug.ingest(db, _table(X[:600], y[:600]), name="items", model=model, progress=False)  # the index is Ray's part
    q = OnnxEncoder(model).encode(X[:1])[0]
    near, far = q.copy(), q.copy()
    near[:2] ^= np.uint8(1)  # 2 differing bits, in 2 bytes
    far[0] ^= np.uint8(255)  # 8 differing bits, in 1 byte
    tbl = lancedb.connect(db).open_table("items")
    extra = pa.table({"id": [100_000, 100_001], "label": [0, 0], "vector": [X[0].tolist()] * 2,
                      "code": pa.FixedSizeListArray.from_arrays(pa.array(np.concatenate([far, near])), 8)})
    tbl.add(extra.cast(tbl.schema))
    where = "id >= 100000"
    r = hashplug.search(tbl, X[0], limit=2, where=where)
    assert r["id"].to_pylist() == [100_001, 100_000] and r["_distance"].to_pylist() == [2.0, 8.0]
    hr.create_lancedb_index(db, "items", num_partitions=2, num_workers=1)  # 2 workers: examples/14_ray.py
    tbl = lancedb.connect(db).open_table("items")
    assert [i.index_type for i in tbl.list_indices()] == ["IvfFlat"]
    r = hashplug.search(tbl, X[0], limit=2, where=where, nprobes=2)
    assert r["id"].to_pylist() == [100_001, 100_000] and r["_distance"].to_pylist() == [2.0, 8.0]
    names = {n.attr for n in ast.walk(ast.parse((ROOT / "integrations" / "ray.py").read_text()))
             if isinstance(n, ast.Attribute)}
    assert "vector_search" not in names


def _fresh_process(module: str, heavy: tuple[str, ...], then: str) -> tuple[str, str]:
    """In a fresh interpreter: import ``module`` as ``m``, print the ``heavy`` top-level packages it loaded, run
    ``then``; returns the first two lines printed."""
    code = (f"import sys, {module} as m\n"
            f"print(sorted(x for x in sys.modules if x.split('.')[0] in {heavy!r}))\n" + then)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, second = proc.stdout.strip().splitlines()[:2]
    return first, second


def test_the_module_imports_neither_ray_nor_torch_until_used():
    first, second = _fresh_process("hashplug.integrations.ray", ("ray", "lance_ray", "torch", "onnx", "sklearn"),
                                   "sys.modules['ray'] = None\n"
                                   "try:\n    m.encode_dataset(None, 'x.onnx')\nexcept ImportError as e:\n    print(e)\n")
    assert first == "[]"
    assert "pip install 'hashplug[ray]'" in second


def test_the_actors_module_starts_without_lancedb():
    """A Ray actor imports the module of its class: the workers' module brings no LanceDB (1.5 s of every
    actor's start), no Ray and no torch."""
    first, second = _fresh_process("hashplug.integrations.workers",
                                   ("lancedb", "ray", "lance", "torch", "onnx", "pydantic"),
                                   "print(m._EncodeActor.__module__, m._BackfillActor.__module__)\n")
    assert first == "[]"
    assert second == "hashplug.integrations.workers hashplug.integrations.workers"
    from hashplug.integrations import workers

    assert hr._EncodeActor is workers._EncodeActor  # the class write_table maps is the workers' one



def test_a_worker_holds_the_model_to_the_drivers_sha256(digits_model, tmp_path):
    """What an actor does with the driver's reference (no Ray needed): the same file opens; another file at the
    same path, or a layout the model cannot fill, is a ModelMismatchError naming it."""
    from hashplug.integrations import workers
    from hashplug.validation import ModelMismatchError

    X, _, model = digits_model
    ref = hr._model_ref(hr.load_model(model))
    enc, layout = workers.worker_model(ref)
    assert layout == "packed" and enc.file_sha256 == ref["file_sha256"]
    np.testing.assert_array_equal(enc.encode(X[:5]), OnnxEncoder(model).encode(X[:5]))
    with pytest.raises(ModelMismatchError, match="is not the model this table was built with"):
        workers.worker_model({**ref, "file_sha256": "0" * 64})
    with pytest.raises(ModelMismatchError, match="layout='indices'"):
        workers.worker_model({**ref, "layout": "indices"})  # LSH codes are not k-hot
