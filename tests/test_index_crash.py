"""Crash and process tests of the index (issue 27, deliverables 2 and 6): a writer SIGKILLed mid-save (between
the arrays and the manifest, halfway through the arrays) or mid-catch-up leaves a whole index (the old one),
and the next search is exact; processes search while another process writes and saves.

Children are separate interpreters (``subprocess``: LanceDB hangs after fork); a child kills itself with
SIGKILL at the exact point under test (a patched call), so nothing depends on timing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _index_helpers import assert_exact, at_version, model  # noqa: E402
from _warm import run_python, spawn_python  # noqa: E402

import hashplug  # noqa: E402
from hashplug.index import HammingIndex  # noqa: E402
from hashplug.integrations import index as ix  # noqa: E402
from hashplug.integrations.search import query_code  # noqa: E402

lancedb = pytest.importorskip("lancedb")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and flock are POSIX")

_CHILD = r"""
import os, signal, sys
import numpy as np
import hashplug
from hashplug.integrations import index as ix
db, point = sys.argv[1], sys.argv[2]
X = np.load(os.path.join(os.path.dirname(db), "X.npy"))
import lancedb
t = lancedb.connect(db).open_table("t")
hashplug.add(t, {"vector": list(X[900:1000])})
t.delete("_rowid % 5 = 0")
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
if point == "before-manifest":  # the arrays file is whole, the manifest not yet replaced
    real = os.replace
    os.replace = lambda a, b: die() if str(b).endswith("index.json") else real(a, b)
elif point == "mid-arrays":  # half of the arrays written
    def half(f, **arrays):
        f.write(b"PK\x03\x04" + b"\x00" * 1000)
        f.flush()
        die()
    np.savez = half
elif point == "mid-catch-up":  # the deleted rows dropped, the new ones being read
    if hasattr(ix, "_scan"):  # issue 31: the new fragments' codes read by one Lance scan
        real_scan = ix._scan
        ix._scan = lambda ds, column, frags=None: die() if column and frags else real_scan(ds, column, frags)
    else:  # before issue 31: by _rowid IN (...) queries (_read_codes before issue 27)
        name = "_read" if hasattr(ix, "_read") else "_read_codes"
        real_read = getattr(ix, name)
        setattr(ix, name, lambda h, column, where=None: die() if where else real_read(h, column, where))
refresh = getattr(hashplug, "refresh_hamming_index", None)
if refresh is None:  # before issue 27 the search saved the caught-up index
    hashplug.search(t, X[0], limit=1)
else:
    refresh(t)
print("not killed")
"""


def _manifest(folder: Path) -> dict:
    meta = json.loads((folder / "index.json").read_text())
    return {**meta, "arrays_file": meta.get("arrays_file", "index.npz")}


def _run_child(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -c code *args`` in a new process (forked from the warm interpreter, ``tests/_warm.py``)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return run_python(["-c", code, *map(str, args)], cwd=os.getcwd(), env=env, timeout=timeout)


@pytest.mark.parametrize("point", ["before-manifest", "mid-arrays", "mid-catch-up"])
def test_sigkill_mid_save_or_catch_up_leaves_a_whole_index(tmp_path, digits, point):
    """Old code: a kill between the index.npz and index.json writes made every later search raise
    ModelFileError (8 of 8); here the old index stays whole, searches are exact and the next save cleans up."""
    X, _ = digits
    path = model(tmp_path, X)
    db = tmp_path / "db"
    np.save(tmp_path / "X.npy", X)  # the children's data (no sklearn import there)
    t = hashplug.ingest(db, X[:900], name="t", model=path, progress=False).table
    folder = hashplug.build_hamming_index(t).folder
    saved = _manifest(folder)
    proc = _run_child(_CHILD, db, point)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    assert _manifest(folder)["arrays_file"] == saved["arrays_file"]  # the old index, whole
    old = HammingIndex.load(folder)
    assert old.table_version == saved["table_version"] and len(old) == 900
    ix._CACHE.clear()
    t = lancedb.connect(str(db)).open_table("t")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # caught up, not rebuilt: the old index is good
        idx = ix.open_hamming_index(t)
    assert idx.table_version == t.version and len(idx) == t.count_rows()
    h = at_version(t, idx.table_version)
    for r in (3, 950, 1500):
        code = query_code(t, X[r])
        ids, dist = ix.hamming_index_search(idx, t, code.reshape(1, -1), 12)
        assert_exact(ids[0], dist[0], h, code, 12)
        res = hashplug.search(t, X[r], limit=12)
        np.testing.assert_array_equal(res["_distance"].to_numpy(), dist[0].astype(np.float32))
    hashplug.refresh_hamming_index(t)  # the next save removes what the killed writer left
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(["index.json", "index.lock", _manifest(folder)["arrays_file"]]), names


_READER = r"""
import json, sys, time
from datetime import timedelta
from pathlib import Path
import numpy as np
import lancedb
import hashplug
from hashplug.integrations import index as ix
from hashplug.integrations.search import hamming_to_query, query_code
db, stop, ready = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[4])
X = np.load(Path(db).parent / "X.npy")
conn = lancedb.connect(db, read_consistency_interval=timedelta(0))
t = conn.open_table("t")
out = {"checked": 0, "errors": [], "versions": set()}
rng = np.random.default_rng(int(sys.argv[3]))
handles = {}
while True:
    last = (stop.exists() and out["checked"] >= 5) or len(out["errors"]) > 20
    try:
        idx = ix.open_hamming_index(t, backend="numpy")
        r = int(rng.integers(0, 1797))
        code = query_code(t, X[r])
        ids, dist = ix.hamming_index_search(idx, t, code.reshape(1, -1), 10)
        h = handles.get(idx.table_version)
        if h is None:
            h = handles[idx.table_version] = lancedb.connect(db).open_table("t")
            h.checkout(idx.table_version)
        tb = h.search().with_row_id(True).select(["code"]).limit(None).to_arrow()
        D = hamming_to_query(code, tb["code"])
        true = dict(zip(tb["_rowid"].to_numpy().tolist(), D.tolist()))
        assert len(set(ids[0].tolist())) == len(ids[0])
        assert [true[i] for i in ids[0].tolist()] == dist[0].tolist()
        assert dist[0].tolist() == sorted(D.tolist())[:10]
        res = hashplug.search(t, X[r], limit=10)
        assert res.num_rows == 10
        out["checked"] += 1
        out["versions"].add(idx.table_version)
        ready.write_text("1")  # after the first search (the warm-up): the writer starts now
    except Exception as exc:
        out["errors"].append(f"{type(exc).__name__}: {exc}"[:300])
    if last:
        break
