"""Costly fixtures shared by several tests, set up once under pytest-xdist.

A fixture such as a local Ray cluster, or a set of children started at once, is set up by every pytest-xdist
worker that runs one of its tests. A fixture that takes ``params=together("name")`` gives its tests ids that
read ``test_x[together-name]``, and conftest's ``pytest_xdist_make_scheduler`` sends all of them to one worker,
so the fixture is set up once.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import pytest

TOGETHER = "together-"
#: The group in a test id: the ``together-<name>`` part of its params.
TOGETHER_ID = re.compile(rf"\[(?:.*-)?({TOGETHER}[a-z0-9_]+)(?:-.*)?\]$")


def together(name: str, value: Any = None) -> list[Any]:
    """``params`` of a fixture whose tests run on one pytest-xdist worker: one param, id ``together-<name>``."""
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise ValueError(f"a together() name is lower-case letters, digits and _; got {name!r}")
    return [pytest.param(value, id=f"{TOGETHER}{name}")]


#: Session fixtures set up with :func:`release_after_last_test`: fixture name -> [tests left, what closes it].
_HELD: dict[str, list[Any]] = {}


def release_after_last_test(request: pytest.FixtureRequest, stack: contextlib.ExitStack) -> None:
    """Close ``stack`` (what the session fixture ``request.fixturename`` set up) as soon as the last test of the
    session that uses the fixture has been torn down, not at the session's end.

    A local Ray cluster keeps its processes polling (about 0.12 of a core while idle): once its tests are done,
    the tests after them share the machine with it for nothing. The tests left are counted over the session's
    items; under pytest-xdist every worker collects them all, and all the tests of a ``together`` fixture run
    on one worker, which counts down to zero. Where they do not (a ``--dist`` that splits them, ``-x`` stopping
    early), the count never reaches zero and the fixture closes at the session's end, as any session fixture.
    """
    name = request.fixturename
    left = sum(1 for item in request.session.items if name in getattr(item, "fixturenames", ()))
    _HELD[name] = [left, stack]


def count_off(item: pytest.Item) -> None:
    """Count ``item`` off the fixtures held by :func:`release_after_last_test` (conftest calls this after each
    test's teardown); the last test of a fixture closes it."""
    for name in [n for n in _HELD if n in getattr(item, "fixturenames", ())]:
        entry = _HELD[name]
        entry[0] -= 1
        if entry[0] <= 0:
            del _HELD[name]
            entry[1].close()
