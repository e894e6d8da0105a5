"""``hashplug bench encode``: encode throughput (rows/s) of an exported model under onnxruntime
(:class:`~hashplug.runtime.OnnxEncoder`) against torch eager (:meth:`~hashplug.graph.Graph.to_torch` + head)
and numpy (``encoder.encode``), at batch 1 and batch 1,024, for every registered encoder fitted on MNIST
pixels / 255; and saved encoders (``--models mnist=PATH.npz cifar10=PATH.npz``, e.g. the BioConvHash
presets) on their own dataset's images, under onnxruntime alone.

Every row reports onnxruntime's milliseconds per image (wall and CPU) against the FLOP bound: the graph's
multiply-adds per image (:meth:`hashplug.graph.Op.macs`) at the peak float32 rate of one core, measured in
the same run (a 1,024 x 1,024 numpy matrix product on one BLAS thread).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..codes import pack_bits
from . import suite
from .common import environment, format_rows, load_mnist_float, median_rate, write_json
from .suite import Suite, register_suite

__all__ = ["ENCODE_BATCHES", "graph_macs", "peak_gflops", "run_encode", "format_encode", "bench_encode"]


#: Batch sizes of the encode benchmark.
ENCODE_BATCHES: tuple[int, ...] = (1, 1024)


def graph_macs(graph: Any) -> int:
    """Multiply-adds per sample of a graph: the sum of its ops' :meth:`~hashplug.graph.Op.macs`."""
    return int(sum(node.op.macs(*(graph.shapes[v] for v in node.inputs)) for node in graph.nodes))


