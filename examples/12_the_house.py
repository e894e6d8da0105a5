"""The house of 0.2: encoders are scikit-learn transformers, a bench suite is one class, one word per idea.

1. An encoder as a step of a scikit-learn ``Pipeline`` (``transform`` gives +-1 columns, so a k-NN classifier
   on them ranks by Hamming distance), and its dataset presets (``Encoder.presets``, what ``hashplug train``
   starts from).
2. A benchmark suite of your own, registered by one class and run as ``hashplug bench <name>`` with only its
   own flags.
3. The words (docs/architecture.md, Vocabulary): ``limit`` results, ``(ids, distances)``, ``layout``, int32
   indices, the *Hamming index* (``build_hamming_index``) vs the *LanceDB index* (``create_lancedb_index``);
   a 0.1.0 name still works, with a DeprecationWarning.

Run: ``python examples/12_the_house.py`` (about 10 s on 2 CPU cores: 8 s measured; it works in
./hashplug_examples/12_the_house and leaves its files there).
"""

from __future__ import annotations

import argparse
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.validation import check_is_fitted

import hashplug
from hashplug.bench.common import write_json
from hashplug.bench.suite import Suite, add_out, register_suite
from hashplug.cli import main as cli
from hashplug.data import load_digits
from hashplug.export import to_onnx
from hashplug.hamming import hamming_distances, hamming_search
from hashplug.metrics import precision_at_r


def pipeline_step(Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, yte: np.ndarray) -> None:
    print("1. an encoder inside a scikit-learn Pipeline")
    enc = hashplug.get_encoder("biohash", k=16, random_state=0)
    pipe = make_pipeline(FunctionTransformer(lambda X: X / 16.0), enc, KNeighborsClassifier(n_neighbors=5))
    pipe.fit(Xtr, ytr)
    check_is_fitted(enc)  # scikit-learn's own fitted-state check
    print(f"   BioHash k=16 (m={enc.m_}) -> 5-NN by Hamming distance: test accuracy {pipe.score(Xte, yte):.3f}")
    print(f"   transform: {enc.transform(Xte[:2] / 16.0).shape} int8 +-1; presets of BioHash: "
          f"{sorted(type(enc).presets)}")


@register_suite
class DigitsPrecisionSuite(Suite):
    """``hashplug bench digits-p10``: precision@10 of a few encoders on scikit-learn's digits (this file)."""

    names = ("digits-p10",)
    help = "precision@10 on scikit-learn's digits for a few encoders at one hash length"

    def add_arguments(self, parser: argparse.ArgumentParser, name: str) -> None:
        parser.add_argument("--methods", nargs="+", default=["lsh", "itq", "biohash"], help="encoder names")
        parser.add_argument("--k", type=int, default=16, help="active units (the encoders' k)")
        add_out(parser)

    def run(self, name: str, args: argparse.Namespace) -> dict[str, Any]:
        X, y = load_digits()
        X = X / 16.0
        q, db = np.arange(0, len(X), 10), np.setdiff1d(np.arange(len(X)), np.arange(0, len(X), 10))
        rows = []
        for method in args.methods:
            enc = hashplug.get_encoder(method, k=args.k, random_state=0).fit(X[db])
            dist = hamming_distances(enc.encode(X[q]), enc.encode(X[db]))
            p10 = precision_at_r(dist, y[q], y[db], limit=10, tie_aware=True)
            rows.append({"method": method, "k": args.k, "p_at_10": round(p10, 4)})
        res = {"suite": name, "rows": rows}
        write_json(res, args.out)
        return res

    def print(self, name: str, result: dict[str, Any], args: argparse.Namespace) -> None:
        for r in result["rows"]:
            print(f"   {r['method']:>8} k={r['k']}: P@10 {r['p_at_10']:.3f}")


def bench_suite(work: Path) -> None:
    print("2. a bench suite of your own: one class, its own flags")
    assert cli(["bench", "digits-p10", "--k", "16", "--out", str(work / "p10.json")]) == 0
    print(f"   wrote {work / 'p10.json'}")


def words(Xtr: np.ndarray, work: Path) -> None:
    print("3. one word per idea")
    enc = hashplug.get_encoder("biohash", k=8, random_state=0).fit(Xtr / 16.0)
    onnx = to_onnx(enc, work / "biohash8.onnx")
    idx = hashplug.OnnxEncoder(onnx).encode(Xtr[:3] / 16.0, layout="indices")
    print(f"   layout='indices': {idx.shape} {idx.dtype} (the same type as the table's list<int32>)")
    ids, dist = hamming_search(enc.encode(Xtr[:2] / 16.0), enc.encode(Xtr / 16.0), 3)
    print(f"   hamming_search -> (ids, distances): ids {ids[0].tolist()}, distances {dist[0].tolist()}")
    res = hashplug.ingest(str(work / "db"), Xtr / 16.0, name="digits", model=str(onnx), progress=False)
    bound = hashplug.build_hamming_index(res.table)  # hashplug's exact index, beside the table
    hits = hashplug.search(res.table, Xtr[0] / 16.0, limit=3)
    print(f"   Hamming index of {len(bound)} rows; search(limit=3) answered by "
          f"{hits.schema.metadata[b'hashplug.search_path'].decode()}: _distance {hits['_distance'].to_pylist()}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = hashplug.search(res.table, Xtr[0] / 16.0, k=3)  # the 0.1.0 name of limit
    assert old["_distance"].to_pylist() == hits["_distance"].to_pylist()
    print(f"   search(k=3) still works: {caught[0].category.__name__}: {caught[0].message}")


def main() -> None:
    work = Path("hashplug_examples") / "12_the_house"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    X, y = load_digits()
    n = 900 if os.environ.get("HASHPLUG_EXAMPLE_SMALL") == "1" else 1500
    pipeline_step(X[:n], y[:n], X[n:], y[n:])
    bench_suite(work)
    words(X[:n], work)


if __name__ == "__main__":
    main()
