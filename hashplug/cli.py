"""The ``hashplug`` command line.

Subcommands: ``train``, ``eval``, ``export``, ``ingest``, ``search``, ``demo`` and ``bench``.
Heavy modules (torch, onnx, lancedb) are imported inside the commands that need them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .validation import HashplugError

__all__ = ["main", "build_parser"]


def _parse_params(items: list[str] | None) -> dict[str, Any]:
    """``--param key=value`` pairs; values parsed as JSON when possible (``delta=0.1``, ``center=true``)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise HashplugError(f"--param expects key=value (e.g. --param epochs=10), got {item!r}.")
        key, val = item.split("=", 1)
        try:
            out[key] = json.loads(val)
        except json.JSONDecodeError:
            out[key] = val
    return out


def _make_encoder(method: str, k: int, params: dict[str, Any]) -> Any:
    """``get_encoder(method, k=k, **params)``; ``--param k=...`` is pointed to ``--k``.

    Unknown names are refused by :func:`~hashplug.encoders.get_encoder` (naming the closest valid one and all
    of them) before any data is loaded; values are checked by the encoder at fit time.
    """
    from .encoders import get_encoder

    if "k" in params:
        shown = params["k"] if isinstance(params["k"], str) else json.dumps(params["k"])
        name = type(get_encoder(method)).__name__
        raise HashplugError(
            f"--param k={shown}: the hash length of {name} is set with --k (e.g. --k 16), not --param."
        )
    return get_encoder(method, k=k, **params)


def _load_xy(data: str, scale: float | None) -> tuple[np.ndarray, np.ndarray | None]:
    from .data import load_dataset

    X, y = load_dataset(data)
    X = np.asarray(X, dtype=np.float32)
    if scale:
        X = X / np.float32(scale)
    return X, y


def cmd_train(args: argparse.Namespace) -> int:
    params = _parse_params(args.param)
    params.setdefault("random_state", args.seed)
    if args.method.lower() in ("biohash", "naivebiohash"):
        params.setdefault("verbose", True)
    enc = _make_encoder(args.method, args.k, params)  # before loading data: bad --param fails fast
    X, _ = _load_xy(args.data, args.scale)
    t0 = time.perf_counter()
    enc.fit(X)
    path = enc.save(args.out)
    print(f"trained {type(enc).__name__} (m={enc.m}, k={enc.k}) on {X.shape[0]} rows in "
          f"{time.perf_counter() - t0:.1f} s -> {path}")
    if args.onnx:
        from .export import to_onnx

        print(f"exported ONNX -> {to_onnx(enc, args.onnx)}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .data import per_class_split
    from .encoders import load_encoder
    from .metrics import map_from_codes

    enc = load_encoder(args.model)
    X, y = _load_xy(args.data, args.scale)
    if y is None:
        raise HashplugError(f"{args.data} has no labels; eval needs labelled data.")
    q, db = per_class_split(y, args.per_class, args.seed)
    cq, cdb = enc.encode(X[q]), enc.encode(X[db])
    R = None if args.R in (None, 0) else args.R
    res = {
        "model": str(args.model),
        "method": enc.method_name,
        "m": enc.m,
        "k": enc.k,
        "metric": f"mAP@{'All' if R is None else R}",
        "map": round(100 * map_from_codes(cq, cdb, y[q], y[db], R=R), 3),
        "n_queries": int(len(q)),
        "n_db": int(len(db)),
    }
    print(json.dumps(res, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    name = args.suite
    if name in ("biohash-mnist", "biohash-cifar10"):
        from .bench.biohash_tables import format_table, run_table

        ds = name.split("-", 1)[1]
        res = run_table(
            ds,
            args.data,
            ks=args.k,
            seeds=args.seeds,
            methods=args.methods,
            out=args.out,
            hp=json.loads(args.hp) if args.hp else None,
            epochs=args.epochs,
            limit=args.limit,
        )
        print(format_table(res))
        print(f"total {res['total_seconds']} s" + (f"; wrote {args.out}" if args.out else ""))
        return 0
    if name in ("biohash-tune-mnist", "biohash-tune-cifar10"):
        from .bench.biohash_tables import tune

        ds = name.rsplit("-", 1)[1]
        res = tune(ds, args.data, ks=args.k or (2, 8, 32), epochs=args.epochs, out=args.out, limit=args.limit,
                   grid=json.loads(args.grid) if args.grid else None,
                   method=(args.methods or ["BioHash"])[0])
        print(json.dumps(res["best"], indent=2))
        return 0
    from .bench import run_suite

    return run_suite(name, args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hashplug", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="fit an encoder and save it (.npz, optionally ONNX)")
    t.add_argument("method", help="encoder name (see hashplug.available_encoders())")
    t.add_argument("--data", required=True, help="'digits', 'mnist', 'cifar10', 'ag_news' or a .npy/.npz/.parquet file")
    t.add_argument("--k", type=int, required=True, help="hash length (active units or bits)")
    t.add_argument("--out", required=True, help="model file to write (.npz)")
    t.add_argument("--onnx", help="also export ONNX to this path")
    t.add_argument("--param", action="append", help="encoder parameter key=value (repeatable)")
    t.add_argument("--scale", type=float, default=None, help="divide inputs by this (e.g. 255 for pixels)")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="mAP of a saved model on labelled data (per-class query split)")
    e.add_argument("model")
    e.add_argument("--data", required=True)
    e.add_argument("--per-class", type=int, default=100, help="queries per class")
    e.add_argument("--R", type=int, default=None, help="mAP@R (default All)")
    e.add_argument("--scale", type=float, default=None)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out")
    e.set_defaults(func=cmd_eval)

    b = sub.add_parser("bench", help="benchmark suites (print a table, write JSON)")
    b.add_argument("suite", help="biohash-mnist, biohash-cifar10, biohash-tune-mnist, biohash-tune-cifar10, "
                                 "encode, ingest, ag-news")
    b.add_argument("--data", default=None, help="dataset file (default: ../shared/data)")
    b.add_argument("--k", type=int, nargs="+", default=None, help="hash lengths")
    b.add_argument("--seeds", type=int, default=3)
    b.add_argument("--methods", nargs="+", default=None)
    b.add_argument("--epochs", type=int, default=None, help="override training epochs")
    b.add_argument("--limit", type=int, default=None, help="subset size (smoke runs; not the paper protocol)")
    b.add_argument("--hp", default=None, help='JSON overrides, e.g. \'{"BioHash": {"delta": 0.1}}\'')
    b.add_argument("--grid", default=None, help="JSON grid for tuning")
    b.add_argument("--rows", type=int, default=None, help="rows for the ingest benchmark")
    b.add_argument("--out", default=None, help="JSON file to write")
    b.set_defaults(func=cmd_bench)

    from . import cli_serving

    cli_serving.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code.

    Bad input is reported in one place, argparse-style: ``hashplug <command>: error: <message>`` on stderr,
    exit code 2, no traceback. Commands raise :class:`~hashplug.validation.HashplugError` for it (the other
    ``ValueError`` / ``FileNotFoundError`` cases are caught too, as before). Usage errors found by argparse
    itself exit with 2 through ``SystemExit``.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (HashplugError, ValueError, FileNotFoundError) as exc:
        print(f"hashplug {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
