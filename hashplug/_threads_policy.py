"""One thread policy for hashplug's numeric work: numpy's BLAS everywhere, torch's intra-op threads in training.

Standard library and :mod:`hashplug.validation` at import. threadpoolctl (a base dependency) is imported inside
the functions that set a BLAS thread count; torch is never imported here: :mod:`hashplug._torch` hands its
module to :class:`ThreadPolicy`, so numpy-only work (a baseline's ``fit``, ``encode``, a benchmark's metrics)
runs under the same policy without loading torch.

Why a policy at all. A BLAS library (OpenBLAS in numpy's wheels) and torch both keep a team of threads, one
per core by default, and every parallel operation waits for its slowest thread. On a machine whose cores are
partly taken by other processes one descheduled thread stalls every operation: a user measured 3 BioHash
epochs on MNIST at 12.5 s with 2 torch threads beside one busy core, against 3.6 s with 1 thread (2.8 s with 2
threads alone), and an ITQ-256 fit (numpy) at 50.1 s with default threads on a busy machine against 3.1 s
with one thread. Using more threads than free cores costs far more than using one thread too few, so the
policy leans towards fewer threads, and a long run keeps watching the load (:meth:`ThreadPolicy.tick`).

Where it applies: every encoder's ``fit``, ``scores`` and ``encode`` (:mod:`hashplug.encoders.contract`), the
training loops (:func:`hashplug._torch.torch_threads`), every ``hashplug bench`` suite
(:meth:`hashplug.bench.suite.Suite.main`). The setting is one for all of them: ``n_threads`` where a function
takes it, else :data:`default_threads`, else the ``HASHPLUG_NUM_THREADS`` environment variable, else
``"auto"``.
"""

from __future__ import annotations

import math
import numbers
import os
import threading
import time
from typing import Any, NamedTuple

from .validation import HashplugError, HashplugTypeError

__all__ = [
    "THREADS_ENV",
    "ThreadPolicy",
    "numeric_threads",
    "tick",
    "thread_setting",
    "resolve_threads",
    "auto_threads",
    "available_cores",
    "measure_busy_cores",
    "blas_threads",
]

#: Environment variable giving the thread count of numeric work: an int >= 1 or ``"auto"``.
THREADS_ENV = "HASHPLUG_NUM_THREADS"

#: Process-wide default thread setting (an int >= 1, ``"auto"``, or None). None defers to
#: :data:`THREADS_ENV`, then ``"auto"``. Set it in code, e.g. ``hashplug._threads_policy.default_threads = 1``.
default_threads: int | str | None = None

#: Other processes must use more than this fraction of a core for it to count as taken.
BUSY_CORE_THRESHOLD = 0.25

#: Seconds of the first /proc/stat reading of "auto": the pause of :func:`measure_busy_cores`, or the first
#: window measured on a running job (``start="every_core"``). /proc/stat counts in 10 ms ticks per CPU, so a
#: shorter reading quantises the busy cores too coarsely (0.05 s: +-0.2 core per CPU).
SAMPLE_SECONDS = 0.1

#: While a job runs with "auto", the thread count is re-chosen from the CPU use of other processes over the
#: last this-many seconds (measured at the job's :meth:`ThreadPolicy.tick`: no extra sleep).
RECHECK_SECONDS = 0.5

#: A load reading younger than this many seconds (taken on entering a policy or at a tick) is reused by the
#: next "auto" policy instead of pausing for a new one: back-to-back fits and encodes measure once.
READING_MAX_AGE = RECHECK_SECONDS

#: Work (estimated multiply-adds, the ``work=`` of :func:`numeric_threads`) below which "auto" runs on one
#: thread without measuring: 1e8 multiply-adds take a few milliseconds on one core, less than the pause of a
#: reading, and a second thread gains little there while a stalled one costs a scheduler slice per product
#: (an ITQ-32 fit on 4,000 x 96 took 3.2 s on 2 threads of a busy machine). A fixed count (an int) is applied
#: whatever the work.
SMALL_WORK = 1e8

#: Work below which "auto" leaves the counts alone (not even setting one thread, about 1 ms): OpenBLAS runs a
#: product of fewer than 65,536 x 4 multiply-adds on one thread itself; a single query's encode is this small.
TINY_WORK = 2.5e5


