"""One thread policy for numeric work: an ITQ fit alone and beside a busy core, with "auto" and with 2 threads.

numpy's BLAS (OpenBLAS in numpy's wheels) and torch each keep one thread per core, and every parallel
operation waits for its slowest thread: beside another busy process, a fit on 2 threads of a 2-core machine
stalls at every matrix product. hashplug's fits, encodes, training loops and benchmarks therefore choose their
thread count under one policy: ``HASHPLUG_NUM_THREADS`` = a count, or ``auto`` (the default): the cores
available minus those other processes keep more than a quarter busy (read from ``/proc/stat``), at least 1,
never above the library's own setting, re-read between ITQ's iterations and training steps.

1. What "auto" reads now: cores, busy cores, the count it would use.
2. ITQ fits (``k`` bits, ``n`` x ``d`` float32) alone, then beside a busy-loop process
   (``python -c "while True: pass"``, stopped at the end), with ``HASHPLUG_NUM_THREADS=auto`` and ``=2``
   (the libraries' default on 2 cores); the codes are the same whatever the count.
3. ``numeric_threads`` around your own numpy work (``hashplug._threads_policy``, a private module: the public
   knob is the environment variable).

Usage::

    python examples/15_thread_policy.py          # ITQ-256 on 20,000 x 384: about 30 s on 2 cores

``HASHPLUG_EXAMPLE_SMALL=1`` (set by the tests) fits ITQ-16 on 2,000 x 64 (10 iterations): a few seconds. The ratios are only
meaningful on an otherwise quiet machine; the busy loop is this script's own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np

import hashplug
from hashplug import _threads_policy as policy


def fit_seconds(X: np.ndarray, k: int, n_iter: int, setting: str) -> tuple[float, np.ndarray]:
    """Seconds of one ITQ fit with ``HASHPLUG_NUM_THREADS=setting``, and the codes of the first 500 rows."""
    os.environ[policy.THREADS_ENV] = setting
    enc = hashplug.get_encoder("itq", k=k, n_iter=n_iter, random_state=0)
    t0 = time.perf_counter()
    enc.fit(X)
    dt = time.perf_counter() - t0
    return dt, enc.encode(X[:500])


def main() -> dict:
    small = os.environ.get("HASHPLUG_EXAMPLE_SMALL", "") not in ("", "0")
    n, d, k, n_iter = (2000, 64, 16, 10) if small else (20_000, 384, 256, 50)
    before = os.environ.get(policy.THREADS_ENV)
    rng = np.random.default_rng(0)
    # a decaying spectrum, as embeddings have: PCA and ITQ have something to find
    X = (rng.standard_normal((n, d)) * np.linspace(2.0, 0.2, d)).astype(np.float32)

    # 1. what "auto" reads now
    cores, busy = policy.available_cores(), policy.measure_busy_cores()
    print(f"cores available: {cores}; busy with other processes now: {busy:.2f}; numpy's BLAS threads: "
          f"{policy.blas_threads()}; 'auto' would use {policy.resolve_threads('auto', busy=busy)} thread(s)")

    # 2. ITQ fits alone and beside a busy core
    times: dict[tuple[str, str], float] = {}
    codes = []
    for setting in ("auto", "2"):
        fit_seconds(X[:500], k, 1, setting)  # warm-up: first-call costs out of the timings
        times["alone", setting], c = fit_seconds(X, k, n_iter, setting)
        codes.append(c)
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # the busy loop is running before the fits start
        for setting in ("auto", "2"):
            times["busy core", setting], c = fit_seconds(X, k, n_iter, setting)
            codes.append(c)
    finally:
        spin.kill()
        spin.wait()
        if before is None:
            os.environ.pop(policy.THREADS_ENV, None)
        else:
            os.environ[policy.THREADS_ENV] = before
    assert all(np.array_equal(codes[0], c) for c in codes[1:]), "codes differ between thread counts"
    print(f"\nITQ-{k} fit, {n} x {d} float32, {n_iter} iterations (seconds; ratio to the same setting alone):")
    print(f"{'situation':<12} {'auto':>14} {'2 threads':>14}")
    for where in ("alone", "busy core"):
        cells = [f"{times[where, s]:.2f} ({times[where, s] / times['alone', s]:.2f}x)" for s in ("auto", "2")]
        print(f"{where:<12} {cells[0]:>14} {cells[1]:>14}")
    print("codes identical under every setting: yes")

    # 3. your own numpy work under the same policy
    A = rng.standard_normal((1000, 1000))
    with policy.numeric_threads("auto") as pol:
        G = A.T @ A
    print(f"\nnumeric_threads('auto') around A.T @ A ran on {pol.n} BLAS thread(s) "
          f"(0: small work left alone); BLAS back at {policy.blas_threads()} after; trace {np.trace(G):.4g}")
    return {f"{w}/{s}": t for (w, s), t in times.items()}


if __name__ == "__main__":
    main()
