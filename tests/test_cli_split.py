"""The CLI package: training commands in ``hashplug.cli.train``, serving commands in ``hashplug.cli.serve``.

``hashplug ingest`` and ``hashplug search`` must run on the base install: with torch and onnx unimportable
they work, and neither they nor the parser load the encoders, the graph's training code or the exporter.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "v0_1_0"

from _blocker import BLOCKER  # noqa: E402

SERVE = r"""
import json
from hashplug.cli import main
model, db, x = sys.argv[1:4]
assert main(["ingest", x, "--db", db, "--table", "items", "--model", model]) == 0
assert main(["search", "--db", db, "--table", "items", "--query-file", x, "--row", "2", "--limit", "3"]) == 0
# (the parser reads hashplug.cli.train's option definitions, a numpy-only module; the model card reads the
# numpy side of hashplug.graph for the op names)
TRAINING = ("torch", "onnx", "hashplug.encoders", "hashplug.train", "hashplug.export", "hashplug.bench")
print("loaded", sorted(m for m in sys.modules if any(m == t or m.startswith(t + ".") for t in TRAINING)))
"""


def test_every_command_lives_in_one_side():
    from hashplug.cli import COMMAND_ORDER, build_parser, serve, train

    assert set(train.COMMANDS) == {"train", "eval", "export", "demo", "bench"}
    assert set(serve.COMMANDS) == {"ingest", "search"}
    assert set(COMMAND_ORDER) == set(train.COMMANDS) | set(serve.COMMANDS)
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert list(sub.choices) == list(COMMAND_ORDER)
    assert not (ROOT / "hashplug" / "cli.py").exists() and not (ROOT / "hashplug" / "cli_serving.py").exists()


def test_serving_commands_need_no_training_side(tmp_path):
    pytest.importorskip("lancedb")
    work = tmp_path / "fx"
    shutil.copytree(FIXTURE, work)
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKER + SERVE, str(work / "itq_k16.onnx"), str(tmp_path / "db"), str(work / "X.npy")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "loaded []" in proc.stdout, proc.stdout[-2000:]
    assert '"results"' in proc.stdout


def test_python_dash_m_runs_the_cli():
    proc = subprocess.run([sys.executable, "-m", "hashplug.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "usage: hashplug" in proc.stdout, proc.stderr[-2000:]