def peak_gflops(size: int = 1024, repeats: int = 5) -> float:
    """Float32 GFLOP/s of one core: the best of ``repeats`` (size x size) numpy matrix products on one BLAS
    thread (``threadpoolctl``), timed by the process's CPU time (on a shared machine the wall time would
    count the other jobs' turns on the core as well)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    best = math.inf
    with threadpool_limits(limits=1):
        a @ b  # warm-up
        for _ in range(int(repeats)):
            t0 = time.process_time()
            a @ b
            best = min(best, max(time.process_time() - t0, 1e-9))
    return 2.0 * size**3 / best / 1e9


def _ms_per_image(call: Callable[[int], Any], rows: int, repeats: int, calls: int) -> dict[str, float]:
    """Median wall and CPU (every thread of the process) milliseconds per row of ``call(i)`` over ``repeats``
    trials of ``calls`` calls each, after one warm-up call."""
    call(0)
    wall, cpu = [], []
    for _ in range(int(repeats)):
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(int(calls)):
            call(i)
        wall.append((time.perf_counter() - t0) / (calls * rows) * 1e3)
        cpu.append((time.process_time() - c0) / (calls * rows) * 1e3)
    return {"wall_ms": float(np.median(wall)), "cpu_ms": float(np.median(cpu)),
            "wall_ms_min": float(np.min(wall)), "repeats": int(repeats), "calls_per_trial": int(calls)}


def _bound_fields(macs: int, wall_ms: float, cpu_ms: float, peak: float) -> dict[str, Any]:
    """The FLOP-bound columns of a row: flops per image, the one-core bound in ms, measured / bound."""
    flops = 2 * int(macs)
    bound_ms = flops / (peak * 1e9) * 1e3
    def sig(v: float) -> float:
        return float(f"{v:.5g}")

    return {
        "flops_per_image": flops,
        "flop_bound_ms": sig(bound_ms),
        "ort_ms_per_image": sig(wall_ms),
        "ort_cpu_ms_per_image": sig(cpu_ms),
        "flop_bound_ratio": round(wall_ms / bound_ms, 2) if bound_ms > 0 else None,
        "cpu_flop_bound_ratio": round(cpu_ms / bound_ms, 2) if bound_ms > 0 else None,
    }


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
    models: Mapping[str, str | os.PathLike[str]] | None = None,
    model_batches: Sequence[int] = (1024,),
    model_repeats: int = 3,
) -> dict[str, Any]:
    """Encode throughput of onnxruntime, torch eager and numpy for every registered encoder, and of saved
    encoders under onnxruntime, with the FLOP bound of each.

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
    models : mapping of str to path-like, or None
        Saved encoders (``hashplug`` ``.npz``) by the dataset whose test images they encode (``"mnist"``,
        ``"cifar10"``: pixels / 255, channels first); methods may then be empty (``methods=[]``).
    model_batches, model_repeats : sequence of int, int
        Rows per call and timed trials of the saved encoders (one call per trial at batch 1,024).

    Returns
    -------
    dict
        ``rows`` (one per method, k and batch size; then one per saved model and batch size) with rows/s per
        backend and the ratios, onnxruntime's ms per image (wall and CPU of every thread) and the FLOP bound
        (``flops_per_image``, ``flop_bound_ms`` at ``peak_gflops_one_core``, ``flop_bound_ratio`` = measured
        / bound), plus settings.
    """
    from tqdm.auto import tqdm

    from ..encoders import available_encoders, get_tags

    t_start = time.perf_counter()
    peak = peak_gflops()
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
    if methods is None:
        methods = [n for n in available_encoders() if get_tags(n).input_kind != "structured"]
    methods = [m.lower() for m in methods]
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
            macs = graph_macs(enc.graph)
            for bs in batches:
                rows.append(_batch_row(enc, backends, Xpool, bs, agree, repeats, target_seconds, max_calls, macs, peak))
        for dataset, model in (models or {}).items():
            rows += _model_rows(dataset, model, data if dataset == "mnist" else None, tmp, model_batches,
                                model_repeats, pool, peak)
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
        "models": {ds: str(p) for ds, p in (models or {}).items()},
        "model_batches": list(model_batches),
        "model_repeats": int(model_repeats),
        "peak_gflops_one_core": round(peak, 1),
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
               agree: dict[str, float], repeats: int, target_seconds: float, max_calls: int, macs: int,
               peak: float) -> dict[str, Any]:
    """Rows/s of every backend at batch size ``bs`` (median of repeats), their ratios and the FLOP bound."""
    n_slots = max(1, Xpool.shape[0] // bs)
    slices = [Xpool[i * bs : (i + 1) * bs] for i in range(n_slots)]
    rates = {}
    for name, f in backends.items():
        if name == "ort":  # wall and CPU time of the same trials
            t0 = time.perf_counter()
            f(slices[0])
            calls = int(min(max_calls, max(1, math.ceil(target_seconds / max(time.perf_counter() - t0, 1e-7)))))
            ort = _ms_per_image(lambda i, f=f, sl=slices: f(sl[i % len(sl)]), bs, repeats, calls)
            rates[name] = {"median": 1e3 / ort["wall_ms"], **ort}
            continue
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
        **_bound_fields(macs, rates["ort"]["wall_ms"], rates["ort"]["cpu_ms"], peak),
        "codes_agree_with_numpy": agree,
        "timing": rates,
    }


def _dataset_images(dataset: str, data: str | os.PathLike[str] | None, n: int) -> tuple[np.ndarray, str]:
    """The first ``n`` test images of ``dataset`` as float32 pixels / 255, channels first, and the file read."""
    from ..data import get_dataset

    ds = get_dataset(dataset)
    path = Path(data) if data else ds.default_path()
    if ds.name == "cifar10":  # decode only the images used (test images follow the 50,000 training ones)
        X, _ = ds.load(path, indices=np.arange(50_000, 50_000 + min(int(n), 10_000)), progress=False)
    else:
        X, _ = ds.load(path)
        X = X[-min(int(n), 10_000):]  # the test split is last
    X = np.asarray(X, dtype=np.float32) / np.float32(ds.scale)
    if X.ndim == 4:  # (n, H, W, C) as stored -> (n, C, H, W)
        X = X.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(X), str(path)


def _model_rows(dataset: str, model: str | os.PathLike[str], data: str | os.PathLike[str] | None, tmp: Path,
                batches: Sequence[int], repeats: int, pool: int, peak: float) -> list[dict[str, Any]]:
    """Rows of a saved encoder on its dataset's test images: onnxruntime ms per image and the FLOP bound."""
    from ..encoders.persistence import load_encoder
    from ..export import to_onnx
    from ..runtime import OnnxEncoder
    from ..validation import HashplugError

    enc = load_encoder(model)
    X, path = _dataset_images(dataset, data, max(int(pool), max(batches)))
    shape = tuple(int(v) for v in enc.input_shape_)
    if int(np.prod(shape)) != int(np.prod(X.shape[1:])):
        raise HashplugError(
            f"the model {str(model)!r} takes inputs of shape {shape}; {dataset} images are {X.shape[1:]}. "
            "Pass it with the dataset it was fitted on (--models DATASET=PATH)."
        )
    X = X.reshape(len(X), *shape)
    onx = OnnxEncoder(to_onnx(enc, tmp / f"model_{dataset}.onnx"))
    sample = X[:64]
    agree = float(np.mean(np.all(onx.encode(sample) == enc.encode(sample), axis=1)))
    macs = graph_macs(enc.graph)
    out = []
    for bs in batches:
        slices = [X[i : i + bs] for i in range(0, len(X) - bs + 1, bs)] or [X[:bs]]
        calls = 1 if bs >= 256 else max(1, 256 // bs)
        t = _ms_per_image(lambda i, sl=slices: onx.encode(sl[i % len(sl)]), len(slices[0]), repeats, calls)
        out.append({
            "method": enc.method_name,
            "k": int(enc.k_),
            "m": int(enc.m_),
            "code_kind": enc.code_kind,
            "batch": int(len(slices[0])),
            "model": str(model),
            "dataset": dataset,
            "data": path,
            "ort_rows_per_s": round(1e3 / t["wall_ms"], 1),
            **_bound_fields(macs, t["wall_ms"], t["cpu_ms"], peak),
            "codes_agree_with_numpy": {"ort": agree},
            "timing": {"ort": t},
        })
    return out


def _encode_result(path: str, settings: dict[str, Any], epochs: int, n_fit: int, fits: list[dict[str, Any]],
                   rows: list[dict[str, Any]], t_start: float) -> dict[str, Any]:
    """The suite's JSON."""
    return {
        "suite": "encode",
        "metric": ("encode throughput, rows/s (median of repeats); ratios ort/torch and ort/numpy; onnxruntime ms per "
                   "image (wall, and CPU of every thread) against the FLOP bound (2 x multiply-adds per image at one "
                   "core's measured float32 matmul peak)"),
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
            "flop_bound_ratio = ort_ms_per_image (wall, onnxruntime's default threads) / flop_bound_ms (one core); "
            "cpu_flop_bound_ratio uses the CPU time of all threads. Saved models (settings.models) are timed under "
            "onnxruntime only, on their dataset's test images (pixels / 255, channels first).",
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
        ("dataset", "data"),
        ("k", "k"),
        ("m", "m"),
        ("batch", "batch"),
        ("ort_rows_per_s", "ort rows/s"),
        ("torch_rows_per_s", "torch rows/s"),
        ("numpy_rows_per_s", "numpy rows/s"),
        ("ort_over_torch", "ort/torch"),
        ("ort_over_numpy", "ort/numpy"),
        ("ort_ms_per_image", "ort ms/img"),
        ("ort_cpu_ms_per_image", "cpu ms/img"),
        ("flop_bound_ms", "bound ms"),
        ("flop_bound_ratio", "ms/bound"),
    ]
    rows = [
        {
            **r,
            "dataset": r.get("dataset", "mnist"),
            "ort_over_torch": f"{r['ort_over_torch']:.2f}x" if "ort_over_torch" in r else None,
            "ort_over_numpy": f"{r['ort_over_numpy']:.2f}x" if "ort_over_numpy" in r else None,
            "ort_ms_per_image": f"{r['ort_ms_per_image']:.4g}",
            "ort_cpu_ms_per_image": f"{r['ort_cpu_ms_per_image']:.4g}",
            "flop_bound_ms": f"{r['flop_bound_ms']:.4g}",
            "flop_bound_ratio": f"{r['flop_bound_ratio']:.1f}x" if r.get("flop_bound_ratio") else None,
        }
        for r in res["rows"]
    ]
    peak = res.get("settings", {}).get("peak_gflops_one_core")
    note = f"\nFLOP bound: multiply-adds x 2 at {peak} GFLOP/s (float32 matmul, one core, this run)" if peak else ""
    return format_rows(rows, cols, nd=0) + note


def _models_arg(values: Sequence[str] | None) -> dict[str, str]:
    """``["mnist=PATH", ...]`` -> ``{"mnist": "PATH"}``; a clear error for anything else."""
    from ..data import get_dataset

    out: dict[str, str] = {}
    for v in values or []:
        name, sep, path = str(v).partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"hashplug bench encode: --models takes DATASET=PATH.npz (e.g. mnist=model.npz); got {v!r}.")
        out[get_dataset(name).name] = path
    return out


