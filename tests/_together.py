"""Costly fixtures shared by several tests, set up once under pytest-xdist.

A fixture such as a local Ray cluster, or a set of children started at once, is set up by every pytest-xdist
worker that runs one of its tests. A fixture that takes ``params=together("name")`` gives its tests ids that
read ``test_x[together-name]``, and conftest's ``pytest_xdist_make_scheduler`` sends all of them to one worker,
so the fixture is set up once.
"""

from __future__ import annotations

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
