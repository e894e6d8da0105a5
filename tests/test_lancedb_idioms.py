"""Issue 27, item 7 and the search / reranker / registration crashes: LanceDB idioms that answered wrongly or
crashed, each made an error where hashplug code runs, or made to work as the README documents it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Optional

import lancedb
import numpy as np
import pyarrow as pa
import pytest
from lancedb.embeddings import get_registry
from lancedb.pydantic import LanceModel, Vector
from test_integrations_lancedb import brute_hamming, make_model

import hashplug
from hashplug.integrations import lancedb as hl
from hashplug.integrations.search import MAX_LIMIT
from hashplug.validation import HashplugError, HashplugTypeError, TableSchemaError

pytest.importorskip("onnx")  # the fixtures export a tiny model; the code under test never imports onnx

ROOT = Path(__file__).resolve().parents[1]
N = 300


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A 16-feature, 32-bit (4-byte) model and a table whose samples are a float vector column too."""
    root = tmp_path_factory.mktemp("idioms")
    path, ref = make_model(root / "enc.onnx")
    func = get_registry().get("hashplug").create(model=str(path))
    X = np.random.default_rng(3).standard_normal((N, 16)).astype(np.float32)
    db = lancedb.connect(root / "db")
    tbl = db.create_table("t", schema=hl.schema(func, source_type="fixed", extra={"id": pa.int64()}))
    tbl.add(pa.table({"id": np.arange(N), "vector": list(X)}))
    return {"root": root, "path": path, "func": func, "X": X, "P": ref(X), "db": db, "tbl": tbl}


# ------------------------------------------------------------------------------------------ item 7: LanceModel
@pytest.mark.parametrize("decl", ["Vector(func.ndims())", "list[float]", "Optional[Vector(func.ndims())]",
                                  "Vector(8, value_type=pa.uint8())"])
def test_float_or_wrong_code_declaration_fails_at_class_creation(world, decl):
    func = world["func"]
    ns = {"func": func, "Vector": Vector, "pa": pa, "Optional": Optional, "LanceModel": LanceModel}
    src = textwrap.dedent(f"""
        class Row(LanceModel):
            id: int
            vector: list[float] = func.SourceField()
            code: {decl} = func.VectorField()
    """)
    with pytest.raises(TableSchemaError) as err:  # (dont_inherit: evaluated annotations, as in most user code)
        exec(compile(src, "<user model>", "exec", dont_inherit=True), ns)  # noqa: S102
    msg = str(err.value)
    assert "'code'" in msg and "code: Vector(4, value_type=pa.uint8()) = func.VectorField()" in msg


def test_vector_source_declaration_fails_at_class_creation(world):
    func = world["func"]
    with pytest.raises(TableSchemaError, match=r"vector: list\[float\] = func.SourceField\(\)"):

        class Row(LanceModel):
            vector: Vector(16) = func.SourceField()
            code: Vector(func.ndims(), value_type=pa.uint8()) = func.VectorField()


def test_the_right_declaration_works_without_a_default(world, tmp_path):
    func, X, P = world["func"], world["X"], world["P"]

    class Row(LanceModel):
        id: int
        vector: list[float] = func.SourceField()
        code: Vector(func.ndims(), value_type=pa.uint8()) = func.VectorField()

    tbl = lancedb.connect(tmp_path / "db").create_table("ok", schema=Row)
    tbl.add([Row(id=i, vector=X[i].tolist()) for i in range(50)])  # no code given: the function computes it
    assert tbl.schema.field("code").type == pa.list_(pa.uint8(), 4)
    res = tbl.search(hashplug.Query(X[7])).distance_type("hamming").limit(3).to_arrow()
    assert res["id"][0].as_py() == 7
    np.testing.assert_array_equal(res["_distance"].to_numpy(), brute_hamming(P[:50], P[7])[res["id"].to_numpy()])


def test_indices_layout_cannot_be_a_lance_model(world, tmp_path):
    path, _ = make_model(tmp_path / "khot.onnx", m=64, k=6)
    func = get_registry().get("hashplug").create(model=str(path), layout="indices")
    with pytest.raises(TableSchemaError, match=r"schema\(func"):
        func.VectorField()


