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
    found = {}
    for folder in ("hashplug", "export", "integrations"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            lines = _session_constructions(path.read_text(encoding="utf-8"))
            if lines:
                found[str(path.relative_to(ROOT))] = lines
    assert set(found) == {"hashplug/runtime.py"}, found
    assert len(found["hashplug/runtime.py"]) == 1  # the one constructor, _new_session


def test_the_walk_sees_every_spelling_of_a_construction():
    """The AST walk itself finds each way of writing a construction (else the test above could not fail)."""
    samples = [
        "import onnxruntime as ort\nort.InferenceSession('a')\n",
        "import onnxruntime\nonnxruntime.InferenceSession('a')\n",
        "from onnxruntime import InferenceSession as S\nS('a')\n",
        "def f():\n    import onnxruntime as rt\n    return rt.InferenceSession(b'')\n",
    ]
    for text in samples:
        assert _session_constructions(text) == [text.count("\n")], text  # on the last line
    assert _session_constructions("import onnxruntime as ort\nort.get_available_providers()\n") == []


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
def _model(tmp_path, X, name="lsh", layout="packed"):
    from hashplug.export import to_onnx

    kw = {"k": 8, "expansion": 4} if name == "flyhash" else {"k": 32}
    enc = hashplug.get_encoder(name, random_state=0, **kw).fit(X)
    return to_onnx(enc, tmp_path / f"{name}.onnx")


@pytest.fixture
def counts(monkeypatch):
    """Counters of ``check_array`` calls, hashplug function instances built and function lookups."""
    import sys

    import hashplug.integrations.index
    import hashplug.integrations.lancedb
    import hashplug.runtime  # noqa: F401 - every module that binds the names is loaded before they are wrapped
    from hashplug import validation
    from hashplug.integrations import tables
    from hashplug.integrations.function import HashplugEmbeddings

    c = {"check_array": 0, "functions": 0, "lookups": 0}
    orig = validation.check_array

    def check_array(*a, **k):
        c["check_array"] += 1
        return orig(*a, **k)

    for mod in list(sys.modules.values()):
        if getattr(mod, "check_array", None) is orig:
            monkeypatch.setattr(mod, "check_array", check_array)
    post = HashplugEmbeddings.model_post_init

    def model_post_init(self, ctx):
        c["functions"] += 1
        return post(self, ctx)

    monkeypatch.setattr(HashplugEmbeddings, "model_post_init", model_post_init)
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
    assert counts["functions"] <= 1
    for with_index in (False, True):
        if with_index:
            hashplug.build_index(t)
        for k in counts:
            counts[k] = 0
        res = hashplug.search(t, X[7], limit=5)
        assert res.schema.metadata[b"hashplug.search_path"].startswith(b"hashplug-index" if with_index else b"lancedb")
        assert counts == {"check_array": 1, "functions": counts["functions"], "lookups": 1}
        assert counts["functions"] <= 1
