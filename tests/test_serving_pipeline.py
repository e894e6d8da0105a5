"""One serving pipeline (issue 28, deliverable 3): one session factory, validation and conversion once per call,
one embedding-function instance per call, query transforms declared by the model card."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import hashplug

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- sessions
def _session_constructions(text: str) -> list[int]:
    """Lines of a module's source that construct ``onnxruntime.InferenceSession`` (however it was imported)."""
    tree = ast.parse(text)
    ort_names = {"onnxruntime"}
    direct = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            ort_names |= {a.asname or a.name for a in node.names if a.name == "onnxruntime"}
        elif isinstance(node, ast.ImportFrom) and node.module == "onnxruntime":
            direct |= {a.asname or a.name for a in node.names if a.name == "InferenceSession"}
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr == "InferenceSession":
            base = f.value
            if isinstance(base, ast.Name) and base.id in ort_names:
                lines.append(node.lineno)
        elif isinstance(f, ast.Name) and f.id in direct:
            lines.append(node.lineno)
    return lines


def test_only_the_runtime_constructs_onnxruntime_sessions():
    """Every onnxruntime session comes from the runtime's one session factory (its cache): no module of the
    package (hashplug/, export/, integrations/) outside ``hashplug/runtime.py`` constructs one."""
    samples = [  # the walk itself finds each way of writing a construction, so this test can fail
        "import onnxruntime as ort\nort.InferenceSession('a')\n",
        "import onnxruntime\nonnxruntime.InferenceSession('a')\n",
        "from onnxruntime import InferenceSession as S\nS('a')\n",
        "def f():\n    import onnxruntime as rt\n    return rt.InferenceSession(b'')\n",
    ]
    for text in samples:
        assert _session_constructions(text) == [text.count("\n")], text  # on the last line
    assert _session_constructions("import onnxruntime as ort\nort.get_available_providers()\n") == []
    found = {}
    for folder in ("hashplug", "export", "integrations"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            lines = _session_constructions(path.read_text(encoding="utf-8"))
            if lines:
                found[str(path.relative_to(ROOT))] = lines
    assert set(found) == {"hashplug/runtime.py"}, found
    assert len(found["hashplug/runtime.py"]) == 1  # the one constructor, _new_session


def test_scene_sessions_come_from_the_runtime_cache(tmp_path, monkeypatch):
    """OnnxDetector and scene_inputs' image encoder: one cached session per file, made by the runtime."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from hashplug import runtime
    from hashplug.data import scenes

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n", 1, 8, 8])
    y = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", 64])
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 64])
    g = helper.make_graph([helper.make_node("Reshape", ["images", "shape"], ["z"])], "enc", [x], [y], [shape])
    path = tmp_path / "enc.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))

    made = []
    real = runtime._new_session
    monkeypatch.setattr(runtime, "_new_session", lambda *a: made.append(a) or real(*a))
    runtime.clear_session_cache()
    f1 = scenes._onnx_image_encoder(str(path))
    f2 = scenes._onnx_image_encoder(path)
    assert f1(np.ones((2, 1, 8, 8), np.float32)).shape == (2, 64)
    assert f2(np.ones((1, 1, 8, 8), np.float32)).shape == (1, 64)
    assert len(made) == 1  # two encoders, one session, from the factory


# ---------------------------------------------------------------------------------------------- one pass
def _model(tmp_path, X, name="lsh", seed=0):
    from hashplug.export import to_onnx

    kw = {"k": 8, "expansion": 4} if name == "flyhash" else {"k": 32}
    enc = hashplug.get_encoder(name, random_state=seed, **kw).fit(X)
    return to_onnx(enc, tmp_path / f"{name}-{seed}.onnx")


@pytest.fixture
def counts(monkeypatch):
    """Counters of ``check_array`` calls, model checks by the hashplug function (one per configuration and file, however many times LanceDB rebuilds the function) and function lookups."""
    import sys

    import hashplug.integrations.index
    import hashplug.integrations.lancedb
    import hashplug.runtime  # noqa: F401 - every module that binds the names is loaded before they are wrapped
    from hashplug import validation
    from hashplug.integrations import tables
    from hashplug.integrations.function import HashplugEmbeddings

    c = {"check_array": 0, "model_checks": 0, "lookups": 0}
    orig = validation.check_array

    def check_array(*a, **k):
        c["check_array"] += 1
        return orig(*a, **k)

    for mod in list(sys.modules.values()):
        if getattr(mod, "check_array", None) is orig:
            monkeypatch.setattr(mod, "check_array", check_array)
    check = HashplugEmbeddings._load_and_check

    def load_and_check(self):
        c["model_checks"] += 1
        return check(self)

    monkeypatch.setattr(HashplugEmbeddings, "_load_and_check", load_and_check)
    get = tables.get_function

    def get_function(*a, **k):
        c["lookups"] += 1
        return get(*a, **k)

    for mod in list(sys.modules.values()):
        if getattr(mod, "get_function", None) is get:
            monkeypatch.setattr(mod, "get_function", get_function)
    return c


@pytest.mark.parametrize("name,layout", [("lsh", "packed"), ("flyhash", "indices")])
def test_ingest_and_search_validate_once_and_build_one_function(tmp_path, digits, counts, name, layout):
    """One ``hashplug.ingest`` chunk into an existing table: its samples are checked once (not three times) and
    at most one embedding-function instance is built (not three); one ``hashplug.search``: the query is checked
    once and the function looked up once (not twice)."""
    X, _ = digits
    path = _model(tmp_path, X, name)
    t = hashplug.ingest(tmp_path / "db", X[:300], name="t", model=path, layout=layout, progress=False).table
    for k in counts:
        counts[k] = 0
    hashplug.ingest(t, X[300:600], progress=False)
    assert counts["check_array"] == 1
    assert counts["model_checks"] <= 1
    for with_index in (False, True):
        if with_index:
            hashplug.build_hamming_index(t)
        for k in counts:
            counts[k] = 0
        res = hashplug.search(t, X[7], limit=5)
        assert res.schema.metadata[b"hashplug.search_path"].startswith(b"hashplug-index" if with_index else b"lancedb")
        assert counts == {"check_array": 1, "model_checks": counts["model_checks"], "lookups": 1}
        assert counts["model_checks"] <= 1
    # a swapped model file under the table: refused by a fresh process (this one keeps the model it verified)
    import lancedb

    from hashplug.integrations.tables import model_location

    stored = Path(model_location(t)["resolved"])  # the table's own copy, in its database's model store
    assert stored.is_file() and stored.parent.parent.parent == tmp_path / "db"
    stored.write_bytes(_model(tmp_path, X, name, seed=1).read_bytes())
    # this process found the model by content (its sha256, checked when first read) and keeps answering with
    # the right one; a fresh process reads the swapped file and refuses it
    ok = hashplug.search(lancedb.connect(tmp_path / "db").open_table("t"), X[0], limit=3)
    assert ok["_distance"].to_pylist()[0] == 0.0
    from _warm import run_python

    code = (f"import lancedb, numpy as np, hashplug\n"
            f"t = lancedb.connect({str(tmp_path / 'db')!r}).open_table('t')\n"
            f"hashplug.search(t, np.zeros(64, np.float32), limit=3)\n")
    proc = run_python(["-c", code], cwd=tmp_path, timeout=120)  # a new process (no hashplug state)
    assert proc.returncode != 0
    assert "ModelMismatchError" in proc.stderr or "ModelFileError" in proc.stderr, proc.stderr[-2000:]


# ---------------------------------------------------------------------------------------------- the binding
def test_the_hamming_index_knows_nothing_of_lancedb(tmp_path, digits):
    """build_hamming_index returns a BoundIndex (table, column, version, binding, prefilter cache) holding a plain
    HammingIndex; the index's save format carries the binding as generic metadata, read back as such."""
    from hashplug.index import HammingIndex
    from hashplug.integrations.index import BoundIndex

    X, _ = digits
    t = hashplug.ingest(tmp_path / "db", X[:200], name="t", model=_model(tmp_path, X), progress=False).table
    bound = hashplug.build_hamming_index(t)
    assert isinstance(bound, BoundIndex) and isinstance(bound.index, HammingIndex)
    assert (bound.column, bound.table_version, len(bound)) == ("code", t.version, 200)
    plain = vars(bound.index)
    assert not {"table_version", "model_sha256", "binding", "folder", "column", "_pinned", "_prefilter_cache"} & set(plain)
    loaded = HammingIndex.load(bound.folder)
    assert loaded.metadata == {"table_version": t.version, "model_sha256": bound.model_sha256,
                               "table": bound.binding}
    source = (ROOT / "integrations" / "index.py").read_text()
    assert "attr-defined" not in source  # nothing bolted onto the index from outside
    from hashplug.integrations.index import catch_up  # a bare index (0.2's form) still catches up

    hashplug.add(t, X[200:250])
    assert catch_up(loaded, t, "code")["added"] == 50
    assert len(loaded) == 250 and loaded.metadata["table_version"] == t.version


def test_index_metadata_is_generic_and_the_old_attributes_warn(tmp_path):
    from hashplug.index import HammingIndex

    idx = HammingIndex("packed", 16)
    idx.add(np.arange(6, dtype=np.uint8).reshape(3, 2), np.arange(3))
    idx.metadata = {"source": "my-parquet", "rows_at": 3}
    loaded = HammingIndex.load(idx.save(tmp_path / "ix"))
    assert loaded.metadata["source"] == "my-parquet" and loaded.metadata["rows_at"] == 3
    with pytest.warns(DeprecationWarning, match="HammingIndex.table_version is deprecated"):
        idx.table_version = 5
    assert idx.metadata["table_version"] == 5
    with pytest.warns(DeprecationWarning, match="HammingIndex.binding is deprecated"):
        assert idx.binding is None
    idx.metadata = {"layout": "x"}
    with pytest.raises(hashplug.HashplugError, match=r"manifest's own keys \['layout'\]"):
        idx.save(tmp_path / "iy")


# ---------------------------------------------------------------------------------------------- transforms
def test_search_names_no_model_inputs():
    """search.py holds the generic call: no input name of any model is written in it."""
    tree = ast.parse((ROOT / "integrations" / "search.py").read_text(encoding="utf-8"))
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert not [s for s in strings if "object_mask" in s or "object_positions" in s]


def test_object_weighting_is_declared_by_the_card_inputs():
    """The conditional-query transform is found from the card's inputs (a 0/1 mask domain, positions valid
    where the mask is set, one per-object weight with a default), whatever the inputs are called."""
    from types import SimpleNamespace

    from hashplug.integrations.transforms import ObjectWeighting

    def card(domains, specs):
        return SimpleNamespace(multi_input=True, input_specs=specs, input_domains=domains)

    specs = [("img", (16,), None), ("boxes_c", (5, 2), None), ("present", (5,), None), ("w", (5,), 1.0),
             ("w_img", (1,), 1.0)]
    doms = {"present": {"values": [0, 1]}, "boxes_c": {"range": [0, 1], "where": "present"}}
    assert ObjectWeighting.from_card(card(doms, specs)) == ObjectWeighting("present", "boxes_c", "w")
    assert ObjectWeighting.from_card(card({}, specs)) is None  # nothing declared
    assert ObjectWeighting.from_card(card(doms, specs[:3])) is None  # no weight input with a default
    assert ObjectWeighting.from_card(SimpleNamespace(multi_input=False)) is None
    q = hashplug.Query({"img": np.zeros(16), "boxes_c": np.array([[0.1, 0.1], [0.9, 0.9], [0, 0], [0, 0], [0, 0]]),
                        "present": np.array([1, 1, 0, 0, 0])})
    out = ObjectWeighting("present", "boxes_c", "w")(q, focus=1, eta_weight=4.0)
    np.testing.assert_array_equal(out.named["w"], np.array([1, 4, 0, 0, 0], np.float32))  # padding weighs 0


def test_named_inputs_are_checked_once_per_field_at_ingest(tmp_path, counts):
    """A struct source column (NeuroHash's named inputs): each field is checked once per chunk (was three times),
    the card's defaults and value domains still apply, and the codes are the encoder's own."""
    pytest.importorskip("torch")
    import pyarrow as pa
    from test_neurohash import scene_batch

    from hashplug.encoders.neurohash import NeuroHash
    from hashplug.export import to_onnx
    from hashplug.integrations.arrow import struct_column

    X, y = scene_batch(120, 0)
    enc = NeuroHash(k=16, D=64, z_prime=8, hdc_epochs=1, epochs=1, device="cpu", random_state=0).fit(X, y)
    path = to_onnx(enc, tmp_path / "nh.onnx")
    rows = pa.table({"id": pa.array(np.arange(120)), "scene": struct_column(X)})
    t = hashplug.ingest(tmp_path / "db", rows.slice(0, 60), name="s", model=path, source_column="scene",
                        progress=False).table
    for k in counts:
        counts[k] = 0
    hashplug.ingest(t, rows.slice(60), source_column="scene", progress=False)
    assert counts["check_array"] == len(X) and counts["model_checks"] <= 1  # one per field
    got = np.stack(t.to_arrow().sort_by("id")["code"].to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(got, enc.encode(X))
    bad = {**X, "object_mask": np.where(X["object_mask"] > 0, 2.0, 0.0).astype(np.float32)}
    with pytest.raises(hashplug.HashplugError, match="object_mask"):  # the card's domain, checked once
        hashplug.ingest(t, pa.table({"id": pa.array(np.arange(120)), "scene": struct_column(bad)}),
                        source_column="scene", progress=False)