class EncodeSuite(Suite):
    """``hashplug bench encode``: encode throughput of onnxruntime, torch eager and numpy per encoder."""

    names = ("encode",)
    help = ("encode throughput (rows/s, ms/image against the FLOP bound) of onnxruntime, torch eager and numpy for "
            "every registered encoder, or of saved encoders (--models)")

    def add_arguments(self, parser: argparse.ArgumentParser, name: str) -> None:
        suite.add_data(parser, "MNIST file (inputs are pixels / 255)")
        suite.add_lengths(parser, "hash lengths (active units or bits) the encoders are built with (default 16)")
        parser.add_argument("--methods", nargs="+", default=None,
                            help="encoder names (default: every registered encoder)")
        suite.add_epochs(parser, "the encoders that train over epochs (default 2: quality is irrelevant here)")
        parser.add_argument("--models", nargs="+", default=None, metavar="DATASET=PATH",
                            help="saved encoders (.npz) timed under onnxruntime on their dataset's test images at "
                                 "batch 1,024, e.g. mnist=bioconvhash_mnist.npz cifar10=bioconvhash_cifar10.npz")
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
        models = _models_arg(getattr(args, "models", None))
        if models:
            kw["models"] = models
            if suite.max_rows_of(args) is not None:
                kw.update(model_batches=(min(1024, int(suite.max_rows_of(args))),), model_repeats=1)
        methods = args.methods if args.methods is not None or not models else []  # --models alone: only those
        res = run_encode(args.data, ks=suite.lengths_of(args), methods=methods, epochs=args.epochs, **kw)
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
