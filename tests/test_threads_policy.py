"""The one thread policy of numeric work (hashplug._threads_policy) on its numpy/BLAS side: numeric_threads,
the fits and encodes that run under it, nesting with torch's side, and the import rule (no torch for numpy work).

The counts are read inside the work with threadpoolctl (what the BLAS libraries report), never timed; "auto" is
tested with injected readings (cores, busy cores).
"""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

import hashplug._threads_policy as tp
from hashplug.encoders import ITQ, LSH, PCAHash, SpectralHash
from hashplug.validation import HashplugError

threadpoolctl = pytest.importorskip("threadpoolctl")


def blas_counts() -> set[int]:
    """The thread counts the loaded BLAS libraries report now (one value when the policy set them)."""
    return {lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"}


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    """No HASHPLUG_NUM_THREADS (the suite sets 1), no module default, no earlier reading; BLAS at 2 threads
    outside the policy (put back after)."""
    monkeypatch.delenv(tp.THREADS_ENV, raising=False)
    monkeypatch.setattr(tp, "default_threads", None)
    monkeypatch.setattr(tp, "_reading", None)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        assert blas_counts() == {2}
        yield
    assert not tp._active, "a policy was left active"


@pytest.fixture
def two_cores(monkeypatch):
    """A machine of 2 cores, no cgroup quota, no small-work shortcut; the busy reading is set by the test."""
    monkeypatch.setattr(tp, "available_cores", lambda: 2)
    monkeypatch.setattr(tp, "_cgroup_cpu_quota", lambda: None)
    monkeypatch.setattr(tp, "SMALL_WORK", 0.0)
    monkeypatch.setattr(tp, "READING_MAX_AGE", -1.0)  # each policy reads the injected value afresh
    busy = {"cores": 0.0, "measured": 0}

    def measure(interval=tp.SAMPLE_SECONDS):
        busy["measured"] += 1
        return busy["cores"]

    monkeypatch.setattr(tp, "measure_busy_cores", measure)
    return busy


def record_inside(monkeypatch, owner, name):
    """Wrap ``owner.name`` so that each call records the BLAS thread counts in force."""
    seen: list[set[int]] = []
    real = getattr(owner, name)

    def wrapped(*a, **k):
        seen.append(blas_counts())
        return real(*a, **k)

    monkeypatch.setattr(owner, name, wrapped)
    return seen


# ------------------------------------------------------------------------------------------------
# numeric_threads
# ------------------------------------------------------------------------------------------------


def test_fixed_count_is_set_inside_and_restored():
    with tp.numeric_threads(1) as pol:
        assert blas_counts() == {1} and pol.n == 1 and pol.pools == ("blas",)
        x = np.ones((300, 300))
        np.testing.assert_array_equal(x @ x, np.full((300, 300), 300.0))
    assert blas_counts() == {2} and pol.history == [1]


def test_restored_when_the_body_raises():
    with pytest.raises(RuntimeError, match="boom"):
        with tp.numeric_threads(1):
            assert blas_counts() == {1}
            raise RuntimeError("boom")
    assert blas_counts() == {2}


def test_the_env_var_and_the_module_default_give_the_count(monkeypatch):
    monkeypatch.setenv(tp.THREADS_ENV, "1")
    with tp.numeric_threads():
        assert blas_counts() == {1}
    monkeypatch.setenv(tp.THREADS_ENV, "2")
    monkeypatch.setattr(tp, "default_threads", 1)  # the module default beats the variable
    with tp.numeric_threads():
        assert blas_counts() == {1}
    with tp.numeric_threads(2):  # an explicit count beats both
        assert blas_counts() == {2}


def test_policies_nest_and_restore_in_order():
    with tp.numeric_threads(1):
        with tp.numeric_threads(2):
            assert blas_counts() == {2}
        assert blas_counts() == {1}
    assert blas_counts() == {2}


def test_the_last_policy_to_leave_restores_the_counts_from_before_the_first():
    """Policies of two threads may leave in any order (BLAS counts are process-global): the user's counts
    come back when the last one leaves, not the snapshot of whichever left last."""
    a, b = tp.numeric_threads(1), tp.numeric_threads(1)
    a.__enter__()
    b.__enter__()  # its snapshot: a's count, 1
    a.__exit__(None, None, None)  # b is still running: a puts back what it found (2) ...
    assert blas_counts() == {2}
    b.__exit__(None, None, None)  # ... and b, the last, the counts from before a
    assert blas_counts() == {2} and not tp._active


@pytest.mark.parametrize("busy, expected", [(1.0, 1), (0.0, 2), (0.9, 1), (0.1, 2)])
def test_auto_takes_the_free_cores(two_cores, busy, expected):
    two_cores["cores"] = busy
    with tp.numeric_threads("auto") as pol:
        assert blas_counts() == {expected} and pol.n == expected
    assert blas_counts() == {2} and two_cores["measured"] == 1


def test_auto_never_exceeds_the_blas_setting_outside_the_policy(two_cores):
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):  # e.g. OPENBLAS_NUM_THREADS=1
        with tp.numeric_threads("auto") as pol:
            assert blas_counts() == {1} and pol.n == 1
    assert two_cores["measured"] == 0  # nothing to decide: no pause


