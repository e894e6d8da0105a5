"""Packaging: every subpackage is in the wheel; the base install serves without torch or onnx."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: source folder -> installed package name (pyproject's [tool.setuptools.package-dir])
MAPPED = {"hashplug": "hashplug", "export": "hashplug.export", "integrations": "hashplug.integrations"}


def _source_packages() -> set[str]:
    pkgs = set()
    for folder, name in MAPPED.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            pkgs.add(".".join((name, *rel)))
    return pkgs


def _setuptools_ok() -> bool:
    try:
        import setuptools
        import wheel  # noqa: F401
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 68


@pytest.mark.skipif(not _setuptools_ok(), reason="needs setuptools>=68 and wheel (the dev extra) to build offline")
def test_wheel_contains_every_subpackage(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = tmp_path.glob("hashplug-*.whl")
    names = zipfile.ZipFile(whl).namelist()
    in_wheel = {str(Path(n).parent).replace("/", ".") for n in names if n.endswith("__init__.py")}
    expected = _source_packages()
    assert {"hashplug", "hashplug.export", "hashplug.integrations"} <= expected
    missing = expected - in_wheel
    assert not missing, f"subpackages missing from the wheel (add them to [tool.setuptools].packages): {missing}"
    assert "hashplug/bench/papers.json" in names  # package data the table bench reads
    # every module file of the sources is shipped
    for folder, name in MAPPED.items():
        for py in (ROOT / folder).glob("*.py"):
            assert f"{name.replace('.', '/')}/{py.name}" in names, py


from _blocker import BLOCKER  # noqa: E402
from _warm import run_python  # noqa: E402

SERVE = r"""
import numpy as np, lancedb, pyarrow as pa
import hashplug
from hashplug.integrations.lancedb import schema, search
from lancedb.embeddings import get_registry
path, db = sys.argv[1], sys.argv[2]
X = np.load(sys.argv[3])
enc = hashplug.OnnxEncoder(path)
codes = enc.encode(X)
func = get_registry().get("hashplug").create(model=path)
tbl = lancedb.connect(db).create_table("t", schema=schema(func, extra={"id": pa.int64()}))
tbl.add(pa.table({"id": np.arange(len(X)), "vector": list(X)}))
res = search(tbl, X[3], limit=5)
assert res["id"].to_pylist()[0] == 3 or res["_distance"].to_pylist()[0] == 0
assert 'torch' not in sys.modules and 'onnx' not in sys.modules
print('served', codes.shape, tbl.count_rows())
"""


def test_serving_runs_with_torch_and_onnx_unimportable(tmp_path):
    """Encode, ingest and search with torch and onnx made unimportable (as on a base install)."""
    import numpy as np

    from hashplug.data import load_digits
    from hashplug.export import to_onnx

    X, _ = load_digits(flat=True)
    enc = __import__("hashplug").get_encoder("lsh", k=32, random_state=0).fit(X)
    onnx_path = to_onnx(enc, tmp_path / "lsh.onnx")
    np.save(tmp_path / "x.npy", X[:200])
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKER + SERVE, str(onnx_path), str(tmp_path / "db"), str(tmp_path / "x.npy")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "served (200, 4) 200" in proc.stdout


def test_training_without_torch_says_which_extra(tmp_path):
    code = BLOCKER + (
        "import numpy as np, hashplug\n"
        "try:\n"
        "    hashplug.get_encoder('biohash', k=2, epochs=1).fit(np.random.rand(50, 8))\n"
        "except ImportError as e:\n"
        "    assert 'hashplug[train]' in str(e), e\n"
        "    print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]


# ---------------------------------------------------------------------------------------------------- light face
#: What edge inference must never load: the training side, the integrations and their heavy dependencies.
HEAVY = (
    "torch", "onnx", "lancedb", "pyarrow", "pydantic", "sklearn", "scipy", "pandas",
    "hashplug.encoders", "hashplug.train", "hashplug.export", "hashplug.integrations", "hashplug.bench",
    "hashplug.data", "hashplug.cli",
)

EDGE = r"""
import sys, numpy as np
import hashplug.runtime
enc = hashplug.OnnxEncoder(sys.argv[1])
codes = enc.encode(np.load(sys.argv[2]))
loaded = sorted(m for m in sys.modules if any(m == h or m.startswith(h + '.') for h in HEAVY))
print('codes', codes.shape, 'heavy', loaded)
print('hashplug modules', sorted(m for m in sys.modules if m.startswith('hashplug')))
"""


@pytest.mark.parametrize("entry", ["import hashplug", "import hashplug.runtime", "import hashplug.index"])
def test_light_face_loads_no_heavy_module(entry, tmp_path):
    import numpy as np

    fixture = ROOT / "tests" / "fixtures" / "v0_1_0"
    code = f"HEAVY = {HEAVY!r}\n{entry}\n" + EDGE
    proc = subprocess.run(
        [sys.executable, "-c", code, str(fixture / "itq_k16.onnx"), str(fixture / "X.npy")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    n = len(np.load(fixture / "X.npy"))
    assert f"codes ({n}, 2) heavy []" in proc.stdout, proc.stdout


@pytest.fixture
def fixture_at_written_path(v0_1_0_at_written_path):
    """The 0.1.0 fixture at the absolute path its tables name (conftest's copy, under a file lock)."""
    return v0_1_0_at_written_path


@pytest.mark.parametrize(
    "imports",
    ["import hashplug\nimport lancedb", "import lancedb\nimport hashplug", "from lancedb.embeddings import get_registry\nimport hashplug\nimport lancedb"],
)
def test_tables_reopen_after_import_hashplug_in_any_order(imports, fixture_at_written_path):
    """LanceDB has no entry points: the face registers the function when LanceDB is (or gets) imported. (In a
    new process forked from the warm interpreter, ``tests/_warm.py``, which has imported neither.)"""
    code = imports + (
        "\nimport numpy as np\n"
        "t = lancedb.connect('/tmp/hashplug-fixture-v0_1_0/db').open_table('dense')\n"
        "x = np.load('/tmp/hashplug-fixture-v0_1_0/X.npy')[3]\n"
        "print('hit', t.search(hashplug.Query(x)).distance_type('hamming').limit(1).to_arrow()['id'][0].as_py())\n"
    )
    proc = run_python(["-c", code], cwd=os.getcwd(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "hit 3" in proc.stdout
