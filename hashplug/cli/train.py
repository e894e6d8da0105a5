"""Training-side commands of the ``hashplug`` CLI: ``train``, ``eval``, ``export``, ``demo`` and ``bench``.

They fit, evaluate or export encoders and need the ``train`` extra (torch, onnx); heavy modules are
imported inside the commands. What a command does differently for one encoder (a seed, a progress bar,
epochs, the digits hyperparameters of the demo) comes from the encoder's tags and presets
(:func:`hashplug.encoders.get_tags`, :func:`hashplug.encoders.get_preset`), never from its name.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..modelcard import check_input_divisor
from ..validation import HashplugError

__all__ = ["COMMANDS", "run_demo"]


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


def _refuse_structured(cls: Any) -> None:
    """Encoders tagged ``input_kind="structured"`` take named inputs, which a dataset file does not hold."""
    from ..encoders import get_tags

    if get_tags(cls).input_kind == "structured":
        raise HashplugError(
            f"{cls.__name__} takes several named inputs per sample (image and object features, positions), not the "
            "rows of a dataset file; train it from Python (see examples/10_neurohash.py) or with its benchmark "
            f"(hashplug bench {cls.method_name}-ablation)."
        )


def _make_encoder(
    method: str, k: int, params: dict[str, Any], seed: int | None = None, dataset: str | None = None
) -> Any:
    """``get_encoder(method, k=k, **params)``; ``--param k=...`` is pointed to ``--k``.

    ``method`` is a registry or display name. The encoder's tags decide the defaults: ``random_state=seed``
    when it takes a seed, ``verbose=True`` (a progress bar) when it trains over epochs. When ``dataset`` (a
    reference dataset's canonical name) is given and the encoder has a preset for it
    (:func:`~hashplug.encoders.get_preset`), the preset's parameters at hash length ``k`` are the starting
    point and ``params`` (``--param``) override them; the choice is printed. Unknown parameter names are
    refused by :func:`~hashplug.encoders.get_encoder` (naming the closest valid one and all of them) before any
    data is loaded; values are checked by the encoder at fit time.
    """
    from ..encoders import encoder_class, get_encoder, get_preset, get_tags

    cls = encoder_class(method)
    _refuse_structured(cls)
    if "k" in params:
        shown = params["k"] if isinstance(params["k"], str) else json.dumps(params["k"])
        raise HashplugError(
            f"--param k={shown}: the hash length of {cls.__name__} is set with --k (e.g. --k 16), not --param."
        )
    preset = None if dataset is None else get_preset(cls, dataset)
    given = dict(params)
    if preset is not None:
        params.update({**preset.for_k(k), **given})
    if seed is not None and "random_state" in cls._param_names():
        params.setdefault("random_state", seed)
    if get_tags(cls).iterative:
        params.setdefault("verbose", True)
    enc = get_encoder(cls.method_name, k=k, **params)
    if preset is not None:
        kept = {p: v for p, v in preset.for_k(k).items() if p not in given}
        shown = ", ".join(f"{p}={v!r}" for p, v in kept.items()) or "nothing (every value overridden by --param)"
        over = f"; --param overrides {', '.join(sorted(given))}" if given else ""
        print(f"preset {cls.__name__}/{dataset} at k={k}: {shown}{over} (source: {preset.source})")
    return enc


def _dataset_name(data: str) -> str | None:
    """The canonical name of the reference dataset ``--data`` names (a name, an alias or the path of a reference
    file, as :func:`~hashplug.data.load_dataset` resolves them), or None for a user's own file."""
    from ..data import DATASETS, DataFileError, get_dataset

    try:
        return get_dataset(data).name
    except DataFileError:
        pass
    name = Path(data).name
    return next((ds.name for ds in DATASETS.values() if ds.file is not None and Path(ds.file).name == name), None)


def _load_xy(data: str, scale: float | None, encoder: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Samples (float32, divided by ``scale``) and labels; images keep their natural shape only for an
    encoder whose tags say it takes images, every other encoder gets flat vectors (n, d)."""
    from ..data import load_dataset
    from ..encoders import get_tags

    natural = encoder is not None and get_tags(encoder).input_kind == "images"
    X, y = load_dataset(data, flat=not natural)
    X = np.asarray(X, dtype=np.float32)
    if scale is not None:
        X = X / np.float32(check_input_divisor(scale))
    return X, y


def _scale_for(enc: Any, scale: float | None) -> float | None:
    """``--scale`` for a loaded model: checked (finite > 0) and refused when the model already divides its raw
    input (it was trained with ``--scale``: the division is in its graph), which would scale twice."""
    if scale is None:
        return None
    check_input_divisor(scale)
    if getattr(enc, "input_divisor_", None) is not None:
        raise HashplugError(
            f"--scale {scale:g} would scale the input twice: the model already divides its raw input by "
            f"{enc.input_divisor_:g} (recorded by `hashplug train --scale`). Leave out --scale."
        )
    return scale


def _check_out(path: str | None, flag: str) -> None:
    """Refuse an output path that cannot be written (a folder, or under a file) before any work is done."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise HashplugError(f"{flag} {path!r} is a folder; pass the path of the file to write (e.g. {p / 'model'}).")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise HashplugError(f"{flag} {path!r} is under {str(parent)!r}, which is a file, not a folder.")
            break


def _labels_for(enc: Any, y: np.ndarray | None, data: str, unsupervised: bool) -> np.ndarray | None:
    """The labels ``fit`` gets: the data's labels for an encoder tagged ``uses_labels`` (refused without any,
    unless ``--unsupervised``), None for every other encoder (they would ignore them)."""
    from ..encoders import get_tags

    if not get_tags(enc).uses_labels or unsupervised:
        return None
    if y is None:
        raise HashplugError(
            f"{type(enc).__name__} learns from labels (its tags say uses_labels: neighbours = same label), but "
            f"{data!r} has none. Pass a labelled dataset (a reference dataset, or a .npz/.parquet file with a "
            "label column), or add --unsupervised to train it with its unsupervised neighbour rule."
        )
    return y


def _hint_scale(enc: Any, dataset: str | None, scale: float | None) -> None:
    """Presets are tuned on inputs divided by the dataset's full-intensity value: say so when ``--scale`` is missing."""
    from ..data import get_dataset
    from ..encoders import get_preset

    if dataset is None or scale is not None or get_preset(enc, dataset) is None:
        return
    full = get_dataset(dataset).scale
    if full != 1.0:
        print(f"note: the preset was tuned on {dataset} / {full:g}; pass --scale {full:g} for the inputs it expects")


def cmd_train(args: argparse.Namespace) -> int:
    params = _parse_params(args.param)
    _check_out(args.out, "--out")
    _check_out(args.onnx, "--onnx")
    if args.scale is not None:
        check_input_divisor(args.scale)  # before training: a bad --scale fails fast
    dataset = None if args.no_preset else _dataset_name(args.data)
    # before loading data: bad --param fails fast
    enc = _make_encoder(args.method, args.k, params, seed=args.seed, dataset=dataset)
    _hint_scale(enc, dataset, args.scale)
    X, y = _load_xy(args.data, args.scale, enc)
    y = _labels_for(enc, y, args.data, args.unsupervised)
    if y is not None:
        print(f"labels: {len(np.unique(y))} classes from {args.data} (neighbours = same label)")
    t0 = time.perf_counter()
    enc.fit(X, y)
    if args.scale is not None:
        # the model takes raw inputs: the division is its graph's first node (saved, exported, in the card)
        enc.set_input_divisor(args.scale)
    path = enc.save(args.out)
    print(f"trained {type(enc).__name__} (m={enc.m_}, k={enc.k_}) on {X.shape[0]} rows in "
          f"{time.perf_counter() - t0:.1f} s -> {path}")
    if args.onnx:
        from ..export import to_onnx

        print(f"exported ONNX -> {to_onnx(enc, args.onnx)}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ..data import per_class_split
    from ..encoders import load_encoder
    from ..metrics import map_from_codes

    enc = load_encoder(args.model)
    _check_out(args.out, "--out")
    X, y = _load_xy(args.data, _scale_for(enc, args.scale), enc)
    if y is None:
        raise HashplugError(f"{args.data} has no labels; eval needs labelled data.")
    q, db = per_class_split(y, args.per_class, args.seed)
    cq, cdb = enc.encode(X[q]), enc.encode(X[db])
    if args.limit_R is not None:
        print("hashplug eval: --R is deprecated (removed in 0.3.0); use --limit.", file=sys.stderr)
        args.limit = args.limit_R
    R = None if args.limit in (None, 0) else args.limit
    res = {
        "model": str(args.model),
        "method": enc.method_name,
        "m": enc.m_,
        "k": enc.k_,
        "metric": f"mAP@{'All' if R is None else R}",
        "map": round(100 * map_from_codes(cq, cdb, y[q], y[db], limit=R), 3),
        "n_queries": int(len(q)),
        "n_db": int(len(db)),
    }
    print(json.dumps(res, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``hashplug bench SUITE``: the suite's subcommand (from the bench registry) runs it."""
    _check_out(getattr(args, "out", None), "--out")  # every suite: an unwritable --out fails before the run
    _check_out(getattr(args, "png", None), "--png")
    return int(args.run_bench(args) or 0)


def cmd_export(args: argparse.Namespace) -> int:
    from ..encoders import load_encoder
    from ..export import check_parity, to_onnx

    enc = load_encoder(args.model)
    _check_out(args.out, "--out")
    scale = _scale_for(enc, args.scale)  # before writing anything
    if scale is not None and not args.check:
        raise HashplugError("--scale applies to the --check data only; pass --check DATA, or leave out --scale.")
    X = _load_xy(args.check, scale, enc)[0] if args.check else None  # a bad --check fails before the export
    path = to_onnx(enc, args.out, opset=args.opset)
    print(f"exported {type(enc).__name__} (m={enc.m_}, k={enc.k_}, {enc.code_kind}) -> {path}")
    if X is not None:
        rep = check_parity(enc, path, X)
        print(json.dumps({k: v for k, v in rep.items() if not isinstance(v, np.ndarray)}, indent=2, default=str))
        return 0 if rep["identical"] else 1
    return 0


def run_demo(
    folder: str | Path = "hashplug_demo",
    method: str = "biohash",
    k: int = 16,
    epochs: int = 60,
    n_show: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """The README's main job on scikit-learn digits, end to end.

    Train ``method`` -> export ONNX -> ingest the database into a LanceDB table under ``folder`` ->
    search every query through LanceDB -> print mAP, precision@10, storage per row against float32 and
    a few neighbours. Returns the figures as a dict.

    ``method`` is a registry or display name; its ``"digits"`` preset (if any) supplies the
    hyperparameters and ``epochs`` applies to encoders that train over epochs (tags).
    """
    import lancedb
    import pyarrow as pa

    from ..codes import storage_bits
    from ..data import load_digits, per_class_split
    from ..encoders import encoder_class, get_encoder, get_preset, get_tags
    from ..export import to_onnx
    from ..integrations.ingest import ingest
    from ..integrations.lancedb import create_lancedb_index, get_function, search
    from ..metrics import map_from_codes
    from ..runtime import OnnxEncoder

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    X, y = load_digits()
    # digits pixels are 0..16; one flat vector per row (the LanceDB vector column), whatever the loader's shape.
    # The encoder is fitted on pixels / 16 and records the division (its graph's first node), so the exported
    # model, the table and the searches all take the raw pixels.
    scale = np.float32(16.0)
    X = np.asarray(X, dtype=np.float32).reshape(len(X), -1)
    q, db = per_class_split(y, 20, seed)
    print(f"[1/5] data: scikit-learn digits, {len(db)} database rows, {len(q)} queries (20 per class), d={X.shape[1]}")

    t0 = time.perf_counter()
    cls = encoder_class(method)
    _refuse_structured(cls)
    params: dict[str, Any] = {"k": k}
    if "random_state" in cls._param_names():
        params["random_state"] = seed
    preset = get_preset(cls, "digits")
    if preset is not None:
        params.update(preset.for_k(k))
    if get_tags(cls).iterative:
        params["epochs"] = epochs
    enc = get_encoder(cls.method_name, **params).fit(X[db] / scale).set_input_divisor(float(scale))
    print(f"[2/5] trained {type(enc).__name__}: m={enc.m_} units, k={enc.k_} active, {time.perf_counter() - t0:.1f} s")

    onnx_path = to_onnx(enc, folder / f"{method}_k{k}.onnx")
    onx = OnnxEncoder(onnx_path)
    same = bool(np.array_equal(onx.encode(X), enc.encode(X)))
    print(f"[3/5] exported ONNX -> {onnx_path} ({onnx_path.stat().st_size / 1024:.0f} KiB); "
          f"onnxruntime codes identical to the encoder's: {same}")

    uri = folder / "lancedb"
    con = lancedb.connect(uri)
    if "digits" in con.table_names():
        con.drop_table("digits")
    res = ingest(uri, X[db], name="digits", model=str(onnx_path), layout="packed",
                 columns={"id": db.astype(np.int64), "label": y[db].astype(np.int64)}, progress=False)
    tbl = res.table
    if tbl.count_rows() >= 256:
        create_lancedb_index(tbl)
    col, _, _ = get_function(tbl)
    code_type = tbl.schema.field(col).type
    print(f"[4/5] ingested {res.rows_written} rows into {uri}/digits.lance; code column {col}: {code_type}")

    cq, cdb = onx.encode(X[q]), onx.encode(X[db])
    map_all = 100 * map_from_codes(cq, cdb, y[q], y[db])
    precs, neighbours = [], []
    for i, qi in enumerate(q):
        hits = search(tbl, X[qi], 10, columns=["id", "label"], exact=True)
        labels = np.asarray(hits["label"].to_pylist())
        precs.append(float(np.mean(labels == y[qi])))
        if i < n_show:
            neighbours.append((int(qi), int(y[qi]), hits["id"].to_pylist()[:5], labels[:5].tolist(),
                               hits["_distance"].to_pylist()[:5]))
    float_bytes = X.shape[1] * 4
    code_bytes = pa.array([0], pa.uint8()).type.byte_width * onx.n_bytes
    bits_idx = storage_bits(onx.m, onx.k, onx.code_kind)
    out = {
        "method": type(enc).__name__,
        "m": onx.m,
        "k": onx.k,
        "map_all": round(map_all, 2),
        "precision_at_10": round(100 * float(np.mean(precs)), 2),
        "bytes_per_row_float32": float_bytes,
        "bytes_per_row_packed": code_bytes,
        "bits_per_row_as_indices": bits_idx,
        "onnx_parity": same,
    }
    print(f"[5/5] quality over {len(q)} queries: mAP@All {out['map_all']:.2f}%, "
          f"label precision@10 via LanceDB {out['precision_at_10']:.2f}%")
    print(f"      storage per row: float32 {float_bytes} B; packed code {code_bytes} B "
          f"({float_bytes / code_bytes:.1f}x smaller); as {onx.k} indices {bits_idx} bits "
          f"({8 * float_bytes / bits_idx:.1f}x smaller)")
    for qi, lab, ids, labs, dists in neighbours:
        print(f"      query #{qi} (label {lab}): neighbours {ids} labels {labs} hamming {dists}")
    return out


def cmd_demo(args: argparse.Namespace) -> int:
    _check_out(args.out, "--out")
    if args.dir is not None and Path(args.dir).exists() and not Path(args.dir).is_dir():
        raise HashplugError(f"--dir {args.dir!r} is a file; pass a folder for the model and the LanceDB table.")
    out = run_demo(args.dir, method=args.method, k=args.k, epochs=args.epochs, seed=args.seed)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))
    return 0


#: Placeholder epilog of ``hashplug train --help``; :class:`_MethodsHelpFormatter` replaces it by the registry's
#: methods when the help is printed (building the parser never imports the encoders: the serving commands
#: share it).
_METHODS_EPILOG = "<the registered encoders>"


def methods_help() -> str:
    """The registered encoders as ``hashplug train --help`` lists them: name, display name, code kind, input.

    Read from the registry and the encoders' tags (:func:`hashplug.encoders.available_encoders`,
    :func:`hashplug.encoders.get_tags`), so a newly registered encoder is listed without editing the CLI.
    """
    from ..encoders import available_encoders, get_tags

    names = available_encoders()
    width = max(map(len, names), default=0)
    lines = ["methods (hashplug.available_encoders()):"]
    for name in names:
        tags = get_tags(name)
        code = "k-hot" if tags.code_kind == "khot" else "dense"
        notes = [f"{code} codes"]
        if tags.uses_labels:
            notes.append("uses labels when given")
        if tags.input_kind == "images":
            notes.append("images")
        if tags.input_kind == "structured":
            notes.append("named inputs: train it from Python, not with this command")
        lines.append(f"  {name:<{width}}  {tags.display_name}: {', '.join(notes)}")
    return "\n".join(lines)


class _MethodsHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help formatter that fills in :data:`_METHODS_EPILOG` from the registry, only when help is printed."""

    def add_text(self, text: str | None) -> None:
        super().add_text(methods_help() if text is _METHODS_EPILOG else text)


def _add_train(sub: Any) -> None:
    """``hashplug train``."""
    t = sub.add_parser("train", help="fit an encoder and save it (.npz, optionally ONNX)",
                       epilog=_METHODS_EPILOG, formatter_class=_MethodsHelpFormatter)
    t.add_argument("method", help="encoder name, e.g. biohash (the list below)")
    t.add_argument("--data", required=True, help="'digits', 'mnist', 'cifar10', 'ag_news' or a .npy/.npz/.parquet file")
    t.add_argument("--k", type=int, required=True, help="hash length (active units or bits)")
    t.add_argument("--out", required=True, help="model file to write (.npz)")
    t.add_argument("--onnx", help="also export ONNX to this path")
    t.add_argument("--param", action="append", help="encoder parameter key=value (repeatable)")
    t.add_argument("--scale", type=float, default=None,
                   help="divide inputs by this (e.g. 255 for pixels; > 0); recorded in the model, whose graph then "
                        "takes raw inputs (no --scale at eval, export, ingest or search)")
    t.add_argument("--seed", type=int, default=0,
                   help="random_state of encoders that take one (default 0)")
    t.add_argument("--no-preset", action="store_true",
                   help="start from the encoder's defaults, not its preset for a reference dataset")
    t.add_argument("--unsupervised", action="store_true",
                   help="train an encoder that learns from labels (tagged uses_labels) without them, by its "
                        "unsupervised neighbour rule; without this flag such an encoder needs labelled data")
    t.set_defaults(func=cmd_train)


def _add_eval(sub: Any) -> None:
    """``hashplug eval``."""
    e = sub.add_parser("eval", help="mAP of a saved model on labelled data (per-class query split)")
    e.add_argument("model", help="model file written by hashplug train (.npz)")
    e.add_argument("--data", required=True,
                   help="labelled data: 'digits', 'mnist', 'cifar10', 'ag_news' or a .npy/.npz/.parquet file")
    e.add_argument("--per-class", type=int, default=100, help="queries per class")
    e.add_argument("--limit", type=int, default=None,
                   help="results scored per query: mAP@limit (the R of mAP@R; default All)")
    e.add_argument("--R", dest="limit_R", type=int, default=None, help="deprecated 0.1.0 name of --limit")
    e.add_argument("--scale", type=float, default=None,
                   help="divide the data by this (> 0), for a model trained without --scale only")
    e.add_argument("--seed", type=int, default=0, help="seed of the query/database split (default 0)")
    e.add_argument("--out", help="also write the figures as JSON to this file")
    e.set_defaults(func=cmd_eval)


class _BenchParser(argparse.ArgumentParser):
    """The ``hashplug bench`` parser: its suites (one subcommand each, with only its own flags) are read from
    the bench registry (:mod:`hashplug.bench.suite`) when the parser is first used, so building the CLI's
    parser for another command (``hashplug ingest``) imports nothing of the bench."""

    _suites_added = False

    def _add_suites(self) -> None:
        if not self._suites_added:
            self._suites_added = True
            from ..bench.suite import add_suite_parsers

            add_suite_parsers(self)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._add_suites()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._add_suites()
        return super().format_help()

    def format_usage(self) -> str:
        self._add_suites()
        return super().format_usage()


def _add_bench(sub: Any) -> None:
    """``hashplug bench``: one subcommand per registered suite (:mod:`hashplug.bench.suite`)."""
    b = sub.add_parser("bench", help="benchmark suites (print a table, write JSON); hashplug bench SUITE --help",
                       description="Benchmark suites: each prints a table and writes JSON (--out). "
                                   "hashplug bench SUITE --help lists the suite's own flags.")
    b.__class__ = _BenchParser  # argparse makes every subparser of one class; this one adds its suites lazily
    b.set_defaults(func=cmd_bench)


def _add_export(sub: Any) -> None:
    """``hashplug export``."""
    e = sub.add_parser("export", help="export a saved model (.npz) to ONNX")
    e.add_argument("model", help="model file written by hashplug train (.npz)")
    e.add_argument("--out", required=True, help="ONNX file to write")
    e.add_argument("--opset", type=int, default=18, help="ONNX opset of the file (default 18: the fused BioConvHash pooling needs it)")
    e.add_argument("--check", help="dataset to verify onnxruntime parity on (name or file)")
    e.add_argument("--scale", type=float, default=None,
                   help="divide the --check data by this (> 0), for a model trained without --scale only")
    e.set_defaults(func=cmd_export)


def _add_demo(sub: Any) -> None:
    """``hashplug demo``."""
    d = sub.add_parser("demo", help="train on digits -> ONNX -> LanceDB -> search, printing quality")
    d.add_argument("--dir", default="hashplug_demo", help="folder for the model and the LanceDB table")
    d.add_argument("--method", default="biohash",
                   help="encoder to train (default biohash; `hashplug train --help` lists them)")
    d.add_argument("--k", type=int, default=16, help="hash length (active units or bits; default 16)")
    d.add_argument("--epochs", type=int, default=60, help="epochs of encoders trained over epochs (default 60)")
    d.add_argument("--seed", type=int, default=0, help="seed of the split and the encoder (default 0)")
    d.add_argument("--out", default=None, help="write the figures as JSON")
    d.set_defaults(func=cmd_demo)


#: The training-side commands: name -> function adding its subparser.
COMMANDS: dict[str, Callable[[Any], None]] = {
    "train": _add_train,
    "eval": _add_eval,
    "bench": _add_bench,
    "export": _add_export,
    "demo": _add_demo,
}
