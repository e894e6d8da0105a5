"""A pytest plugin (loaded by ``conftest.py``): the tests leave nothing in the system temp dir.

For the whole session, ``TMPDIR`` (so every subprocess a test starts) and :data:`tempfile.tempdir` point at
an empty folder of pytest's own basetemp; at the end of the session any hashplug folder or file in it fails
the run, naming it: a test, or the code or subprocess it ran, wrote into the system temp dir instead of its
``tmp_path``. (Watching a folder of the session's own, not ``/tmp`` itself, keeps the check exact on a machine
where other sessions write to ``/tmp`` at the same time.)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def system_temp_dir_stays_clean(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's system temp dir: an empty folder, checked for hashplug entries at the end."""
    watched = tmp_path_factory.mktemp("system-temp-dir")  # before the switch: pytest's basetemp stays put
    saved_env, saved_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = str(watched)
    tempfile.tempdir = str(watched)
    try:
        yield watched
    finally:
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        tempfile.tempdir = saved_tempdir
    left = sorted(p.name for p in watched.iterdir() if "hashplug" in p.name.lower())
    if left:
        pytest.fail(
            f"the tests left {len(left)} hashplug entries in the system temp dir ({watched}): {left}. "
            "Write under the test's tmp_path (or the example's working folder) instead.",
            pytrace=False,
        )
