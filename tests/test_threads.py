"""The thread policy on torch's side (hashplug._torch: resolve_threads, torch_threads and
train_plasticity(n_threads=...)); the policy itself lives in hashplug._threads_policy (its numpy/BLAS side:
tests/test_threads_policy.py).

The "auto" choice is tested with injected readings (cores, busy cores), never with timings.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import hashplug._threads_policy as tp
import hashplug._torch as ht
from hashplug._torch import (
    THREADS_ENV,
    CpuSample,
    auto_threads,
    available_cores,
    busy_between,
    resolve_threads,
    torch_threads,
)
from hashplug.validation import HashplugError

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    """No HASHPLUG_NUM_THREADS, no module default, torch's thread count put back after each test."""
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.setattr(tp, "default_threads", None)
    monkeypatch.setattr(tp, "_reading", None)  # no load reading of an earlier test is reused
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def two_idle_cores(monkeypatch):
    """A machine of 2 cores, no cgroup quota, torch at 2 threads; the busy reading is set by the test."""
    monkeypatch.setattr(tp, "available_cores", lambda: 2)
    monkeypatch.setattr(tp, "_cgroup_cpu_quota", lambda: None)
    torch.set_num_threads(2)
    busy = {"cores": 0.0}
    monkeypatch.setattr(tp, "measure_busy_cores", lambda interval=ht.SAMPLE_SECONDS: busy["cores"])
    monkeypatch.setattr(tp, "READING_MAX_AGE", -1.0)  # each policy reads the injected value afresh
    return busy


def _tiny(n_threads=None, callback=None, epochs=2):
    X = np.random.default_rng(0).random((40, 8)).astype(np.float32)
    return X, dict(p=2.0, delta=0.1, r=2, epochs=epochs, batch_size=10, lr=0.05, seed=0,
                       device=torch.device("cpu"), n_threads=n_threads, callback=callback)


# ------------------------------------------------------------------------------------------------
# resolve_threads: explicit values, environment variable, module default
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 7, np.int64(3)])
def test_explicit_int_is_used_as_given(n):
    assert resolve_threads(n) == int(n)


def test_env_var_gives_the_count(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "3")
    assert resolve_threads() == 3
    monkeypatch.setenv(THREADS_ENV, " 1 ")
    assert resolve_threads(None) == 1


def test_explicit_argument_beats_env_var_and_module_default_beats_env_var(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "3")
    assert resolve_threads(1) == 1
    monkeypatch.setattr(tp, "default_threads", 2)
    assert resolve_threads() == 2


def test_env_var_auto_and_empty_mean_auto(monkeypatch, two_idle_cores):
    two_idle_cores["cores"] = 1.0
    monkeypatch.setenv(THREADS_ENV, "auto")
    assert resolve_threads() == 1
    monkeypatch.setenv(THREADS_ENV, "")
    assert resolve_threads() == 1
    two_idle_cores["cores"] = 0.0
    assert resolve_threads() == 2


@pytest.mark.parametrize("bad", [0, -2, "two", "", 1.5, True, [2]])
def test_invalid_argument_names_value_and_fix(bad):
    with pytest.raises(HashplugError) as err:
        resolve_threads(bad)
    msg = str(err.value)
    assert repr(bad) in msg or str(bad) in msg
    assert "positive int" in msg and "'auto'" in msg


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5"])
def test_invalid_env_var_names_variable_value_and_fix(monkeypatch, bad):
    monkeypatch.setenv(THREADS_ENV, bad)
    with pytest.raises(HashplugError) as err:
        resolve_threads()
    msg = str(err.value)
    assert THREADS_ENV in msg and bad in msg and "positive int" in msg and "unset" in msg


def test_invalid_module_default_is_named(monkeypatch):
    monkeypatch.setattr(tp, "default_threads", 0)
    with pytest.raises(HashplugError, match="default_threads=0"):
        resolve_threads()


# ------------------------------------------------------------------------------------------------
# "auto"
# ------------------------------------------------------------------------------------------------


def test_auto_is_an_int_between_one_and_the_cores():
    cores = available_cores()
    n = resolve_threads("auto", cap=cores)  # a real /proc/stat (or load average) reading
    assert isinstance(n, int) and 1 <= n <= cores


