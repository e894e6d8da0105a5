"""Shared plumbing of the benchmark suites: environment, timing, JSON and tables.

Every suite compares hashplug against peers measured in the same run, prints a table and writes JSON whose
main key is ``"rows"`` (one dict per table row) next to the settings and the environment. Timings:
``time.perf_counter``, warm-up first, several repeats, median; compare the ratios between columns of one
run, not absolute numbers across runs.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["format_rows", "environment", "write_json", "median_rate", "load_mnist_float", "FLOAT_BITS", "fmt", "rounded"]

FLOAT_BITS = 32


# ==================================================================================================== helpers
def environment() -> dict[str, Any]:
    """Versions and thread counts that the timings depend on."""
    from .._version import __version__

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "hashplug": __version__,
    }
    from importlib import metadata

    # versions from the installed metadata: importing torch here would load its OpenMP runtime into suites
    # that must not have it (FAISS brings its own; see hashplug bench search)
    for mod, dist in (("numpy", "numpy"), ("onnxruntime", "onnxruntime"), ("torch", "torch"), ("lancedb", "lancedb"),
                      ("pyarrow", "pyarrow"), ("faiss", "faiss-cpu")):
        try:
            env[mod] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            env[mod] = None
    import sys

    if "torch" in sys.modules:
        env["torch_threads"] = sys.modules["torch"].get_num_threads()
    from .._threads_policy import blas_threads, thread_setting

    # the thread policy's setting ("auto" or a count) and numpy's BLAS threads in force where the suite asked
    env["threads_setting"] = thread_setting()
    env["blas_threads"] = blas_threads()
    try:
        env["loadavg_at_start"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    return env


def rounded(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(float(x), nd)


def fmt(v: Any, nd: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{nd}f}"
    return str(v)


def format_rows(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], nd: int = 3) -> str:
    """A fixed-width text table of ``rows`` with ``columns`` given as ``(key, header)`` pairs."""
    cells = [[h for _, h in columns]] + [[fmt(r.get(k), nd) for k, _ in columns] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    lines = []
    for j, c in enumerate(cells):
        lines.append(
            "  ".join(
                s.rjust(w) if (j and i) else s.ljust(w) for i, (s, w) in enumerate(zip(c, widths))
            ).rstrip()
        )
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(res: dict[str, Any] | list[Any], out: str | os.PathLike[str] | None) -> None:
    if out:
        p = Path(out)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(res, indent=2, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def load_mnist_float(data: str | os.PathLike[str] | None) -> tuple[np.ndarray, np.ndarray, str]:
    """MNIST pixels / 255 as float32 flat vectors (70000, 784), labels, and the path read."""
    from ..data import get_dataset

    ds = get_dataset("mnist")
    path = Path(data) if data else ds.default_path()
    X, y = ds.load(path, flat=True)
    return (X.astype(np.float32) / np.float32(ds.scale)), y, str(path)


#: Trials of :func:`median_rate` for a call longer than its whole timing budget.
LONG_CALL_REPEATS = 3


def median_rate(
    call: Callable[[int], Any],
    rows_per_call: int,
    *,
    repeats: int,
    target_seconds: float,
    max_calls: int,
) -> dict[str, float]:
    """Rows/s of ``call(i)`` (the i-th call of a trial): warm up, size the trial, take the median of repeats.

    A trial makes ``n`` calls, with ``n`` chosen after warm-up so that a trial lasts about
    ``target_seconds`` (at least 1, at most ``max_calls``). A call that alone lasts longer than ``repeats``
    trials should (``repeats * target_seconds``) is timed over :data:`LONG_CALL_REPEATS` trials instead: a
    reference backend taking seconds per call (BioConvHash's numpy encode at batch 1,024: 15 s) needs no
    more to be measured, and took minutes. Returns the median and the spread of rows/s, and the trials made.
    """
    call(0)  # warm-up: first-call allocations, lazy initialisation, caches
    t0 = time.perf_counter()
    call(1)
    one = max(time.perf_counter() - t0, 1e-7)
    n = int(min(max_calls, max(1, math.ceil(target_seconds / one))))
    if one > repeats * target_seconds:
        repeats = min(int(repeats), LONG_CALL_REPEATS)
    rates = []
    for _ in range(int(repeats)):
        t0 = time.perf_counter()
        for i in range(n):
            call(i)
        rates.append(n * rows_per_call / (time.perf_counter() - t0))
    return {
        "median": float(np.median(rates)),
        "min": float(np.min(rates)),
        "max": float(np.max(rates)),
        "calls_per_trial": n,
        "repeats": int(repeats),
    }


# ==================================================================================================== encode
