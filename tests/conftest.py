"""Shared fixtures: a seed and the sklearn digits data scaled to [0, 1].

The registry-driven encoder list lives in ``tests/_encoders.py`` (``ALL_ENCODERS``), importable by
test modules; it is re-exported here for convenience.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _encoders import ALL_ENCODERS, ENCODER_NAMES, FAST_PARAMS  # noqa: E402
from _tmp_guard import system_temp_dir_stays_clean  # noqa: E402,F401  (the tests leave nothing in the temp dir)
from _together import TOGETHER_ID, count_off, release_after_last_test, together  # noqa: E402

__all__ = ["ALL_ENCODERS", "ENCODER_NAMES", "FAST_PARAMS"]

# One thread for numeric work: on a busy 2-core machine torch's thread pool made training ~100x slower, and
# numpy's BLAS behaves alike. The thread policy (hashplug._threads_policy) reads HASHPLUG_NUM_THREADS in every
# fit, encode and training loop, here and in the commands and examples the tests start as subprocesses; a
# value the developer set is kept. tests/test_threads*.py unset it where they test the policy itself.
os.environ.setdefault("HASHPLUG_NUM_THREADS", "1")


class _OneTorchThread(importlib.abc.MetaPathFinder):
    """Sets torch's intra-op threads to 1 when a test first imports torch (torch ops outside the training
    policy, e.g. ``Graph.to_torch`` forwards): torch is never imported at collection for the tests that do not
    need it (it took seconds of every run)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "torch":
            return None
        sys.meta_path.remove(self)  # the real finders locate torch; this hook only wraps its loading
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            exec_module = spec.loader.exec_module

            def exec_then_one_thread(module: Any) -> None:
                exec_module(module)
                module.set_num_threads(1)

            spec.loader.exec_module = exec_then_one_thread  # type: ignore[method-assign]
        return spec


if "torch" in sys.modules:  # pragma: no cover - a plugin imported it already
    sys.modules["torch"].set_num_threads(1)
else:
    sys.meta_path.insert(0, _OneTorchThread())


@pytest.fixture(scope="session", params=together("ray", 2))
def ray_cluster(request: pytest.FixtureRequest) -> Any:
    """One local Ray cluster of 2 CPUs for the session's Ray tests (``hashplug.integrations.ray.local_ray``, its
    files in a short folder of the system temp dir, removed at the end); yields the address a subprocess (an
    example) joins through ``RAY_ADDRESS``. Starting Ray and its worker processes is the costliest set-up of
    the suite: the tests that use it run on one pytest-xdist worker, so one cluster serves them all."""
    pytest.importorskip("ray.data")
    import ray

    from hashplug.integrations.ray import local_ray

    with contextlib.ExitStack() as stack:
        stack.enter_context(local_ray(num_cpus=request.param))
        release_after_last_test(request, stack)  # shut down once its last test is done, not at the session's end
        yield ray.get_runtime_context().gcs_address


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """After a test's teardown, count it off the session fixtures held by ``release_after_last_test``."""
    try:
        return (yield)
    finally:
        count_off(item)


def pytest_configure(config: pytest.Config) -> None:
    """Compile hashplug's modules once, before the pytest-xdist workers start: an editable install has no
    bytecode, and with ``PYTHONDONTWRITEBYTECODE=1`` (set on this machine) every interpreter the suite starts
    (workers, examples, commands, Ray workers) compiled the modules it imported again. The ``.pyc`` files go
    where Python looks for them (``__pycache__``, ignored by git); Python recompiles a module whose source changed."""
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: the controller compiled them
        return
    import compileall

    root = Path(__file__).resolve().parents[1]
    for folder in ("hashplug", "integrations", "export"):
        compileall.compile_dir(root / folder, quiet=1, workers=1)
    for helper in Path(__file__).parent.glob("_*.py"):  # the tests' helper modules (not rewritten by pytest)
        compileall.compile_file(helper, quiet=1)
    _cache_rewritten_modules(config, Path(__file__).parent)


