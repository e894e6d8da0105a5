"""MIHash on AG News sentence embeddings, then a LanceDB table searched with float rescoring.

1. Train MIHash (mutual-information hashing, Cakir et al. 2019) on the AG News MiniLM embeddings: once with
   labels (neighbours = same topic) and once without (neighbours = cosine distance under the 5th-percentile
   threshold of the training pairs, the paper's LabelMe rule), 64-bit codes.
2. Compare with the sign of the floats (384 bits), ITQ and AngularDistillHash (hashplug's own: ITQ's start
   trained to keep each item's cosine ranking; fitted on 20,000 rows, since it looks up every training row's
   exact cosine neighbours) on the held-out queries: same-label precision@10 and recall@10 of the exact
   cosine top 10.
3. Export the unsupervised model to ONNX (bit-identical parity), ingest the database into a LanceDB table
   (packed codes + the floats) and search it: Hamming candidates rescored by exact cosine on the floats.

Usage::

    python examples/07_mihash.py            # about 9 minutes; needs ../shared/data/ag_news (else a synthetic set)

The full run took 513 s on the AG News file in issue 28's trial (2 CPU cores shared with other jobs; not rerun for this figure).
``HASHPLUG_EXAMPLE_SMALL=1`` (set by the tests) trains 2 epochs (AngularDistillHash 2) on 1,500 rows: 5 s
measured (2026-12-07; the imports of a fresh interpreter add about 3 s). Each training shows a progress bar on stderr. It works in ./hashplug_examples/07_mihash/, replaced
at each run.

The ONNX parity line of the full run reads ``identical=False``: 1 of the 7,600 rows differs, at a float tie
(a unit's score within float32 rounding of the sign threshold 0, which numpy and onnxruntime, summing in a
different order, round to different sides); the line below it says so, from ``check_parity``'s report.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import numpy as np

import hashplug
from hashplug.codes import pack_bits
from hashplug.encoders import ITQ, AngularDistillHash, MIHash
from hashplug.export import check_parity, to_onnx
from hashplug.hamming import hamming_search
from hashplug.integrations.reranker import FloatRescoreReranker


def load(small: bool) -> tuple[np.ndarray, np.ndarray, str]:
    """AG News embeddings when the shared data is present, else Gaussian topics on the unit sphere."""
    from hashplug.data import DataFileError, default_data_path, load_ag_news

    try:
        X, y = load_ag_news(default_data_path("ag_news"))
        name = "AG News MiniLM embeddings"
    except (DataFileError, FileNotFoundError, OSError):
        rng = np.random.default_rng(0)
        centres = rng.standard_normal((4, 384))
        y = rng.integers(0, 4, 4000)
        X = centres[y] + 1.5 * rng.standard_normal((4000, 384))
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        name = "synthetic topics (AG News file not found)"
    X, y = np.asarray(X, np.float32), np.asarray(y)
    if small:
        keep = np.random.default_rng(1).choice(len(y), 1500, replace=False)
        X, y = X[keep], y[keep]
    return X, y, name


def quality(cq, cdb, Xq, Xdb, yq, ydb) -> tuple[float, float]:
    idx, _ = hamming_search(cq, cdb, 10)
    unit = lambda A: A / np.linalg.norm(A, axis=1, keepdims=True)  # noqa: E731
    true = np.argsort(-(unit(Xq) @ unit(Xdb).T), axis=1, kind="stable")[:, :10]
    p10 = float(np.mean(ydb[idx] == yq[:, None]))
    r10 = float(np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(idx, true)]))
    return p10, r10


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--small", action="store_true", help="fewer rows and epochs (tests / CI)")
    args = ap.parse_args(argv)
    small = args.small or os.environ.get("HASHPLUG_EXAMPLE_SMALL", "") not in ("", "0")
    work = Path.cwd() / "hashplug_examples" / Path(__file__).stem  # replaced at each run
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    X, y, name = load(small)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(y))
    q, db = perm[:200], perm[200:]
    print(f"{name}: {len(db)} database rows, {len(q)} queries, {X.shape[1]}-d")

    epochs = 2 if small else 40
    # verbose: a progress bar per training (on stderr); the training itself is the same
    common = dict(k=args.bits, epochs=epochs, optimizer="adam", lr=0.001, batch_size=256, random_state=0, verbose=True)
    print(f"training MIHash with labels, {epochs} epochs ...", flush=True)
    sup = MIHash(**common).fit(X[db], y[db])  # neighbours: same label
    print(f"training MIHash without labels (cosine rule), {epochs} epochs ...", flush=True)
    unsup = MIHash(neighbours="distance", distance_metric="cosine", **common).fit(X[db])  # no labels
    itq = ITQ(k=args.bits, random_state=0).fit(X[db])
    sub = db[: 20_000]  # the distillation's exact kNN table grows with n^2
    print(f"training AngularDistillHash on {len(sub)} rows ...", flush=True)
    ad = AngularDistillHash(k=args.bits, epochs=2 if small else 20, random_state=0, verbose=True).fit(X[sub])
    results = {}
    rows = [
        ("sign of the floats", 384, pack_bits(X[q] > 0), pack_bits(X[db] > 0)),
        ("ITQ", args.bits, itq.encode(X[q]), itq.encode(X[db])),
        ("MIHash, labels", args.bits, sup.encode(X[q]), sup.encode(X[db])),
        ("MIHash, no labels (cosine rule)", args.bits, unsup.encode(X[q]), unsup.encode(X[db])),
        ("AngularDistillHash, no labels", args.bits, ad.encode(X[q]), ad.encode(X[db])),
    ]
    print(f"{'codes':<34}{'bits':>5}  same-label P@10  recall@10 (cosine top 10)")
    for label, bits, cq, cdb in rows:
        p10, r10 = quality(cq, cdb, X[q], X[db], y[q], y[db])
        results[label] = (p10, r10)
        print(f"{label:<34}{bits:>5}  {p10:15.3f}  {r10:9.3f}")
    print(f"training MI (last epoch): labels {sup.history_['mi'][-1]:.3f}, cosine rule {unsup.history_['mi'][-1]:.3f}; "
          f"cosine threshold {unsup.neighbourhood_['threshold']:.3f}")

    # ---- export, ingest, search with float rescoring
    path = to_onnx(unsup, work / "mihash.onnx")
    rep = check_parity(unsup, path, X)
    print(f"ONNX parity on {rep['n_rows']} rows: identical={rep['identical']}")
    if rep["rows_differing"]:
        # not a bug: a unit whose score lies within float32 rounding of the sign threshold 0 may round to
        # either side in numpy and in onnxruntime, which sum the same weights in a different order
        print(f"  {rep['rows_differing']} row(s) differ in {rep['bits_differing']} bit(s); "
              f"{rep['rows_differing_at_ties']} of them only at float ties: the unit's score lies within 1e-5 x the "
              "row's largest |score| of the threshold 0, and numpy and onnxruntime, summing in a different order, "
              f"round it to different sides; same weights (sha256 match): {rep['weights_sha256_match']}")
    out = hashplug.ingest(work / "db", X[db], name="news", model=str(path), layout="packed",
                          columns={"label": y[db].astype(np.int64)}, progress=False)
    rr = FloatRescoreReranker("vector", metric="cosine", overfetch=10)
    hits = hashplug.search(out.table, X[q[0]], limit=10, reranker=rr, columns=["label"])
    print(f"query topic {y[q[0]]}: top-10 topics after rescoring {hits['label'].to_pylist()}")
    return {"results": results, "parity": rep["identical"]}


if __name__ == "__main__":
    main()
