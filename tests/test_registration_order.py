"""The LanceDB registration hook fires when LanceDB finishes importing, which is often *inside* hashplug's
own integrations (``import hashplug.integrations.index`` imports LanceDB half-way). Whatever module a process
imports first, the ``"hashplug"`` function must end up registered and no registration warning is raised
(the hook once imported the face module, which then met a half-initialised ``index``). Each case runs in a new
process forked from the warm interpreter (``tests/_warm.py``), which has imported neither LanceDB nor hashplug."""

from __future__ import annotations

import os
import pkgutil

import pytest
from _warm import run_python

pytest.importorskip("lancedb")

import hashplug.integrations as integrations  # noqa: E402

MODULES = sorted(f"hashplug.integrations.{m.name}" for m in pkgutil.iter_modules(integrations.__path__)
                 if not m.name.startswith("_"))


@pytest.mark.parametrize("module", MODULES)
def test_importing_any_integration_first_registers_without_warning(module):
    code = (f"import {module}\n"
            "from lancedb.embeddings import get_registry\n"
            "assert 'hashplug' in get_registry()._functions\n")
    proc = run_python(["-c", code], cwd=os.getcwd(), env={**os.environ, "PYTHONWARNINGS": "error::RuntimeWarning"},
                      timeout=120)  # as python -W error::RuntimeWarning
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "could not register" not in proc.stderr
