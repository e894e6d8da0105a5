"""BioConvHash: convolutional filters learned by the local plasticity rule, end to end.

1. Fit BioConvHash (filters on unit-length patches -> patch-normalised convolution -> cross-channel
   inhibition -> max-pooling -> a BioHash layer) and BioHash on scikit-learn's digits as 8 x 8 images, and
   compare their mAP at k = 8 and 16 (the digits presets, seed 0).
2. Write a PNG of the learned filters.
3. Export BioConvHash to ONNX, check bit-identical codes against ``encode``, and serve it with
   ``hashplug.OnnxEncoder`` (numpy + onnxruntime only).
4. Ingest the images into a LanceDB table as flat vectors (the model was fitted with ``image_shape=(8, 8)``,
   so its ONNX input is the flat 64-vector) and search it.

Usage::

    python examples/06_bioconvhash.py               # about 30 s (32 s measured)
    python examples/06_bioconvhash.py --png filters.png

``HASHPLUG_EXAMPLE_SMALL=1`` (set by the tests) fits fewer epochs: about 25 s. Run times measured on 2 CPU cores shared with other jobs.
It works in ./hashplug_examples/06_bioconvhash/, replaced at each run.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

import hashplug
from hashplug.bench.bioconvhash_tables import plot_filters
from hashplug.data import per_class_split
from hashplug.encoders import BioConvHash, BioHash, get_preset
from hashplug.export import check_parity, to_onnx
from hashplug.metrics import map_from_codes


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--png", type=Path, default=None, help="where to write the filter grid (default: a temp dir)")
    ap.add_argument("--small", action="store_true", help="fewer epochs (for tests / CI)")
    args = ap.parse_args(argv)
    small = args.small or os.environ.get("HASHPLUG_EXAMPLE_SMALL", "") not in ("", "0")
    work = Path.cwd() / "hashplug_examples" / Path(__file__).stem  # replaced at each run
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    d = load_digits()
    X, y = d.data.astype(np.float32), d.target  # (1797, 64) pixels 0..16
    q, db = per_class_split(y, 20, 0)

    # ---- 1. BioConvHash vs BioHash on the same split
    results = {}
    conv = None
    for k in (8, 16):
        cp = dict(get_preset(BioConvHash, "digits").for_k(k))
        bp = dict(get_preset(BioHash, "digits").for_k(k))
        if small:
            cp.update(epochs=20, filter_epochs=3)
            bp.update(epochs=20)
        conv = BioConvHash(k=k, random_state=0, device="cpu", image_shape=(8, 8), **cp).fit(X[db])
        bio = BioHash(k=k, random_state=0, device="cpu", **bp).fit(X[db])
        m_conv = 100 * map_from_codes(conv.encode(X[q]), conv.encode(X[db]), y[q], y[db], tie_aware=True)
        m_bio = 100 * map_from_codes(bio.encode(X[q]), bio.encode(X[db]), y[q], y[db], tie_aware=True)
        results[k] = (m_conv, m_bio)
        print(f"k={k:>2}: mAP BioConvHash {m_conv:5.2f}  BioHash {m_bio:5.2f}  "
              f"(BioConvHash: {conv.n_features_pooled_} pooled features, m={conv.m_}; "
              f"fit {sum(conv.fit_seconds_.values()):.1f} s)")
    assert conv is not None
    print("convergence:", {kk: round(v, 4) for kk, v in conv.convergence_.items()})

    # ---- 2. the learned filters
    png = plot_filters(conv, args.png or work / "filters.png", title="BioConvHash filters on digits")
    print(f"filters -> {png}")

    # ---- 3. ONNX export and torch-free serving
    path = to_onnx(conv, work / "bioconvhash.onnx")
    rep = check_parity(conv, path, X)
    print(f"ONNX parity on {rep['n_rows']} images: identical={rep['identical']}")
    onx = hashplug.OnnxEncoder(path)
    print(f"OnnxEncoder input_shape={onx.input_shape}, m={onx.m}, k={onx.k}")

    # ---- 4. LanceDB: flat vectors in, k-hot codes out
    out = hashplug.ingest(
        work / "db", X[db], name="digits", model=str(path), layout="packed",
        columns={"label": y[db].astype(np.int64)}, progress=False,
    )
    hits = hashplug.search(out.table, X[q[0]], limit=10, columns=["label"])
    labels = hits["label"].to_pylist()
    print(f"query label {y[q[0]]}: top-10 labels {labels}, precision@10 {np.mean(np.array(labels) == y[q[0]]):.2f}")
    return {"map": results, "parity": rep["identical"]}


if __name__ == "__main__":
    main()
