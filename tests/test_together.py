"""The grouping of costly shared fixtures under pytest-xdist (``tests/_together.py``, conftest's scheduler)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _together import TOGETHER_ID, together  # noqa: E402


@pytest.mark.parametrize(("nodeid", "group"), [
    ("tests/test_a.py::test_x[together-ray]", "together-ray"),
    ("tests/test_a.py::test_x[together-crash-api-before-first-commit]", "together-crash"),
    ("tests/test_a.py::test_x[together-ray-14_ray.py]", "together-ray"),
    ("tests/test_a.py::test_x[packed-together-ray]", "together-ray"),
    ("tests/test_a.py::test_x[packed-auto]", None),
    ("tests/test_a.py::test_x[not_together-ray]", None),
    ("tests/test_a.py::test_together_ray", None),
])
def test_a_test_id_names_its_group(nodeid, group):
    m = TOGETHER_ID.search(nodeid)
    assert (m.group(1) if m else None) == group


def test_together_gives_one_param_named_for_the_group():
    (p,) = together("ray", 2)
    assert p.values == (2,) and p.id == "together-ray"
    with pytest.raises(ValueError, match="lower-case"):
        together("Ray-Cluster")


_HELD_CONFTEST = '''
import contextlib
import os
import sys

import pytest

sys.path.insert(0, {tests!r})
from _together import count_off, release_after_last_test

LOG = os.path.join(os.path.dirname(__file__), "events.txt")


def note(event):
    with open(LOG, "a") as f:
        f.write(event + "\\n")


@pytest.fixture(scope="session")
def costly(request):
    with contextlib.ExitStack() as stack:
        stack.callback(note, "closed")
        release_after_last_test(request, stack)
        yield


@pytest.fixture(autouse=True)
def _note_each(request):
    note(request.node.name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    try:
        return (yield)
    finally:
        count_off(item)
'''

_HELD_TESTS = '''
def test_1(costly):
    pass


def test_2(costly):
    assert {passes}


def test_3():
    pass


def test_4(costly):
    pass


def test_5():
    pass
'''


_HELD_CASES = [  # (pytest's arguments, whether test_2 passes, what the run notes, in order)
    ([], True, ["test_1", "test_2", "test_3", "test_4", "closed", "test_5"]),  # closed after its last test, once
    (["-k", "not test_4"], True, ["test_1", "test_2", "closed", "test_3", "test_5"]),  # counted over the selection
    (["-x"], False, ["test_1", "test_2", "closed"]),  # stopped early: closed at the session's end
]


def test_a_held_session_fixture_closes_after_its_last_test(tmp_path):
    """``release_after_last_test`` (the Ray cluster's): the fixture's set-up is closed right after the teardown
    of the last test that uses it, exactly once; a run that never reaches that test closes it at the end. Each
    case is a pytest session of its own, run one after another in one new process."""
    from _warm import run_python

    for i, (_, passes, _) in enumerate(_HELD_CASES):
        (tmp_path / f"case{i}").mkdir()
        (tmp_path / f"case{i}" / "conftest.py").write_text(_HELD_CONFTEST.format(tests=str(Path(__file__).parent)))
        (tmp_path / f"case{i}" / f"test_held{i}.py").write_text(_HELD_TESTS.format(passes=passes))
    code = (
        "import json, pytest\n"
        "codes = []\n"
        f"for i, args in enumerate({[case[0] for case in _HELD_CASES]!r}):\n"
        "    codes.append(int(pytest.main(['-q', '-p', 'no:cacheprovider', '--import-mode=importlib', '--rootdir', '.',\n"
        "                                  f'case{i}/test_held{i}.py', *args])))\n"
        "print(json.dumps(codes))\n"
    )
    proc = run_python(["-c", code], cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    codes = json.loads(proc.stdout.strip().splitlines()[-1])
    for i, (args, passes, events) in enumerate(_HELD_CASES):
        assert codes[i] == (0 if passes else 1), (args, proc.stdout[-3000:])
        assert (tmp_path / f"case{i}" / "events.txt").read_text().split() == events, args