@pytest.mark.parametrize(
    "cores, busy, expected",
    [
        (2, 0.0, 2),  # idle machine: every core
        (2, 1.0, 1),  # one busy neighbour: the free core
        (2, 0.9, 1),
        (2, 0.1, 2),  # background noise does not take a core
        (2, 0.4, 1),  # a part-time neighbour does (the OpenMP team waits for its slowest thread)
        (2, 3.5, 1),  # load above the cores: still 1
        (2, 2.0, 1),
        (8, 2.6, 5),
        (1, 0.0, 1),
    ],
)
def test_auto_threads_from_cores_and_busy(cores, busy, expected):
    assert auto_threads(cores, busy) == expected


def test_auto_threads_cap_and_quota():
    assert auto_threads(8, 0.0, cap=4) == 4  # torch's own setting (OMP_NUM_THREADS, set_num_threads) caps
    assert auto_threads(64, 30.0, quota=2.0) == 2  # a cgroup quota of 2 cores on a big, half-busy host
    assert auto_threads(64, 0.0, quota=1.5) == 2
    assert auto_threads(2, 5.0, cap=2, quota=2.0) == 1


@pytest.mark.parametrize("busy, expected", [(1.0, 1), (0.0, 2), (3.0, 1), (0.05, 2)])
def test_resolve_auto_with_injected_load(two_idle_cores, busy, expected):
    two_idle_cores["cores"] = busy
    assert resolve_threads("auto") == expected
    assert resolve_threads("auto", busy=busy) == expected  # the reading can also be passed in


def test_auto_never_exceeds_torchs_current_setting(two_idle_cores):
    torch.set_num_threads(1)  # e.g. the user's choice, or OMP_NUM_THREADS=1
    assert resolve_threads("auto") == 1
    assert resolve_threads("auto", cap=2) == 2


