"""Bad-input catalogue, area ``cli``: the commands the other areas do not cover (``bench``, ``demo``) and the
shared error handler. Each case exits 2 with one line on stderr and changes nothing stored."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _catalogue import Case, check_case, make_world  # noqa: E402


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"))


def _file(w):
    return w.lsh_path  # an existing file, used where a folder is needed


CASES = [
    Case("cli-bench-unknown-suite", "hashplug bench (CLI)", "an unknown suite name", "exit 2",
         r"Unknown benchmark 'nosuch'\. Available: .*load", lambda w: ["bench", "nosuch"]),
    Case("cli-bench-out-is-folder", "hashplug bench (CLI)", "--out naming a folder", "exit 2", r"--out .* is a folder",
         lambda w: ["bench", "load", "--rows", "10", "--out", w.root / "ckpt"]),
    Case("cli-bench-out-under-file", "hashplug bench (CLI)", "--out under a file", "exit 2",
         r"--out .* is under .*which is a file", lambda w: ["bench", "load", "--rows", "10", "--out", _file(w) / "x.json"]),
    Case("cli-bench-png-under-file", "hashplug bench (CLI)", "--png under a file", "exit 2",
         r"--png .* is under .*which is a file", lambda w: ["bench", "search", "--png", _file(w) / "x.png"]),
    Case("cli-bench-load-rows-0", "hashplug bench load (CLI)", "--rows 0", "exit 2", r"'--rows' parameter .* \[1, inf\]\. Got 0",
         lambda w: ["bench", "load", "--rows", "0"]),
    Case("cli-bench-load-rows-negative", "hashplug bench load (CLI)", "--rows -3", "exit 2", r"'--rows' .*Got -3",
         lambda w: ["bench", "load", "--rows", "-3"]),
    Case("cli-bench-load-dim-0", "hashplug bench load (CLI)", "--dim 0", "exit 2", r"'--dim' .*Got 0",
         lambda w: ["bench", "load", "--rows", "10", "--dim", "0"]),
    Case("cli-bench-load-chunk-0", "hashplug bench load (CLI)", "--chunk-size 0", "exit 2", r"'--chunk-size' .*Got 0",
         lambda w: ["bench", "load", "--rows", "10", "--chunk-size", "0"]),
    # 0.2.0: the hash lengths flag is --lengths (--k still works, with a deprecation line: test_vocabulary.py)
    Case("cli-bench-load-k-0", "hashplug bench load (CLI)", "--lengths 0", "exit 2", r"'--lengths' .*Got 0",
         lambda w: ["bench", "load", "--rows", "10", "--lengths", "0"]),
    Case("cli-bench-load-two-k", "hashplug bench load (CLI)", "two --lengths values", "exit 2",
         r"takes one --lengths", lambda w: ["bench", "load", "--rows", "10", "--lengths", "8", "16"]),
    Case("cli-demo-dir-is-file", "hashplug demo (CLI)", "--dir naming a file", "exit 2", r"--dir .* is a file",
         lambda w: ["demo", "--dir", _file(w)]),
    Case("cli-demo-out-under-file", "hashplug demo (CLI)", "--out under a file", "exit 2",
         r"--out .* is under .*which is a file", lambda w: ["demo", "--out", _file(w) / "x.json"]),
    Case("cli-demo-out-is-folder", "hashplug demo (CLI)", "--out naming a folder", "exit 2", r"--out .* is a folder",
         lambda w: ["demo", "--out", w.root / "ckpt"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, world, capsys):
    check_case(case, world, capsys)
