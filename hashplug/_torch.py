"""Lazy torch import, device resolution, and torch's side of the thread policy (training side only).

The thread policy itself (the setting, "auto", the load readings, :class:`ThreadPolicy`) is numpy-only and lives
in :mod:`hashplug._threads_policy`, which sets numpy's BLAS threads for every fit and encode; here
:func:`torch_threads` hands it torch, so training sets torch's intra-op threads under the same policy. The
policy's names are re-exported here for the callers of 0.2.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from . import _threads_policy as _policy
from ._threads_policy import (  # noqa: F401  (re-exported: the policy's names as hashplug._torch had them)
    BUSY_CORE_THRESHOLD,
    RECHECK_SECONDS,
    SAMPLE_SECONDS,
    THREADS_ENV,
    CpuSample,
    ThreadPolicy,
    auto_threads,
    available_cores,
    busy_between,
    measure_busy_cores,
    sample_cpu,
    thread_setting,
)
from .validation import HashplugError


def require_torch() -> Any:
    """Import torch or explain which extra to install."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise ImportError(
            "Training hashplug encoders needs PyTorch. Install the training extra: "
            "pip install 'torch==2.13.0' 'hashplug[train]'."
        ) from exc
    return torch


def resolve_device(device: str | Any = "auto") -> Any:
    """``"auto"`` -> CUDA when available, else CPU; otherwise ``torch.device(device)``."""
    torch = require_torch()
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except Exception as exc:
        raise HashplugError(f"Invalid device {device!r}; use 'auto', 'cpu' or 'cuda[:N]'.") from exc


def torch_generator(seed: int | None, device: Any) -> Any:
    torch = require_torch()
    g = torch.Generator(device="cpu")
    g.manual_seed(0 if seed is None else int(seed))
    return g


# ---------------------------------------------------------------------------------------------------------
# torch's intra-op threads under the one policy (hashplug._threads_policy)


def resolve_threads(
    n_threads: int | str | None = None, *, busy: float | None = None, cap: int | None = None
) -> int:
    """The intra-op thread count to train with: :func:`hashplug._threads_policy.resolve_threads` with ``cap``
    defaulting to torch's current setting (``torch.get_num_threads()``, which follows ``OMP_NUM_THREADS`` and
    any ``torch.set_num_threads`` of the caller)."""
    setting = thread_setting(n_threads)
    if setting != "auto":
        return int(setting)
    if cap is None:
        cap = int(require_torch().get_num_threads())
    return _policy.resolve_threads("auto", busy=busy, cap=cap)


def torch_threads(n_threads: int | str | None = None, *, recheck: float | None = None) -> ThreadPolicy:
    """Context manager: train with the policy's thread count on torch's intra-op threads and numpy's BLAS,
    then restore both.

    ``torch.set_num_threads`` is process-global; the previous count comes back on exit, also when the
    body raises. The value of the ``with`` is a :class:`~hashplug._threads_policy.ThreadPolicy` (``.n`` is
    the count). With ``recheck`` (seconds; training uses :data:`RECHECK_SECONDS`) an ``"auto"`` count starts
    on every free core (no measuring pause, unless a recent reading exists) and follows the load, provided
    the body calls ``.tick()`` between steps. Device-agnostic: on CUDA the count only affects host-side ops.

    >>> with torch_threads(1) as pol:          # doctest: +SKIP
    ...     assert torch.get_num_threads() == pol.n == 1
    """
    return ThreadPolicy(n_threads, recheck=recheck, torch=require_torch(),
                        start="every_core" if recheck else "measure")


class _Module(types.ModuleType):
    """``hashplug._torch.default_threads`` (0.2's place for the process-wide default) reads and sets
    :data:`hashplug._threads_policy.default_threads`, the one default of every numeric thread count."""

    @property
    def default_threads(self) -> int | str | None:
        return _policy.default_threads

    @default_threads.setter
    def default_threads(self, value: int | str | None) -> None:
        _policy.default_threads = value


sys.modules[__name__].__class__ = _Module