def test_an_inner_auto_is_capped_by_the_setting_before_the_outer_policy(two_cores):
    """An outer policy's count is no cap of an inner "auto": a fit inside a benchmark that started on a busy
    machine still gets both cores once they are free."""
    two_cores["cores"] = 1.0
    with tp.numeric_threads("auto"):
        assert blas_counts() == {1}
        two_cores["cores"] = 0.0
        with tp.numeric_threads("auto") as inner:
            assert blas_counts() == {2} and inner.n == 2
        assert blas_counts() == {1}


def test_small_work_takes_one_thread_and_tiny_work_is_left_alone_without_a_pause(two_cores, monkeypatch):
    monkeypatch.setattr(tp, "SMALL_WORK", 1e8)
    monkeypatch.setattr(tp, "measure_busy_cores", lambda *a: pytest.fail("measured for small work"))
    with tp.numeric_threads("auto", work=1e7) as pol:
        assert blas_counts() == {1} and pol.n == 1
    with tp.numeric_threads("auto", work=1e3) as pol:
        assert blas_counts() == {2} and pol.n == 0 and pol.history == [] and pol.pools == ()
    with tp.numeric_threads(1, work=1e3) as pol:  # a fixed count applies whatever the work
        assert blas_counts() == {1}
    assert blas_counts() == {2}


def test_one_core_start_needs_no_pause_and_ticks_correct_it(two_cores, monkeypatch):
    clock = {"t": 0.0}
    monkeypatch.setattr(tp, "time", SimpleNamespace(monotonic=lambda: clock["t"], process_time=lambda: 0.0))
    monkeypatch.setattr(tp, "sample_cpu", lambda: tp.CpuSample(clock["t"], 0.0, 0.0))
    monkeypatch.setattr(tp, "busy_between", lambda a, b: 0.0)  # an idle machine
    with tp.numeric_threads("auto", start="one_core") as pol:
        assert pol.n == 1 and blas_counts() == {1}
        clock["t"] = 0.05
        assert pol.tick() == 1  # inside the first window (SAMPLE_SECONDS)
        clock["t"] = 0.15
        assert pol.tick() == 2 and blas_counts() == {2}  # the load was read: both cores are free
    assert two_cores["measured"] == 0 and pol.history == [1, 2]


def test_encode_starts_on_one_thread_without_a_pause(two_cores, monkeypatch, digits):
    from hashplug.graph import Graph

    enc = LSH(k=8, random_state=0).fit(digits[0])
    two_cores["measured"] = 0
    seen = record_inside(monkeypatch, Graph, "bits")
    enc.encode(digits[0])
    assert seen == [{1}] and two_cores["measured"] == 0


def test_a_recent_reading_is_reused(two_cores, monkeypatch):
    monkeypatch.setattr(tp, "READING_MAX_AGE", 60.0)
    two_cores["cores"] = 1.0
    with tp.numeric_threads("auto"):
        pass
    two_cores["cores"] = 0.0
    with tp.numeric_threads("auto") as pol:  # the first reading still holds: no second pause
        assert pol.n == 1
    assert two_cores["measured"] == 1


