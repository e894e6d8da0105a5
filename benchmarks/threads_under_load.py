"""BioHash training time on a shared machine: torch intra-op threads 2, 1 and "auto" (project issue 7).

Setting: MNIST, the paper's protocol split (seed 0): BioHash is fitted on the 69,000 database images
(pixels / 255) at k = 16 with the MNIST hyperparameters of the table bench
(``hashplug.bench.biohash_tables.DEFAULT_HP["mnist"]["BioHash"]``: p = 1.75, Delta = 0, lr = 0.05,
batch 100, activity 0.05 -> m = 320), 3 epochs, seed 0, on the CPU. Only ``fit`` is timed; every timing
is a fresh process whose thread setting comes from ``HASHPLUG_NUM_THREADS``.

Scenarios:

* ``alone``: one training job;
* ``load``: one training job beside a busy-loop process (``python -c "while True: pass"``, killed after);
* ``two_jobs``: two training jobs started at the same moment (each waits for a common start time after
  loading its data); each pair is killed after ``--timeout`` seconds.

The machine is shared: run the whole script under the heavy-job lock so that nobody else's heavy job
interferes, e.g. ``flock /tmp/hashplug-heavy.lock .venv/bin/python benchmarks/threads_under_load.py``.
Prints a table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "threads_under_load.json"
SETTINGS = ("2", "1", "auto")


# ------------------------------------------------------------------------------------------------
# worker: one fit in this process
# ------------------------------------------------------------------------------------------------


def _prepare(data: str | None, cache: Path) -> None:
    import numpy as np

    from hashplug.data import load_mnist, mnist_protocol

    X, y = load_mnist(data, flat=True)
    split = mnist_protocol(X, y, seed=0)
    np.save(cache, (split.Xdb.astype(np.float32) / 255.0))


def _params(k: int, epochs: int) -> dict[str, Any]:
    from hashplug.bench.biohash_tables import DEFAULT_HP

    params: dict[str, Any] = {"k": k, "random_state": 0, "device": "cpu", "activity": 0.05}
    hp = dict(DEFAULT_HP["mnist"]["BioHash"])
    params.update(hp)
    params.update(params.pop("by_k", {}).get(str(k), {}))
    params["epochs"] = epochs
    return params


def worker(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    import hashplug._torch as ht
    from hashplug.encoders import BioHash

    history: list[list[int]] = []
    exit_policy = ht.ThreadPolicy.__exit__

    def record_exit(self: Any, *exc: Any) -> None:
        history.append(list(self.history))
        exit_policy(self, *exc)

    ht.ThreadPolicy.__exit__ = record_exit  # type: ignore[method-assign]
    X = np.load(args.cache)
    enc = BioHash(**json.loads(args.params))
    if args.start_at:
        time.sleep(max(0.0, args.start_at - time.time()))
    a = ht.sample_cpu()
    t0 = time.perf_counter()
    enc.fit(X)
    dt = time.perf_counter() - t0
    others = ht.busy_between(a, ht.sample_cpu())
    print(json.dumps({
        "fit_seconds": dt,
        # cores used by other processes while this fit ran (for a pair: includes the other job)
        "others_busy_during": None if others is None else round(others, 2),
        "threads_history": history[-1] if history else [],
        "torch_threads_after": torch.get_num_threads(),
        "m": int(enc.m_),
    }))
# ------------------------------------------------------------------------------------------------
# driver
# ------------------------------------------------------------------------------------------------


def _cmd(args: argparse.Namespace, start_at: float | None = None) -> list[str]:
    cmd = [sys.executable, str(args.snapshot / "threads_under_load.py"), "--worker", "--cache", str(args.cache),
           "--params", json.dumps(args.encoder_params)]
    if start_at is not None:
        cmd += ["--start-at", repr(start_at)]
    return cmd


def _env(setting: str, snapshot: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["HASHPLUG_NUM_THREADS"] = setting
    env.pop("OMP_NUM_THREADS", None)
    env["PYTHONPATH"] = str(snapshot) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _spawn(args: argparse.Namespace, setting: str, start_at: float | None = None) -> subprocess.Popen:
    return subprocess.Popen(_cmd(args, start_at), env=_env(setting, args.snapshot), cwd=args.snapshot,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _collect(proc: subprocess.Popen, timeout: float) -> dict[str, Any]:
    """The worker's JSON line; a run past ``timeout`` is killed; a failed worker gives ``error``."""
    try:
        out, err = proc.communicate(timeout=max(0.1, timeout))
    except subprocess.TimeoutExpired:
        _kill(proc)
        return {"fit_seconds": None, "timed_out": True}
    if proc.returncode != 0:
        return {"fit_seconds": None, "error": f"exit {proc.returncode}: {err.strip().splitlines()[-1:]}"}
    return json.loads(out.strip().splitlines()[-1])


def _busy_now() -> float:
    from hashplug._torch import measure_busy_cores

    return round(measure_busy_cores(0.2), 2)


