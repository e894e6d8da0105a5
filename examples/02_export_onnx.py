"""Export an encoder to ONNX and serve it with numpy + onnxruntime only.

Fits an encoder on scikit-learn's digits (1797 images of 8x8), exports it with
``hashplug.export.to_onnx``, loads the file with ``hashplug.OnnxEncoder`` and checks that both give
bit-identical codes.

Usage::

    python examples/02_export_onnx.py                 # BioHash, about 15 s (13 s measured)
    python examples/02_export_onnx.py --small         # fewer epochs: about 10 s, mostly imports

Run times measured on 2 CPU cores shared with other jobs. The ONNX file is written to ./hashplug_examples/02_export_onnx/ (or --out).
    python examples/02_export_onnx.py --method lsh --out /tmp/lsh.onnx

``HASHPLUG_EXAMPLE_SMALL=1`` has the same effect as ``--small``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

import hashplug
from hashplug.encoders import get_tags
from hashplug.export import check_parity, read_metadata, to_onnx


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="biohash", help=f"one of {hashplug.available_encoders()}")
    ap.add_argument("--k", type=int, default=8, help="hash length (active units for k-hot codes)")
    ap.add_argument("--out", type=Path, default=None, help="ONNX file to write (default: a temp dir)")
    ap.add_argument("--small", action="store_true", help="train briefly (for tests / CI)")
    args = ap.parse_args(argv)
    small = args.small or os.environ.get("HASHPLUG_EXAMPLE_SMALL", "") not in ("", "0")

    X = load_digits().data.reshape(-1, 8, 8).astype(np.float32) / 16.0  # (1797, 8, 8), values in [0, 1]

    encoder = hashplug.get_encoder(args.method, k=args.k)
    if "random_state" in encoder.get_params():
        encoder.set_params(random_state=0)
    if get_tags(encoder).iterative:  # trained over epochs: keep it short, on the CPU
        encoder.set_params(epochs=2 if small else 10, device="cpu")
    encoder.fit(X)
    print(f"fitted {encoder!r}: m={encoder.m_}, k={encoder.k_}, {encoder.code_kind} codes")

    out = args.out or Path.cwd() / "hashplug_examples" / Path(__file__).stem / f"{args.method}.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    path = to_onnx(encoder, out)
    print(f"exported to {path} ({path.stat().st_size / 1024:.1f} KiB)")

    # Serving side: only numpy + onnxruntime are needed from here on.
    onx = hashplug.OnnxEncoder(path)
    codes = onx.encode(X[:3])
    print(f"OnnxEncoder: m={onx.m}, k={onx.k}, n_bytes={onx.n_bytes}, input_shape={onx.input_shape}")
    print("first codes (packed uint8):", codes.tolist())
    if onx.code_kind == "khot":
        print("first codes (indices):", onx.encode(X[:3], layout="indices").tolist())

    card = read_metadata(path)
    print("metadata:")
    for key, val in card.to_metadata().items():
        print(f"  {key} = {val}")
    print(f"file sha256 = {onx.file_sha256}")

    report = check_parity(encoder, path, X)
    print("parity:", report)
    if not report["identical"]:
        raise SystemExit("numpy and onnxruntime codes differ")
    return report


if __name__ == "__main__":
    main()