def test_auto_skips_the_measurement_when_there_is_nothing_to_decide(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("measured")

    monkeypatch.setattr(tp, "measure_busy_cores", fail)
    assert resolve_threads("auto", cap=1) == 1


def test_busy_between_removes_this_process():
    a = CpuSample(wall=10.0, busy=100.0, own=5.0)
    b = CpuSample(wall=11.0, busy=101.8, own=5.9)  # 1.8 cores busy, 0.9 of them ours
    assert busy_between(a, b) == pytest.approx(0.9)
    assert busy_between(a, CpuSample(11.0, 100.5, 6.0)) == 0.0  # never negative
    assert busy_between(a, None) is None and busy_between(a, a) is None


def test_measure_busy_cores_is_a_non_negative_float():
    busy = ht.measure_busy_cores(0.02)
    assert isinstance(busy, float) and busy >= 0.0


# ------------------------------------------------------------------------------------------------
# torch_threads
# ------------------------------------------------------------------------------------------------


def test_context_manager_sets_and_restores():
    torch.set_num_threads(1)
    with torch_threads(2) as pol:
        assert torch.get_num_threads() == 2 == pol.n
    assert torch.get_num_threads() == 1


def test_context_manager_restores_when_the_body_raises():
    torch.set_num_threads(2)
    with pytest.raises(RuntimeError, match="boom"):
        with torch_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("boom")
    assert torch.get_num_threads() == 2


def test_auto_follows_the_load_while_training_and_restores(monkeypatch, two_idle_cores):
    """'auto' with recheck starts on every free core, then re-chooses between steps from other processes'
    CPU use (first after SAMPLE_SECONDS, then every recheck seconds); the previous count returns after."""
    clock = {"t": 0.0}
    monkeypatch.setattr(tp, "time", SimpleNamespace(monotonic=lambda: clock["t"], process_time=lambda: 0.0))
    monkeypatch.setattr(tp, "sample_cpu", lambda: CpuSample(clock["t"], 0.0, 0.0))
    readings = iter([1.0, 0.0])
    monkeypatch.setattr(tp, "busy_between", lambda a, b: next(readings))
    two_idle_cores["cores"] = 5.0  # the up-front measurement is not used
    torch.set_num_threads(2)
    with torch_threads("auto", recheck=0.5) as pol:
        assert pol.n == torch.get_num_threads() == 2
        clock["t"] = 0.05
        assert pol.tick() == 2  # inside the first window: no reading
        clock["t"] = 0.15
        assert pol.tick() == 1 == torch.get_num_threads()  # a neighbour took a core
        clock["t"] = 0.5
        assert pol.tick() == 1  # next window ends at 0.65
        clock["t"] = 0.7
        assert pol.tick() == 2 == torch.get_num_threads()  # and left
    assert pol.history == [2, 1, 2]
    assert torch.get_num_threads() == 2


def test_auto_without_recheck_or_proc_stat_measures_up_front(monkeypatch, two_idle_cores):
    two_idle_cores["cores"] = 1.0
    with torch_threads("auto") as pol:  # default: no recheck
        assert pol.n == 1 == torch.get_num_threads()
        assert pol.tick() == 1
    monkeypatch.setattr(tp, "sample_cpu", lambda: None)  # e.g. macOS: no /proc/stat to watch
    with torch_threads("auto", recheck=0.5) as pol:
        assert pol.n == 1
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("bad", [0, -1.0, "soon", True])
def test_bad_recheck_is_rejected(bad):
    with pytest.raises(HashplugError, match="recheck"):
        torch_threads(2, recheck=bad)


def test_fixed_count_is_not_rechecked(monkeypatch):
    monkeypatch.setattr(tp, "busy_between", lambda a, b: pytest.fail("re-checked a fixed count"))
    with torch_threads(1, recheck=1e-9) as pol:
        assert pol.tick() == 1


# ------------------------------------------------------------------------------------------------
# training runs with the chosen count
# ------------------------------------------------------------------------------------------------


def test_train_plasticity_runs_with_the_chosen_count():
    from hashplug.train.plasticity import train_plasticity

    torch.set_num_threads(1)
    seen = []
    X, kw = _tiny(n_threads=2, callback=lambda ep, W: seen.append(torch.get_num_threads()))
    W = train_plasticity(X, 6, **kw)
    assert seen == [2, 2] and W.shape == (6, 8)
    assert torch.get_num_threads() == 1


def test_train_plasticity_rechecks_auto_between_minibatches(monkeypatch):
    from hashplug.train.plasticity import train_plasticity

    ticks = []
    real_tick = ht.ThreadPolicy.tick
    monkeypatch.setattr(ht.ThreadPolicy, "tick", lambda self: ticks.append(self.recheck) or real_tick(self))
    X, kw = _tiny(n_threads="auto", epochs=3)
    train_plasticity(X, 6, **kw)
    assert ticks == [ht.RECHECK_SECONDS] * 12  # 3 epochs x 4 minibatches of 10


def test_train_plasticity_follows_the_env_var(monkeypatch):
    from hashplug.train.plasticity import train_plasticity

    monkeypatch.setenv(THREADS_ENV, "2")
    torch.set_num_threads(1)
    seen = []
    X, kw = _tiny(callback=lambda ep, W: seen.append(torch.get_num_threads()))
    train_plasticity(X, 6, **kw)
    assert seen == [2, 2] and torch.get_num_threads() == 1


def test_train_plasticity_restores_when_training_fails():
    from hashplug.train.plasticity import train_plasticity

    torch.set_num_threads(1)

    def stop(ep, W):
        assert torch.get_num_threads() == 2
        raise KeyboardInterrupt

    X, kw = _tiny(n_threads=2, callback=stop)
    with pytest.raises(KeyboardInterrupt):
        train_plasticity(X, 6, **kw)
    assert torch.get_num_threads() == 1


def test_train_plasticity_rejects_a_bad_count_before_training(monkeypatch):
    from hashplug.train import plasticity

    monkeypatch.setattr(plasticity, "plasticity_step", lambda *a, **k: pytest.fail("trained"))
    X, kw = _tiny(n_threads=0)
    with pytest.raises(HashplugError, match="n_threads=0"):
        plasticity.train_plasticity(X, 6, **kw)


def test_biohash_fit_trains_with_the_policy_and_keeps_its_parameters(monkeypatch, digits):
    """Encoders take no thread parameter (saved files are unchanged); fit follows the env var."""
    from hashplug.encoders import BioHash, NaiveBioHash
    from hashplug.train import plasticity

    real_step = plasticity.plasticity_step
    seen = set()

    def step(*a, **k):
        seen.add(torch.get_num_threads())
        return real_step(*a, **k)

    monkeypatch.setattr(plasticity, "plasticity_step", step)
    monkeypatch.setenv(THREADS_ENV, "2")
    torch.set_num_threads(1)
    X = digits[0][:200]
    for enc in (BioHash(k=4, m=20, epochs=1, device="cpu", random_state=0),
                NaiveBioHash(k=4, epochs=1, device="cpu", random_state=0)):
        enc.fit(X)
        assert "n_threads" not in enc.get_params()
    assert seen == {2}
    assert torch.get_num_threads() == 1
