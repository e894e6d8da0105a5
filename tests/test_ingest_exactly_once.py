"""Exactly-once ingestion (issue 27, items 3-5): checkpoints, id_column under concurrency, CLI ids.

Each test reproduces a failure of the code before the fix (named in its docstring) and checks every id and
code of the table afterwards against :class:`hashplug.runtime.OnnxEncoder`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pytest
from _warm import spawn_python  # noqa: E402

import hashplug
from hashplug.cli import main
from hashplug.integrations import ingest as hingest
from hashplug.integrations.lancedb import schema
from hashplug.runtime import OnnxEncoder
from hashplug.validation import HashplugError, IngestError

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def model(tmp_path_factory, digits):
    """(LSH 32-bit ONNX path, digits X, codes of X by OnnxEncoder)."""
    from hashplug.export import to_onnx

    X = digits[0]
    path = to_onnx(hashplug.get_encoder("lsh", k=32, random_state=0).fit(X), tmp_path_factory.mktemp("m") / "lsh.onnx")
    return str(path), X, OnnxEncoder(path).encode(X)


def empty_table(db: Path, onnx: str, name: str = "t"):
    from lancedb.embeddings import get_registry

    func = get_registry().get("hashplug").create(model=onnx)
    return lancedb.connect(db).create_table(name, schema=schema(func, extra={"id": pa.int64()}))


def check_exact(tbl, ids, codes) -> None:
    """The table holds each of ``ids`` once, with its code."""
    t = tbl.to_arrow().sort_by("id")
    got = t["id"].to_numpy()
    assert len(got) == len(ids), f"{len(got)} rows for {len(ids)} ids"
    np.testing.assert_array_equal(got, np.sort(ids))
    order = np.argsort(ids)
    np.testing.assert_array_equal(np.stack(t["code"].to_numpy(zero_copy_only=False)), codes[order])


class Killed(BaseException):
    """Stands for SIGKILL in the in-process tests (the subprocess SIGKILL tests are in test_ingest_crash.py)."""


# ------------------------------------------------------------------------------------------------ item 3
def test_missing_checkpoint_folder_is_refused_before_anything_is_written(model, tmp_path):
    """Before: 200 rows committed, then a raw FileNotFoundError; the rerun left 1,200 rows for 1,000 ids."""
    onnx, X, P = model
    tbl = empty_table(tmp_path / "db", onnx)
    src = dict(columns={"id": np.arange(1000)}, chunk_size=200, progress=False)
    with pytest.raises(HashplugError, match="does not exist; create it first"):
        hashplug.ingest(tbl, X[:1000], checkpoint=tmp_path / "nofolder" / "c.json", **src)
    assert tbl.count_rows() == 0 and not (tmp_path / "nofolder").exists()
    hashplug.ingest(tbl, X[:1000], checkpoint=tmp_path / "c.json", **src)
    check_exact(tbl, np.arange(1000), P[:1000])


def test_kill_between_the_first_commit_and_its_checkpoint_is_resumed_exactly(model, tmp_path, monkeypatch):
    """Before: the first checkpoint was written after the first commit; a kill in between left no checkpoint
    and the rerun wrote the first chunk twice (1,200 rows for 1,000)."""
    onnx, X, P = model
    tbl = empty_table(tmp_path / "db", onnx)
    ckpt = tmp_path / "c.json"
    src = dict(columns={"id": np.arange(1000)}, chunk_size=200, checkpoint=ckpt, progress=False)

    def killed(path, state):
        raise Killed

    monkeypatch.setattr(hingest, "_write_checkpoint", killed)  # the first update after a commit
    with pytest.raises(Killed):
        hashplug.ingest(tbl, X[:1000], **src)
    monkeypatch.undo()
    assert tbl.count_rows() == 200
    res = hashplug.ingest(tbl, X[:1000], **src)
    assert (res.rows_skipped, res.rows_written) == (200, 800)
    check_exact(tbl, np.arange(1000), P[:1000])


def test_new_table_killed_after_its_first_commit_is_resumed_exactly(model, tmp_path, monkeypatch):
    """The table is created by the commit of the first chunk; a kill right after it is recovered too."""
    onnx, X, P = model
    ckpt = tmp_path / "c.json"
    src = dict(name="t", model=onnx, columns={"id": np.arange(1000)}, chunk_size=300, checkpoint=ckpt, progress=False)
    monkeypatch.setattr(hingest, "_write_checkpoint", lambda p, s: (_ for _ in ()).throw(Killed()))
    with pytest.raises(Killed):
        hashplug.ingest(tmp_path / "db", X[:1000], **src)
    monkeypatch.undo()
    res = hashplug.ingest(tmp_path / "db", X[:1000], **src)
    assert (res.rows_skipped, res.rows_written) == (300, 700)
    check_exact(res.table, np.arange(1000), P[:1000])


def _batches_of_100(X, stop):
    """Rows 0..999 of X in RecordBatches of 100 (with ids); raises Killed at source row ``stop``."""
    for s in range(0, 1000, 100):
        if s == stop:
            raise Killed
        yield pa.RecordBatch.from_pydict({"id": np.arange(s, s + 100), "vector": list(X[s : s + 100])})


def test_resume_refuses_rows_another_writer_committed(model, tmp_path):
    """Before: a crash after a checkpoint update, then another writer's 150 rows, made the rerun take those rows
    for its own next chunk and skip 150 source rows (lost), without an error."""
    onnx, X, P = model
    tbl = empty_table(tmp_path / "db", onnx)
    ckpt = tmp_path / "c.json"

    def stream(stop):
        return _batches_of_100(X, stop)

    with pytest.raises(Killed):
        hashplug.ingest(tbl, stream(400), chunk_size=200, checkpoint=ckpt, progress=False)
    assert tbl.count_rows() == 400
    hashplug.add(tbl, X[1500:1650], columns={"id": np.arange(1500, 1650)})  # another writer
    state = tbl.count_rows(), tbl.version
    with pytest.raises(HashplugError, match="another writer"):
        hashplug.ingest(tbl, stream(None), chunk_size=200, checkpoint=ckpt, progress=False)
    assert (tbl.count_rows(), tbl.version) == state
    # A second commit by another writer is refused on the versions alone.
    hashplug.add(tbl, X[1650:1660], columns={"id": np.arange(1650, 1660)})
    with pytest.raises(HashplugError, match="another writer"):
        hashplug.ingest(tbl, stream(None), chunk_size=200, checkpoint=ckpt, progress=False)


def test_resume_of_a_stream_whose_batches_differ_from_the_chunks(model, tmp_path):
    """Before: the source fingerprint hashed indices and values batch by batch, so it depended on the batch
    split: resuming a stream of 100-row batches ingested in chunks of 200 raised 'written for another source'."""
    onnx, X, P = model
    tbl = empty_table(tmp_path / "db", onnx)
    ckpt = tmp_path / "c.json"

    def stream(stop):
        return _batches_of_100(X, stop)

    with pytest.raises(Killed):
        hashplug.ingest(tbl, stream(500), chunk_size=200, checkpoint=ckpt, progress=False)
    res = hashplug.ingest(tbl, stream(None), chunk_size=200, checkpoint=ckpt, progress=False)
    assert (res.rows_skipped, res.rows_written) == (400, 600)
    check_exact(tbl, np.arange(1000), P[:1000])


# ------------------------------------------------------------------------------------------------ crashes (4)
@pytest.mark.parametrize(
    "content, match",
    [
        ({"version": 2}, r"not a valid hashplug ingest checkpoint \('source' missing"),
        ("drop-digest", r"'digest' missing"),
        ("bad-rows", r"'rows_done' is -5"),
    ],
    ids=["json-not-a-checkpoint", "no-digest", "negative-rows"],
)
def test_a_file_that_is_not_a_checkpoint_is_named_so(model, tmp_path, content, match):
    """Before: a checkpoint without "digest" raised KeyError: 'digest'; {"version": 2} was reported as a model
    mismatch (ModelMismatchError, 'written with model sha256 None')."""
    onnx, X, _ = model
    tbl = empty_table(tmp_path / "db", onnx)
    good = tmp_path / "good.json"
    hashplug.ingest(tbl, X[:100], columns={"id": np.arange(100)}, checkpoint=good, progress=False)
    state = json.loads(good.read_text())
    if content == "drop-digest":
        del state["digest"]
        content = state
    elif content == "bad-rows":
        state["rows_done"] = -5
        content = state
    ckpt = tmp_path / "c.json"
    ckpt.write_text(json.dumps(content))
    with pytest.raises(HashplugError, match=match) as err:
        hashplug.ingest(tbl, X[:200], columns={"id": np.arange(200)}, checkpoint=ckpt, progress=False)
    assert type(err.value) is HashplugError  # not a ModelMismatchError
    assert tbl.count_rows() == 100


def test_failed_ingest_into_a_new_table_leaves_no_table(model, tmp_path):
    """Before: the table was created empty before the first chunk was encoded, and stayed after the error."""
    onnx, X, _ = model
    db = tmp_path / "db"
    with pytest.raises(IngestError, match="features"):
        hashplug.ingest(db, X[:10, :5], name="new", model=onnx, progress=False)
    assert "new" not in (lancedb.connect(db).table_names() if db.exists() else [])
    bad = X[:500].copy()
    bad[0, 3] = np.nan
    with pytest.raises(IngestError, match="NaN"):
        hashplug.ingest(db, bad, name="new", model=onnx, chunk_size=100, progress=False)
    assert "new" not in (lancedb.connect(db).table_names() if db.exists() else [])


def test_db_path_that_is_a_file(model, tmp_path, capsys):
    """Before: FileExistsError from lancedb.connect (a traceback from the CLI)."""
    onnx, X, _ = model
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(HashplugError, match="is a file, not a folder"):
        hashplug.ingest(f, X[:10], name="t", model=onnx, progress=False)
    npy = tmp_path / "x.npy"
    np.save(npy, X[:10])
    assert main(["ingest", str(npy), "--db", str(f), "--table", "t", "--model", onnx]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert f.read_text() == "x"


# ------------------------------------------------------------------------------------------------ item 4
def test_duplicate_source_ids_are_an_error_naming_them(model, tmp_path):
    """Before: a repeat inside a chunk raised LanceDB's raw ValueError ('Ambiguous merge inserts'); a repeat in a
    later chunk silently overwrote the earlier row (999 rows for 1,000 source rows)."""
    onnx, X, P = model
    tbl = empty_table(tmp_path / "db", onnx)
    ids = np.arange(1000)
    ids[150] = 7  # same chunk as id 7
    with pytest.raises(IngestError, match=r"duplicate ids in id_column 'id': \[7\]"):
        hashplug.ingest(tbl, X[:1000], columns={"id": ids}, id_column="id", chunk_size=200, progress=False)
    assert tbl.count_rows() == 0
    ids = np.arange(1000)
    ids[[650, 651]] = [3, 12]  # in a later chunk than ids 3 and 12
    with pytest.raises(IngestError, match=r"\[3, 12\] \(2 ids\)") as err:
        hashplug.ingest(tbl, X[:1000], columns={"id": ids}, id_column="id", chunk_size=200, progress=False)
    assert err.value.rows_committed == 600 and err.value.row == 650
    check_exact(tbl, np.arange(600), P[:600])
    null_ids = pa.array([*range(99), None], pa.int64())
    with pytest.raises(IngestError, match="null at source row 99"):
        hashplug.ingest(tbl, pa.table({"id": null_ids, "vector": list(X[:100])}), id_column="id", progress=False)


def test_a_table_holding_an_id_twice_is_refused(model, tmp_path):
    """Before: merge_insert updated both copies of id 5 and left them both, silently."""
    onnx, X, _ = model
    tbl = empty_table(tmp_path / "db", onnx)
    hashplug.add(tbl, X[:10], columns={"id": np.arange(10)})
    hashplug.add(tbl, X[10:12], columns={"id": np.array([5, 6])})
    v = tbl.version
    with pytest.raises(HashplugError, match=r"already holds duplicate ids in column 'id': \[5, 6\]"):
        hashplug.ingest(tbl, X[20:21], columns={"id": np.array([5])}, id_column="id", progress=False)
    assert tbl.version == v and tbl.count_rows() == 12


def test_upsert_merges_against_the_latest_version_not_a_stale_handle(model, tmp_path):
    """Before: an id_column ingest through a handle opened before another writer's commits merged against the
    handle's old snapshot and inserted every id a second time (2,000 rows for 1,000 ids)."""
    onnx, X, P = model
    db = tmp_path / "db"
    empty_table(db, onnx)
    mine, theirs = lancedb.connect(db).open_table("t"), lancedb.connect(db).open_table("t")
    for s in range(0, 1000, 250):  # the other writer, in several commits
        hashplug.ingest(theirs, X[s : s + 250], columns={"id": np.arange(s, s + 250)}, id_column="id", progress=False)
    hashplug.ingest(mine, X[:1000], columns={"id": np.arange(1000)}, id_column="id", chunk_size=300, progress=False)
    check_exact(lancedb.connect(db).open_table("t"), np.arange(1000), P[:1000])