# ---------------------------------------------------------------------------------------------------------
# the machine: cores, quota, load
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


#: The last load reading of a policy: (``time.monotonic()``, busy cores), or None.
_reading: tuple[float, float] | None = None


def _remember(busy: float) -> None:
    global _reading
    _reading = (time.monotonic(), float(busy))


def _recent_busy() -> float | None:
    """The busy cores of a reading younger than :data:`READING_MAX_AGE` seconds, else None."""
    if _reading is None or time.monotonic() - _reading[0] > READING_MAX_AGE:
        return None
    return _reading[1]


def auto_threads(cores: int, busy: float, cap: int | None = None, quota: float | None = None) -> int:
    """Threads for ``cores`` usable cores when other processes keep ``busy`` of them busy.

    A core counts as taken once others use more than :data:`BUSY_CORE_THRESHOLD` of it; the result is
    the free cores, at most ``cap`` (the library's own setting) and ``ceil(quota)`` (a cgroup CPU quota),
    and at least 1.
    """
    taken = math.floor(max(0.0, float(busy)) + 1.0 - BUSY_CORE_THRESHOLD)
    n = int(cores) - taken
    if cap is not None:
        n = min(n, int(cap))
    if quota is not None:
        n = min(n, math.ceil(quota))
    return max(1, n)


# ---------------------------------------------------------------------------------------------------------
# the setting
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
        return _parse_threads(default_threads, "hashplug._threads_policy.default_threads")
    env = os.environ.get(THREADS_ENV)
    if env is not None and env.strip():
        return _parse_threads(env, THREADS_ENV)
    return "auto"


# ---------------------------------------------------------------------------------------------------------
# the thread pools a policy sets
class _TorchPool:
    """torch's intra-op threads (``torch.set_num_threads``: process-global)."""

    name = "torch"

    def __init__(self, torch: Any) -> None:
        self._torch = torch

    def get(self) -> int:
        return int(self._torch.get_num_threads())

    def set(self, n: int) -> None:
        if n != self.get():
            self._torch.set_num_threads(int(n))

    def snapshot(self) -> int:
        return self.get()

    def restore(self, snap: int) -> None:
        self.set(snap)


class _BlasPool:
    """The BLAS libraries loaded in the process (threadpoolctl's ``user_api="blas"``: OpenBLAS, MKL, BLIS)."""

    name = "blas"

    def __init__(self, libs: list[Any]) -> None:
        self._libs = libs

    def get(self) -> int:
        return max(int(lib.get_num_threads() or 1) for lib in self._libs)

    def set(self, n: int) -> None:
        for lib in self._libs:
            if lib.get_num_threads() != n:
                lib.set_num_threads(int(n))

    def snapshot(self) -> list[int | None]:
        return [lib.get_num_threads() for lib in self._libs]

    def restore(self, snap: list[int | None]) -> None:
        for lib, n in zip(self._libs, snap):
            if n is not None and lib.get_num_threads() != n:
                lib.set_num_threads(int(n))


def _loaded_libraries_stamp() -> tuple[str, int, int]:
    """What changes when the process loads or unloads a shared library: glibc's counts of both
    (``dl_iterate_phdr``'s ``dlpi_adds`` and ``dlpi_subs``, about 2 us to read); elsewhere the number of
    imported modules (a BLAS comes with the import of numpy, scipy or torch)."""
    global _dl_reader
    if _dl_reader is None:
        _dl_reader = _make_dl_reader()
    got = _dl_reader() if _dl_reader is not False else None
    if got is None:
        import sys

        return ("modules", len(sys.modules), 0)
    return ("dl", *got)


