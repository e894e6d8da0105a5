"""The fair-comparison protocol of the table benches (issue 30), on a small MNIST table.

1. A validation split cut the old way (seed 0's training side, nothing excluded) shares rows with the test
   queries of seeds 1 and 2, which the same table reports; ``overlap_report`` measures it and
   ``check_no_overlap`` refuses it. The fair split (``fair_validation_split``: the seed's training side minus
   every reported seed's test queries) measures zero.
2. The chance floor is exact: ``chance_map`` equals the mean mAP over many random rankings (within their
   sampling error), without drawing any.
3. A table run with the protocol: each seed tunes BioHash on its own fair split (``tune_budget``: the same number
   of settings for every method with knobs, the grid stored in the JSON), LSH and ITQ beside it, and the two
   reference rows of every table: ``chance`` (a random ranking) and ``float`` (cosine on the same pixels).

Usage::

    python examples/17_fair_protocol.py            # 4,000 MNIST images, k = 2 8, 2 seeds: about 2 minutes
    HASHPLUG_EXAMPLE_SMALL=1 python examples/17_fair_protocol.py   # tests: 1,200 images, k = 4, 1 epoch

Needs ``../shared/data/mnist`` (or ``HASHPLUG_DATA``); without it, parts 1 and 2 run on synthetic labels and
part 3 is skipped with a message.
"""

from __future__ import annotations

import json
import os

import numpy as np

from hashplug.bench.protocol import chance_map, check_no_overlap, overlap_report
from hashplug.metrics import mean_average_precision
from hashplug.validation import HashplugError


def labels(small: bool) -> tuple[np.ndarray | None, str]:
    """MNIST's labels when the file is there (the table needs it), else None."""
    from hashplug.bench.tables import load_data

    try:
        _, y, name = load_data("mnist", None, 1200 if small else 4000, flat=True)
        return np.asarray(y), name
    except (HashplugError, OSError):
        return None, "mnist"


def part1_split(y: np.ndarray, name: str) -> None:
    from hashplug.bench.tables import fair_validation_split, split_data, test_queries

    print("1. validation splits against the test queries of seeds 0, 1, 2")
    X = np.zeros((len(y), 1), np.float32)  # rows only: the split needs labels
    queries = test_queries("mnist", y, [0, 1, 2], name)
    split0 = split_data("mnist", X, y, 0, name)
    # the old way: validation queries and database drawn from seed 0's training side, nothing excluded
    rng = np.random.default_rng(0)
    pick = rng.permutation(split0.db_idx)
    old = {"queries": pick[: len(queries[0])], "database": pick[len(queries[0]):]}
    tests = {str(s): {"queries": q} for s, q in queries.items()}
    print("   old split:", json.dumps(overlap_report(old, tests)))
    try:
        check_no_overlap(overlap_report(old, tests))
    except HashplugError as exc:
        print("   refused:", str(exc)[:110], "...")
    per_class = max(2, int(np.bincount(split0.ydb).min()) // 10)
    val, record = fair_validation_split(split0, queries, per_class)
    print("   fair split:", json.dumps({t: o for t, o in record["overlap"].items() if "queries" in t}))
    print(f"   fair split: {record['sizes']}, rows sha256 {record['rows_sha256'][:16]}...")


def part2_chance(y: np.ndarray) -> None:
    print("2. the chance floor: exact vs the mean over random rankings")
    rng = np.random.default_rng(1)
    yq, ydb = y[:20], y[20:]
    K = min(100, len(ydb))
    exact = chance_map(yq, ydb, K)
    draws = [mean_average_precision(rng.random((len(yq), len(ydb))), yq, ydb, limit=K) for _ in range(200)]
    se = np.std(draws) / np.sqrt(len(draws))
    print(f"   mAP@{K}: exact {100 * exact:.2f} %, 200 random rankings {100 * np.mean(draws):.2f} +- "
          f"{100 * se:.2f} %")
    assert abs(np.mean(draws) - exact) < 5 * se + 1e-9, "the exact chance floor disagrees with sampling"


def part3_table(small: bool) -> None:
    from hashplug.bench.biohash_tables import format_table, run_table

    print("3. a table under the protocol (BioHash tuned per seed on its own split)")
    res = run_table("mnist", None, ks=[4] if small else [2, 8], seeds=1 if small else 2,
                    methods=["LSH", "ITQ", "BioHash"], epochs=1 if small else None, limit=1200 if small else 4000,
                    tune_budget=2 if small else 4, verbose=False)
    print(format_table(res))
    print("   tuning:", json.dumps({"settings_per_method": res["tuning"]["settings_per_method"],
                                    "chosen_per_seed": res["tuning"]["chosen_per_seed"]}))
    for s, rec in res["validation"]["per_seed"].items():
        shared = {t: o for t, o in rec["overlap"].items() if "queries" in t}
        print(f"   seed {s} validation split: {rec['sizes']}, test-query overlap {shared}")
    k = str(4 if small else 8)
    assert res["rows"]["chance"][k] < res["rows"]["LSH"][k], "a code below chance"


def main() -> None:
    small = os.environ.get("HASHPLUG_EXAMPLE_SMALL", "") not in ("", "0")
    y, name = labels(small)
    found = y is not None
    if not found:
        print("MNIST not found (../shared/data/mnist or HASHPLUG_DATA): parts 1-2 on synthetic labels, no table")
        y = np.random.default_rng(0).integers(0, 10, 1200)
        name = "mnist-limit1200"
    part1_split(y, name)
    part2_chance(y)
    if found:
        part3_table(small)


if __name__ == "__main__":
    main()
