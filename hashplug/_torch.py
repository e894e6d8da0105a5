"""Lazy torch import, device resolution and the intra-op thread policy (training side only)."""

from __future__ import annotations

import math
import numbers
import os
import time
from typing import Any, NamedTuple

from .validation import HashplugError, HashplugTypeError


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
# intra-op threads for training
#
# torch's intra-op thread count is process-global (``torch.set_num_threads``) and its OpenMP team waits at
# every parallel op for its slowest thread. On a machine whose cores are partly taken by other processes
# one descheduled thread stalls every op of the training step: a user measured 3 BioHash epochs on MNIST at
# 12.5 s with 2 threads beside one busy core, against 3.6 s with 1 thread (2.8 s with 2 threads alone).
# On the 2-core machine of benchmarks/threads_under_load.py 2 threads beside a busy loop did not finish in
# 180 s (1 thread: 4.8 s; 2 threads alone: 3.1 s) and two 2-thread jobs took 92 s or more. Using more
# threads than free cores costs far more than using one thread too few, so the policy leans towards fewer
# threads, and "auto" keeps watching the load during training.

#: Environment variable giving the training thread count: an int >= 1 or ``"auto"``.
THREADS_ENV = "HASHPLUG_NUM_THREADS"

#: Process-wide default thread policy for training (an int >= 1, ``"auto"``, or None). None defers to
#: :data:`THREADS_ENV`, then ``"auto"``. Set it in code, e.g. ``hashplug._torch.default_threads = 1``.
default_threads: int | str | None = None

#: Other processes must use more than this fraction of a core for it to count as taken.
BUSY_CORE_THRESHOLD = 0.25

#: Seconds of the first /proc/stat reading of "auto": the pause of :func:`measure_busy_cores`, or the first
#: window measured on the running training (:class:`ThreadPolicy`). /proc/stat counts in 10 ms ticks per
#: CPU, so a shorter reading quantises the busy cores too coarsely (0.05 s: +-0.2 core per CPU).
SAMPLE_SECONDS = 0.1

#: While training with "auto", the thread count is re-chosen from the CPU use of other processes over
#: the last this-many seconds (measured between minibatches: no extra sleep).
RECHECK_SECONDS = 0.5


def _affinity_cpus() -> list[int] | None:
    """CPUs this process may run on (None where the OS does not tell)."""
    getter = getattr(os, "sched_getaffinity", None)
    if getter is None:
        return None
    try:
        return sorted(getter(0))
    except OSError:  # pragma: no cover - platform specific
        return None


