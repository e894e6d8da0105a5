"""Encoding near its arithmetic: where an exported BioConvHash spends its time, and what the export fuses.

1. Fit BioConvHash with the MNIST preset's geometry (500 filters of 3 x 3 and 4 x 4, k_CI = 10, 10 x 10
   pools with stride 5, 320 units) on MNIST when the data is there (a short fit: the weights only need to
   be realistic), else the digits preset on scikit-learn's digits.
2. Export it twice: at opset 18 (the default: each filter bank runs on its non-blank patches only, its
   top-k along contiguous channels, its pool one max-scatter of the k_CI winners) and at opset 17 (the same
   ops without the max-scatter), and check that numpy (``encode``) and both files give the same codes.
3. Profile the opset-18 file per op with onnxruntime's profiler (``SessionOptions.enable_profiling``) and
   print the most expensive ops.
4. Time ``OnnxEncoder.encode`` at one batch against the FLOP bound: the graph's multiply-adds per image
   (``Op.macs``) at the float32 matrix-product rate of one core measured here (``hashplug bench encode``
   prints the same columns for every encoder, ``--models`` for saved ones).
5. Print the graph's working memory per image, which the model card carries (``hashplug.work_bytes``), and
   the run size ``OnnxEncoder`` derives from it (as many images as fit 1 GiB, at most 8,192: 56 for the
   MNIST preset, 35 for CIFAR-10's, where a fixed 8,192 would need 150-250 GB).

Usage::

    python examples/16_fast_encode.py             # about 60 s with MNIST (57 s measured), 15 s without

``HASHPLUG_EXAMPLE_SMALL=1`` (set by the tests): digits, 32 filters, a batch of 256: about 10 s. Run times
measured on 2 CPU cores shared with other jobs. It works in ./hashplug_examples/16_fast_encode/, replaced
at each run.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

import hashplug
from hashplug.bench.encode import graph_macs, peak_gflops
from hashplug.data import get_dataset
from hashplug.encoders import BioConvHash, get_preset
from hashplug.export import to_onnx


def _images(small: bool) -> tuple[np.ndarray, str]:
    """MNIST pixels / 255 as (n, 28, 28) when the data is found (and not ``small``), else digits (n, 8, 8)."""
    if not small:
        try:
            X, _ = get_dataset("mnist").load()
            return X[:12_000].astype(np.float32) / np.float32(255), "mnist"
        except hashplug.HashplugError:
            pass
    from sklearn.datasets import load_digits

    return load_digits().data.reshape(-1, 8, 8).astype(np.float32) / np.float32(16), "digits"


def profile_ops(path: Path, X: np.ndarray, runs: int = 2) -> list[tuple[str, float]]:
    """Milliseconds per op type of one ``session.run`` on X (the least of ``runs`` profiled runs per node)."""
    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.profile_file_prefix = str(path.with_suffix(""))
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        sess.run(None, {"x": X})
    events = json.loads(Path(sess.end_profiling()).read_text())
    per_node: dict[str, list[float]] = collections.defaultdict(list)
    op_of = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node[e["name"]].append(e["dur"] / 1e3)
            op_of[e["name"]] = e["args"]["op_name"]
    by_op: dict[str, float] = collections.defaultdict(float)
    for name, times in per_node.items():
        by_op[op_of[name]] += min(times)
    return sorted(by_op.items(), key=lambda kv: -kv[1])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="digits, fewer filters (for tests / CI)")
    args = ap.parse_args(argv)
    small = args.small or os.environ.get("HASHPLUG_EXAMPLE_SMALL", "") not in ("", "0")
    work = Path.cwd() / "hashplug_examples" / Path(__file__).stem  # replaced at each run
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    # ---- 1. a fitted BioConvHash
    X, data = _images(small)
    params = dict(get_preset(BioConvHash, data).for_k(16))
    params.update(filter_epochs=1, n_patches=20_000, epochs=2, device="cpu", random_state=0)
    if small:
        params.update(n_filters=32, n_patches=5_000)
    fit, test = X[: len(X) - 1024], X[len(X) - 1024 :]
    t0 = time.perf_counter()
    enc = BioConvHash(k=16, **params).fit(fit)
    print(f"BioConvHash on {data}: {params['n_filters']} filters x K = {list(params['kernel_sizes'])}, "
          f"D = {enc.n_features_pooled_}, m = {enc.m_}, fitted in {time.perf_counter() - t0:.1f} s")

    # ---- 2. two exports, one code
    p18 = to_onnx(enc, work / "bioconvhash_opset18.onnx")
    p17 = to_onnx(enc, work / "bioconvhash_opset17.onnx", opset=17)
    batch = test[:256] if small else test
    ref = enc.encode(batch)
    for p in (p18, p17):
        codes = hashplug.OnnxEncoder(p).encode(batch)
        assert np.array_equal(codes, ref), f"{p.name} differs from encode() on {np.any(codes != ref, 1).sum()} rows"
    print(f"numpy, opset 18 and opset 17 give the same {len(batch)} codes")

    # ---- 3. where the time goes
    ops = profile_ops(p18, batch)
    total = sum(t for _, t in ops)
    print(f"onnxruntime profile of the opset-18 file, batch {len(batch)} ({total:.0f} ms in ops):")
    for name, t in ops[:6]:
        print(f"  {name:16s} {t:8.1f} ms  {100 * t / total:4.1f} %")

    # ---- 4. ms per image against the FLOP bound
    onx = hashplug.OnnxEncoder(p18)
    onx.encode(batch)
    t0, c0 = time.perf_counter(), time.process_time()
    onx.encode(batch)
    wall = (time.perf_counter() - t0) / len(batch) * 1e3
    cpu = (time.process_time() - c0) / len(batch) * 1e3
    flops = 2 * graph_macs(enc.graph)
    peak = peak_gflops()
    bound = flops / (peak * 1e9) * 1e3
    print(f"{flops / 1e6:.1f} MFLOP per image; bound {bound:.3f} ms at {peak:.0f} GFLOP/s (one core); measured "
          f"{wall:.3f} ms wall, {cpu:.3f} ms CPU per image: {wall / bound:.1f}x / {cpu / bound:.1f}x the bound")

    # ---- 5. runs sized by working memory: the card says how much one image holds while it is encoded
    work = onx.card.work_bytes
    assert work == enc.graph.work_bytes() > 0
    print(f"working memory {work / 1e6:.2f} MB per image (card key hashplug.work_bytes): OnnxEncoder runs "
          f"{onx.batch_size} images at a time by default (1 GiB), where a fixed 8,192 would hold "
          f"{8192 * work / 2**30:.1f} GiB")
    return {"data": data, "ms_per_image": wall, "cpu_ms_per_image": cpu, "flop_bound_ms": bound,
            "profile": dict(ops), "work_bytes": work, "rows_per_run": onx.batch_size}


if __name__ == "__main__":
    main()
