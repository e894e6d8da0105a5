"""Benchmark suites behind ``hashplug bench``: each prints a table and writes JSON."""

from __future__ import annotations

import argparse

__all__ = ["run_suite", "SUITES"]

SUITES = {
    "encode": ("hashplug.bench.encode", "bench_encode"),
    "ingest": ("hashplug.bench.ingest", "bench_ingest"),
    "load": ("hashplug.bench.load", "bench_load"),
    "ag-news": ("hashplug.bench.ag_news", "bench_ag_news"),
    "bioconvhash-mnist": ("hashplug.bench.bioconvhash_tables", "bench_bioconvhash"),
    "bioconvhash-cifar10": ("hashplug.bench.bioconvhash_tables", "bench_bioconvhash"),
    "search": ("hashplug.bench.search", "bench_search"),
    "mihash-correlation": ("hashplug.bench.mihash", "bench_mihash"),
    "mihash-mnist": ("hashplug.bench.mihash", "bench_mihash"),
    "mihash-ag-news": ("hashplug.bench.mihash", "bench_mihash"),
    "mihash-unsupervised": ("hashplug.bench.mihash", "bench_mihash"),
    "neurohash-ablation": ("hashplug.bench.neurohash", "bench_neurohash"),
    "neurohash-spatial": ("hashplug.bench.neurohash", "bench_neurohash"),
    "neurohash-tune": ("hashplug.bench.neurohash", "bench_neurohash"),
}


def run_suite(name: str, args: argparse.Namespace) -> int:
    """Run the suite ``name`` with the CLI's parsed arguments."""
    import importlib

    if name not in SUITES:
        known = ["biohash-mnist", "biohash-cifar10", "biohash-tune-mnist", "biohash-tune-cifar10", *SUITES]
        from ..validation import HashplugError

        raise HashplugError(f"Unknown benchmark {name!r}. Available: {', '.join(known)}.")
    mod, fn = SUITES[name]
    return int(getattr(importlib.import_module(mod), fn)(args) or 0)
