"""The first hour of a newcomer: the README's Quickstart, the CLI's help and version, the serving install.

- The README's Quickstart code block (read from the README, not copied) runs, prints what it found, and
  runs a second time in the same folder with the same output (no "table exists", no doubled rows).
- ``hashplug --version`` prints the version; every option of every command has a help text; ``hashplug train
  --help`` lists the registered encoders.
- The base install (``pip install hashplug``) declares neither scikit-learn nor scipy (the ``train`` extra
  does), and the serving side (runtime, integrations, index, ``hashplug ingest`` / ``search``) imports neither.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _warm import run_python

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FIXTURE = ROOT / "tests" / "fixtures" / "v0_1_0"

#: What the base install must not pull: scikit-learn (import name sklearn) and scipy.
TRAINING_ONLY = {"scikit-learn": "sklearn", "scipy": "scipy"}


def readme_block(heading: str, lang: str = "python") -> str:
    """The first fenced ``lang`` code block under the README section titled ``heading``."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n")
    nxt = re.search(r"^## ", text[start + len(heading) + 2 :], re.M)
    section = text[start : start + len(heading) + 2 + nxt.start()] if nxt else text[start:]
    m = re.search(rf"^```{lang}\n(.*?)^```", section, re.M | re.S)
    assert m, f"no ```{lang} block under {heading!r} in README.md"
    return m.group(1)


# ------------------------------------------------------------------------------------------------- Quickstart
def test_readme_quickstart_prints_and_runs_twice(tmp_path):
    pytest.importorskip("torch")
    code = readme_block("## Quickstart (Python)")
    runs = []
    for _ in range(2):
        proc = run_python(["-c", code], cwd=tmp_path, timeout=600)  # a new process forked from a warm interpreter
        assert proc.returncode == 0, f"run {len(runs) + 1} of the Quickstart failed:\n{proc.stderr[-3000:]}"
        runs.append(proc.stdout)
    assert runs[0].strip(), "the Quickstart printed nothing"
    for out in runs:
        assert "1797 rows" in out, out  # the second run replaced the table, it did not append to it
    # the same codes, sizes and distances; the labels of rows tied at the last distance may come in any order
    same = [re.sub(r"labels \[[^]]*\]", "labels [...]", out) for out in runs]
    assert same[1] == same[0], f"a second run printed something else:\n{runs[0]}\n---\n{runs[1]}"
    assert {p.name for p in tmp_path.iterdir()} == {"biohash16.onnx", "db"}


# ------------------------------------------------------------------------------------------------------- CLI
def _parsers(parser: argparse.ArgumentParser, path: str = "hashplug"):
    """(command path, parser) for the parser and every sub-command under it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_cli_option_has_help():
    from hashplug.cli import build_parser

    missing = []
    n = 0
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                helped = {a.dest for a in action._choices_actions if a.help}
                missing += [f"{path} {name} (the command)" for name in action.choices if name not in helped]
                continue
            n += 1
            if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert n > 50, n  # the walk saw every command's options
    assert not missing, f"CLI options without help text: {missing}"


def test_version(capsys):
    from hashplug import __version__
    from hashplug.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"hashplug {__version__}"


def test_train_help_lists_every_registered_method():
    import hashplug
    from hashplug.encoders import get_tags

    proc = subprocess.run([sys.executable, "-m", "hashplug.cli", "train", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    listed = proc.stdout.split("methods (hashplug.available_encoders()):", 1)
    assert len(listed) == 2, proc.stdout
    names = hashplug.available_encoders()
    assert len(names) >= 10, names
    for name in names:
        assert re.search(rf"^  {re.escape(name)}\s+{re.escape(get_tags(name).display_name)}:", listed[1], re.M), (
            name, listed[1])


# ---------------------------------------------------------------------------------------------- base install
def _pyproject() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _dist_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_base_install_declares_neither_scikit_learn_nor_scipy():
    project = _pyproject()["project"]
    base = {_dist_name(r) for r in project["dependencies"]}
    train = {_dist_name(r) for r in project["optional-dependencies"]["train"]}
    assert not base & set(TRAINING_ONLY), f"the base install pulls {sorted(base & set(TRAINING_ONLY))}"
    assert set(TRAINING_ONLY) <= train, f"the train extra must keep {sorted(set(TRAINING_ONLY) - train)}"


#: The serving side's source files (what a base install runs): runtime, index, integrations, the serving CLI,
#: and the numpy-only modules every side may import.
SERVING_FILES = [
    *(ROOT / "hashplug" / f for f in ("__init__.py", "runtime.py", "_lancedb_hook.py", "_onnx_wire.py", "_domains.py",
                                     "_files.py", "_version.py", "validation.py", "codes.py", "ranking.py",
                                     "hamming.py", "metrics.py", "modelcard.py")),
    *sorted((ROOT / "hashplug" / "index").glob("*.py")),
    *sorted((ROOT / "integrations").glob("*.py")),
    ROOT / "hashplug" / "cli" / "serve.py",
]


def test_serving_source_files_never_import_scikit_learn_or_scipy():
    """Every import statement, also the lazy ones inside functions."""
    found = []
    for path in SERVING_FILES:
        assert path.exists(), path
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                mods = [node.module or ""]
            else:
                continue
            found += [f"{path.relative_to(ROOT)}:{node.lineno} {m}" for m in mods
                      if m.split(".")[0] in TRAINING_ONLY.values()]
    assert not found, f"the serving side imports training-only packages: {found}"


SERVE_WITHOUT_SKLEARN = r"""
import sys, importlib.abc, importlib.machinery
class _Fail(importlib.abc.Loader):
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        raise ImportError(f'{module.__name__} is blocked: the base install does not have it')
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('sklearn', 'scipy', 'torch', 'onnx'):
            return importlib.machinery.ModuleSpec(name, _Fail())
        return None
