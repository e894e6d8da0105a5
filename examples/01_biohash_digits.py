"""Step 1 in miniature: BioHash against the paper's baselines on scikit-learn digits.

Trains every registered encoder -- BioHash (the Krotov-Hopfield plasticity rule, k-hot WTA codes) and
the baselines of the BioHash paper (LSH, PCAHash, ITQ, SH, FlyHash, NaiveBioHash) -- on the digits
database, encodes the queries and prints mAP@All per hash length, with the convergence (row p-norms) of
the encoders trained over epochs. What differs between encoders comes from their tags and their
``"digits"`` preset, not from their names.

Usage::

    python examples/01_biohash_digits.py            # k = 4 8 16: about 100 s (102 s measured)
    python examples/01_biohash_digits.py --small    # k = 8 only, fewer epochs (tests / CI): 16-31 s

Run times measured on 2 CPU cores shared with other jobs; a progress bar over the encoders runs on stderr.

``HASHPLUG_EXAMPLE_SMALL=1`` has the same effect as ``--small``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from tqdm.auto import tqdm

import hashplug
from hashplug.data import load_digits, per_class_split
from hashplug.encoders import get_preset, get_tags
from hashplug.metrics import map_from_codes


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
    for name in tqdm(hashplug.available_encoders(), desc="encoders", leave=False):  # progress on stderr
        tags, preset = get_tags(name), get_preset(name, "digits")
        if tags.input_kind == "structured":  # named inputs (image and object features), not digit vectors
            continue
        for k in args.k:
            if tags.k_at_most_n_features and k > np.prod(X.shape[1:]):  # k <= n_features
                continue
            enc = hashplug.get_encoder(name, k=k)
            if "random_state" in enc.get_params():
                enc.set_params(random_state=args.seed)
            if preset is not None:
                enc.set_params(**preset.for_k(k))  # hyperparameters for digits, with their source
            if tags.iterative:
                enc.set_params(epochs=args.epochs)
            t0 = time.perf_counter()
            enc.fit(X[db])
            score = 100 * map_from_codes(enc.encode(X[q]), enc.encode(X[db]), y[q], y[db])
            table.setdefault(tags.display_name, {})[k] = score
            norms = getattr(enc, "row_norms_", None) if tags.iterative else None
            if norms is not None:
                print(f"{tags.display_name} k={k}: m={enc.m_}, row p-norms in [{norms.min():.3f}, "
                      f"{norms.max():.3f}], fit {time.perf_counter() - t0:.1f} s")
    print(f"\nmAP@All (%) on digits, {len(q)} queries / {len(db)} database rows, seed {args.seed}")
    print(f"{'method':<14}" + "".join(f"{'k=' + str(k):>9}" for k in args.k))
    for name, row in table.items():
        print(f"{name:<14}" + "".join(f"{row[k]:>9.2f}" if k in row else f"{'-':>9}" for k in args.k))
    return table


if __name__ == "__main__":
    main()