def test_auto_follows_the_load_at_ticks(two_cores, monkeypatch):
    clock = {"t": 0.0}
    monkeypatch.setattr(tp, "time", SimpleNamespace(monotonic=lambda: clock["t"], process_time=lambda: 0.0))
    monkeypatch.setattr(tp, "sample_cpu", lambda: tp.CpuSample(clock["t"], 0.0, 0.0))
    readings = iter([1.0, 0.0])
    monkeypatch.setattr(tp, "busy_between", lambda a, b: next(readings))
    with tp.numeric_threads("auto", recheck=0.5) as pol:
        assert pol.n == 2  # measured up front (idle)
        clock["t"] = 0.4
        assert tp.tick() == 2 and blas_counts() == {2}  # inside the window
        clock["t"] = 0.6
        assert tp.tick() == 1 and blas_counts() == {1}  # a neighbour took a core
        clock["t"] = 1.2
        assert tp.tick() == 2 and blas_counts() == {2}  # and left
    assert pol.history == [2, 1, 2] and tp.tick() == 0  # no policy active: nothing to tick


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_threads": 0}, "n_threads=0"),
        ({"work": -1.0}, "work=-1.0"),
        ({"work": "big"}, "work='big'"),
        ({"recheck": 0}, "recheck=0"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, match):
    with pytest.raises(HashplugError, match=match):
        tp.numeric_threads(**kwargs)


def test_bad_start_and_reentry_are_refused():
    with pytest.raises(HashplugError, match="start='soon'"):
        tp.ThreadPolicy(1, start="soon")
    pol = tp.numeric_threads(1)
    with pol:
        pass
    with pytest.raises(HashplugError, match="entered once"):
        with pol:
            pass


# ------------------------------------------------------------------------------------------------
# fits and encodes run under it
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, owner, name",
    [
        (lambda: ITQ(k=8, n_iter=3, random_state=0), np.linalg, "svd"),
        (lambda: PCAHash(k=8), np.linalg, "eigh"),
        (lambda: SpectralHash(k=8), np.linalg, "eigh"),
    ],
    ids=["ITQ", "PCAHash", "SH"],
)
def test_fit_runs_under_the_policy(monkeypatch, digits, make, owner, name):
    monkeypatch.setenv(tp.THREADS_ENV, "1")
    seen = record_inside(monkeypatch, owner, name)
    enc = make().fit(digits[0])
    assert seen and all(s == {1} for s in seen), seen
    assert blas_counts() == {2}
    assert enc.encode(digits[0][:5]).shape == (5, 1)  # a working fit


def test_fit_under_auto_follows_the_injected_load(two_cores, monkeypatch, digits):
    seen = record_inside(monkeypatch, np.linalg, "svd")
    two_cores["cores"] = 1.0
    ITQ(k=8, n_iter=2, random_state=0).fit(digits[0])
    two_cores["cores"] = 0.0
    ITQ(k=8, n_iter=2, random_state=0).fit(digits[0])
    assert seen == [{1}, {1}, {2}, {2}]


def test_the_codes_do_not_depend_on_the_thread_count(monkeypatch, digits):
    X = digits[0]
    codes = []
    for n in ("1", "2"):
        monkeypatch.setenv(tp.THREADS_ENV, n)
        codes.append(ITQ(k=16, n_iter=5, random_state=0).fit(X).encode(X))
    np.testing.assert_array_equal(codes[0], codes[1])


def test_encode_and_scores_run_under_the_policy(monkeypatch, digits):
    from hashplug.graph import Graph

    enc = LSH(k=8, random_state=0).fit(digits[0])
    monkeypatch.setenv(tp.THREADS_ENV, "1")
    seen_bits = record_inside(monkeypatch, Graph, "bits")
    seen_numpy = record_inside(monkeypatch, Graph, "numpy")
    codes = enc.encode(digits[0], batch_size=700)
    scores = enc.scores(digits[0])
    assert len(seen_bits) == 3 and all(s == {1} for s in seen_bits)  # 700 + 700 + 397 rows
    assert seen_numpy and all(s == {1} for s in seen_numpy)
    np.testing.assert_array_equal(codes, np.packbits(scores > 0, axis=1))
    assert blas_counts() == {2}


def test_mihash_itq_start_runs_under_the_policy(monkeypatch, digits):
    pytest.importorskip("torch")
    from hashplug.encoders import MIHash

    monkeypatch.setenv(tp.THREADS_ENV, "1")
    seen = record_inside(monkeypatch, np.linalg, "svd")
    X, y = digits[0][:300], digits[1][:300]
    MIHash(k=8, init="itq", epochs=1, batch_size=100, random_state=0, device="cpu").fit(X, y)
    assert seen and all(s == {1} for s in seen)


