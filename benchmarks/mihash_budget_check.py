"""Does a longer budget, a larger minibatch or another setting close a gap between MIHash and DPSH? (validation)

Trains each method at each (epochs, batch size) on the validation splits of ``hashplug bench mihash-*``
(the training sets of the seed-0 and seed-1 splits, each class cut into training items, queries and a
disjoint database) and prints / writes validation mAP@All with the objective's history (epochs 10, 50, the
middle and the last). No test data is touched.

    python benchmarks/mihash_budget_check.py --dataset mnist --bits 12 24 \
        --out benchmarks/results/mihash_mnist_budget_diag.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np

from hashplug.bench.common import write_json
from hashplug.bench.mihash import DATASETS, _make, _map, supervised_data, validation_sets

DEFAULT_SETTINGS = {
    "MIHash-MLP": {"optimizer": "adam", "lr": 0.002, "gamma": 3.0, "n_bins": 7},
    "DPSH-MLP": {"optimizer": "adam", "lr": 0.002, "eta": 0.3},
}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist", choices=sorted(DATASETS))
    ap.add_argument("--data", default=None, help="dataset file (default: the shared data folder)")
    ap.add_argument("--bits", type=int, nargs="+", default=[12, 24])
    ap.add_argument("--budgets", default="[[50, 256], [150, 256], [150, 512], [300, 256]]",
                    help="JSON list of [epochs, batch_size]")
    ap.add_argument("--settings", default=json.dumps(DEFAULT_SETTINGS),
                    help="JSON {method: a setting or a list of settings}, e.g. weight decays to compare")
    ap.add_argument("--limit", type=int, default=None, help="stratified subset (smoke runs)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    X, y, tr_pc, q_pc = supervised_data(args.dataset, args.data, args.limit)
    vals = validation_sets(X, y, tr_pc, q_pc)
    out: list[dict] = []
    for bits in args.bits:
        for name, gs in json.loads(args.settings).items():
            for g, (ep, bs) in itertools.product(gs if isinstance(gs, list) else [gs], json.loads(args.budgets)):
                t0 = time.perf_counter()
                got, hist = [], []
                for vs, Xt, yt, Xq, yq, Xd, yd in vals:
                    enc = _make(name, bits, vs, {**g, "epochs": int(ep), "batch_size": int(bs)}, args.dataset,
                                None).fit(Xt, yt)
                    got.append(_map(enc.encode(Xq), enc.encode(Xd), yq, yd))
                    h = next(iter(enc.history_.values()))
                    hist.append([round(h[i], 4) for i in (9, 49, len(h) // 2, len(h) - 1) if i < len(h)])
                row = {"bits": bits, "method": name, "setting": g, "epochs": int(ep), "batch_size": int(bs),
                       "val_map": round(100 * float(np.mean(got)), 2), "per_split": [round(100 * v, 2) for v in got],
                       "history_10_50_mid_last": hist, "seconds": round(time.perf_counter() - t0, 1)}
                print(json.dumps(row), flush=True)
                out.append(row)
                write_json(out, args.out)  # after every row: an interrupted check keeps what it measured
    return out


if __name__ == "__main__":
    main()
