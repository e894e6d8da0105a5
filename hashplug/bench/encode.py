"""``hashplug bench encode``: encode throughput (rows/s) of an exported model under onnxruntime
(:class:`~hashplug.runtime.OnnxEncoder`) against torch eager (:meth:`~hashplug.graph.Graph.to_torch` + head)
and numpy (``encoder.encode``), at batch 1 and batch 1,024, for every registered encoder fitted on MNIST
pixels / 255.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..codes import pack_bits
from . import suite
from .common import environment, format_rows, load_mnist_float, median_rate, write_json
from .suite import Suite, register_suite

__all__ = ["ENCODE_BATCHES", "run_encode", "format_encode", "bench_encode"]


#: Batch sizes of the encode benchmark.
ENCODE_BATCHES: tuple[int, ...] = (1, 1024)


def _torch_encoder(enc: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Torch eager twin of ``enc.encode(X, layout="packed")``: graph module, head, pack (float32, no_grad)."""
    import torch

    g = enc.graph
    module = g.to_torch().eval()
    head, k, m, shape = g.code_kind, int(g.k), int(g.m), g.input_shape

    def encode(X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32).reshape(X.shape[0], *shape))
            scores = module(x)
            if head == "khot":
                idx = torch.topk(scores, k, dim=1).indices
                bits = torch.zeros((x.shape[0], m), dtype=torch.bool).scatter_(1, idx, True)
            else:
                bits = scores > 0
            return pack_bits(bits.numpy())

    return encode


