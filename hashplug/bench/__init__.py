"""Benchmark suites behind ``hashplug bench``: each prints a table and writes JSON.

Every suite is a :class:`~hashplug.bench.suite.Suite` registered by the module that defines it
(:func:`~hashplug.bench.suite.register_suite`); :mod:`hashplug.bench.suite` holds the one registry.
``SUITES`` is a read-only view of it (suite name -> suite).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .suite import Suite, register_suite, run_suite

__all__ = ["run_suite", "SUITES", "Suite", "register_suite"]


def __getattr__(name: str) -> Any:
    # the registry, read when asked for (importing it loads every suite module)
    if name == "SUITES":
        from . import suite

        suite.load_suites()
        view: Mapping[str, Suite] = MappingProxyType(suite._REGISTRY)
        return view
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