# ------------------------------------------------------------------------------------------------
# torch's side is the same policy
# ------------------------------------------------------------------------------------------------


def test_torch_threads_sets_torch_and_blas_and_restores_both():
    torch = pytest.importorskip("torch")
    from hashplug._torch import torch_threads

    before = torch.get_num_threads()
    with torch_threads(2) as pol:
        assert torch.get_num_threads() == 2 and blas_counts() == {2} and pol.pools == ("torch", "blas")
        with tp.numeric_threads(1):  # numpy work inside training: BLAS only
            assert blas_counts() == {1} and torch.get_num_threads() == 2
    assert torch.get_num_threads() == before and blas_counts() == {2}


def test_the_default_set_through_hashplug_torch_is_the_one_default(monkeypatch):
    pytest.importorskip("torch")
    import hashplug._torch as ht

    monkeypatch.setattr(ht, "default_threads", 1)
    assert tp.default_threads == 1 and ht.default_threads == 1
    with tp.numeric_threads():
        assert blas_counts() == {1}


def _fresh_python(code: str) -> str:
    """What ``python -c code`` prints in a fresh interpreter (which has loaded no library of this one's)."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_numpy_work_under_the_policy_never_imports_torch():
    code = (
        "import sys, numpy as np\n"
        "import hashplug\n"
        "X = np.random.default_rng(0).standard_normal((400, 32)).astype(np.float32)\n"
        "enc = hashplug.get_encoder('itq', k=8, n_iter=3, random_state=0).fit(X)\n"
        "enc.encode(X)\n"
        "from hashplug._threads_policy import numeric_threads\n"
        "with numeric_threads(1) as pol:\n"
        "    pass\n"
        "print('pools', pol.pools, 'torch' in sys.modules)\n"
    )
    out = _fresh_python(code)
    assert out.strip() == "pools ('blas',) False", out


def test_the_blas_libraries_are_looked_up_again_only_after_a_library_is_loaded():
    """threadpoolctl finds the BLAS libraries by reading /proc/self/maps (milliseconds in a process that loaded
    torch): the policy looks again only when the process has loaded a shared library since. Here scipy.linalg
    brings a second OpenBLAS after numpy's, and the policy sets both."""
    code = (
        "import threadpoolctl, numpy as np\n"
        "import hashplug._threads_policy as tp\n"
        "looks = []\n"
        "real = threadpoolctl.ThreadpoolController\n"
        "threadpoolctl.ThreadpoolController = lambda: looks.append(1) or real()\n"
        "def blas(): return sorted(i['num_threads'] for i in real().info() if i['user_api'] == 'blas')\n"
        "with real().limit(limits=2, user_api='blas'):\n"
        "    for _ in range(5):\n"
        "        with tp.numeric_threads(1):\n"
        "            inside = blas()\n"
        "    print(len(looks), inside)\n"
        "    import scipy.linalg\n"
        "    with real().limit(limits=2, user_api='blas'):\n"
        "        for _ in range(5):\n"
        "            with tp.numeric_threads(1):\n"
        "                inside = blas()\n"
        "        print(len(looks), inside, blas())\n"
    )
    out = _fresh_python(code)
    first, second = out.split("\n")[:2]
    assert first == "1 [1]", out  # one lookup for five policies, numpy's BLAS set to 1 inside
    assert second == "2 [1, 1] [2, 2]", out  # scipy's OpenBLAS found by the one new lookup, restored after


def test_without_glibcs_counts_the_lookup_is_keyed_by_the_imported_modules(monkeypatch):
    """Where dl_iterate_phdr gives no load counts (not glibc or musl), a new import stands for a new library."""
    import types

    monkeypatch.setattr(tp, "_dl_reader", False)
    monkeypatch.setattr(tp, "_blas_cache", None)
    stamp = tp._loaded_libraries_stamp()
    assert stamp[0] == "modules"
    pool = tp._blas_pool()
    assert pool is not None and tp._blas_pool() is pool  # same modules: no new lookup
    monkeypatch.setitem(sys.modules, "_hashplug_test_new_module", types.ModuleType("_hashplug_test_new_module"))
    assert tp._loaded_libraries_stamp() != stamp and tp._blas_pool() is not pool