def run_encode(
    data: str | os.PathLike[str] | None = None,
    *,
    ks: Sequence[int] | None = None,
    methods: Sequence[str] | None = None,
    epochs: int | None = None,
    n_fit: int = 10_000,
    pool: int = 8192,
    batches: Sequence[int] = ENCODE_BATCHES,
    repeats: int = 7,
    target_seconds: float = 0.3,
    max_calls: int = 2000,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Encode throughput of onnxruntime, torch eager and numpy for every registered encoder.

    Parameters
    ----------
    data : path-like or None
        ``mnist.npz``; default :func:`hashplug.data.default_data_path` ``("mnist")``. Inputs are pixels / 255.
    ks : sequence of int or None
        Hash lengths (default ``[16]``).
    methods : sequence of str or None
        Encoder names (default :func:`hashplug.available_encoders`).
    epochs : int or None
        Training epochs of the encoders tagged ``iterative`` (default 2: quality is irrelevant for
        throughput); they train on the CPU.
    n_fit : int
        Rows (sampled from the 70,000) used for fitting.
    pool : int
        Distinct rows the timed calls cycle through.
    batches : sequence of int
        Rows per encode call.
    repeats, target_seconds, max_calls : int, float, int
        Timing: median over ``repeats`` trials, each of about ``target_seconds`` (at most ``max_calls`` calls).
    seed : int
        Seed of the row sampling and of the encoders.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    dict
        ``rows`` (one per method, k and batch size) with rows/s per backend and the ratios, plus settings.
    """
    from tqdm.auto import tqdm

    from ..encoders import available_encoders, get_tags

    t_start = time.perf_counter()
    X, _, path = load_mnist_float(data)
    rng = np.random.default_rng(seed)
    fit_idx = rng.choice(X.shape[0], size=min(n_fit, X.shape[0]), replace=False)
    Xfit = X[fit_idx]
    need = max(int(pool), max(batches))
    pool_idx = rng.choice(X.shape[0], size=need, replace=need > X.shape[0])
    Xpool = np.ascontiguousarray(X[pool_idx])
    del X
    ks = list(ks) if ks else [16]
    # every encoder of vectors or images (structured encoders take named inputs, not MNIST rows)
    methods = [m.lower() for m in (methods or [n for n in available_encoders() if get_tags(n).input_kind != "structured"])]
    epochs = 2 if epochs is None else int(epochs)

    rows: list[dict[str, Any]] = []
    fits: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="hashplug_bench_encode_"))
    jobs = [(m, k) for m in methods for k in ks]
    try:
        for method, k in tqdm(jobs, desc="encode bench", disable=not progress):
            enc, fit, backends = _fit_and_export(method, k, seed, epochs, Xfit, tmp)
            fits.append(fit)
            # the three backends must produce the same codes (torch's top-k may break exact ties differently)
            ref = enc.encode(Xpool[:256])
            agree = {b: float(np.mean(np.all(f(Xpool[:256]) == ref, axis=1))) for b, f in backends.items()}
            for bs in batches:
                rows.append(_batch_row(enc, backends, Xpool, bs, agree, repeats, target_seconds, max_calls))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    settings = {
        "ks": ks,
        "methods": methods,
        "batches": list(batches),
        "n_fit": int(Xfit.shape[0]),
        "pool_rows": int(Xpool.shape[0]),
        "repeats": repeats,
        "target_seconds_per_trial": target_seconds,
        "biohash_epochs": epochs,  # the epochs of every iterative encoder (0.1.0 key name)
        "seed": seed,
    }
    return _encode_result(path, settings, epochs, int(Xfit.shape[0]), fits, rows, t_start)


def _fit_and_export(method: str, k: int, seed: int, epochs: int, Xfit: np.ndarray,
                    tmp: Path) -> tuple[Any, dict[str, Any], dict[str, Callable[[np.ndarray], np.ndarray]]]:
    """``method`` at ``k`` fitted on ``Xfit`` and exported; its fit record and its three encode backends."""
    from ..encoders import encoder_class, get_encoder, get_tags
    from ..export import to_onnx
    from ..runtime import OnnxEncoder

    cls = encoder_class(method)
    params: dict[str, Any] = {"k": k}
    if "random_state" in cls._param_names():
        params["random_state"] = seed
    if get_tags(cls).iterative:
        params.update(epochs=epochs, device="cpu")
    enc = get_encoder(cls.method_name, **params)
    # encoders of images take the (n, 28, 28) images; the others the flat pixels
    shape = (-1, 28, 28) if get_tags(cls).input_kind == "images" else (-1, Xfit.shape[1])
    t0 = time.perf_counter()
    enc.fit(Xfit.reshape(shape))
    fit_s = time.perf_counter() - t0
    onnx_path = to_onnx(enc, tmp / f"{method}_{k}.onnx")
    ort = OnnxEncoder(onnx_path)
    tenc = _torch_encoder(enc)
    backends: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "ort": lambda xb, o=ort: o.encode(xb),
        "torch": tenc,
        "numpy": lambda xb, e=enc: e.encode(xb),
    }
    fit = {
        "method": enc.method_name,
        "k": enc.k_,
        "m": enc.m_,
        "fit_seconds": round(fit_s, 2),
        "params": {kk: v for kk, v in enc.get_params().items() if kk != "verbose"},
    }
    return enc, fit, backends


def _batch_row(enc: Any, backends: dict[str, Callable[[np.ndarray], np.ndarray]], Xpool: np.ndarray, bs: int,
               agree: dict[str, float], repeats: int, target_seconds: float, max_calls: int) -> dict[str, Any]:
    """Rows/s of every backend at batch size ``bs`` (median of repeats) and their ratios."""
    n_slots = max(1, Xpool.shape[0] // bs)
    slices = [Xpool[i * bs : (i + 1) * bs] for i in range(n_slots)]
    rates = {}
    for name, f in backends.items():
        rates[name] = median_rate(
            lambda i, f=f, sl=slices: f(sl[i % len(sl)]),
            bs,
            repeats=repeats,
            target_seconds=target_seconds,
            max_calls=max_calls,
        )
    return {
        "method": enc.method_name,
        "k": int(enc.k_),
        "m": int(enc.m_),
        "code_kind": enc.code_kind,
        "batch": int(bs),
        "ort_rows_per_s": round(rates["ort"]["median"], 1),
        "torch_rows_per_s": round(rates["torch"]["median"], 1),
        "numpy_rows_per_s": round(rates["numpy"]["median"], 1),
        "ort_over_torch": round(rates["ort"]["median"] / rates["torch"]["median"], 3),
        "ort_over_numpy": round(rates["ort"]["median"] / rates["numpy"]["median"], 3),
        "codes_agree_with_numpy": agree,
        "timing": rates,
    }


def _encode_result(path: str, settings: dict[str, Any], epochs: int, n_fit: int, fits: list[dict[str, Any]],
                   rows: list[dict[str, Any]], t_start: float) -> dict[str, Any]:
    """The suite's JSON."""
    return {
        "suite": "encode",
        "metric": "encode throughput, rows/s (median of repeats); ratios ort/torch and ort/numpy",
        "data": path,
        "input": "MNIST pixels / 255, float32 (n, 784); encoders tagged input_kind=images fit on (n, 28, 28)",
        "settings": settings,
        "notes": [
            "Encoders are fitted only to have realistic weights; code quality is irrelevant here "
            f"(iterative encoders trained {epochs} epoch(s) on {n_fit} rows).",
            "All three backends return packed uint8 codes: ort = OnnxEncoder.encode (one session.run per "
            "call); torch = torch.from_numpy + Graph.to_torch module + head (topk / > 0) + codes.pack_bits, eager, "
            "float32, no_grad; numpy = encoder.encode (validation + Graph.numpy + head + pack).",
            "FlyHash scores accumulate in float64 on every backend (exact ties), so it is slow everywhere.",
            "Timings are noisy (shared 2-core machine); compare ratios within a row.",
        ],
        "fits": fits,
        "rows": rows,
        "total_seconds": round(time.perf_counter() - t_start, 1),
        "environment": environment(),
    }


def format_encode(res: dict[str, Any]) -> str:
    """Text table of :func:`run_encode` results."""
    cols = [
        ("method", "method"),
        ("k", "k"),
        ("m", "m"),
        ("batch", "batch"),
        ("ort_rows_per_s", "ort rows/s"),
        ("torch_rows_per_s", "torch rows/s"),
        ("numpy_rows_per_s", "numpy rows/s"),
        ("ort_over_torch", "ort/torch"),
        ("ort_over_numpy", "ort/numpy"),
    ]
    rows = [
        {
            **r,
            "ort_over_torch": f"{r['ort_over_torch']:.2f}x",
            "ort_over_numpy": f"{r['ort_over_numpy']:.2f}x",
        }
        for r in res["rows"]
    ]
    return format_rows(rows, cols, nd=0)


class EncodeSuite(Suite):
    """``hashplug bench encode``: encode throughput of onnxruntime, torch eager and numpy per encoder."""

    names = ("encode",)
    help = "encode throughput (rows/s) of onnxruntime, torch eager and numpy for every registered encoder"

    def add_arguments(self, parser: argparse.ArgumentParser, name: str) -> None:
        suite.add_data(parser, "MNIST file (inputs are pixels / 255)")
        suite.add_lengths(parser, "hash lengths (active units or bits) the encoders are built with (default 16)")
        parser.add_argument("--methods", nargs="+", default=None,
                            help="encoder names (default: every registered encoder)")
        suite.add_epochs(parser, "the encoders that train over epochs (default 2: quality is irrelevant here)")
        suite.add_max_rows(parser, "smoke run: fit on N rows, a pool of N rows and short timings")
        suite.add_out(parser)

    def run(self, name: str, args: argparse.Namespace) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if suite.max_rows_of(args) is not None:
            kw = {
                "n_fit": int(suite.max_rows_of(args)),
                "pool": int(suite.max_rows_of(args)),
                "repeats": 2,
                "target_seconds": 0.01,
                "max_calls": 3,
            }
        res = run_encode(args.data, ks=suite.lengths_of(args), methods=args.methods, epochs=args.epochs, **kw)
        write_json(res, args.out)
        return res

    def print(self, name: str, result: dict[str, Any], args: argparse.Namespace) -> None:
        print(format_encode(result))
        print(f"total {result['total_seconds']} s" + (f"; wrote {args.out}" if args.out else ""))


ENCODE = register_suite(EncodeSuite())


def bench_encode(args: argparse.Namespace) -> int:
    """``hashplug bench encode`` (:class:`EncodeSuite`): run, print the table, write ``--out``.

    ``--limit N`` is a smoke run: N fitting rows, a pool of N rows and short timings.
    """
    return ENCODE.main("encode", args)