# --------------------------------------------------------------------------------- item 2: limit and rerankers
def test_limit_is_bounded_with_a_clear_error(world):
    tbl, X = world["tbl"], world["X"]
    for use_hamming_index in (False, None):
        with pytest.raises(HashplugError, match=r"limit=1000000000000 .*limit=table.count_rows\(\)"):
            hashplug.search(tbl, X[0], limit=10**12, use_hamming_index=use_hamming_index)
    res = hashplug.search(tbl, X[0], limit=MAX_LIMIT, use_hamming_index=False)
    assert res.num_rows == N
    # the reranker's over-fetch (limit * 4) is capped too, instead of overflowing inside LanceDB
    res = hashplug.search(tbl, X[0], limit=2**31 - 1, reranker=hashplug.HammingReranker(), use_hamming_index=False)
    assert res.num_rows == N and res["id"][0].as_py() == 0


def test_cli_search_limit_too_large_is_one_line(world, capsys):
    from hashplug.cli import main

    argv = ["search", "--db", str(world["root"] / "db"), "--table", "t", "--query", str([0.5] * 16),
            "--limit", str(10**12)]
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "--limit" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_search_refuses_an_object_that_is_not_a_reranker(world):
    with pytest.raises(HashplugTypeError, match=r"reranker must be a LanceDB reranker.*got object"):
        hashplug.search(world["tbl"], world["X"][0], reranker=object())


def test_search_columns_may_name_the_distance(world):
    """columns=['id', '_distance'] crashed inside LanceDB ("Duplicate column name: _distance")."""
    res = hashplug.search(world["tbl"], world["X"][4], limit=3, columns=["id", "_distance"], use_hamming_index=False)
    assert res.column_names == ["id", "_distance"] and res["id"][0].as_py() == 4


def _readme_reranker_lines() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("These calls work as written", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    return [ln.strip() for ln in block.strip().splitlines()]


def test_readme_reranker_calls_work_as_written(world):
    """The README's lines, run verbatim: each returns the Hamming-nearest rows, in Hamming order."""
    tbl, X, P = world["tbl"], world["X"], world["P"]
    lines = _readme_reranker_lines()
    assert lines[0] == "q = hashplug.Query(x)" and len(lines) == 6
    i = 11
    ns = {"hashplug": hashplug, "tbl": tbl, "x": X[i], "code": P[i]}
    exec(lines[0], ns)  # noqa: S102
    d = brute_hamming(P, P[i])
    for line in lines[1:]:
        res = eval(line, ns)  # noqa: S307 - the README's line, verbatim
        ids = np.asarray(res["id"].to_pylist())
        assert len(ids) == 10 and ids[0] == i, line
        if "FloatRescoreReranker" in line:  # Hamming candidates, ordered by the exact cosine distance
            fd = np.asarray(res["_float_distance"].to_pylist())
            Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
            np.testing.assert_allclose(fd, 1 - Xn[ids] @ Xn[i], atol=1e-5, err_msg=line)
            assert np.all(np.diff(fd) >= 0), line
            continue
        ham = np.asarray(res["_hamming"].to_pylist())
        np.testing.assert_array_equal(ham, d[ids], err_msg=line)
        assert np.all(np.diff(ham) >= 0), line
        if "hashplug.search(" in line:  # exact: the 10 nearest of the table
            np.testing.assert_array_equal(ham, np.sort(d)[:10], err_msg=line)


def test_query_is_its_exact_string(world):
    x = world["X"][5]
    q = hashplug.Query(x)
    assert isinstance(q, str) and q == str(q) and hashplug.Query(str(q)).x.tobytes() == q.x.tobytes()
    with pytest.raises(HashplugError, match="not a hashplug query string"):
        hashplug.Query("plain text")


# --------------------------------------------------------------------- item 3: reopening without import hashplug
_REOPEN = """
import sys
assert not any(m == "hashplug" or m.startswith("hashplug.integrations") for m in sys.modules), "hashplug imported"
{pre}
import lancedb, numpy as np, pyarrow as pa
tbl = lancedb.connect(sys.argv[1]).open_table("t")
n = tbl.count_rows()
tbl.add(pa.table({{"id": np.arange(3) + 10_000, "vector": list(np.ones((3, 16), np.float32))}}))
print("rows", n, tbl.count_rows())
"""


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=str(Path(args[0]).parent) if args else None)


