"""``hashplug bench threads``: numeric work alone and beside one busy core, under the thread policy.

Each timing is a fresh process (``python -c`` of :data:`WORKER`) that builds the data (a seeded ``rows`` x
``dim`` float32 Gaussian with a decaying spectrum, as embeddings have), warms up on 500 rows, then times one
workload: an ITQ, PCAHash or SH ``fit`` with ``k`` bits, or ITQ's ``encode`` of every row. ``alone``: nothing
else of this benchmark runs; ``busy``: one busy-loop process (``python -c "while True: pass"``) started
before and killed after. The thread setting of each run is ``HASHPLUG_NUM_THREADS`` (``--settings``).

Several source trees are timed in one run (``--tree NAME=PATH``, each a folder holding the ``hashplug``
package, e.g. ``git archive`` of a commit; the default is a snapshot of the installed package), interleaved,
so the ratio busy / alone of each tree is measured under the same conditions. Each run also reports the cores
other processes used during the timing (``others_busy``; in ``busy`` runs the busy loop is one of them), the
counts the thread policy chose for the timed call (``threads_used``: the outermost policy's history; None for
a version without the policy) and the BLAS threads it ended with. JSON ``rows``: one per (tree, workload, setting) with the median seconds of
each situation and ``ratio`` = busy / alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import suite
from .common import environment, format_rows, write_json
from .suite import Suite, register_suite

__all__ = ["WORKLOADS", "WORKER", "run_threads", "format_threads"]

#: Workload name -> (encoder, parameters beyond ``k``, timed task).
WORKLOADS: dict[str, tuple[str, dict[str, Any], str]] = {
    "itq-fit": ("itq", {"n_iter": 50, "random_state": 0}, "fit"),
    "pcahash-fit": ("pcahash", {}, "fit"),
    "sh-fit": ("sh", {}, "fit"),
    "itq-encode": ("itq", {"n_iter": 50, "random_state": 0}, "encode"),
}

#: One timing in a fresh process: argv[1] is the JSON spec; prints one JSON line. Uses only the public API
#: (``hashplug.get_encoder``, ``fit``, ``encode``), so any version of the package can be timed.
WORKER = r"""
import json, os, sys, time
import numpy as np

def cpu():
    try:
        with open("/proc/stat") as f:
            lines = f.readlines()
    except OSError:
        return None
    busy = 0
    for line in lines:
        if line.startswith("cpu") and not line.startswith("cpu "):
            v = [int(x) for x in line.split()[1:9]]
            busy += sum(v) - v[3] - v[4]
    return time.monotonic(), busy / os.sysconf("SC_CLK_TCK"), time.process_time()

spec = json.loads(sys.argv[1])
import hashplug
used = []
try:  # the counts the thread policy chose for the timed call (versions before the policy: None)
    if not os.path.isfile(os.path.join(os.path.dirname(hashplug.__file__), "_threads_policy.py")):
        raise ImportError("a version without the thread policy")
    from hashplug._threads_policy import ThreadPolicy
    _exit = ThreadPolicy.__exit__
    def _record(self, *exc):
        used.append(list(self.history))
        return _exit(self, *exc)
    ThreadPolicy.__exit__ = _record
except ImportError:
    used = None
rng = np.random.default_rng(0)
X = (rng.standard_normal((spec["rows"], spec["dim"])) * np.linspace(2.0, 0.2, spec["dim"])).astype(np.float32)
params = {"k": spec["k"], **spec["params"]}
hashplug.get_encoder(spec["method"], **{**params, **({"n_iter": 1} if "n_iter" in params else {})}).fit(X[:500])
enc = hashplug.get_encoder(spec["method"], **params)
if spec["task"] == "encode":
    enc.fit(X)
    enc.encode(X[:500])
if spec.get("start_at"):
    time.sleep(max(0.0, spec["start_at"] - time.time()))
if used is not None:
    used.clear()
