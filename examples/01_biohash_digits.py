"""Step 1 in miniature: BioHash against the paper's baselines on scikit-learn digits.

Trains BioHash (the Krotov-Hopfield plasticity rule, k-hot WTA codes) and the baselines of the
BioHash paper (LSH, PCAHash, ITQ, SH, FlyHash, NaiveBioHash) on the digits database, encodes the
queries and prints mAP@All per hash length, with BioHash's convergence (row p-norms).

Usage::

    python examples/01_biohash_digits.py            # k = 4 8 16, ~30 s
    python examples/01_biohash_digits.py --small    # k = 8 only, fewer epochs (tests / CI)

``HASHPLUG_EXAMPLE_SMALL=1`` has the same effect as ``--small``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import hashplug
from hashplug.data import load_digits, per_class_split
from hashplug.metrics import map_from_codes

METHODS = ["lsh", "pcahash", "itq", "sh", "flyhash", "naivebiohash", "biohash"]


def main(argv: list[str] | None = None) -> dict[str, dict[int, float]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--small", action="store_true")
    args = ap.parse_args(argv)
    if args.small or os.environ.get("HASHPLUG_EXAMPLE_SMALL", "") not in ("", "0"):
        args.k, args.epochs = [8], 15

    X, y = load_digits()
    X = X / np.float32(16.0)
    q, db = per_class_split(y, 20, args.seed)
    table: dict[str, dict[int, float]] = {}
    for name in METHODS:
        for k in args.k:
            params: dict = {"k": k, "random_state": args.seed}
            if name in ("biohash", "naivebiohash"):
                params.update(epochs=args.epochs, lr=0.2, delta=0.05)
            if name in ("pcahash", "itq") and k > X.shape[1]:
                continue
            t0 = time.perf_counter()
            enc = hashplug.get_encoder(name, **params).fit(X[db])
            score = 100 * map_from_codes(enc.encode(X[q]), enc.encode(X[db]), y[q], y[db])
            table.setdefault(type(enc).__name__, {})[k] = score
            if name == "biohash":
                norms = enc.row_norms_
                print(f"BioHash k={k}: m={enc.m}, row p-norms in [{norms.min():.3f}, {norms.max():.3f}], "
                      f"fit {time.perf_counter() - t0:.1f} s")
    print(f"\nmAP@All (%) on digits, {len(q)} queries / {len(db)} database rows, seed {args.seed}")
    print(f"{'method':<14}" + "".join(f"{'k=' + str(k):>9}" for k in args.k))
    for name, row in table.items():
        print(f"{name:<14}" + "".join(f"{row[k]:>9.2f}" if k in row else f"{'-':>9}" for k in args.k))
    return table


if __name__ == "__main__":
    main()
