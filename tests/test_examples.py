"""Every script under examples/ runs end to end on small settings (HASHPLUG_EXAMPLE_SMALL=1)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from _warm import run_python

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


def test_examples_exist():
    assert len(EXAMPLES) >= 3, EXAMPLES
    assert RAY_EXAMPLES, "no example runs on Ray any more: conftest's ray_cluster serves nothing here"


#: Examples that start a local Ray cluster (``local_ray``): they run on the session's (conftest's ``ray_cluster``,
#: joined through ``RAY_ADDRESS``, which ``local_ray`` honours), on the pytest-xdist worker of the other Ray tests.
RAY_EXAMPLES = {p.name for p in EXAMPLES if "local_ray(" in p.read_text()}


def _run(script: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """``python script`` in a new process forked from a warm interpreter (``tests/_warm.py``: the examples'
    costly imports done once), with its own working directory and environment."""
    env = {**os.environ, "HASHPLUG_EXAMPLE_SMALL": "1", "MPLBACKEND": "Agg", **env}
    return run_python([str(script)], cwd=cwd, env=env, timeout=600)


@pytest.mark.parametrize("script", [p for p in EXAMPLES if p.name not in RAY_EXAMPLES],
                         ids=[p.name for p in EXAMPLES if p.name not in RAY_EXAMPLES])
def test_example_runs(script, tmp_path):
    proc = _run(script, tmp_path)
    assert proc.returncode == 0, f"{script.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip(), f"{script.name} printed nothing"


@pytest.mark.parametrize("script", [p for p in EXAMPLES if p.name in RAY_EXAMPLES],
                         ids=[p.name for p in EXAMPLES if p.name in RAY_EXAMPLES])
def test_ray_example_runs(script, tmp_path, ray_cluster):
    proc = _run(script, tmp_path, RAY_ADDRESS=ray_cluster)
    assert proc.returncode == 0, f"{script.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip(), f"{script.name} printed nothing"