def run_one(args: argparse.Namespace, setting: str) -> dict[str, Any]:
    busy = _busy_now()
    return {**_collect(_spawn(args, setting), args.timeout), "busy_before": busy}


def run_alone(args: argparse.Namespace, setting: str, disturbed: list[dict[str, Any]]) -> dict[str, Any]:
    """One job on an otherwise idle machine: a run during which other processes (not under the lock)
    used more than ``--disturbed`` cores is kept in ``disturbed`` and re-run, at most ``--retries`` times."""
    for _ in range(args.retries):
        r = run_one(args, setting)
        if (r.get("others_busy_during") or 0.0) <= args.disturbed:
            return r
        disturbed.append({"threads": setting, **r})
        print(f"  (disturbed: others used {r['others_busy_during']} cores; re-run)", file=sys.stderr, flush=True)
    return run_one(args, setting)


def run_pair(args: argparse.Namespace, setting: str) -> dict[str, Any]:
    """Two jobs starting ``fit`` at the same moment; the pair's time is the slower job's."""
    busy = _busy_now()
    start_at = time.time() + args.pair_delay
    procs = [_spawn(args, setting, start_at) for _ in range(2)]
    deadline = start_at + args.timeout
    try:
        jobs = [_collect(p, deadline - time.time()) for p in procs]
    finally:
        for p in procs:
            _kill(p)
    times = [j.get("fit_seconds") for j in jobs]
    out: dict[str, Any] = {
        "fit_seconds": None if None in times else max(times),
        "jobs": jobs,
        "busy_before": busy,
    }
    if any(j.get("timed_out") for j in jobs):
        out["timed_out"] = True
    errors = [j["error"] for j in jobs if "error" in j]
    if errors:
        out["error"] = errors
    return out


def _stats(runs: list[dict[str, Any]], timeout: float) -> dict[str, Any]:
    """min / median seconds over the runs; a timed-out run counts as the timeout (the median is then a
    lower bound); failed runs (``error``) are left out and counted."""
    valid = [r for r in runs if "error" not in r]
    times = [r["fit_seconds"] for r in valid]
    ok = [t for t in times if t is not None]
    return {
        "n": len(valid),
        "timed_out": len(times) - len(ok),
        "errors": len(runs) - len(valid),
        "min": round(min(ok), 2) if ok else None,
        "median": round(statistics.median([t if t is not None else timeout for t in times]), 2) if times else None,
        "seconds": [None if t is None else round(t, 3) for t in times],
    }


def _start_busy_loop() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)


def _jobs_field(r: dict[str, Any], key: str) -> Any:
    return r.get(key) if "jobs" not in r else [j.get(key) for j in r["jobs"]]


def summarise(result: dict[str, Any], runs: dict[str, dict[str, list[dict[str, Any]]]], timeout: float) -> None:
    """Fill ``result["rows"]`` and ``result["table"]`` from the runs so far."""
    ref = _stats(runs["alone"]["2"], timeout) if runs.get("alone", {}).get("2") else None
    result["rows"] = {}
    for scen, per in runs.items():
        result["rows"][scen] = {}
        for s, rs in per.items():
            st = _stats(rs, timeout)
            st["threads_history"] = [_jobs_field(r, "threads_history") for r in rs]
            st["busy_before"] = [r.get("busy_before") for r in rs]
            st["others_busy_during"] = [_jobs_field(r, "others_busy_during") for r in rs]
            if ref and ref["median"] and st["median"]:
                st["median_vs_alone_2"] = round(st["median"] / ref["median"], 2)
                st["min_vs_alone_2"] = None if st["min"] is None or not ref["min"] else round(st["min"] / ref["min"], 2)
            errs = [r["error"] for r in rs if "error" in r]
            if errs:
                st["error_messages"] = errs
            result["rows"][scen][s] = st
    result["table"] = format_table(result)