a, t0 = cpu(), time.perf_counter()
out = enc.fit(X) if spec["task"] == "fit" else enc.encode(X)
dt = time.perf_counter() - t0
b = cpu()
others = None if a is None or b is None else max(0.0, (b[1] - a[1] - (b[2] - a[2])) / (b[0] - a[0]))
try:
    import threadpoolctl
    blas = sorted({i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"})
except ImportError:
    blas = None
print(json.dumps({"seconds": dt, "others_busy": None if others is None else round(others, 2), "blas_after": blas,
                  "threads_used": None if used is None else (used[-1] if used else [])}))
"""


def _snapshot(folder: Path) -> Path:
    """A frozen copy of the installed ``hashplug`` package in ``folder`` (the code a default run times)."""
    import hashplug

    src = Path(hashplug.__file__).resolve().parent
    shutil.copytree(src, folder / "hashplug", ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def _parse_trees(values: list[str] | None, tmp: Path) -> dict[str, Path]:
    if not values:
        return {"this": _snapshot(tmp / "this")}
    trees: dict[str, Path] = {}
    for v in values:
        name, sep, path = v.partition("=")
        root = Path(path).expanduser().resolve()
        if not sep or not name or not (root / "hashplug" / "__init__.py").is_file():
            raise SystemExit(f"--tree {v!r}: give NAME=PATH, PATH a folder holding the hashplug package "
                             "(e.g. git archive COMMIT | tar -x -C PATH)")
        trees[name] = root
    return trees


def _time_one(spec: dict[str, Any], tree: Path, setting: str, timeout: float) -> dict[str, Any]:
    """One timing in a fresh process of the source ``tree`` with ``HASHPLUG_NUM_THREADS=setting``."""
    env = {**os.environ, "HASHPLUG_NUM_THREADS": setting, "PYTHONPATH": str(tree)}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(var, None)
    proc = subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(spec)], env=env, cwd=tree,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return {"seconds": None, "timed_out": True}
    if proc.returncode != 0:
        return {"seconds": None, "error": (err.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.strip().splitlines()[-1])


def _busy_loop() -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    time.sleep(0.5)  # running before the timing starts
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _median(runs: list[dict[str, Any]], timeout: float) -> float | None:
    """Median seconds; a timed-out run counts as the timeout (the median is then a lower bound)."""
    times = [r["seconds"] if r.get("seconds") is not None else timeout for r in runs if "error" not in r]
    return round(statistics.median(times), 3) if times else None


def _row(tree: str, workload: str, setting: str, runs: dict[str, list[dict[str, Any]]],
         timeout: float) -> dict[str, Any]:
    alone, busy = _median(runs["alone"], timeout), _median(runs["busy"], timeout)
    return {
        "tree": tree, "workload": workload, "setting": setting,
        "alone_s": alone, "busy_s": busy,
        "ratio": None if not alone or busy is None else round(busy / alone, 2),
        "timed_out": sum(bool(r.get("timed_out")) for rs in runs.values() for r in rs),
        "runs": runs,
    }


def run_threads(
    *,
    trees: list[str] | None = None,
    workloads: list[str] | None = None,
    settings: list[str] | None = None,
    rows: int = 20_000,
    dim: int = 384,
    k: int = 256,
    repeats: int = 2,
    timeout: float = 240.0,
    out: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Time each (tree, workload, setting) ``repeats`` times alone and beside a busy core, interleaved."""
    workloads = list(workloads or ["itq-fit"])
    settings = list(settings or ["auto"])
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        raise SystemExit(f"unknown workload(s) {unknown}; choose from {list(WORKLOADS)}")
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hashplug-bench-threads-") as tmp:
        roots = _parse_trees(trees, Path(tmp))
        runs = {(c, w, s): {"alone": [], "busy": []} for c in roots for w in workloads for s in settings}
        for _ in range(int(repeats)):
            for (c, w, s), per in runs.items():
                method, params, task = WORKLOADS[w]
                spec = {"method": method, "params": params, "task": task, "rows": rows, "dim": dim, "k": k}
                per["alone"].append(_time_one(spec, roots[c], s, timeout))
                spin = _busy_loop()
                try:
                    per["busy"].append(_time_one(spec, roots[c], s, timeout))
                finally:
                    _stop(spin)
                print(f"{c:>8} {w:<12} {s:>4}: alone {per['alone'][-1].get('seconds')}, "
                      f"busy {per['busy'][-1].get('seconds')}", file=sys.stderr, flush=True)
        res = {
            "suite": "threads",
            "setting": {"data": f"seeded Gaussian {rows} x {dim} float32, decaying spectrum", "k": k,
                        "repeats": repeats, "timeout_s": timeout, "busy": "python -c 'while True: pass'",
                        "trees": {c: str(p) for c, p in roots.items()}},
            "env": environment(),
            "rows": [_row(c, w, s, per, timeout) for (c, w, s), per in runs.items()],
            "total_seconds": round(time.perf_counter() - t_start, 1),
        }
    write_json(res, out)
    return res


def format_threads(res: dict[str, Any]) -> str:
    cols = [("tree", "tree"), ("workload", "workload"), ("setting", "threads"), ("alone", "alone s"),
            ("busy", "busy core s"), ("ratio", "busy / alone"), ("used", "threads used (alone; busy)"),
            ("others", "others busy (alone; busy)")]

    def others(r: dict[str, Any], key: str) -> str:
        return ",".join("-" if x.get("others_busy") is None else f"{x['others_busy']:.1f}" for x in r["runs"][key])

    def used(r: dict[str, Any], key: str) -> str:
        got = [x.get("threads_used") for x in r["runs"][key]]
        return "-" if all(u is None for u in got) else ",".join("/".join(map(str, u or [])) or "0" for u in got)

    rows = [{
        "tree": r["tree"], "workload": r["workload"], "setting": r["setting"],
        "alone": "-" if r["alone_s"] is None else f"{r['alone_s']:.3f}",
        "busy": "-" if r["busy_s"] is None else f"{r['busy_s']:.3f}" + ("+" if r["timed_out"] else ""),
        "ratio": "-" if r["ratio"] is None else f"{r['ratio']:.2f}x",
        "used": f"{used(r, 'alone')}; {used(r, 'busy')}",
        "others": f"{others(r, 'alone')}; {others(r, 'busy')}",
    } for r in res["rows"]]
    return format_rows(rows, cols)


class ThreadsSuite(Suite):
    """``hashplug bench threads``: fits and encodes alone and beside a busy core, per source tree."""

    names = ("threads",)
    help = "numpy fits and encodes alone and beside one busy core, under the thread policy (ratio busy / alone)"
    description = __doc__ or help

    def add_arguments(self, parser: argparse.ArgumentParser, name: str) -> None:
        parser.add_argument("--tree", action="append", default=None, metavar="NAME=PATH",
                            help="a source tree to time (a folder holding the hashplug package), repeatable; "
                                 "default: a snapshot of the installed package")
        parser.add_argument("--workloads", nargs="+", default=["itq-fit"], choices=list(WORKLOADS),
                            help="what each run times (default itq-fit)")
        parser.add_argument("--settings", nargs="+", default=["auto"],
                            help="HASHPLUG_NUM_THREADS values to time (default auto)")
        parser.add_argument("--rows", type=int, default=20_000, help="rows of the data (default 20000)")
        parser.add_argument("--dim", type=int, default=384, help="features of the data (default 384)")
        suite.add_lengths(parser, "code length in bits of every encoder (one value; default 256)")
        parser.add_argument("--repeats", type=int, default=2, help="timings per situation and cell (default 2)")
        parser.add_argument("--timeout", type=float, default=240.0,
                            help="seconds before a run is killed (counted as the timeout)")
        suite.add_out(parser)

    def run(self, name: str, args: argparse.Namespace) -> dict[str, Any]:
        lengths = suite.lengths_of(args) or [256]
        return run_threads(trees=args.tree, workloads=args.workloads, settings=args.settings, rows=args.rows,
                           dim=args.dim, k=int(lengths[0]), repeats=args.repeats, timeout=args.timeout,
                           out=args.out)

    def print(self, name: str, result: dict[str, Any], args: argparse.Namespace) -> None:
        print(format_threads(result))
        print(f"total {result['total_seconds']} s" + (f"; wrote {args.out}" if args.out else ""))


THREADS = register_suite(ThreadsSuite())
