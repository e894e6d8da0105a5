"""Encoders with several named inputs (NeuroHash) in LanceDB: a struct source column, search, conditional
queries, ingest and update, and torch-free serving."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
lancedb = pytest.importorskip("lancedb")

from _blocker import BLOCKER  # noqa: E402
from test_neurohash import scene_batch  # noqa: E402

import hashplug  # noqa: E402
from hashplug.encoders.neurohash import NeuroHash  # noqa: E402
from hashplug.export import to_onnx  # noqa: E402
from hashplug.hdc import conditional_eta  # noqa: E402
from hashplug.integrations.arrow import column_to_inputs  # noqa: E402
from hashplug.integrations.function import Query  # noqa: E402
from hashplug.integrations.lancedb import schema  # noqa: E402
from hashplug.validation import HashplugError  # noqa: E402

N = 240


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    X, y = scene_batch(N, 0)
    enc = NeuroHash(k=16, D=128, z_prime=8, hdc_epochs=2, epochs=2, device="cpu", random_state=0).fit(X, y)
    path = to_onnx(enc, tmp_path_factory.mktemp("nh") / "nh.onnx")
    return enc, path, X


def _rows(X, ids):
    return [{"id": int(i), "scene": {k: X[k][i].tolist() for k in X}} for i in ids]


@pytest.fixture()
def table(model, tmp_path):
    enc, path, X = model
    from lancedb.embeddings import get_registry

    func = get_registry().get("hashplug").create(model=str(path))
    db = lancedb.connect(tmp_path / "db")
    t = db.create_table("scenes", schema=schema(func, source="scene", extra={"id": pa.int64()}))
    t.add(_rows(X, range(N)))
    return t


def test_struct_source_column_holds_the_required_inputs(table):
    st = table.schema.field("scene").type
    assert pa.types.is_struct(st)
    assert [st.field(i).name for i in range(st.num_fields)] == [
        "global_features", "object_features", "object_positions", "object_mask"
    ]


def test_codes_written_by_lancedb_equal_the_encoder(model, table):
    enc, _, X = model
    got = table.to_arrow().sort_by("id")["code"].combine_chunks()
    np.testing.assert_array_equal(np.stack(got.to_numpy(zero_copy_only=False)), enc.encode(X))


def test_search_with_named_inputs_and_conditional_weights(model, table):
    enc, _, X = model
    i = int(np.flatnonzero(X["object_mask"].sum(1) >= 2)[0])
    q = {k: v[i] for k, v in X.items()}
    res = hashplug.search(table, q, limit=5)
    assert res["id"][0].as_py() == i and res["_distance"][0].as_py() == 0.0
    # brute force over the table's codes gives the same distances
    codes = enc.encode(X, layout="pm1").astype(np.int32)
    d = (16 - codes @ codes[i]) / 2
    assert sorted(res["_distance"].to_pylist()) == sorted(np.sort(d)[:5].tolist())
    # focus on object 1: the query code is the encoder's code with eta = 10 on that slot
    eta = conditional_eta(X["object_positions"][i : i + 1], X["object_mask"][i : i + 1], focus=1)
    want = enc.encode({**{k: v[i : i + 1] for k, v in X.items()}, "eta": eta}, layout="pm1").astype(np.int32)[0]
    res_f = hashplug.search(table, q, limit=5, focus=1)
    d_f = (16 - codes @ want) / 2
    assert sorted(res_f["_distance"].to_pylist()) == sorted(np.sort(d_f)[:5].tolist())
    region = hashplug.search(table, q, limit=5, region=(0.0, 0.0, 1.0, 1.0))  # every object weighted alike
    eta_all = np.where(X["object_mask"][i] > 0, 10.0, 0.0)
    np.testing.assert_array_equal(
        region["_distance"].to_numpy(), hashplug.search(table, q, limit=5, eta=eta_all)["_distance"].to_numpy()
    )
    with pytest.raises(HashplugError, match="one of eta=, focus= or region="):
        hashplug.search(table, q, limit=5, focus=0, region=(0, 0, 1, 1))
    with pytest.raises(HashplugError, match="named inputs"):
        hashplug.search(table, X["global_features"][i], limit=5)


def test_lancedb_native_search_and_query_strings(model, table):
    _, _, X = model
    q = Query({k: v[3] for k, v in X.items()})
    back = Query.from_string(str(q))
    assert set(back.named) == set(q.named) and all(np.array_equal(back.named[k], q.named[k]) for k in q.named)
    res = table.search(q, vector_column_name="code").distance_type("hamming").limit(3).to_arrow()
    assert res["id"][0].as_py() == 3 or res["_distance"][0].as_py() == 0.0


def test_ingest_and_update(model, tmp_path):
    enc, path, X = model
    from lancedb.embeddings import get_registry

    func = get_registry().get("hashplug").create(model=str(path))
    db = lancedb.connect(tmp_path / "db2")
    t = db.create_table("s", schema=schema(func, source="scene", extra={"id": pa.int64()}))
    struct = pa.StructArray.from_arrays(
        [pa.array(list(X[k].tolist())) for k in ("global_features", "object_features", "object_positions", "object_mask")],
        names=["global_features", "object_features", "object_positions", "object_mask"],
    )
    batch = pa.table({"id": pa.array(np.arange(N)), "scene": struct})
    hashplug.ingest(t, batch, source_column="scene", chunk_size=100, progress=False)
    assert t.count_rows() == N
    got = np.stack(t.to_arrow().sort_by("id")["code"].to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(got, enc.encode(X))
    from hashplug.integrations.tables import update

    with pytest.raises(HashplugError, match="id_column"):
        update(t, where="id = 0", values={"scene": {k: v[7] for k, v in X.items()}})
    # the upsert path instead: row 0 takes scene 7
    one = pa.table({"id": pa.array([0]), "scene": struct.take([7])})
    hashplug.ingest(t, one, source_column="scene", id_column="id", progress=False)
    assert t.count_rows() == N
    row0 = t.search().where("id = 0").to_arrow()
    np.testing.assert_array_equal(np.asarray(row0["code"][0].as_py(), np.uint8), enc.encode(X)[7])


def test_column_to_inputs_errors(model):
    enc, path, X = model
    from hashplug.runtime import OnnxEncoder

    specs = OnnxEncoder(path).card.input_specs
    with pytest.raises(HashplugError, match=r"fields \['bogus'\] are unknown and \['object_mask'\] are missing"):
        column_to_inputs({"bogus": 1, **{k: X[k] for k in ("global_features", "object_features", "object_positions")}},
                         specs)
    bad = dict(X)
    bad["object_features"] = X["object_features"][:, :2]
    with pytest.raises(HashplugError, match="object_features"):
        column_to_inputs(bad, specs)
    with pytest.raises(HashplugError, match="struct column"):
        column_to_inputs(np.zeros((3, 4)), specs)


def test_serving_needs_no_torch(model, tmp_path):
    _, path, X = model
    np.savez(tmp_path / "x.npz", **X)
    code = BLOCKER + f"""
import numpy as np
from hashplug.runtime import OnnxEncoder
X = dict(np.load({str(tmp_path / 'x.npz')!r}))
onx = OnnxEncoder({str(path)!r})
c = onx.encode(X)
print(c.shape)
import sys
assert not any(m.split('.')[0] in ('torch', 'onnx') for m in sys.modules if sys.modules[m] is not None)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"({N}, 2)"


@pytest.mark.parametrize("source_type", ["list", "fixed"])
def test_struct_column_round_trips_through_column_to_inputs(model, source_type):
    _, path, X = model
    from hashplug.integrations.arrow import struct_column
    from hashplug.runtime import OnnxEncoder

    col = struct_column(X, source_type=source_type)
    assert col.type.field("object_features").type == (
        pa.list_(pa.list_(pa.float32())) if source_type == "list" else pa.list_(pa.list_(pa.float32(), 12), 3)
    )
    back = column_to_inputs(col, OnnxEncoder(path).card.input_specs)
    for k, v in X.items():
        np.testing.assert_array_equal(back[k], v.astype(np.float32))
    with pytest.raises(HashplugError, match="batch axis"):
        struct_column({"a": np.float32(1.0)})