def _cache_rewritten_modules(config: pytest.Config, tests: Path) -> None:
    """Write pytest's cache of the modules whose asserts it rewrites (the test modules, conftest and the
    modules of plugins such as hypothesis), as pytest itself does when bytecode may be written.

    pytest caches a rewritten module in ``__pycache__`` only when ``sys.dont_write_bytecode`` is false; with
    ``PYTHONDONTWRITEBYTECODE=1`` (this machine) every worker rewrote about 75 test modules and hypothesis' 100
    modules at every run: 4 of the 11 s each worker spent collecting. The controller writes them once (with
    pytest's own functions; a stale or missing entry is rewritten again, as pytest would); the workers read
    them. A pytest whose internals moved on is left to rewrite them itself."""
    if not sys.dont_write_bytecode:
        return  # pytest writes its cache itself
    try:
        from _pytest.assertion import rewrite as rw

        hook = config.pluginmanager.rewrite_hook
        state = config.stash[rw.assertstate_key]
        files = [*tests.glob("test_*.py"), tests / "conftest.py"]
        for name in sorted(getattr(hook, "_must_rewrite", ())):
            if "." in name:
                continue  # a submodule of a package listed on its own
            spec = importlib.util.find_spec(name)  # a top-level name: found, not imported
            if spec is None or spec.origin is None:
                continue
            if spec.submodule_search_locations:
                for folder in spec.submodule_search_locations:
                    files += Path(folder).rglob("*.py")
            elif spec.origin.endswith(".py"):
                files.append(Path(spec.origin))
        for fn in files:
            pyc = rw.get_cache_dir(fn) / (fn.name[:-3] + rw.PYC_TAIL)
            if rw._read_pyc(fn, pyc, state.trace) is not None or not rw.try_makedirs(pyc.parent):
                continue  # cached and fresh, or a folder that cannot take it
            source_hash, co = rw._rewrite_test(fn, config)
            rw._write_pyc(state, co, source_hash, pyc)
    except (AttributeError, ImportError, KeyError, TypeError, ValueError, OSError, SyntaxError):
        return


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Once the test modules are imported, the objects alive (modules, classes, functions: torch's, LanceDB's,
    Ray's, pytest's own) are moved out of the garbage collector's reach (``gc.freeze``): they live as long as
    the process, and every full collection of a test's garbage walked all of them again (the collector's
    share of tests/test_encoder_contract.py's CPU time under ``perf``: 20 % before, 12 % after). Cycles made
    by the tests are collected as before."""
    import gc

    gc.collect()
    gc.freeze()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """A pytest-xdist worker ends without tearing down its interpreter: once pytest and execnet are done with
    it (results sent, the channel closed), its process exits straight away.

    The controller waits for its workers to exit before it reports; a worker that has run its share of the suite
    holds torch, Ray, LanceDB, onnxruntime and a large heap, and their exit handlers and the interpreter's
    teardown took 2-4 s, during which nothing was tested. Only the exit handlers registered before this one
    and the teardown itself are skipped (every fixture, pytest's and execnet's own clean-up have run). A worker
    run under coverage, or with ``HASHPLUG_TEST_FULL_EXIT=1``, exits as usual."""
    if hasattr(config, "workerinput") and "coverage" not in sys.modules and os.environ.get("HASHPLUG_TEST_FULL_EXIT") != "1":
        import atexit

        atexit.register(_exit_now)  # the last registered runs first


def _exit_now() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's ``load`` scheduling (``-n``), except that the tests of one ``together`` fixture
    (``tests/_together.py``) form one unit, sent to one worker. (xdist's own ``--dist loadgroup`` marks
    groups by rewriting node ids, which pytest 9.2 no longer takes: pytest-xdist issue #1386.)"""
    if config.getvalue("dist") != "load":
        return None  # another --dist asked for: xdist's own
    from xdist.scheduler import LoadScopeScheduling

    class Together(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            m = TOGETHER_ID.search(nodeid)
            return m.group(1) if m else nodeid

    return Together(config, log)


@pytest.fixture
def seed() -> int:
    """The fixed seed of the tests."""
    return 0


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """sklearn digits: X of shape (1797, 64) float32 in [0, 1] (pixels / 16), y of shape (1797,) int."""
    from sklearn.datasets import load_digits

    d = load_digits()
    X = (d.data / 16.0).astype(np.float32)
    y = np.asarray(d.target)
    return X, y


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> Path:
    """An MNIST-format npz of 600 smooth synthetic 28x28 digits (two blobs per class), 10 classes."""
    from _data import synthetic_digits

    X, y = synthetic_digits()
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=X[::2], y_train=y[::2], x_test=X[1::2], y_test=y[1::2])
    return path


@pytest.fixture(scope="session")
def fake_ag_news(tmp_path_factory):
    """4 separable classes of unit vectors in 32 dims, 200 rows each (400 queries + 400 database)."""
    rng = np.random.default_rng(1)
    centers = rng.standard_normal((4, 32))
    y = np.repeat(np.arange(4), 200)
    X = centers[y] + 0.8 * rng.standard_normal((800, 32))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    p = tmp_path_factory.mktemp("data") / "ag_news.npz"
    np.savez(p, emb=X.astype(np.float16), y=y.astype(np.uint8))
    return p


#: Where the 0.1.0 fixture's tables were written: their configs name this absolute path, so the tests that
#: open them copy the fixture back there.
V0_1_0_WRITTEN_AT = Path("/tmp/hashplug-fixture-v0_1_0")


@pytest.fixture
def v0_1_0_at_written_path() -> Any:
    """The 0.1.0 fixture copied to the absolute path its tables name, removed after; held under a file lock,
    so tests of two processes (``pytest -n 2``, or two sessions at once) never share or delete each other's
    copy."""
    import fcntl
    import shutil

    src = Path(__file__).parent / "fixtures" / "v0_1_0"
    with open(str(V0_1_0_WRITTEN_AT) + ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            shutil.rmtree(V0_1_0_WRITTEN_AT, ignore_errors=True)
            shutil.copytree(src, V0_1_0_WRITTEN_AT)
            yield V0_1_0_WRITTEN_AT
        finally:
            shutil.rmtree(V0_1_0_WRITTEN_AT, ignore_errors=True)
            fcntl.flock(lock, fcntl.LOCK_UN)

