"""tests/_warm.py: a script run in a process forked from the warm interpreter behaves as ``python script.py``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from _warm import run_python, spawn_python


def test_a_script_runs_as_main_in_its_own_process_folder_environment_and_arguments(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(
        "import os, sys\n"
        "print(__name__, os.getpid(), os.getcwd(), os.environ.get('HP_X'), os.environ.get('HP_Y'), sys.argv[1:])\n"
        "print('to stderr', file=sys.stderr)\n"
        "import helper_beside\n"  # the script's folder is sys.path[0], as for python script.py
        "sys.exit(3)\n"
    )
    (tmp_path / "helper_beside.py").write_text("")
    work = tmp_path / "cwd"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "HP_Y"} | {"HP_X": "x"}
    os.environ["HP_Y"] = "left out"
    try:
        proc = run_python([str(script), "a", "b"], cwd=work, env=env)
    finally:
        del os.environ["HP_Y"]
    name, pid, cwd, x, y, argv = proc.stdout.split(" ", 5)
    assert proc.returncode == 3 and name == "__main__" and int(pid) != os.getpid()
    assert (cwd, x, y, argv.strip()) == (str(work), "x", "None", "['a', 'b']")
    assert proc.stderr == "to stderr\n"
    again = run_python([str(script)], cwd=work, env=env)
    assert int(again.stdout.split()[1]) != int(pid)  # a new process each time


def test_code_an_uncaught_error_and_a_timeout(tmp_path):
    ok = run_python(["-c", "import sys; print(sys.argv)", "z"], cwd=tmp_path)
    assert (ok.returncode, ok.stdout) == (0, "['-c', 'z']\n")
    bad = run_python(["-c", "raise ValueError('named')"], cwd=tmp_path)
    assert bad.returncode == 1 and "ValueError: named" in bad.stderr
    with pytest.raises(subprocess.TimeoutExpired):
        run_python(["-c", "import time; print('started', flush=True); time.sleep(60)"], cwd=tmp_path, timeout=2)
    after = run_python(["-c", "print('next')"], cwd=tmp_path)  # the server serves on after a kill
    assert after.stdout == "next\n"


def test_the_child_takes_its_pythonwarnings_as_a_new_interpreter_would(tmp_path):
    code = "import warnings; warnings.warn('w1', UserWarning); print('after')"
    default = run_python(["-c", code], cwd=tmp_path, env={**os.environ, "PYTHONWARNINGS": ""})
    assert default.returncode == 0 and "UserWarning: w1" in default.stderr
    ignored = run_python(["-c", code], cwd=tmp_path, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert (ignored.returncode, ignored.stderr, ignored.stdout) == (0, "", "after\n")
    error = run_python(["-c", code], cwd=tmp_path, env={**os.environ, "PYTHONWARNINGS": "error::UserWarning"})
    assert error.returncode == 1 and "UserWarning: w1" in error.stderr and error.stdout == ""


def test_children_run_at_once_and_answer_poll_wait_and_kill(tmp_path):
    go = tmp_path / "go"
    code = ("import sys, time, pathlib\ngo = pathlib.Path(sys.argv[1])\nwhile not go.exists():\n    time.sleep(0.01)\n"
            "print('went', sys.argv[2]); sys.exit(int(sys.argv[2]))")
    a, b = (spawn_python(["-c", code, str(go), str(rc)], tmp_path) for rc in (0, 4))
    stuck = spawn_python(["-c", "import time; time.sleep(60)"], tmp_path)
    assert a.poll() is None and b.poll() is None and len({a.pid, b.pid, stuck.pid}) == 3  # all three alive
    go.touch()
    assert b.communicate(timeout=60) == ("went 4\n", "") and b.returncode == 4
    assert a.wait(timeout=60) == 0 and a.poll() == 0
    stuck.kill()
    assert stuck.wait(timeout=60) == -9


def test_the_child_has_imported_neither_lancedb_pylance_ray_nor_hashplug(tmp_path):
    """What the fresh-process tests run here rely on: the order in which LanceDB and hashplug get imported
    is the script's own (tests/test_registration_order.py)."""
    code = ("import sys\nprint(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('lancedb', 'lance', 'ray', 'hashplug', 'hashplug_baseline')))")
    proc = run_python(["-c", code], cwd=tmp_path)
    fresh = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout == fresh.stdout, proc.stderr  # the .pth hook alone, as at a start
    assert "'lancedb" not in proc.stdout and "'hashplug'" not in proc.stdout


def test_no_child_outlives_the_server(tmp_path):
    """When pytest ends or is interrupted (the server's stdin closes), the children still running are killed."""
    from _warm import WarmProcess, _Server

    server = _Server(preload=())  # a server of its own (nothing preloaded: quick to start)
    try:
        started = WarmProcess(server, ["-c", "import time; time.sleep(120)"], tmp_path, dict(os.environ))
        assert started.poll() is None
        just_forked = WarmProcess(server, ["-c", "import time; time.sleep(120)"], tmp_path, dict(os.environ))
    finally:
        server.close()  # at once, whether or not the last child has started running its script
    for child in (started, just_forked):
        with pytest.raises(ProcessLookupError):
            os.kill(child.pid, 0)  # killed and reaped by the server before it exited
        child._tmp.cleanup()


def test_sys_path_is_the_childs_pythonpath_not_the_servers(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "only_here.py").write_text("X = 7\n")
    code = "import only_here; print(only_here.X)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    assert run_python(["-c", code], cwd=tmp_path, env={**env, "PYTHONPATH": str(tmp_path / "lib")}).stdout == "7\n"
    missing = run_python(["-c", "import _blocker"], cwd=tmp_path, env=env)  # in the server's folder, not the child's path
    assert missing.returncode == 1 and "No module named '_blocker'" in missing.stderr