out["versions"] = sorted(out["versions"])
print(json.dumps(out))
"""

_WRITER = r"""
import sys
from pathlib import Path
import numpy as np
import lancedb
import hashplug
db, stop, ready = sys.argv[1], Path(sys.argv[2]), [Path(p) for p in sys.argv[3:]]
X = np.load(Path(db).parent / "X.npy")
t = lancedb.connect(db).open_table("t")
import time
while not all(p.exists() for p in ready):
    time.sleep(0.05)
for s in range(900, 1700, 100):
    hashplug.add(t, {"vector": list(X[s:s + 100])})
    t.delete(f"_rowid % 11 = {s % 11}")
    if s % 200 == 0:
        hashplug.refresh_hamming_index(t)
stop.write_text("done")
"""


def test_processes_search_exactly_while_another_process_writes_and_saves(tmp_path, digits):
    """Two reader processes (read_consistency_interval=0) search through the index while a writer process
    adds, deletes and saves the index: every result exact at the version its snapshot covers, no error."""
    X, _ = digits
    path = model(tmp_path, X)
    db = tmp_path / "db"
    np.save(tmp_path / "X.npy", X)  # the children's data (no sklearn import there)
    t = hashplug.ingest(db, X[:900], name="t", model=path, progress=False).table
    hashplug.build_hamming_index(t)
    stop = tmp_path / "stop"
    ready = [tmp_path / f"ready{i}" for i in range(2)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    readers = [spawn_python(["-c", _READER, str(db), str(stop), str(i), str(ready[i])], os.getcwd(), env)
               for i in range(2)]  # new processes forked from the warm interpreter (tests/_warm.py)
    writer = spawn_python(["-c", _WRITER, str(db), str(stop), *map(str, ready)], os.getcwd(), env)
    try:
        _, werr = writer.communicate(timeout=180)
        assert writer.returncode == 0, werr[-2000:]
        outs = [r.communicate(timeout=180) for r in readers]
    finally:
        for p in [writer, *readers]:
            if p.poll() is None:
                p.kill()
    for (out, err), p in zip(outs, readers):
        assert p.returncode == 0, err[-2000:]
        res = json.loads(out.strip().splitlines()[-1])
        assert res["errors"] == [] and res["checked"] >= 5 and len(res["versions"]) >= 2, res
    final = HammingIndex.load(ix.default_index_folder(t, "code"))
    assert len(set(final.row_ids.tolist())) == len(final)


_SAVER = r"""
import sys, time
from pathlib import Path
import lancedb
import hashplug
db, go, ready = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
t = lancedb.connect(db).open_table("t")
ready.write_text("1")
while not go.exists():
    time.sleep(0.01)
for _ in range(6):
    hashplug.build_hamming_index(t)
"""


def test_two_processes_saving_at_once_leave_one_whole_index(tmp_path, digits):
    """Two processes rebuild and save the same index six times each, at the same moment, while this process
    loads it over and over: every load succeeds and the folder ends with one manifest and the one arrays file
    it names. Old code: both wrote index.npz.tmp, so one writer's replace found the other's file gone."""
    X, _ = digits
    path = model(tmp_path, X)
    db = tmp_path / "db"
    t = hashplug.ingest(db, X[:1500], name="t", model=path, progress=False).table
    folder = hashplug.build_hamming_index(t).folder
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    ready = [tmp_path / f"ready{i}" for i in range(2)]
    savers = [spawn_python(["-c", _SAVER, str(db), str(go), str(r)], os.getcwd(), env) for r in ready]
    loads = 0
    try:
        while not all(r.exists() for r in ready) and all(p.poll() is None for p in savers):
            HammingIndex.load(folder)  # (both start saving at the same moment)
        go.write_text("go")
        while any(p.poll() is None for p in savers):
            assert len(HammingIndex.load(folder)) == 1500  # never torn, whatever the writers are doing
            loads += 1
        errs = [p.communicate(timeout=120)[1] for p in savers]
    finally:
        for p in savers:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in savers), [e[-1500:] for e in errs]
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(["index.json", "index.lock", _manifest(folder)["arrays_file"]]), names
    assert len(HammingIndex.load(folder)) == 1500 and loads > 0