def _cgroup_cpu_quota() -> float | None:
    """CPU quota in cores from cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us`` (None: no quota)."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            quota_us = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period_us = int(f.read())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def available_cores() -> int:
    """Cores this process may use: its CPU affinity (else ``os.cpu_count()``), at least 1."""
    cpus = _affinity_cpus()
    return max(1, len(cpus) if cpus else (os.cpu_count() or 1))


class CpuSample(NamedTuple):
    """One CPU-time reading: wall clock, busy seconds of the process's CPUs, the process's own CPU seconds."""

    wall: float
    busy: float
    own: float


def sample_cpu() -> CpuSample | None:
    """Read ``/proc/stat`` for the CPUs of this process's affinity; None where there is no /proc/stat.

    Busy time is everything but ``idle`` and ``iowait`` (``steal`` counts: a hypervisor took the core).
    """
    try:
        with open("/proc/stat") as f:
            lines = f.readlines()
    except OSError:
        return None
    wall, own = time.monotonic(), time.process_time()
    cpus = _affinity_cpus()
    want = None if cpus is None else {f"cpu{c}" for c in cpus}
    ticks = 0
    found = False
    for line in lines:
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        parts = line.split()
        if want is not None and parts[0] not in want:
            continue
        try:
            v = [int(x) for x in parts[1:9]]  # user nice system idle iowait irq softirq steal
        except ValueError:
            return None
        ticks += sum(v) - v[3] - v[4]
        found = True
    if not found:
        return None
    try:
        hz = os.sysconf("SC_CLK_TCK")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
        hz = 100
    return CpuSample(wall, ticks / hz, own)


def busy_between(a: CpuSample | None, b: CpuSample | None) -> float | None:
    """Cores kept busy by *other* processes between two samples (this process's own CPU time removed)."""
    if a is None or b is None or b.wall - a.wall <= 0:
        return None
    return max(0.0, ((b.busy - a.busy) - (b.own - a.own)) / (b.wall - a.wall))


def measure_busy_cores(interval: float = SAMPLE_SECONDS) -> float:
    """Cores other processes keep busy now: a ``/proc/stat`` sample over ``interval`` seconds.

    Without /proc/stat (macOS) the 1-minute load average is used; it lags by about a minute and counts
    this process too, so it errs towards fewer threads. Without either (Windows): 0.
    """
    a = sample_cpu()
    if a is not None:
        time.sleep(interval)
        busy = busy_between(a, sample_cpu())
        if busy is not None:
            return busy
    try:
        return max(0.0, float(os.getloadavg()[0]))
    except (AttributeError, OSError):
        return 0.0


def auto_threads(cores: int, busy: float, cap: int | None = None, quota: float | None = None) -> int:
    """Threads for ``cores`` usable cores when other processes keep ``busy`` of them busy.

    A core counts as taken once others use more than :data:`BUSY_CORE_THRESHOLD` of it; the result is
    the free cores, at most ``cap`` (torch's own setting) and ``ceil(quota)`` (a cgroup CPU quota),
    and at least 1.
    """
    taken = math.floor(max(0.0, float(busy)) + 1.0 - BUSY_CORE_THRESHOLD)
    n = int(cores) - taken
    if cap is not None:
        n = min(n, int(cap))
    if quota is not None:
        n = min(n, math.ceil(quota))
    return max(1, n)


def _parse_threads(value: Any, source: str) -> int | str:
    """An int >= 1 or ``"auto"``; anything else raises naming ``source``, the value and the fix."""
    fix = "use a positive int (e.g. 1 or 2) or 'auto'"
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        if source == THREADS_ENV:
            try:
                value = int(text)
            except ValueError:
                raise HashplugError(
                    f"{THREADS_ENV}={value!r} is not a thread count; {fix}, or unset it."
                ) from None
        else:
            raise HashplugError(f"{source}={value!r} is not a thread count; {fix}.")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise HashplugTypeError(
            f"{source} must be a positive int or 'auto'. Got {value!r} ({type(value).__name__}); {fix}."
        )
    if int(value) < 1:
        extra = ", or unset it" if source == THREADS_ENV else ""
        raise HashplugError(f"{source}={int(value)} is not a thread count; {fix}{extra}.")
    return int(value)


def thread_setting(n_threads: int | str | None = None) -> int | str:
    """The thread setting in force: ``n_threads`` if given, else :data:`default_threads`, else the
    :data:`THREADS_ENV` environment variable, else ``"auto"``. Returns an int >= 1 or ``"auto"``."""
    if n_threads is not None:
        return _parse_threads(n_threads, "n_threads")
    if default_threads is not None:
        return _parse_threads(default_threads, "hashplug._torch.default_threads")
    env = os.environ.get(THREADS_ENV)
    if env is not None and env.strip():
        return _parse_threads(env, THREADS_ENV)
    return "auto"


def resolve_threads(
    n_threads: int | str | None = None, *, busy: float | None = None, cap: int | None = None
) -> int:
    """The intra-op thread count to train with.

    Parameters
    ----------
    n_threads : int, "auto" or None
        An int is used as given. None takes :data:`default_threads`, else the ``HASHPLUG_NUM_THREADS``
        environment variable, else ``"auto"``. ``"auto"``: the cores available to the process
        (:func:`available_cores`; a cgroup quota caps it) minus the cores other processes keep busy,
        at most torch's current setting (``torch.get_num_threads()``, which follows ``OMP_NUM_THREADS``
        and any ``torch.set_num_threads`` of the caller), at least 1 (:func:`auto_threads`).
    busy : float or None
        Busy cores to assume instead of measuring them (:func:`measure_busy_cores`, a 0.1 s sample).
    cap : int or None
        Upper bound for ``"auto"`` instead of ``torch.get_num_threads()``.
    """
    setting = thread_setting(n_threads)
    if setting != "auto":
        return int(setting)
    if cap is None:
        cap = int(require_torch().get_num_threads())
    cores, quota = available_cores(), _cgroup_cpu_quota()
    if auto_threads(cores, 0.0, cap, quota) <= 1:
        return 1  # nothing to decide: skip the measurement
    if busy is None:
        busy = measure_busy_cores()
    return auto_threads(cores, busy, cap, quota)


class ThreadPolicy:
    """The thread count of one training run; see :func:`torch_threads`.

    ``n`` is the count in force and ``history`` every count used. A fixed count (int) is set once.
    ``"auto"`` without ``recheck`` is measured once on entry (:func:`resolve_threads`). ``"auto"`` with
    ``recheck`` (seconds) starts with every free core (no measuring pause) and :meth:`tick`, called
    between training steps, re-chooses the count from the CPU use of other processes over the running
    window: the first after :data:`SAMPLE_SECONDS`, then every ``recheck`` seconds. A run thus adapts
    within a fraction of a second when a neighbour starts or stops, including another hashplug job that
    started at the same moment. Without ``/proc/stat`` there is nothing to watch: measured once on entry.
    """

    def __init__(self, n_threads: int | str | None = None, *, recheck: float | None = None) -> None:
        self.setting = thread_setting(n_threads)
        bad = isinstance(recheck, bool) or not isinstance(recheck, (int, float)) or recheck <= 0
        if recheck is not None and bad:
            raise HashplugError(f"recheck={recheck!r} must be a positive number of seconds or None.")
        self.recheck = recheck
        self.previous: int | None = None
        self.n = 0
        self.history: list[int] = []
        self._torch: Any = None
        self._sample: CpuSample | None = None
        self._window = 0.0
        self._cores = 1
        self._quota: float | None = None

    @property
    def auto(self) -> bool:
        return self.setting == "auto"

    def _set(self, n: int) -> None:
        if n != self._torch.get_num_threads():
            self._torch.set_num_threads(n)
        self.n = n
        self.history.append(n)

    def __enter__(self) -> ThreadPolicy:
        self._torch = require_torch()
        self.previous = int(self._torch.get_num_threads())
        if not self.auto:
            self._set(int(self.setting))
            return self
        self._cores, self._quota = available_cores(), _cgroup_cpu_quota()
        most = auto_threads(self._cores, 0.0, self.previous, self._quota)
        first = sample_cpu() if self.recheck and most > 1 else None
        if first is None:
            self._set(resolve_threads("auto", cap=self.previous))
        else:
            self._set(most)  # corrected by the first tick after SAMPLE_SECONDS
            self._sample, self._window = first, min(SAMPLE_SECONDS, float(self.recheck))
        return self

    def tick(self) -> int:
        """Re-choose an ``"auto"`` count once the current window has passed; returns the count."""
        if self._sample is None or time.monotonic() - self._sample.wall < self._window:
            return self.n
        now = sample_cpu()
        busy = busy_between(self._sample, now)
        self._sample, self._window = now, float(self.recheck or 0.0)
        if busy is not None:
            n = auto_threads(self._cores, busy, self.previous, self._quota)
            if n != self.n:
                self._set(n)
        return self.n

    def __exit__(self, *exc: Any) -> None:
        torch, prev = self._torch, self.previous
        if torch is not None and prev is not None and torch.get_num_threads() != prev:
            torch.set_num_threads(prev)


def torch_threads(n_threads: int | str | None = None, *, recheck: float | None = None) -> ThreadPolicy:
    """Context manager: run with :func:`resolve_threads` ``(n_threads)`` intra-op threads, then restore.

    ``torch.set_num_threads`` is process-global; the previous count comes back on exit, also when the
    body raises. The value of the ``with`` is a :class:`ThreadPolicy` (``.n`` is the count). With
    ``recheck`` (seconds; training uses :data:`RECHECK_SECONDS`) an ``"auto"`` count follows the load,
    provided the body calls ``.tick()`` between steps. Device-agnostic: on CUDA the count only affects
    host-side ops.

    >>> with torch_threads(1) as pol:          # doctest: +SKIP
    ...     assert torch.get_num_threads() == pol.n == 1
    """
    return ThreadPolicy(n_threads, recheck=recheck)
