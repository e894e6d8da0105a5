"""The LanceDB registration hook fires when LanceDB finishes importing, which is often *inside* hashplug's
own integrations (``import hashplug.integrations.index`` imports LanceDB half-way). Whatever module a process
imports first, the ``"hashplug"`` function must end up registered and no registration warning is raised
(the hook once imported the face module, which then met a half-initialised ``index``)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

pytest.importorskip("lancedb")

import hashplug.integrations as integrations  # noqa: E402

MODULES = sorted(f"hashplug.integrations.{m.name}" for m in pkgutil.iter_modules(integrations.__path__)
                 if not m.name.startswith("_"))


@pytest.mark.parametrize("module", MODULES)
def test_importing_any_integration_first_registers_without_warning(module):
    code = (f"import {module}\n"
            "from lancedb.embeddings import get_registry\n"
            "assert 'hashplug' in get_registry()._functions\n")
    proc = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "could not register" not in proc.stderr
