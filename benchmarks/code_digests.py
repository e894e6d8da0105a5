"""Digests of the codes every registered encoder gives, numpy and ONNX, for refactoring checks.

A refactor that must not move the numbers ("nothing moves but the code") is checked by running this
script before and after and comparing the JSON: for every encoder in the registry (fitted with
``random_state=0`` on 10,000 MNIST training images / 255 at two hash lengths) it records the sha256 of
the packed codes of the 10,000 MNIST test images from ``encoder.encode`` (numpy) and from the exported
ONNX file run by onnxruntime, and whether the two agree bit for bit.

    python benchmarks/code_digests.py --out before.json
    ... change the code ...
    python benchmarks/code_digests.py --out after.json --compare before.json

Pin the torch thread count (``HASHPLUG_NUM_THREADS=2``) on both runs: BioHash's training sums in a
thread-dependent order.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def digest(codes: np.ndarray) -> str:
    c = np.ascontiguousarray(codes, dtype=np.uint8)
    return hashlib.sha256(str(c.shape).encode() + c.tobytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    import hashplug
    from hashplug.data import get_dataset
    from hashplug.export import to_onnx

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/mnist/mnist.npz"))
    ap.add_argument("--train", type=int, default=10000, help="training images")
    ap.add_argument("--image-rows", type=int, default=500,
                    help="training and test images of image encoders (BioConvHash at its defaults ran out of 24 GB "
                         "for 2,000 at k=16)")
    ap.add_argument("--k", type=int, nargs="+", default=[2, 16])
    ap.add_argument("--epochs", type=int, default=3, help="epochs of iteratively trained encoders")
    ap.add_argument("--out", required=True)
    ap.add_argument("--compare", default=None, help="an earlier JSON: report every digest that differs")
    args = ap.parse_args(argv)

    mnist = get_dataset("mnist")
    X, y = mnist.load(args.data, flat=True)  # (70000, 784) vectors
    X = X.astype(np.float32) / np.float32(mnist.scale)
    Xtr, Xte, ytr = X[: args.train], X[60000:], y[: args.train]
    rows = {}
    t0 = time.perf_counter()
    skipped = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in hashplug.available_encoders():
            tags = hashplug.encoders.get_tags(name)
            if tags.input_kind == "structured":  # named inputs (scenes), not MNIST rows: its own tests hold it
                skipped[name] = "structured inputs (scenes)"
                continue
            shape = (-1, 28, 28) if tags.input_kind == "images" else (-1, 784)
            xtr, xte = Xtr.reshape(shape), Xte.reshape(shape)
            ytr_ = ytr
            if tags.input_kind == "images":
                xtr, xte, ytr_ = xtr[: args.image_rows], xte[: args.image_rows], ytr[: args.image_rows]
            for k in args.k:
                params = {"k": k, "random_state": 0}
                enc = hashplug.get_encoder(name, **params)
                if "epochs" in enc.get_params():
                    enc.set_params(epochs=args.epochs)
                enc.fit(xtr, ytr_) if tags.uses_labels else enc.fit(xtr)
                ref = enc.encode(xte)
                path = to_onnx(enc, Path(tmp) / f"{name}_{k}.onnx")
                got = hashplug.OnnxEncoder(path).encode(xte, "packed")  # positional: 0.1.0 format=, 0.2 layout=
                rows[f"{name}/k={k}"] = {
                    "m": int(enc.m_),
                    "numpy_sha256": digest(ref),
                    "onnx_sha256": digest(got),
                    "onnx_equals_numpy": bool(np.array_equal(ref, got)),
                }
                print(f"{name:>14} k={k:<3} m={enc.m_:<6} numpy {rows[f'{name}/k={k}']['numpy_sha256'][:16]} "
                      f"onnx==numpy {rows[f'{name}/k={k}']['onnx_equals_numpy']}", flush=True)
    out = {"rows": rows, "skipped": skipped, "settings": vars(args), "seconds": round(time.perf_counter() - t0, 1),
           "hashplug_version": hashplug.__version__}
    Path(args.out).write_text(json.dumps(out, indent=1))
    if args.compare:
        old = json.loads(Path(args.compare).read_text())["rows"]
        diff = [key for key in sorted(set(old) | set(rows))
                if old.get(key, {}).get("numpy_sha256") != rows.get(key, {}).get("numpy_sha256")
                or old.get(key, {}).get("onnx_sha256") != rows.get(key, {}).get("onnx_sha256")]
        print(f"compared with {args.compare}: {len(rows) - len(diff)} identical, {len(diff)} differ {diff}")
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