#: One of two identical ingest jobs (a subprocess: LanceDB hangs after fork): it opens the table, waits for the
#: file ``go`` (so both jobs start together, each with a handle opened before the other wrote), then upserts.
JOB = """
import sys, time
from pathlib import Path
import lancedb, numpy as np
import hashplug
db, npy, go = sys.argv[1:4]
X = np.load(npy)
tbl = lancedb.connect(db).open_table("t")
Path(go + "." + sys.argv[4]).touch()
while not Path(go).exists():
    time.sleep(0.005)
hashplug.ingest(tbl, X, columns={"id": np.arange(len(X))}, id_column="id", chunk_size=300, progress=False)
"""


def test_two_identical_id_column_jobs_at_once_leave_each_id_once(model, tmp_path):
    """Before: two identical ingest(..., id_column="id") jobs at once left 500,000 rows for 300,000 ids."""
    onnx, X, P = model
    db = tmp_path / "db"
    empty_table(db, onnx)
    go, npy = tmp_path / "go", tmp_path / "x.npy"
    np.save(npy, X)
    procs = [spawn_python(["-c", JOB, str(db), str(npy), str(go), str(i)], os.getcwd()) for i in range(2)]
    deadline = time.monotonic() + 60
    while not all(Path(f"{go}.{i}").exists() for i in range(2)) and time.monotonic() < deadline:
        time.sleep(0.005)
    go.touch()
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    check_exact(lancedb.connect(db).open_table("t"), np.arange(len(X)), P)