def test_installed_environment_reopens_without_import_hashplug(world, tmp_path):
    """What a user runs: a fresh interpreter of this environment, only `import lancedb`."""
    import sysconfig

    from hashplug._lancedb_hook import PTH_LINE, PTH_NAME

    pth = Path(sysconfig.get_paths()["purelib"]) / PTH_NAME
    assert pth.is_file() and pth.read_text() == PTH_LINE, f"{pth} missing or stale: reinstall (pip install -e .)"
    db = tmp_path / "db"
    lancedb.connect(db).create_table("t", schema=hl.schema(world["func"], extra={"id": pa.int64()}))
    proc = _run(_REOPEN.format(pre=""), str(db))
    assert proc.returncode == 0 and "rows 0 3" in proc.stdout, proc.stderr[-2000:]
    # and start-up loads nothing heavy: the hook module only
    proc = _run("import sys; print(sorted({'numpy', 'lancedb', 'pyarrow', 'hashplug', 'hashplug._lancedb_hook'}"
                " & set(sys.modules)))", str(db))
    assert proc.stdout.strip() == "['hashplug._lancedb_hook']", proc.stdout + proc.stderr


def _setuptools_ok() -> bool:
    try:
        import setuptools
        import wheel  # noqa: F401
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 68


@pytest.mark.skipif(not _setuptools_ok(), reason="needs setuptools>=68 and wheel (the dev extra) to build offline")
def test_wheel_ships_the_pth_file(tmp_path):
    import zipfile

    from hashplug._lancedb_hook import PTH_LINE, PTH_NAME

    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w",
         str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = tmp_path.glob("hashplug-*.whl")
    with zipfile.ZipFile(whl) as z:
        assert z.read(PTH_NAME).decode() == PTH_LINE
        assert re.search(rf"^{re.escape(PTH_NAME)},sha256=", z.read(
            next(n for n in z.namelist() if n.endswith("dist-info/RECORD"))).decode(), re.M)


# ------------------------------------------------------------------------------ item 4: readers in other processes
def test_stale_reader_is_warned_and_a_consistent_reader_sees_the_writer(world, tmp_path):
    db_path = tmp_path / "db"
    X = world["X"]
    tbl = lancedb.connect(db_path).create_table("t", schema=hl.schema(world["func"], extra={"id": pa.int64()}))
    tbl.add(pa.table({"id": np.arange(100), "vector": list(X[:100])}))
    stale = lancedb.connect(db_path).open_table("t")
    fresh = lancedb.connect(db_path, read_consistency_interval=timedelta(0)).open_table("t")
    # the writer: another connection, as another process has (LanceDB handles share no state; an in-process
    # writer keeps the test fast and deterministic)
    lancedb.connect(db_path).open_table("t").add(pa.table({"id": np.arange(100, 300), "vector": list(X[100:300])}))
    with pytest.warns(hashplug.StaleTableWarning, match=r"read_consistency_interval"):
        res = hashplug.search(stale, X[250], limit=1)
    assert res["id"][0].as_py() != 250  # LanceDB's default handle answers from its old version
    assert int(res.schema.metadata[b"hashplug.table_version"]) < hl.latest_version(stale)
    with warnings.catch_warnings():
        warnings.simplefilter("error", hashplug.StaleTableWarning)
        res = hashplug.search(fresh, X[250], limit=1)
    assert res["id"][0].as_py() == 250


# --------------------------------------------------------------------------------------- item 5: column names
@pytest.mark.parametrize("kw", [{"target": "/abs/dir/x"}, {"target": "a\\b"}, {"target": ".."},
                                {"source": "../v"}, {"target": "co\0de"}, {"source": ""}, {"target": " code"},
                                {"source": "code"}, {"target": "_distance"}])
def test_schema_refuses_unsafe_column_names(world, kw):
    with pytest.raises(HashplugError, match=r"source|target"):
        hl.schema(world["func"], **kw)
    with pytest.raises(HashplugError, match=r"source|target"):
        hl.lance_model(world["func"], **kw)
