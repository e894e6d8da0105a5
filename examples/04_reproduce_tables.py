"""Reproduce the BioHash paper's Table 1 (MNIST) or Table 2 (CIFAR-10) with ``hashplug bench``.

The full runs are CLI commands (tens of minutes)::

    hashplug bench biohash-mnist --data ../shared/data/mnist/mnist.npz --seeds 3 --out mnist.json
    hashplug bench biohash-cifar10 --data ../shared/data/cifar10/cifar10_jpeg_q75.npz --seeds 1 --out cifar10.json

This script calls the same function on a small stratified subset (``--limit``; not the paper's
protocol, so the figures are only a smoke check) and prints ours beside the paper's numbers.

Usage::

    python examples/04_reproduce_tables.py --data ../shared/data/mnist/mnist.npz --limit 3000
    python examples/04_reproduce_tables.py             # the default subset of 5,000 at k = 2 8: about 50 s
    python examples/04_reproduce_tables.py --small     # tests / CI: about 15 s; skips cleanly without the data

Run times measured on 2 CPU cores shared with other jobs (52 s and 14-16 s); a progress bar over the
(method, k) runs shows on stderr.
"""

from __future__ import annotations

import argparse
import os

from hashplug.bench.biohash_tables import format_table, run_table
from hashplug.data import default_data_dir


def main(argv: list[str] | None = None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist", choices=["mnist", "cifar10"])
    ap.add_argument("--data", default=None)
    ap.add_argument("--limit", type=int, default=5000)
    ap.add_argument("--k", type=int, nargs="+", default=[2, 8])
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--small", action="store_true")
    args = ap.parse_args(argv)
    if args.small or os.environ.get("HASHPLUG_EXAMPLE_SMALL", "") not in ("", "0"):
        args.limit, args.k, args.epochs = 1500, [4], 3
    if args.data is None and default_data_dir() is None:
        print("No dataset found (pass --data PATH to the MNIST npz); nothing to do.")
        return None
    res = run_table(args.dataset, args.data, ks=args.k, seeds=1, limit=args.limit, epochs=args.epochs,
                    verbose=True)  # a progress bar over the (method, k) runs, on stderr
    print(format_table(res))
    print(f"protocol: {res['protocol']}")
    return res


if __name__ == "__main__":
    main()
