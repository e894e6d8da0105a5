"""hashplug on Ray Data and Lance: write a hashplug table from a Ray Dataset, search it, backfill codes into a
table written without them, and build LanceDB's IVF_FLAT Hamming index with Ray workers.

1. Training side: LSH, 64 bits, fitted on scikit-learn's digits (pixels / 16) and exported to ONNX.
2. ``write_table``: a Ray Dataset of (id, label, vector) encoded by one Ray actor (one ONNX session) and written
   through Lance's Ray sink in one commit; a rerun with the same ``job_id`` finds that commit and writes nothing.
3. ``hashplug.search`` on the table LanceDB opens: same-label precision@10 of the digits.
4. ``backfill``: a Lance table of the same rows written without codes gets its code column fragment by fragment,
   and the embedding function stamped after, so it opens as a hashplug table and answers the same.
5. ``create_lancedb_index``: IVF_FLAT with Hamming distance, built by 2 Ray workers.

Needs ``pip install 'hashplug[ray]'`` (ray, lance-ray, pylance). Run: ``python examples/14_ray.py`` (about 20 s
on 2 CPU cores with ``HASHPLUG_EXAMPLE_SMALL=1``: 1,797 rows, 18 s measured, most of it Ray starting its
processes; without it 20 noisy copies of each digit, 35,940 rows: 21 s measured). It works in
./hashplug_examples/14_ray/, replaced at each run; Ray's own session files go to a short temporary folder,
removed at the end.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import lance
import lancedb
import numpy as np
import pyarrow as pa
import ray

import hashplug
from hashplug.data import load_digits
from hashplug.export import to_onnx
from hashplug.integrations import ray as hray


def rows(X: np.ndarray, y: np.ndarray) -> pa.Table:
    """id int64, label int64, vector fixed_size_list<float32>[64]."""
    return pa.table({
        "id": np.arange(len(X), dtype=np.int64),
        "label": y.astype(np.int64),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), X.shape[1]),
    })


def precision_at_10(tbl, X: np.ndarray, y: np.ndarray, queries: np.ndarray, **kw) -> float:
    hits = []
    for q in queries:
        res = hashplug.search(tbl, X[q], limit=11, **kw).to_pydict()
        labels = [lab for i, lab in zip(res["id"], res["label"]) if i != q][:10]
        hits.append(np.mean(np.asarray(labels) == y[q]))
    return float(np.mean(hits))


def main() -> None:
    t0 = time.perf_counter()
    small = os.environ.get("HASHPLUG_EXAMPLE_SMALL", "") not in ("", "0")
    work = Path.cwd() / "hashplug_examples" / Path(__file__).stem  # replaced at each run
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    X, y = load_digits(flat=True)
    X = (X / 16.0).astype(np.float32)
    if not small:  # 20 noisy copies of each digit
        noise = np.random.default_rng(1).normal(0, 0.1, (20 * len(X), X.shape[1])).astype(np.float32)
        X, y = np.clip(np.tile(X, (20, 1)) + noise, 0, 1), np.tile(y, 20)
    print(f"1. LSH-64 fitted on digits and exported ({len(X):,} rows to write)")
    enc = hashplug.get_encoder("lsh", k=64, random_state=0).fit(X[:1797])
    model = str(to_onnx(enc, work / "lsh64.onnx"))
    queries = np.random.default_rng(0).choice(len(X), 50, replace=False)
    with hray.local_ray(num_cpus=2):
        ds = ray.data.from_arrow(rows(X, y)).repartition(4)
        res = hray.write_table(ds, work / "db", "digits", model, job_id="digits-v1")
        print(f"2. write_table: {res.rows_written:,} rows committed at version {res.version} ({res.uri})")
        again = hray.write_table(ds, work / "db", "digits", model, job_id="digits-v1")
        print(f"   the same job again: already committed = {again.already_committed}, rows written = "
              f"{again.rows_written}")
        tbl = lancedb.connect(work / "db").open_table("digits")
        print(f"   code column: {tbl.schema.field('code').type}; rows in the table: {tbl.count_rows():,}")
        p10 = precision_at_10(tbl, X, y, queries)
        print(f"3. hashplug.search: same-label precision@10 over 50 queries = {p10:.3f}")

        lance.write_dataset(rows(X, y), str(work / "db" / "plain.lance"), max_rows_per_file=-(-len(X) // 3))
        back = hray.backfill(work / "db", model, name="plain")
        plain = lancedb.connect(work / "db").open_table("plain")
        same = np.array_equal(plain.to_arrow().sort_by("id")["code"].to_pylist(),
                              tbl.to_arrow().sort_by("id")["code"].to_pylist())
        print(f"4. backfill: {back.fragments_encoded} fragments encoded, version {back.version}; codes equal to "
              f"write_table's: {same}; precision@10 = {precision_at_10(plain, X, y, queries):.3f}")

        parts = 4
        version = hray.create_lancedb_index(work / "db", "digits", num_partitions=parts, num_workers=2)
        tbl = lancedb.connect(work / "db").open_table("digits")
        p10_ivf = precision_at_10(tbl, X, y, queries, nprobes=parts)
        p10_one = precision_at_10(tbl, X, y, queries, nprobes=1)
        print(f"5. IVF_FLAT Hamming index built by 2 Ray workers (version {version}): "
              f"{tbl.list_indices()[0].index_type}, {parts} partitions; precision@10 probing all of them = "
              f"{p10_ivf:.3f}, probing 1 = {p10_one:.3f} (rows at equal distance may come in another order than "
              "the scan's)")
    print(f"done in {time.perf_counter() - t0:.0f} s; files in {work}")


if __name__ == "__main__":
    main()