sys.meta_path.insert(0, Block())
import numpy as np, lancedb, pyarrow as pa
import hashplug
from hashplug.cli import main
from hashplug.integrations.lancedb import schema
from lancedb.embeddings import get_registry
model, db, x = sys.argv[1:4]
assert main(["ingest", x, "--db", db, "--table", "items", "--model", model, "--index"]) == 0
assert main(["search", "--db", db, "--table", "items", "--query-file", x, "--row", "2", "--limit", "3"]) == 0
X = np.load(x)
func = get_registry().get("hashplug").create(model=model)
tbl = lancedb.connect(db).create_table("t", schema=schema(func, extra={"id": pa.int64()}))
tbl.add(pa.table({"id": np.arange(len(X)), "vector": list(X)}))
hashplug.build_hamming_index(tbl)
hits = hashplug.search(tbl, X[3], limit=5)
print("loaded", sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy')))
"""


def test_serving_runs_without_scikit_learn_and_scipy(tmp_path):
    """Ingest, index and search (CLI and Python) with sklearn, scipy, torch and onnx unimportable."""
    pytest.importorskip("lancedb")
    import shutil

    work = tmp_path / "fx"
    shutil.copytree(FIXTURE, work)
    proc = subprocess.run(
        [sys.executable, "-c", SERVE_WITHOUT_SKLEARN, str(work / "itq_k16.onnx"), str(tmp_path / "db"),
         str(work / "X.npy")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "loaded []" in proc.stdout, proc.stdout[-2000:]


# ---------------------------------------------------------------------------------------------- temp dir
GUARDED = {
    "leaks": "import tempfile\n\ndef test_it():\n    tempfile.mkdtemp(prefix='hashplug_left_')\n",
    "leaks_from_a_subprocess": (
        "import subprocess, sys\n\ndef test_it():\n"
        "    subprocess.run([sys.executable, '-c', \"import tempfile; tempfile.mkstemp(prefix='hashplug_left_')\"],"
        " check=True)\n"
    ),
    "uses_tmp_path": "import tempfile\n\ndef test_it(tmp_path):\n    tempfile.mkdtemp(prefix='hashplug_', dir=tmp_path)\n",
}


@pytest.mark.parametrize("case", sorted(GUARDED))
def test_a_hashplug_folder_left_in_the_system_temp_dir_fails_the_session(case, tmp_path):
    """The session guard of conftest.py (tests/_tmp_guard.py), run on a one-test session."""
    (tmp_path / f"test_{case}.py").write_text(GUARDED[case])
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "_tmp_guard",
         "--basetemp", str(tmp_path / "basetemp"), f"test_{case}.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), *sys.path])},
    )
    if case == "uses_tmp_path":
        assert proc.returncode == 0, proc.stdout[-3000:]
    else:
        assert proc.returncode != 0, proc.stdout[-3000:]
        assert "left 1 hashplug entries in the system temp dir" in proc.stdout and "hashplug_left_" in proc.stdout, (
            proc.stdout[-3000:])
