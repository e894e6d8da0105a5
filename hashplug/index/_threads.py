"""Threads for the compiled (``nogil``) kernels: a persistent pool of plain Python threads, not an OpenMP team."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["thread_pool", "run_ranges"]

_POOLS: dict[int, ThreadPoolExecutor] = {}


def thread_pool(threads: int) -> ThreadPoolExecutor:
    """A persistent pool of ``threads`` Python threads for the compiled (``nogil``) kernels, made once per size.

    Plain threads waiting on a queue, not an OpenMP team: idle workers sleep, so they never slow FAISS's or
    torch's OpenMP threads in the same process (an OpenMP pool of numba's, spinning after each call, slowed
    FAISS searches 20-100x here).
    """
    pool = _POOLS.get(int(threads))
    if pool is None:
        pool = _POOLS[int(threads)] = ThreadPoolExecutor(max_workers=int(threads), thread_name_prefix="hashplug")
    return pool


def run_ranges(fn: Any, T: int) -> None:
    """``fn(t)`` for t in ``range(T)``: ranges 1.. on the pool while the calling thread runs range 0 (one
    hand-off fewer than mapping all of them), errors re-raised."""
    if T <= 1:
        fn(0)
        return
    futures = [thread_pool(T - 1).submit(fn, t) for t in range(1, T)]
    fn(0)
    for f in futures:
        f.result()
