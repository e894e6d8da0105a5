"""``hashplug bench catch-up``: catching the Hamming index up with rows added to its table, against building it.

A table of ``base`` generated rows (``dim`` float32 features, the seeded Gaussian mixture of ``hashplug bench
load``; an LSH encoder of ``bits`` bits) gets its index built and saved; then ``added`` rows are ingested into it
(``chunk_size`` rows per commit). The same ``added`` rows go into a second table of their own. Measured, for
each size in ``added`` (a fresh database each), interleaved ``repeats`` times (medians reported):

- ``catch_up_s``: :func:`hashplug.open_hamming_index` on the grown table, with this process's snapshot of the
  index at the base version (what the first :func:`hashplug.search` after the ingest waits for);
- ``build_s``: :func:`hashplug.build_hamming_index` (``save=False``: in memory, as the catch-up) of the table
  holding the added rows alone (building an index of the same N rows); ``build_saved_s`` the same default call
  (saved beside the table, as the issue timed it); ``build_all_s`` of the grown table in memory (the rebuild
  alternative);
- ``first_search_s``: :func:`hashplug.search` of one row, catch-up included (snapshot reset to the base
  version), and ``search_s`` the same search once caught up.

``ratio`` is ``catch_up_s / build_s`` (issue 31's target: at most 1.2 at 100k and 1M added rows; the strict
reading, against the in-memory build), ``ratio_to_build_saved`` against the default, saving call. Every
caught-up index is checked to hold exactly the rows and codes of a fresh build (``identical_to_fresh``) and
the searched row to come back at distance 0. Not a CI test.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .common import environment, format_rows, rounded, write_json
from .load import _centers, _rows
from .suite import Suite, add_lengths, add_out, lengths_flag, lengths_of, register_suite

__all__ = ["run_catch_up", "format_catch_up", "CatchUpSuite"]

#: The sizes the issue measured (rows added to a 200k-row table).
DEFAULT_ADDED = (100_000, 1_000_000)


def _ingest(target: Any, X: np.ndarray, chunk_size: int, **kw: Any) -> Any:
    import hashplug

    return hashplug.ingest(target, X, chunk_size=chunk_size, progress=False, **kw).table


def _same_rows(a: Any, b: Any) -> bool:
    """Do two indexes hold the same rows with the same codes (whatever their order)?"""
    ia, ib = a.row_ids, b.row_ids
    if ia.shape != ib.shape:
        return False
    oa, ob = np.argsort(ia, kind="stable"), np.argsort(ib, kind="stable")
    if not np.array_equal(ia[oa], ib[ob]):
        return False
    wa, wb = a.index._arrays(), b.index._arrays()
    if "words" in wa:
        return bool(np.array_equal(wa["words"][oa], wb["words"][ob]))
    return False  # pragma: no cover - the suite builds packed codes only


def _measure(t: Any, tn: Any, snapshot: Any, key: str, probe: np.ndarray, repeats: int) -> dict[str, list[float]]:
    """The timings, interleaved ``repeats`` times; the caught-up index of the last repeat under ``"index"``."""
    import hashplug
    from hashplug.integrations import index as ix

    times: dict[str, list[float]] = {k: [] for k in ("catch_up_s", "build_s", "build_saved_s", "build_all_s",
                                                     "first_search_s", "search_s")}
    out: dict[str, Any] = {"times": times}
    hashplug.search(t, probe, limit=10)  # warm-up: the kernel compiled, LanceDB's caches filled, once for all
    for _ in range(int(repeats)):
        ix._CACHE[key] = snapshot  # this process's snapshot at the base version, as after the ingest
        t0 = time.perf_counter()
        idx = hashplug.open_hamming_index(t)
        times["catch_up_s"].append(time.perf_counter() - t0)
        out["index"], out["stats"] = idx, dict(idx.last_catch_up)
        t0 = time.perf_counter()
        hashplug.build_hamming_index(tn, save=False)
        times["build_s"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        hashplug.build_hamming_index(tn)  # the default call: saved beside the table
        times["build_saved_s"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        hashplug.build_hamming_index(t, save=False)
        times["build_all_s"].append(time.perf_counter() - t0)
        ix._CACHE[key] = snapshot
        t0 = time.perf_counter()
        hashplug.search(t, probe, limit=10)
        times["first_search_s"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        out["result"] = hashplug.search(t, probe, limit=10)
        times["search_s"].append(time.perf_counter() - t0)
    return out


def _one_size(root: Path, model: str, base: int, added: int, dim: int, chunk_size: int, repeats: int, seed: int
              ) -> dict[str, Any]:
    """One row of the table: a fresh database with the base table (index saved) grown by ``added`` rows."""
    import lancedb

    import hashplug
    from hashplug.integrations import index as ix

    centers = _centers(dim, seed)
    db = root / f"db_{added}"
    t = _ingest(db, _rows(0, base, dim, centers, seed), chunk_size, name="t", model=model)
    hashplug.build_hamming_index(t)
    key = str(ix.default_index_folder(t, "code").resolve())
    snapshot = ix._CACHE[key]
    X_new = _rows(base, added, dim, centers, seed)
    _ingest(t, X_new, chunk_size)
    tn = _ingest(db, X_new, chunk_size, name="n", model=model)
    t = lancedb.connect(str(db)).open_table("t")
    probe = X_new[added // 2]
    m = _measure(t, tn, snapshot, key, probe, repeats)
    fresh = hashplug.build_hamming_index(t, save=False)
    med = {k: float(np.median(v)) for k, v in m["times"].items()}
    stats = m["stats"]
    return {
        "added": added, "base": base, "rows": int(t.count_rows()), "commits_added": -(-added // chunk_size),
        **{k: rounded(v, 4) for k, v in med.items()},
        "ratio": rounded(med["catch_up_s"] / med["build_s"], 3),
        "ratio_to_build_saved": rounded(med["catch_up_s"] / med["build_saved_s"], 3),
        "ratio_to_build_all": rounded(med["catch_up_s"] / med["build_all_s"], 3),
        "runs": {k: [rounded(x, 4) for x in v] for k, v in m["times"].items()},
        "rows_read": stats.get("rows_read"), "fragments_read": stats.get("fragments_read"),
        "rebuilt": bool(stats.get("rebuilt")),
        "identical_to_fresh": _same_rows(m["index"], fresh),
        "probe_at_distance_0": float(m["result"]["_distance"][0].as_py()) == 0.0,
    }


def run_catch_up(
    *,
    base: int = 200_000,
    added: tuple[int, ...] | list[int] = DEFAULT_ADDED,
    dim: int = 32,
    bits: int = 64,
    chunk_size: int = 65_536,
    repeats: int = 5,
    seed: int = 0,
    workdir: str | Path | None = None,
) -> dict[str, Any]:
    """Catch-up against build at each size in ``added``; see the module docstring.

    Parameters
    ----------
    base : int
        Rows of the table when its index is built.
    added : sequence of int
        Rows added after the build, one measurement (and database) each.
    dim, bits : int
        float32 features per generated row; code length of the LSH encoder (fitted on 10,000 generated rows).
    chunk_size : int
        Rows per commit of the ingests (one Lance fragment each).
    repeats : int
        Interleaved repetitions of every timing (medians reported, each run listed).
    seed : int
    workdir : path-like or None
        Where the databases go (default the system temp dir); removed afterwards.

    Returns
    -------
    dict
        ``rows`` (one per size: ``added``, ``build_s``, ``catch_up_s``, ``ratio``, ...), ``by_added``
        (``{str(added): {build_s, catch_up_s, ratio}}``), the settings and the environment.
    """
    import hashplug
    from hashplug.export import to_onnx

    env = environment()
    root = Path(tempfile.mkdtemp(prefix="hashplug_bench_catch_up_", dir=workdir))
    try:
        centers = _centers(dim, seed)
        enc = hashplug.get_encoder("lsh", k=bits, random_state=seed).fit(_rows(0, 10_000, dim, centers, seed))
        model = str(to_onnx(enc, root / f"lsh{bits}.onnx"))
        rows = [_one_size(root, model, int(base), int(n), int(dim), int(chunk_size), int(repeats), int(seed))
                for n in added]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "suite": "catch-up",
        "metric": "seconds (median of interleaved repeats): catch-up of the added rows vs build_hamming_index of them",
        "input": f"{base} rows, then each of {list(added)} added ({chunk_size} rows per commit); {dim} float32 "
                 f"(seeded Gaussian mixture), LSH {bits} bits",
        "settings": {"base": base, "added": list(added), "dim": dim, "bits": bits, "chunk_size": chunk_size,
                     "repeats": repeats, "seed": seed},
        "rows": rows,
        "by_added": {str(r["added"]): {k: r[k] for k in ("build_s", "catch_up_s", "ratio")} for r in rows},
        "environment": env,
    }


def format_catch_up(res: dict[str, Any]) -> str:
    """The sizes as a text table."""
    cols = [("added", "added rows"), ("rows", "table rows"), ("build_s", "build N s"), ("catch_up_s", "catch-up s"),
            ("ratio", "catch-up / build"), ("build_saved_s", "build+save N s"), ("build_all_s", "build all s"), ("first_search_s", "1st search s"),
            ("search_s", "search s"), ("rows_read", "rows read"), ("identical_to_fresh", "= fresh build")]
    return f"{res['input']}\n" + format_rows(res["rows"], cols, nd=4)


class CatchUpSuite(Suite):
    """``hashplug bench catch-up``: the index caught up with added rows, against building it for them."""

    names = ("catch-up",)
    help = "Hamming index catch-up after adding rows, against build_hamming_index of the same rows"

    def add_arguments(self, parser: argparse.ArgumentParser, name: str) -> None:
        parser.add_argument("--base", type=int, default=None, help="rows of the table when the index is built "
                            "(default 200000)")
        parser.add_argument("--added", type=int, nargs="+", default=None, help="rows added after the build, one "
                            "measurement each (default 100000 1000000)")
        parser.add_argument("--dim", type=int, default=None, help="float32 features per generated row (default 32)")
        add_lengths(parser, "code length of the LSH encoder (one value; default 64)")
        parser.add_argument("--chunk-size", type=int, default=None, help="rows per commit (default 65536)")
        parser.add_argument("--repeats", type=int, default=None, help="interleaved repetitions of each timing "
                            "(median reported; default 5)")
        add_out(parser)

    def run(self, name: str, args: argparse.Namespace) -> dict[str, Any]:
        from ..validation import HashplugError, check_int_param

        def opt(value: Any, default: int, flag: str) -> int:
            return check_int_param(default if value is None else value, flag, "hashplug bench catch-up", 1)

        lengths, flag = lengths_of(args), lengths_flag(args)
        if lengths is not None and len(lengths) != 1:
            raise HashplugError(f"hashplug bench catch-up takes one {flag} (the LSH code length); got {lengths}.")
        added = [opt(n, 1, "--added") for n in (args.added or DEFAULT_ADDED)]
        res = run_catch_up(
            base=opt(args.base, 200_000, "--base"), added=added, dim=opt(args.dim, 32, "--dim"),
            bits=opt((lengths or [None])[0], 64, flag), chunk_size=opt(args.chunk_size, 65_536, "--chunk-size"),
            repeats=opt(args.repeats, 5, "--repeats"),
        )
        write_json(res, args.out)
        return res

    def print(self, name: str, result: dict[str, Any], args: argparse.Namespace) -> None:
        print(format_catch_up(result))


CATCH_UP = register_suite(CatchUpSuite())
