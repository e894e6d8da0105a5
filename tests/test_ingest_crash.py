"""SIGKILL mid-ingest (API and CLI, with and without ``id_column``) and mid-``add``, then an exact check.

Each scenario runs its ingest in a subprocess (LanceDB hangs after ``fork``) that SIGKILLs itself at a
controlled point: before or after the n-th commit (``table.add``, ``merge_insert`` or the table's creation
with its first chunk), or after the n-th checkpoint write. All children start together (a module fixture),
so the group costs about one child's start-up; each test then reruns the same job in-process and checks that
the table holds every source id exactly once with the code :class:`hashplug.runtime.OnnxEncoder` computes.
Data: the 1,797 digits rows in chunks of 300 (6 commits).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import lancedb
import numpy as np
import pytest

import hashplug
from hashplug.cli import main
from hashplug.runtime import OnnxEncoder

sys.path.insert(0, str(Path(__file__).parent))
from _together import together  # noqa: E402
from _warm import spawn_python  # noqa: E402

pytest.importorskip("onnx")

#: The child's head: arms one kill point; :func:`child_code` appends the job (exit 3: the point was never reached).
CHILD = r"""
import json, os, signal, sys
spec = json.loads(sys.argv[1])
counts = {}

def arm(name, fn, counted=lambda a, kw: True):
    def wrapped(*a, **kw):
        if not counted(a, kw):
            return fn(*a, **kw)
        counts[name] = counts.get(name, 0) + 1
        hit = name == spec["at"] and counts[name] == spec["n"]
        if hit and spec["when"] == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        out = fn(*a, **kw)
        if hit:
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    return wrapped

import lancedb.db, lancedb.merge, lancedb.table
from hashplug.integrations import ingest as hi
lancedb.table.LanceTable.add = arm("commit", lancedb.table.LanceTable.add)
lancedb.merge.LanceMergeInsertBuilder.execute = arm("commit", lancedb.merge.LanceMergeInsertBuilder.execute)
lancedb.db.LanceDBConnection.create_table = arm(  # a commit only when it writes rows
    "commit", lancedb.db.LanceDBConnection.create_table, lambda a, kw: kw.get("data") is not None or len(a) > 2
)
if hasattr(hi, "_start_checkpoint"):
    hi._start_checkpoint = arm("start", hi._start_checkpoint)
hi._write_checkpoint = arm("ckpt", hi._write_checkpoint)
import numpy as np
import hashplug
from hashplug.cli import main
"""

CHUNK = 300


def child_code() -> str:
    """The child's program: :data:`CHILD`, then :func:`run_job` (its source) run on the scenario."""
    import inspect

    return f"{CHILD}\nCHUNK = {CHUNK}\n{inspect.getsource(run_job)}\nrun_job(spec)\nsys.exit(3)\n"

#: (id, job, id_column, checkpoint, kill point, when, n): "commit" n counts the commits that write rows (the
#: first one creates the table), "start" the checkpoint written before the first commit, "ckpt" the updates
#: after commits.
SCENARIOS = [
    ("api-before-first-commit", "api", False, True, "start", "after", 1),
    ("api-first-commit-no-checkpoint-yet", "api", False, True, "commit", "after", 1),
    ("api-mid-commit-before-checkpoint", "api", False, True, "commit", "after", 3),
    ("api-id-mid-before-commit", "api", True, True, "commit", "before", 4),
    ("api-id-no-checkpoint-mid", "api", True, False, "commit", "after", 3),
    ("cli-first-commit-no-checkpoint-yet", "cli", False, True, "commit", "after", 1),
    ("cli-id-no-checkpoint-mid", "cli", True, False, "commit", "after", 2),
    ("add-after-commit", "add", False, False, "commit", "after", 1),
]