def _write(result: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="mnist.npz (default: the shared data folder)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="JSON output path")
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5, help="timings per cell alone")
    ap.add_argument("--load-repeats", type=int, default=2, help="timings per cell under load")
    ap.add_argument("--pair-repeats", type=int, default=2, help="timings per cell for two jobs at once")
    ap.add_argument("--retries", type=int, default=3, help="re-runs of an 'alone' timing disturbed by others")
    ap.add_argument("--disturbed", type=float, default=0.25,
                    help="an 'alone' run is disturbed when other processes used more cores than this")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds before a run or a pair is killed")
    ap.add_argument("--pair-delay", type=float, default=4.0,
                    help="seconds for the pair to load data before their common start")
    ap.add_argument("--scenarios", default="alone,load,two_jobs")
    ap.add_argument("--pair-settings", default="auto,2,1")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cache", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--start-at", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--params", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return {}

    import numpy as np
    import torch

    def _terminate(signum: int, frame: Any) -> None:  # run the finally blocks: kill the busy loop
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _terminate)
    out = Path(args.out)
    tmp = tempfile.TemporaryDirectory(prefix="hashplug-threads-")
    args.cache = Path(tmp.name) / "mnist_db.npy"
    _prepare(args.data, args.cache)
    args.encoder_params = _params(args.k, args.epochs)
    # Every worker runs one frozen copy of the package (and of this script): the repository may be
    # edited while the benchmark runs, and all timings must measure the same code.
    args.snapshot = Path(tmp.name) / "src"
    shutil.copytree(ROOT / "hashplug", args.snapshot / "hashplug", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(Path(__file__).resolve(), args.snapshot / "threads_under_load.py")
    subprocess.run([sys.executable, "-c", "import hashplug.encoders, hashplug._torch"], check=True,
                   env=_env("1", args.snapshot), cwd=args.snapshot)
    n_train = int(np.load(args.cache, mmap_mode="r").shape[0])
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    result: dict[str, Any] = {
        "setting": {
            "data": "MNIST, paper protocol split seed 0: the 69,000 database images, pixels / 255",
            "n_train": n_train,
            "encoder": args.encoder_params,
            "device": "cpu",
            "timed": "BioHash.fit only, each run in a fresh process; thread setting from HASHPLUG_NUM_THREADS",
            "busy_loop": "python -c 'while True: pass' (one process, started 1 s before and killed after)",
            "two_jobs": "two processes starting fit at the same moment; time = the slower job",
            "timeout_seconds": args.timeout,
            "repeats": {"alone": args.repeats, "load": args.load_repeats, "two_jobs": args.pair_repeats},
            "alone_disturbed_rule": f"an 'alone' run during which other processes used > {args.disturbed} cores "
                                    "is listed under 'disturbed_alone_runs' and re-run",
        },
        "env": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "torch_default_threads": torch.get_num_threads(),
            "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "lock": "run under flock /tmp/hashplug-heavy.lock",
        },
        "rows": {},
    }
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    disturbed: list[dict[str, Any]] = []
    result["disturbed_alone_runs"] = disturbed

    def record(scen: str, s: str, r: dict[str, Any]) -> None:
        runs[scen][s].append(r)
        jobs = f" {[j.get('fit_seconds') for j in r['jobs']]}" if "jobs" in r else ""
        print(f"{scen:<8} {s:>4}: {r['fit_seconds']}{jobs}{' ' + str(r['error']) if 'error' in r else ''}",
              file=sys.stderr, flush=True)
        summarise(result, runs, args.timeout)
        _write(result, out)  # after every run: a crash or a kill keeps what was measured

    try:
        if "alone" in scenarios:
            runs["alone"] = {s: [] for s in SETTINGS}
            for _ in range(args.repeats):
                for s in SETTINGS:
                    record("alone", s, run_alone(args, s, disturbed))
        if "load" in scenarios:
            runs["load"] = {s: [] for s in SETTINGS}
            busy = _start_busy_loop()
            try:
                time.sleep(1.0)
                for _ in range(args.load_repeats):
                    for s in SETTINGS:
                        record("load", s, run_one(args, s))
            finally:
                _kill(busy)
        if "two_jobs" in scenarios:
            pair_settings = [s.strip() for s in args.pair_settings.split(",") if s.strip()]
            runs["two_jobs"] = {s: [] for s in pair_settings}
            for _ in range(args.pair_repeats):
                for s in pair_settings:
                    record("two_jobs", s, run_pair(args, s))
    finally:
        tmp.cleanup()
    summarise(result, runs, args.timeout)
    print(result["table"])
    _write(result, out)
    print(f"wrote {out}")
    return result


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"BioHash fit, MNIST {result['setting']['n_train']} x 784, k={result['setting']['encoder']['k']}, "
        f"{result['setting']['encoder']['epochs']} epochs; seconds, and ratios to the same statistic of "
        "'alone, 2 threads'",
        f"{'scenario':<10} {'threads':<8} {'n':>2} {'min':>8} {'median':>8} {'min x':>7} {'med x':>7}  threads used",
    ]

    def fmt(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    for scen, per in result["rows"].items():
        for s, st in per.items():
            med = fmt(st["median"], ".2f") + ("+" if st["timed_out"] else "")
            hist = [json.dumps(h) for h in st["threads_history"] if h and h != [None, None]]
            used = ", ".join(f"{h} x{hist.count(h)}" for h in dict.fromkeys(hist))
            lines.append(
                f"{scen:<10} {s:<8} {st['n']:>2} {fmt(st['min'], '.2f'):>8} {med:>8} "
                f"{fmt(st.get('min_vs_alone_2'), '.2f'):>7} {fmt(st.get('median_vs_alone_2'), '.2f'):>7}  {used}"
                + (f"  ({st['errors']} failed)" if st["errors"] else "")
            )
    lines.append("'+': a run was killed at the timeout and counted as the timeout (the median is a lower bound).")
    if result.get("disturbed_alone_runs"):
        lines.append(f"{len(result['disturbed_alone_runs'])} 'alone' run(s) disturbed by other processes were re-run "
                     "(see disturbed_alone_runs).")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