def _make_dl_reader() -> Any:
    """A function giving glibc's (loads, unloads) of shared objects, or False where there is none."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        iterate = libc.dl_iterate_phdr
    except (OSError, AttributeError):  # pragma: no cover - every glibc and musl has it
        return False

    class _Info(ctypes.Structure):  # struct dl_phdr_info (glibc >= 2.4, musl)
        _fields_ = [("addr", ctypes.c_void_p), ("name", ctypes.c_char_p), ("phdr", ctypes.c_void_p),
                    ("phnum", ctypes.c_uint16), ("adds", ctypes.c_ulonglong), ("subs", ctypes.c_ulonglong)]

    found: list[tuple[int, int]] = []

    @ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(_Info), ctypes.c_size_t, ctypes.c_void_p)
    def first(info: Any, size: int, data: Any) -> int:
        if size >= ctypes.sizeof(_Info):  # the loader fills the two counters
            found.append((int(info.contents.adds), int(info.contents.subs)))
        return 1  # the first object is enough: every entry carries the process-wide counts

    iterate.argtypes = [type(first), ctypes.c_void_p]
    iterate.restype = ctypes.c_int

    def read() -> tuple[int, int] | None:
        with _dl_lock:
            found.clear()
            iterate(first, None)
            return found[0] if found else None

    return read


#: glibc's reader of the loaded-library counts (None: not made yet; False: none on this platform).
_dl_reader: Any = None
_dl_lock = threading.Lock()
#: The BLAS libraries found at a stamp of the loaded libraries: threadpoolctl finds them by reading
#: /proc/self/maps, 2-3 ms in a process that has loaded torch, which an encode of a few rows would pay each time.
_blas_cache: tuple[Any, _BlasPool | None] | None = None


def _blas_pool() -> _BlasPool | None:
    """The BLAS libraries loaded now (None without threadpoolctl or without a BLAS it knows); looked up again
    only when the process has loaded or unloaded a shared library since the last lookup."""
    global _blas_cache
    stamp = _loaded_libraries_stamp()
    cached = _blas_cache
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl is a base dependency
        return None
    libs = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]
    pool = _BlasPool(libs) if libs else None
    _blas_cache = (stamp, pool)
    return pool


def blas_threads() -> int | None:
    """The largest thread count of the BLAS libraries loaded in the process (None: none known)."""
    pool = _blas_pool()
    return None if pool is None else pool.get()


def resolve_threads(
    n_threads: int | str | None = None, *, busy: float | None = None, cap: int | None = None
) -> int:
    """The thread count numeric work would run with now (no count is set).

    Parameters
    ----------
    n_threads : int, "auto" or None
        An int is used as given. None takes :data:`default_threads`, else the ``HASHPLUG_NUM_THREADS``
        environment variable, else ``"auto"``. ``"auto"``: the cores available to the process
        (:func:`available_cores`; a cgroup quota caps it) minus the cores other processes keep busy,
        at most ``cap``, at least 1 (:func:`auto_threads`).
    busy : float or None
        Busy cores to assume instead of measuring them (:func:`measure_busy_cores`, a 0.1 s sample).
    cap : int or None
        Upper bound for ``"auto"``; None: the BLAS libraries' current setting (:func:`blas_threads`), else
        the available cores.
    """
    setting = thread_setting(n_threads)
    if setting != "auto":
        return int(setting)
    cores, quota = available_cores(), _cgroup_cpu_quota()
    if cap is None:
        cap = blas_threads() or cores
    if auto_threads(cores, 0.0, cap, quota) <= 1:
        return 1  # nothing to decide: skip the measurement
    if busy is None:
        busy = measure_busy_cores()
    return auto_threads(cores, busy, cap, quota)


# ---------------------------------------------------------------------------------------------------------
# the policy
#: Policies entered and not yet left, innermost last.
_active: list[ThreadPolicy] = []
#: Each pool's count before the outermost active policy (the user's own setting): the cap of "auto".
_outer_counts: dict[str, int] = {}
#: Each pool and its snapshot before the outermost active policy: what the last policy to leave restores, so
#: the user's counts come back whatever order policies of several threads leave in.
_outer_snaps: dict[str, tuple[Any, Any]] = {}
#: Guards the bookkeeping above and the settings (the counts are process-global).
_lock = threading.RLock()

START_MODES = ("measure", "every_core", "one_core")


class ThreadPolicy:
    """The thread count of one piece of numeric work; a context manager (see :func:`numeric_threads` and
    :func:`hashplug._torch.torch_threads`).

    On entry the count is chosen and set on the BLAS libraries loaded in the process and, when ``torch`` (the
    module) is given, on torch's intra-op threads; on exit every count is put back, also when the body raises.
    Policies nest: an inner one sets its own count and restores the outer one's. ``n`` is the count in force
    (0 while the policy left the counts alone) and ``history`` every count used.

    A fixed count (int) is set as given. ``"auto"`` takes the free cores (:func:`auto_threads`) capped by each
    library's own setting before the outermost policy (e.g. ``OMP_NUM_THREADS``, ``torch.set_num_threads``):
    measured on entry (a reading of another policy younger than :data:`READING_MAX_AGE` is reused, else a
    :data:`SAMPLE_SECONDS` pause), or without a recent reading begun on one thread (``start="one_core"``:
    encoding, no pause) or, with ``recheck``, on every free core (``start="every_core"``: training, no pause),
    either corrected at the first :meth:`tick` after :data:`SAMPLE_SECONDS`. With ``recheck``
    (seconds) :meth:`tick`, called between steps, re-chooses the count from the CPU use of other processes
    over the running window, so a long job adapts within a fraction of a second when a neighbour starts or
    stops. With ``work`` (estimated multiply-adds) below :data:`SMALL_WORK`, ``"auto"`` takes one thread
    without measuring, below :data:`TINY_WORK` it leaves the counts alone. Without ``/proc/stat`` there is
    nothing to watch: measured once on entry.

    Parameters
    ----------
    n_threads : int, "auto" or None
        The setting (:func:`thread_setting`: None takes the module default, then ``HASHPLUG_NUM_THREADS``).
    recheck : float or None
        Seconds between re-choices of an ``"auto"`` count at :meth:`tick`; None: chosen once.
    torch : module or None
        torch, whose intra-op threads the policy also sets (training); never imported here.
    work : float or None
        Estimated multiply-adds of the work (None: large); below :data:`SMALL_WORK` an ``"auto"`` policy sets
        one thread without measuring, below :data:`TINY_WORK` nothing.
    start : {"measure", "every_core", "one_core"}
        How an ``"auto"`` count starts when no recent reading exists (see above).
    """

    def __init__(
        self,
        n_threads: int | str | None = None,
        *,
        recheck: float | None = None,
        torch: Any = None,
        work: float | None = None,
        start: str = "measure",
    ) -> None:
        self.setting = thread_setting(n_threads)
        bad = isinstance(recheck, bool) or not isinstance(recheck, (int, float)) or recheck <= 0
        if recheck is not None and bad:
            raise HashplugError(f"recheck={recheck!r} must be a positive number of seconds or None.")
        if work is not None and (isinstance(work, bool) or not isinstance(work, numbers.Real) or not work >= 0):
            raise HashplugError(f"work={work!r} must be a number of multiply-adds >= 0 or None.")
        if start not in START_MODES:
            raise HashplugError(f"start={start!r} is not one of {START_MODES}.")
        self.recheck = recheck
        self.torch = torch
        self.work = work
        self.start = start
        #: The cap of an "auto" count: torch's count before the outermost policy when torch is given, else
        #: the BLAS libraries' (None: nothing to set).
        self.previous: int | None = None
        self.n = 0
        self.history: list[int] = []
        self._pools: list[Any] = []
        self._snaps: list[Any] = []
        self._sample: CpuSample | None = None
        self._window = 0.0
        self._cores = 1
        self._quota: float | None = None
        self._entered = False

    @property
    def auto(self) -> bool:
        return self.setting == "auto"

    @property
    def pools(self) -> tuple[str, ...]:
        """Names of the thread pools this policy sets (``"torch"``, ``"blas"``), once entered."""
        return tuple(p.name for p in self._pools)

    def _set(self, n: int) -> None:
        with _lock:
            for pool in self._pools:
                pool.set(min(n, _outer_counts[pool.name]) if self.auto else n)
        self.n = n
        self.history.append(n)

    def __enter__(self) -> ThreadPolicy:
        if self._entered:
            raise HashplugError("a ThreadPolicy is entered once; make a new one for each with-block.")
        self._entered = True
        if self.auto and self.work is not None and self.work < TINY_WORK:
            with _lock:
                _active.append(self)  # tiny work: the counts are left alone (no library scan, no pause)
            return self
        pools: list[Any] = [_TorchPool(self.torch)] if self.torch is not None else []
        blas = _blas_pool()
        if blas is not None:
            pools.append(blas)
        with _lock:
            if not _active:
                _outer_counts.clear()
                _outer_snaps.clear()
            for pool in pools:
                if pool.name not in _outer_counts:
                    _outer_counts[pool.name] = pool.get()
                    _outer_snaps[pool.name] = (pool, pool.snapshot())
            self._pools, self._snaps = pools, [p.snapshot() for p in pools]
            _active.append(self)
        try:
            self._choose()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _choose(self) -> None:
        if not self._pools:
            return
        if not self.auto:
            self._set(int(self.setting))
            return
        self.previous = cap = _outer_counts[self._pools[0].name]
        if self.work is not None and self.work < SMALL_WORK:
            self._set(1)  # small work: one thread, no pause
            return
        self._cores, self._quota = available_cores(), _cgroup_cpu_quota()
        most = auto_threads(self._cores, 0.0, cap, self._quota)
        if most <= 1:
            self._set(1)  # nothing to decide: no measurement
            return
        busy = _recent_busy()
        if busy is None and self.start == "one_core":
            self._set(1)  # no pause: one thread until a tick has measured the load
            first = sample_cpu() if self.recheck else None
            if first is not None:
                self._sample, self._window = first, min(SAMPLE_SECONDS, float(self.recheck))
            return
        if busy is None and self.recheck and self.start == "every_core":
            first = sample_cpu()
            if first is not None:
                self._set(most)  # corrected by the first tick after SAMPLE_SECONDS
                self._sample, self._window = first, min(SAMPLE_SECONDS, float(self.recheck))
                return
        if busy is None:
            busy = measure_busy_cores()
            _remember(busy)
        self._set(auto_threads(self._cores, busy, cap, self._quota))
        if self.recheck:
            self._sample, self._window = sample_cpu(), float(self.recheck)

    def tick(self) -> int:
        """Re-choose an ``"auto"`` count once the current window has passed; returns the count in force."""
        if self._sample is None or time.monotonic() - self._sample.wall < self._window:
            return self.n
        now = sample_cpu()
        busy = busy_between(self._sample, now)
        self._sample, self._window = now, float(self.recheck or 0.0)
        if busy is not None:
            _remember(busy)
            n = auto_threads(self._cores, busy, self.previous, self._quota)
            if n != self.n:
                self._set(n)
        return self.n

    def __exit__(self, *exc: Any) -> None:
        self._sample = None
        with _lock:
            if self in _active:
                _active.remove(self)
            if _active:  # an enclosing policy (or another thread's) is still running: its counts come back
                for pool, snap in zip(reversed(self._pools), reversed(self._snaps)):
                    pool.restore(snap)
                return
            for pool, snap in reversed(list(_outer_snaps.values())):  # the last to leave: the user's counts
                pool.restore(snap)
            _outer_counts.clear()
            _outer_snaps.clear()


def numeric_threads(
    n_threads: int | str | None = None,
    *,
    work: float | None = None,
    recheck: float | None = RECHECK_SECONDS,
    start: str = "measure",
) -> ThreadPolicy:
    """Context manager: numpy's BLAS threads for a piece of numeric work (a fit, an encode), then restore.

    The value of the ``with`` is a :class:`ThreadPolicy` (``.n`` is the count, 0 when tiny work was left
    alone); a loop in the body may call its ``.tick()`` (or :func:`tick`) between steps so an ``"auto"``
    count follows the load every ``recheck`` seconds. ``start`` (:class:`ThreadPolicy`): ``"measure"`` pauses
    for a reading when there is no recent one (fits: seconds of work), ``"one_core"`` starts on one thread
    instead (encodes: often shorter than the pause). torch is not touched (nor imported).

    >>> import numpy as np
    >>> with numeric_threads(1) as pol:
    ...     _ = np.ones((200, 200)) @ np.ones((200, 200))  # one BLAS thread
    >>> pol.n
    1
    """
    return ThreadPolicy(n_threads, recheck=recheck, work=work, start=start)


def tick() -> int:
    """:meth:`ThreadPolicy.tick` of the innermost active policy (a step boundary of a long loop); returns its
    count, 0 when no policy is active."""
    return _active[-1].tick() if _active else 0
