"""Run a Python script in a new process forked from a warm interpreter (torch, onnx, scikit-learn, ... imported).

The example scripts spend most of their time importing the same libraries in a fresh interpreter: 40 of the
73 s the 17 examples took were imports (``python -X importtime``, 2026-12-07). ``run_python`` (run and wait)
and ``spawn_python`` (start; a ``Popen``-like handle) start, once per pytest process, a small server that
imports those libraries and nothing of hashplug, then fork one child per script. The child is a new process
(its own pid, process group, working directory, environment, arguments and output files); the script runs in
it as ``__main__`` (``runpy``), as ``python script.py`` would run it. The server only saves the imports; what
it does not give a script:

- LanceDB, pylance, Ray and hashplug are not imported in the server: LanceDB's async runtime and pylance are
  not fork-safe (both warn), and hashplug reads its environment when it is imported. The script imports them
  itself.
- The warning filters are the server's at its start with the child's ``PYTHONWARNINGS`` applied; the hash
  seed (``PYTHONHASHSEED``) is the server's, the same for every child.
- Environment variables that a library reads when it is imported (``OPENBLAS_NUM_THREADS``, ``MPLBACKEND``)
  come from the server's environment. The tests set the thread counts through ``HASHPLUG_NUM_THREADS`` (read
  at run time) and ``MPLBACKEND=Agg``; a test about the import environment itself runs a fresh interpreter.

``HASHPLUG_TEST_FRESH=1`` runs every script in a fresh interpreter instead (``subprocess``), e.g. to tell a
failure of the warm server from a failure of the script. No child outlives the server: those still running
when pytest ends (or is interrupted) are killed.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

#: What the server imports before it forks: the costly third-party imports of the examples (seconds each in a
#: fresh interpreter), none of which starts work or reads state a script changes. Not LanceDB, pylance, Ray or
#: hashplug (see the module docstring).
PRELOAD = ("numpy", "pyarrow", "onnxruntime", "torch", "torch._dynamo", "torch.nn", "torch.optim", "onnx",
           "scipy.linalg", "sklearn", "sklearn.datasets", "sklearn.decomposition", "sklearn.model_selection",
           "matplotlib", "matplotlib.pyplot", "tqdm", "numba",
           # LanceDB's pure-Python dependencies: 0.9 of the 1.1 s `import lancedb` takes (its namespace client
           # alone 0.6 s); they start no thread. Not lancedb or lance (pylance): both warn that a fork is unsafe.
           "pandas", "pyarrow.dataset", "pydantic", "lance_namespace")

_SERVER_ENV = {"MPLBACKEND": "Agg"}
_START_FILTERS: list[Any] = []


def _serve(answer_fd: int, preload: tuple[str, ...] = PRELOAD) -> None:  # pragma: no cover - the server process
    """The server: import PRELOAD, then answer each request (a JSON line on stdin) on ``answer_fd``: ``spawn``
    forks a child that runs the script (answer: its pid), ``poll`` and ``wait`` give a child's exit status
    (``wait`` blocks until it exits; ``poll`` answers null while it runs)."""
    import importlib
    import warnings

    global _START_FILTERS
    _START_FILTERS = list(warnings.filters)  # before the preloads add theirs
    for name in preload:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    answer = os.fdopen(answer_fd, "w", buffering=1)
    answer.write(json.dumps({"ready": os.getpid()}) + "\n")
    done: dict[int, int] = {}  # exit statuses of the children reaped by a poll
    live: set[int] = set()
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "spawn":
            pid = os.fork()
            if pid == 0:
                _child(req, answer_fd)  # never returns
            try:  # its own process group, set on both sides of the fork: a kill right after the answer reaches it
                os.setpgid(pid, pid)
            except OSError:  # the child set it first, or has exited already
                pass
            live.add(pid)
            answer.write(json.dumps({"pid": pid}) + "\n")
            continue
        pid = req["pid"]
        if pid not in done:
            got, status = os.waitpid(pid, os.WNOHANG if req["op"] == "poll" else 0)
            if got:
                done[pid] = status
                live.discard(pid)
        answer.write(json.dumps({"status": done.get(pid)}) + "\n")
    # the client is gone (pytest ended, or was interrupted): no child outlives the server
    for pid in live:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _child(req: dict[str, Any], answer_fd: int) -> None:  # pragma: no cover - runs in the forked child
    """Become the script's process: own process group, directory, environment, argv and output files; run it as
    ``__main__``; exit with its code (atexit handlers run, as at a normal interpreter exit)."""
    import io
    import runpy
    import traceback

    code = 1
    try:
        try:
            os.setpgid(0, 0)  # its own process group (the server sets it too, whichever runs first)
        except OSError:
            pass
        os.chdir(req["cwd"])
        # sys.path as the child's PYTHONPATH makes it, not the server's (which holds this folder)
        server_path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        child_path = [p for p in req["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
        sys.path[1:] = [*child_path, *(p for p in sys.path[1:] if p not in server_path)]
        os.environ.clear()
        os.environ.update(req["env"])
        import warnings

        warnings.filters[:] = _START_FILTERS  # as a new interpreter starts, with the child's PYTHONWARNINGS
        sys.warnoptions[:] = [o for o in os.environ.get("PYTHONWARNINGS", "").split(",") if o.strip()]
        warnings._processoptions(sys.warnoptions)  # type: ignore[attr-defined]
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
            f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(f, fd)
            os.close(f)
        os.close(answer_fd)
        sys.stdin = io.TextIOWrapper(open(0, "rb", closefd=False), encoding="utf-8")
        sys.stdout = io.TextIOWrapper(open(1, "wb", closefd=False), encoding="utf-8", write_through=False)
        sys.stderr = io.TextIOWrapper(open(2, "wb", closefd=False), encoding="utf-8", errors="backslashreplace",
                                      line_buffering=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        args = req["args"]
        try:
            if args[0] == "-c":
                sys.argv = ["-c", *args[2:]]
                sys.path[0] = ""
                exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
            else:
                script = str(Path(args[0]).resolve())
                sys.argv = [args[0], *args[1:]]
                sys.path[0] = str(Path(script).parent)
                runpy.run_path(script, run_name="__main__")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, int) and e.code is not None:
                print(e.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()
    except BaseException:
        try:
            traceback.print_exc()
        except BaseException:
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        os._exit(code)


class _Server:
    """The warm interpreter of this pytest process: one request answered at a time (a ``wait`` blocks the
    others until its child exits)."""

    def __init__(self, preload: tuple[str, ...] = PRELOAD) -> None:
        read_fd, write_fd = os.pipe()
        env = {**os.environ, **_SERVER_ENV}
        env.pop("HASHPLUG_TEST_FRESH", None)
        here = str(Path(__file__).parent)
        env["PYTHONPATH"] = os.pathsep.join([here, *filter(None, [env.get("PYTHONPATH")])])
        self.proc = subprocess.Popen(
            [sys.executable, "-c", f"import _warm; _warm._serve({write_fd}, {tuple(preload)!r})"],
            stdin=subprocess.PIPE, pass_fds=(write_fd,), env=env, text=True,
        )
        os.close(write_fd)
        self.answers = os.fdopen(read_fd, "r")
        self.lock = threading.Lock()
        self._read(timeout=300)  # {"ready": pid}

    def _read(self, timeout: float | None) -> dict[str, Any]:
        ready, _, _ = select.select([self.answers], [], [], timeout)
        if not ready:
            raise TimeoutError
        line = self.answers.readline()
        if not line:
            raise RuntimeError(f"the warm server (pid {self.proc.pid}) died; rerun with HASHPLUG_TEST_FRESH=1")
        return json.loads(line)

    def ask(self, req: dict[str, Any], timeout: float | None = 60, on_timeout: Any = None) -> dict[str, Any]:
        """Send one request and read its answer; ``on_timeout()`` (e.g. a kill) when none comes in time, then
        the answer is read again."""
        with self.lock:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            try:
                return self._read(timeout)
            except TimeoutError:
                if on_timeout is None:
                    raise
                on_timeout()
                return self._read(60)

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.answers.close()


class WarmProcess:
    """A script running in a child of the warm server: the part of ``subprocess.Popen`` the tests use
    (``pid``, ``returncode``, ``poll``, ``wait``, ``communicate`` giving text, ``kill``)."""

    def __init__(self, server: _Server, args: list[str], cwd: Path | str, env: dict[str, str]) -> None:
        self._server, self.args = server, [sys.executable, *args]
        self._tmp = tempfile.TemporaryDirectory(prefix="warm-child-")
        self._out, self._err = Path(self._tmp.name) / "stdout", Path(self._tmp.name) / "stderr"
        self.returncode: int | None = None
        self.pid = int(server.ask({"op": "spawn", "args": args, "cwd": str(cwd), "env": env,
                                   "stdout": str(self._out), "stderr": str(self._err)})["pid"])

    def _status(self, status: int | None) -> int | None:
        if status is not None and self.returncode is None:
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def poll(self) -> int | None:
        if self.returncode is None:
            self._status(self._server.ask({"op": "poll", "pid": self.pid})["status"])
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            expired: list[bool] = []
            answer = self._server.ask({"op": "wait", "pid": self.pid}, timeout,
                                      on_timeout=lambda: expired.append(True) or self.kill())
            self._status(answer["status"])
            if expired:
                raise subprocess.TimeoutExpired(self.args, timeout or 0, output=_text(self._out),
                                                stderr=_text(self._err))
        assert self.returncode is not None
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Wait for the exit (killed after ``timeout`` s: ``subprocess.TimeoutExpired``); its output as text."""
        self.wait(timeout)
        out, err = _text(self._out), _text(self._err)
        self._tmp.cleanup()
        return out, err


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