# ------------------------------------------------------------------------------------------------ item 5
def test_cli_two_files_one_after_the_other_keep_every_row(model, tmp_path, capsys):
    """Before: ids restarted at 0 per file; with --id-column id the second file overwrote 797 rows of the first
    (1,000 rows instead of 1,797)."""
    from hashplug.cli.serve import file_row_ids

    onnx, X, P = model
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, X[:1000])
    np.save(b, X[1000:])
    base = ["--db", str(tmp_path / "db"), "--table", "t", "--model", onnx, "--id-column", "id", "--chunk-size", "300"]
    assert main(["ingest", str(a), *base]) == 0
    assert main(["ingest", str(b), *base]) == 0
    ids = np.concatenate([file_row_ids(str(a), 1000), file_row_ids(str(b), 797)])
    tbl = lancedb.connect(tmp_path / "db").open_table("t")
    check_exact(tbl, ids, P)
    assert main(["ingest", str(a), *base]) == 0  # a rerun upserts: nothing doubled
    check_exact(tbl, ids, P)
    capsys.readouterr()


def test_cli_plain_rerun_is_refused_not_doubled(model, tmp_path, capsys):
    """Before: a plain rerun of `hashplug ingest` (no --checkpoint) doubled every row (1,797 -> 3,594), and the
    generated id was then not unique."""
    from hashplug.cli.serve import file_row_ids

    onnx, X, P = model
    a = tmp_path / "a.npy"
    np.save(a, X)
    argv = ["ingest", str(a), "--db", str(tmp_path / "db"), "--table", "t", "--model", onnx, "--chunk-size", "500"]
    assert main(argv) == 0
    tbl = lancedb.connect(tmp_path / "db").open_table("t")
    v = tbl.version
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "already in table 't'" in err and "--id-column id" in err and "--checkpoint" in err
    tbl.checkout_latest()
    assert tbl.version == v
    check_exact(tbl, file_row_ids(str(a), len(X)), P)
    # The same bytes under another name are the same rows (same ids).
    b = tmp_path / "renamed.npy"
    b.write_bytes(a.read_bytes())
    assert main(["ingest", str(b), *argv[2:]]) == 2
    assert "already in table" in capsys.readouterr().err