def run_job(spec: dict) -> None:
    """The ingest of a scenario (in the child, and again in the test for the rerun)."""
    X = np.load(spec["npy"])
    if spec["job"] == "add":
        tbl = lancedb.connect(spec["db"]).open_table("t")
        hashplug.add(tbl, X[300:900], columns={"id": np.arange(300, 900)})
    elif spec["job"] == "api":
        hashplug.ingest(
            spec["db"], X, name="t", model=spec["onnx"], columns={"id": np.arange(len(X))},
            id_column="id" if spec["id"] else None, chunk_size=CHUNK, checkpoint=spec["ckpt"], progress=False,
        )
    else:
        argv = ["ingest", spec["npy"], "--db", spec["db"], "--table", "t", "--model", spec["onnx"],
                "--chunk-size", str(CHUNK)]
        argv += ["--id-column", "id"] if spec["id"] else []
        argv += ["--checkpoint", spec["ckpt"]] if spec["ckpt"] else []
        assert main(argv) == 0


@pytest.fixture(scope="module", params=together("crash"))
def killed(tmp_path_factory, digits):
    """Start every scenario's child at once; returns ``{id: (spec, returncode, stderr)}``. (The tests run on one
    pytest-xdist worker: the children start once.)"""
    from hashplug.export import to_onnx

    X = digits[0]
    root = tmp_path_factory.mktemp("crash")
    onnx = str(to_onnx(hashplug.get_encoder("lsh", k=32, random_state=0).fit(X), root / "lsh.onnx"))
    npy = root / "digits.npy"
    np.save(npy, X)
    procs = {}
    for sid, job, idc, ck, at, when, n in SCENARIOS:
        d = root / sid
        d.mkdir()
        spec = {
            "job": job, "id": idc, "at": at, "when": when, "n": n, "npy": str(npy), "onnx": onnx,
            "db": str(d / "db"), "ckpt": str(d / "c.json") if ck else None,
        }
        if job == "add":
            hashplug.ingest(spec["db"], X[:300], name="t", model=onnx, columns={"id": np.arange(300)}, progress=False)
        # a new process forked from the warm interpreter (tests/_warm.py), which kills itself at its point
        procs[sid] = (spec, spawn_python(["-c", child_code(), json.dumps(spec)], os.getcwd()))
    out = {}
    for sid, (spec, p) in procs.items():
        _, err = p.communicate(timeout=300)
        out[sid] = (spec, p.returncode, err[-2000:])
    return out, X, OnnxEncoder(onnx).encode(X)


def table_ids_codes(db: str) -> tuple[np.ndarray, np.ndarray]:
    t = lancedb.connect(db).open_table("t").to_arrow().sort_by("id")
    return t["id"].to_numpy(), np.stack(t["code"].to_numpy(zero_copy_only=False))


@pytest.mark.parametrize("sid", [s[0] for s in SCENARIOS])
def test_sigkill_then_rerun_is_exact(killed, sid):
    results, X, P = killed
    spec, code, err = results[sid]
    assert code == -9, f"{sid}: the child was not killed at its kill point (exit {code}): {err}"
    if spec["job"] == "add":  # all or nothing: the 600 rows are committed in one commit, or not at all
        ids, codes = table_ids_codes(spec["db"])
        n = 900 if spec["when"] == "after" else 300
        np.testing.assert_array_equal(ids, np.arange(n))
        np.testing.assert_array_equal(codes, P[:n])
        return
    run_job(spec)  # the same call again
    want = np.arange(len(X))
    if spec["job"] == "cli":
        from hashplug.cli.serve import file_row_ids

        want = file_row_ids(spec["npy"], len(X))
    ids, codes = table_ids_codes(spec["db"])
    assert len(ids) == len(X), f"{sid}: {len(ids)} rows for {len(X)} source rows"
    np.testing.assert_array_equal(ids, np.sort(want))
    np.testing.assert_array_equal(codes, P[np.argsort(want)])
    if spec["ckpt"]:
        state = json.loads(Path(spec["ckpt"]).read_text())
        assert state["finished"] and state["rows_done"] == len(X)