_server: _Server | None = None


def _warm_server() -> _Server:
    global _server
    if _server is None or _server.proc.poll() is not None:
        _server = _Server()
        atexit.register(_server.close)
    return _server


def _fresh() -> bool:
    return os.environ.get("HASHPLUG_TEST_FRESH") == "1" or not hasattr(os, "fork")


def spawn_python(args: list[str], cwd: Path | str, env: dict[str, str] | None = None) -> Any:
    """Start ``python *args`` (a script path and its arguments, or ``-c CODE``) in a new process forked from the
    warm interpreter, or in a fresh interpreter (``subprocess.Popen``, text pipes) when
    ``HASHPLUG_TEST_FRESH=1``; returns a :class:`WarmProcess` (or the ``Popen``)."""
    env = dict(os.environ if env is None else env)
    if _fresh():
        return subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return WarmProcess(_warm_server(), [str(a) for a in args], cwd, env)


def run_python(args: list[str], cwd: Path | str, env: dict[str, str] | None = None, timeout: float = 600
               ) -> subprocess.CompletedProcess:
    """Run ``python *args`` (a script path and its arguments, or ``-c CODE``) in a new process forked from the
    warm interpreter, or in a fresh interpreter when ``HASHPLUG_TEST_FRESH=1``; capture its text output.

    Parameters
    ----------
    args : list of str
        What follows ``python`` on its command line: ``[script, *argv]`` or ``["-c", code, *argv]``.
    cwd : path
        The working directory of the process.
    env : dict of str to str, optional
        Its whole environment (default: this process's).
    timeout : float
        Seconds before the process (group) is killed and ``subprocess.TimeoutExpired`` raised.

    Returns
    -------
    subprocess.CompletedProcess
        ``returncode`` (negative for a signal, as ``subprocess.run``), ``stdout`` and ``stderr`` as text.
    """
    proc = spawn_python(args, cwd, env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess([sys.executable, *args], proc.returncode, out, err)
