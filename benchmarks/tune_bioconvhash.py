"""Validation search for BioConvHash (issue 9): filter-stage settings x BioHash-layer settings.

The queries are a validation split cut from the protocol's training set (seed ``--seed``) minus the test queries
of every seed the table reports (``--report-seeds``, default 0 1 2; issue 30: the split of the searches before
held 14 / 16 of seeds 1 / 2's MNIST test queries as validation queries and 291 / 265 in its database), never
the real queries; the database is the rest of that pool (optionally a random subset of ``--n-db`` images, for
speed). The split's rows digest and measured overlap are written to the JSON (``"validation"``).
For every filter-stage combination the pooled features are computed once; every layer combination is then
trained on them at each ``--k``. Results are appended to ``--out`` (JSON) as they come.

    python benchmarks/tune_bioconvhash.py --dataset mnist --n-db 20000 --k 2 16 \\
        --filter-grid '[{}, {"kci": 5}]' --layer-grid '[{}, {"init": "data"}]' --out results.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from hashplug.bench.bioconvhash_tables import _images, _layer_params, fit_pixel_biohash, flat_pixels
from hashplug.bench.biohash_tables import DATASETS
from hashplug.bench.tables import (
    _subset_per_class,
    fair_validation_split,
    load_data,
    split_data,
    test_queries,
)
from hashplug.encoders import BioConvHash, get_preset
from hashplug.metrics import map_from_codes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="mnist", choices=sorted(DATASETS))
    ap.add_argument("--data", default=None)
    ap.add_argument("--n-db", type=int, default=None, help="random subset of the validation database")
    ap.add_argument("--k", type=int, nargs="+", default=[2, 16])
    ap.add_argument("--base", default="{}", help="JSON: parameters over the preset for every run")
    ap.add_argument("--filter-grid", default="[{}]", help="JSON list of filter-stage changes")
    ap.add_argument("--layer-grid", default="[{}]", help="JSON list of layer changes")
    ap.add_argument("--per-class", type=int, default=100, help="validation queries per class")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report-seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="seeds whose test queries the validation split must not contain (the table's seeds)")
    ap.add_argument("--limit", type=int, default=None, help="stratified subset of the data (smoke runs only)")
    ap.add_argument("--biohash-reference", action="store_true",
                    help="also score BioHash (its preset for the dataset) on the same validation split")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    ds = args.dataset
    X, y, name = load_data(ds, args.data, args.limit, flat=False)
    split = split_data(ds, X, y, args.seed, name)
    queries = test_queries(ds, y, sorted(set(args.report_seeds) | {args.seed}), name)
    per_class = args.per_class if name == ds else _subset_per_class(split.ydb, args.per_class)
    val, record = fair_validation_split(split, queries, per_class, n_db=args.n_db, draw_seed=args.seed)
    del X
    Xq, Xdb = _images(val, ds)
    ydb = val.ydb
    R = DATASETS[ds]["R"]
    base = {**get_preset(BioConvHash, ds).params, **json.loads(args.base)}
    out = Path(args.out)
    doc = {"dataset": ds, "base": base, "ks": args.k, "n_db": int(len(ydb)), "n_val_queries": int(len(val.yq)),
           "seed": args.seed, "metric": DATASETS[ds]["metric"] + " tie-aware, validation",
           "validation": {"report_seeds": sorted(queries), **record}, "rows": []}
    if out.exists():
        old = json.loads(out.read_text())
        if (old.get("dataset") == ds and old.get("n_db") == doc["n_db"]
                and old.get("validation", {}).get("rows_sha256") == record["rows_sha256"]):
            doc["rows"] = old.get("rows", [])
    if args.biohash_reference and not any("biohash_reference" in r for r in doc["rows"]):
        from hashplug.encoders import BioHash

        bp = get_preset(BioHash, ds)
        flat_db, flat_q = flat_pixels(Xdb), flat_pixels(Xq)
        res, secs = {}, {}
        for k in args.k:
            t0 = time.perf_counter()
            bh = fit_pixel_biohash(flat_db, ds, k, args.seed)
            secs[str(k)] = round(time.perf_counter() - t0, 1)
            res[str(k)] = round(100 * map_from_codes(bh.encode(flat_q), bh.encode(flat_db), val.yq, ydb, limit=R,
                                                     tie_aware=True), 2)
        row = {"biohash_reference": dict(bp.params) if bp else {}, "val_map": res,
               "mean": round(float(np.mean(list(res.values()))), 2), "fit_seconds": secs}
        doc["rows"].append(row)
        print(json.dumps(row), flush=True)
        out.write_text(json.dumps(doc, indent=1))
    for fchange in json.loads(args.filter_grid):
        enc = BioConvHash(k=args.k[0], random_state=args.seed, **{**base, **fchange})
        t0 = time.perf_counter()
        Fdb = enc.fit_filters(Xdb)
        Fq = enc.pooled_features(Xq)
        t_feat = time.perf_counter() - t0
        for lchange in json.loads(args.layer_grid):
            res = {}
            secs = {}
            for k in args.k:
                kp = {**get_preset(BioConvHash, ds).for_k(k), **json.loads(args.base), **fchange, **lchange}
                enc.fit_layer(Fdb, k=k, **_layer_params(kp))
                cq, cdb = enc.codes_from_features(Fq), enc.codes_from_features(Fdb)
                res[str(k)] = round(100 * map_from_codes(cq, cdb, val.yq, ydb, limit=R, tie_aware=True), 2)
                secs[str(k)] = round(enc.fit_seconds_["layer"], 1)
                conv = {kk: round(v, 4) for kk, v in enc.convergence_.items()}
            row = {"filter": fchange, "layer": lchange, "val_map": res, "mean": round(float(np.mean(list(res.values()))), 2),
                   "features_seconds": round(t_feat, 1), "layer_seconds": secs, "convergence_last_k": conv,
                   "n_features_pooled": int(enc.n_features_pooled_)}
            doc["rows"].append(row)
            print(json.dumps(row), flush=True)
            out.write_text(json.dumps(doc, indent=1))
        del Fdb, Fq


if __name__ == "__main__":
    main()
