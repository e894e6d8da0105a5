"""Keeping hashplug's Hamming index caught up with a table that changes, at the speed of a scan.

1. A table of 64-bit LSH codes and its saved index (``hashplug.build_hamming_index``).
2. A writer ingests many rows; the next ``hashplug.search`` catches the index up in memory by reading only the
   Lance fragments added since the indexed version (one scan of their code column), and answers exactly as
   LanceDB's own search does. The catch-up costs about what building an index of the added rows does.
3. Deletes, an update and a compaction: only the fragments whose deletion file changed are looked at (their row
   ids, no codes), moved rows are read from their new fragments, and when dropping rows would cost more than
   reading the table the index is read whole instead: a search never waits longer than a build.
4. A writer that refreshes in the background (``refresh_hamming_index(table, background=True)``): the index is
   caught up and saved while the writer goes on, so readers find nothing left to catch up.

Usage::

    python examples/18_index_catch_up.py          # 100,000 rows, then 300,000 added: about 40 s

``HASHPLUG_EXAMPLE_SMALL=1`` (set by the tests) uses 3,000 + 6,000 rows: about 15 s, mostly imports and LanceDB.
It works in ./hashplug_examples/18_index_catch_up/, replaced at each run.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np

import hashplug
from hashplug.export import to_onnx


def stats(table) -> dict:
    """What the last catch-up of the table's shared index snapshot did."""
    return hashplug.open_hamming_index(table).last_catch_up


def show(what: str, s: dict) -> None:
    print(f"  {what:<34} read {s['rows_read']:>8,} of {s['rows_in_table']:>8,} rows ({s['read']}: "
          f"{s['fragments_read']} fragments read, {s['fragments_trimmed']} with new deletions, "
          f"{s['fragments_dropped']} gone), +{s['added']:,} -{s['deleted']:,} rows in {1000 * s['seconds']:.1f} ms")


def check_exact(table, x: np.ndarray) -> None:
    """The index's answer has the distances of LanceDB's exhaustive search (ties may be ordered differently)."""
    got = hashplug.search(table, x, limit=10)
    want = hashplug.search(table, x, limit=10, use_hamming_index=False)
    assert got.schema.metadata[b"hashplug.search_path"] == b"hashplug-index"
    np.testing.assert_array_equal(got["_distance"].to_numpy(), np.sort(want["_distance"].to_numpy()))


def main() -> None:
    small = os.environ.get("HASHPLUG_EXAMPLE_SMALL", "") not in ("", "0")
    base, added, chunk = (3_000, 6_000, 1_000) if small else (100_000, 300_000, 65_536)
    work = Path.cwd() / "hashplug_examples" / Path(__file__).stem
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((base + 2 * added, 16)).astype(np.float32)
    enc = hashplug.get_encoder("lsh", k=64, random_state=0).fit(X[:5000])
    model = str(to_onnx(enc, work / "lsh64.onnx"))

    # 1. the table and its saved index
    table = hashplug.ingest(work / "db", X[:base], name="t", model=model, chunk_size=chunk, progress=False).table
    hashplug.build_hamming_index(table)
    check_exact(table, X[0])  # the first search through the index (compiles the kernel with hashplug[fast])
    print(f"1. {base:,} rows indexed (version {table.version})")

    # 2. a large ingest, then a search: the catch-up reads the new fragments only
    hashplug.ingest(table, X[base : base + added], chunk_size=chunk, progress=False)
    t0 = time.perf_counter()
    hashplug.search(table, X[base + added // 2], limit=10)
    first = time.perf_counter() - t0
    check_exact(table, X[base + added // 2])
    print(f"2. {added:,} rows added in {-(-added // chunk)} commits; first search {1000 * first:.1f} ms, of which:")
    show("catch-up", stats(table))
    t0 = time.perf_counter()
    hashplug.build_hamming_index(table, save=False)
    print(f"  {'(building the whole index instead:':<34} {1000 * (time.perf_counter() - t0):.1f} ms)")

    # 3. deletes, an update, a compaction
    print("3. other changes, each followed by a search:")
    for what, change in (
        ("delete 1 row in 8", lambda: table.delete("_rowid % 8 = 3")),
        ("update 1 row", lambda: hashplug.update(table, where="_rowid = 5", values={"vector": X[-1].tolist()})),
        ("delete 2 rows in 3", lambda: table.delete("_rowid % 3 != 0")),
        ("compaction (optimize)", lambda: table.optimize()),
    ):
        change()
        check_exact(table, X[int(rng.integers(0, base + added))])
        show(what, stats(table))

    # 4. a writer refreshing in the background: readers find the index caught up (and it is saved)
    future = None
    for s in range(base + added, base + 2 * added, max(1, added // 3)):
        hashplug.ingest(table, X[s : s + max(1, added // 3)], chunk_size=chunk, progress=False)
        future = hashplug.refresh_hamming_index(table, background=True)  # returns at once
        check_exact(table, X[s])  # a search meanwhile waits for that catch-up, never runs a second one
    idx = future.result()
    snapshot = hashplug.open_hamming_index(table)
    print(f"4. background refreshes: index saved at version {idx.table_version} (table {table.version}), "
          f"{len(idx):,} rows; the next search catches up nothing: {not hasattr(snapshot, 'last_catch_up')}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
