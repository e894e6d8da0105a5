"""The import directions of docs/architecture.md ("Directions that keep it easy to change"), as data.

Every module of the installed package is read as text and walked as an AST (nothing is imported):
``hashplug/`` as ``hashplug``, and the folders that ``[tool.setuptools.package-dir]`` in ``pyproject.toml``
maps into it (``export/`` as ``hashplug.export``, ``integrations/`` as ``hashplug.integrations``). Each
``import`` / ``from ... import`` (relative ones resolved) is an arrow from its module to the module it names.

**Every arrow counts**: at module level, inside a function (a lazy import runs as soon as the function does,
so it is an arrow too) and under ``if TYPE_CHECKING:``. A rule that tolerates an arrow inside functions says
so itself (``at_import`` targets, ``lazy_ok`` targets, each with its reason). A failure names the file, the
line, the arrow and the rule, with the rule's sentence from the docs.
"""

from __future__ import annotations

import ast
import functools
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------------------------ the rules
#: Numpy-only modules: numpy, the standard library and each other; everyone may import them.
NUMPY_ONLY = (
    "hashplug.validation",
    "hashplug._files",
    "hashplug._version",
    "hashplug._onnx_wire",
    "hashplug._domains",
    "hashplug._deprecation",
    "hashplug._threads_policy",
    "hashplug.codes",
    "hashplug.ranking",
    "hashplug.hamming",
    "hashplug.metrics",
    "hashplug.hdc",
    "hashplug.modelcard",
)
TRAINING = ("hashplug.graph", "hashplug.encoders", "hashplug.train")
SERVING = ("hashplug.runtime", "hashplug._locations", "hashplug.integrations")
FRAMEWORKS = ("torch", "onnx")


@dataclass(frozen=True)
class Rule:
    """Arrows leaving ``sources`` that are refused. Every module name ``x`` in a rule stands for ``x`` and its
    submodules; ``=x`` for the module ``x`` alone.

    ``forbid``: targets never imported, anywhere in the module. ``at_import``: targets imported only inside
    functions (never at module level). ``only``: when set, the only targets besides the standard library.
    ``lazy_ok``: (source, target) pairs that ``only`` / ``forbid`` tolerate inside functions. ``exempt``:
    source modules the rule skips.
    """

    name: str
    says: str
    sources: tuple[str, ...]
    forbid: tuple[str, ...] = ()
    at_import: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None
    lazy_ok: tuple[tuple[str, str], ...] = ()
    exempt: tuple[str, ...] = ()


RULES = (
    Rule(
        "numpy-only",
        "validation, _files, _version, _onnx_wire, _domains, _deprecation, _threads_policy, codes, ranking, hamming, "
        "metrics, hdc and modelcard import numpy (and the standard library) and each other only",
        sources=NUMPY_ONLY,
        only=("numpy", *NUMPY_ONLY),
        # hdc's functions take torch tensors as well as arrays: they import torch only on the branch that was
        # handed a tensor, when the caller has loaded torch already; the thread policy sets numpy's BLAS
        # threads through threadpoolctl, imported by the functions that set a count (torch is handed in)
        lazy_ok=(("hashplug.hdc", "torch"), ("hashplug._threads_policy", "threadpoolctl")),
    ),
    Rule(
        "training side",
        "graph, encoders and train never import export, runtime or integrations",
        sources=TRAINING,
        forbid=("hashplug.export", *SERVING),
    ),
    Rule(
        "graph at import",
        "graph/ is numpy at import, torch lazily (inside the functions that need it)",
        sources=("hashplug.graph",),
        at_import=FRAMEWORKS,
    ),
    Rule("export", "export imports graph and encoders, never integrations", sources=("hashplug.export",),
         forbid=("hashplug.integrations",)),
    Rule(
        "serving side",
        "runtime and integrations never import torch, onnx, graph, export, encoders or train: they know encoders "
        "only as ONNX files",
        sources=SERVING,
        forbid=(*FRAMEWORKS, "hashplug.graph", "hashplug.export", "hashplug.encoders", "hashplug.train"),
    ),
    Rule(
        "ray",
        "integrations/ray.py (the Ray adapter, extra hashplug[ray]) never imports scikit-learn either, and Ray, "
        "lance-ray and pylance only inside the functions that use them, so importing it needs none of them",
        sources=("hashplug.integrations.ray",),
        forbid=("sklearn", "scipy"),
        at_import=("ray", "lance", "lance_ray"),
    ),
    Rule(
        "ray workers",
        "integrations/workers.py (the Ray actors: a fresh process each) imports no LanceDB, and pylance only "
        "inside the functions that use it, so an actor starts without LanceDB's import",
        sources=("hashplug.integrations.workers",),
        forbid=("lancedb", "pydantic", "sklearn", "scipy", "hashplug.integrations.function",
                "hashplug.integrations.tables", "hashplug.integrations.ingest"),
        at_import=("ray", "lance", "lance_ray"),
    ),
    Rule(
        "serve command",
        "the serving commands (cli/serve.py) never import torch, onnx, graph, export, encoders or train",
        sources=("hashplug.cli.serve",),
        forbid=(*FRAMEWORKS, "hashplug.graph", "hashplug.export", "hashplug.encoders", "hashplug.train"),
    ),
    Rule(
        "index",
        "index/ is exact Hamming search on the serving side: numpy at import (numba and FAISS inside the "
        "functions that use them), never torch, onnx, graph, encoders, train, export, runtime or integrations",
        sources=("hashplug.index",),
        forbid=(*FRAMEWORKS, *TRAINING, "hashplug.export", *SERVING),
        at_import=("numba", "faiss", "hashplug.index._jit"),
        exempt=("hashplug.index._jit",),
    ),
    Rule(
        "compiled kernels",
        "index/_jit.py holds the compiled kernels at module level (numba's disk cache serves module-level "
        "functions only), so it imports numba at its top, and numpy, nothing else; index/ imports it only "
        "inside functions, once numba was found",
        sources=("hashplug.index._jit",),
        only=("numpy", "numba"),
    ),
    Rule(
        "multi-index hashing",
        "index/kernels.py imports index/mih.py lazily, never the reverse",
        sources=("hashplug.index.mih",),
        forbid=("hashplug.index.kernels", "hashplug.index.core", "=hashplug.index"),
    ),
    Rule("kernels import mih lazily", "index/kernels.py imports index/mih.py lazily",
         sources=("hashplug.index.kernels",), at_import=("hashplug.index.mih",)),
    Rule(
        "the face",
        "the face (hashplug/__init__.py) is for users and for the commands and benchmarks that act as users: "
        "the modules below read the version from hashplug._version and import the modules that define what "
        "they need",
        sources=("hashplug",),
        forbid=("=hashplug",),
        exempt=("=hashplug", "hashplug.cli", "hashplug.bench"),
    ),
    Rule(
        "top of the house",
        "the commands (cli/) and the benchmarks (bench/) sit on top: only they import cli/ and bench/",
        sources=("hashplug",),
        forbid=("hashplug.cli", "hashplug.bench"),
        exempt=("hashplug.cli", "hashplug.bench"),
    ),
)

#: Packages whose modules import down a list only: tiers, first to last (a tier's modules never import each
#: other); ``complete``: every module of the package must be in a tier.
ORDERS = (
    ("hashplug.integrations", (("lancedb", "ray"), ("aio",), ("reranker",), ("ingest",), ("search",), ("transforms",),
                               ("index",), ("tables",), ("function", "workers"), ("store",), ("arrow",)), True),
    ("hashplug.data", (("protocols",), ("registry",), ("ag_news", "arrays", "cifar10", "digits", "mnist"),
                       ("_io",)), False),
)


# ------------------------------------------------------------------------------------------------ the walk
@dataclass(frozen=True)
class Arrow:
    """One import: ``module`` (at ``path``:``line``) imports ``target``; ``lazy``: inside a function."""

    module: str
    path: str
    line: int
    target: str
    lazy: bool


def package_dirs(root: Path) -> dict[str, Path]:
    """``[tool.setuptools.package-dir]`` of ``root/pyproject.toml``: package name -> source folder."""
    text = (root / "pyproject.toml").read_text()
    try:
        import tomllib
    except ImportError:  # Python 3.10: read the one table by hand
        m = re.search(r"^\[tool\.setuptools\.package-dir\]\n(.*?)(?=^\[|\Z)", text, re.S | re.M)
        table = dict(re.findall(r'^"?([\w.]+)"?\s*=\s*"([^"]*)"', m.group(1) if m else "", re.M))
    else:
        table = tomllib.loads(text)["tool"]["setuptools"]["package-dir"]
    return {pkg: root / folder for pkg, folder in table.items()}


def _under(name: str, pattern: str) -> bool:
    """``name`` is ``pattern`` or one of its submodules (``=x``: is ``x``)."""
    if pattern.startswith("="):
        return name == pattern[1:]
    return name == pattern or name.startswith(pattern + ".")


@functools.cache
def _parse_cached(path: str, mtime_ns: int, size: int) -> ast.Module:
    return ast.parse(Path(path).read_text(), filename=path)


def parse(f: Path) -> ast.Module:
    """The syntax tree of ``f``, parsed once per version of the file (several tests walk the whole house)."""
    st = f.stat()
    return _parse_cached(str(f), st.st_mtime_ns, st.st_size)


def modules(root: Path) -> dict[str, Path]:
    """Module name -> file, for every ``.py`` file of every mapped package folder."""
    dirs = package_dirs(root)
    out: dict[str, Path] = {}
    for pkg, folder in dirs.items():
        others = [d for p, d in dirs.items() if p != pkg and d != folder and d.is_relative_to(folder)]
        for f in sorted(folder.rglob("*.py")):
            if any(f.is_relative_to(d) for d in others):
                continue  # another mapping owns this folder
            parts = list(f.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([pkg, *parts])] = f
    return out


def arrows(root: Path) -> list[Arrow]:
    """Every import of every module of ``root`` as an :class:`Arrow` (relative imports resolved)."""
    mods = modules(root)
    found: list[Arrow] = []
    for name, f in mods.items():
        path = f.relative_to(root).as_posix()
        package = name.split(".") if f.name == "__init__.py" else name.split(".")[:-1]

        def visit(node: ast.AST, lazy: bool, name: str = name, path: str = path, package: list[str] = package) -> None:
            for child in ast.iter_child_nodes(node):
                inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                if isinstance(child, ast.Import):
                    found.extend(Arrow(name, path, child.lineno, a.name, lazy) for a in child.names)
                elif isinstance(child, ast.ImportFrom):
                    if child.level:
                        base = ".".join(package[: len(package) - child.level + 1] + ([child.module] if child.module else []))
                    else:
                        base = child.module or ""
                    for a in child.names:
                        sub = f"{base}.{a.name}"
                        found.append(Arrow(name, path, child.lineno, sub if sub in mods else base, lazy))
                visit(child, inner)

        visit(parse(f), False)
    return list(dict.fromkeys(found))  # one arrow per line and target (``from x import a, b`` is one)


def _stdlib(target: str) -> bool:
    return target.split(".")[0] in sys.stdlib_module_names


def violations(root: Path, rules: tuple[Rule, ...] = RULES, orders: tuple = ORDERS) -> list[str]:
    """One line per arrow that breaks a rule: ``path:line: module imports target ...: rule (what it says)``."""
    out: list[str] = []
    mods = modules(root)

    def say(a: Arrow, rule: str, says: str) -> None:
        where = " (inside a function)" if a.lazy else ""
        out.append(f"{a.path}:{a.line}: {a.module} imports {a.target}{where}; breaks '{rule}': {says}.")

    for a in arrows(root):
        for r in rules:
            if not any(_under(a.module, s) for s in r.sources) or any(_under(a.module, e) for e in r.exempt):
                continue
            if a.lazy and (a.module, a.target.split(".")[0]) in r.lazy_ok:
                continue
            bad = any(_under(a.target, t) for t in r.forbid)
            bad = bad or (not a.lazy and any(_under(a.target, t) for t in r.at_import))
            if r.only is not None and not _stdlib(a.target) and not any(_under(a.target, t) for t in r.only):
                bad = True
            if bad:
                say(a, r.name, r.says)
        for pkg, tiers, _ in orders:
            tier = {f"{pkg}.{m}": i for i, names in enumerate(tiers) for m in names}
            src = next((i for m, i in tier.items() if _under(a.module, m)), None)
            if src is None:
                continue
            dst = next((i for m, i in tier.items() if _under(a.target, m)), None)
            if a.target == pkg or (dst is not None and dst <= src):
                order = " -> ".join("/".join(t) for t in tiers)
                say(a, f"order inside {pkg}", f"imports run down {order} only")
    for pkg, tiers, complete in orders:
        placed = {f"{pkg}.{m}" for names in tiers for m in names}
        missing = placed - set(mods)
        out += [f"{m}: named in the order of {pkg} but no such module (rename it in the rule)." for m in missing]
        if complete:
            unplaced = {m for m in mods if _under(m, pkg) and m != pkg} - placed
            out += [f"{m}: not placed in the order of {pkg} (add it where its imports put it)." for m in unplaced]
    for r in rules:
        for m in {*r.sources, *r.exempt, *(s for s, _ in r.lazy_ok)}:
            if m.lstrip("=") not in mods:
                out.append(f"{m}: named by rule '{r.name}' but no such module (rename it in the rule).")
    return sorted(out, key=lambda v: (v.split(":")[0], int(v.split(":")[1]) if v.split(":")[1].isdigit() else 0, v))


# ------------------------------------------------------------------------------------------------ the tests
def test_the_house_has_no_arrow_running_up(tmp_path):
    _check_the_checker(tmp_path)
    _check_the_walk_covers_the_mapped_folders()
    found = violations(ROOT)
    assert not found, "import directions broken (docs/architecture.md, 'Directions'):\n" + "\n".join(found)


def _check_the_walk_covers_the_mapped_folders():
    mods = modules(ROOT)
    assert {"hashplug", "hashplug.export", "hashplug.integrations"} <= set(mods)
    assert mods["hashplug.export.onnx_export"] == ROOT / "export" / "onnx_export.py"
    assert mods["hashplug.integrations.search"] == ROOT / "integrations" / "search.py"
    got = {(a.module, a.target) for a in arrows(ROOT)}
    assert ("hashplug.integrations.function", "hashplug.integrations.arrow") in got  # relative, mapped folder
    assert ("hashplug.export.onnx_export", "hashplug.graph") in got  # relative import leaving a mapped folder


def test_every_reader_of_the_version_reads_hashplug_version():
    wrong = []
    for f in modules(ROOT).values():
        for node in ast.walk(parse(f)):
            if isinstance(node, ast.ImportFrom) and any(a.name == "__version__" for a in node.names):
                if not (node.module or "").endswith("_version"):
                    wrong.append(f"{f.relative_to(ROOT)}:{node.lineno}: imports __version__ from the face; "
                                 "import it from hashplug._version")
    assert not wrong, "\n".join(wrong)
    readers = {a.module for a in arrows(ROOT) if a.target == "hashplug._version"}
    assert {"hashplug", "hashplug.modelcard", "hashplug.encoders.persistence"} <= readers, readers


def test_one_popcount_kernel():
    """``np.bitwise_count`` on codes is hamming.py's (``popcount_into``; the benchmark of the machine's raw
    popcount rate, bench/search.py, measures the ufunc itself); the compiled one is defined once
    (``index/_jit.py``), for every compiled kernel."""
    allowed = {"hashplug.hamming", "hashplug.bench.search"}
    numpy_kernels, compiled = [], []
    for name, f in modules(ROOT).items():
        for node in ast.walk(parse(f)):
            if isinstance(node, ast.Attribute) and node.attr == "bitwise_count" and name not in allowed:
                numpy_kernels.append(f"{f.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.FunctionDef) and node.name.startswith("popcount") and name not in allowed:
                compiled.append(f"{f.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not numpy_kernels, f"popcount re-implemented (use hashplug.hamming.popcount_into): {numpy_kernels}"
    assert len(compiled) == 1 and compiled[0].startswith("hashplug/index/_jit.py"), (
        f"compiled popcount defined more than once (use _numba.compiled_popcount64): {compiled}"
    )


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.setuptools.package-dir]\n"hashplug" = "hashplug"\n'
        '"hashplug.integrations" = "integrations"\n\n[tool.other]\na = 1\n'
    )
    for rel, src in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(src))
    return tmp_path


def _check_the_checker(tmp_path: Path) -> None:
    """A toy tree with one arrow of each kind running up: each is reported with file, line and rule, and
    nothing else."""
    root = _tree(tmp_path, {
        "hashplug/__init__.py": "from ._version import __version__\n",
        "hashplug/_version.py": "__version__ = '0'\n",
        "hashplug/codes.py": "import numpy as np\n\n\ndef f():\n    import torch\n",
        "hashplug/modelcard.py": "from .graph import OPS\nfrom . import __version__\n",
        "hashplug/hdc.py": "def f():\n    import torch\n",
        "hashplug/graph/__init__.py": "import torch\n",
        "hashplug/index/__init__.py": "",
        "hashplug/index/mih.py": "from .kernels import words_of\n",
        "hashplug/index/kernels.py": "from . import mih\n\n\ndef g():\n    import faiss\n",
        "hashplug/runtime.py": "from .modelcard import OPS\n",
        "integrations/__init__.py": "",
        "integrations/arrow.py": "from .function import Query\n",
        "integrations/function.py": "from . import arrow\nfrom hashplug.encoders import get\n",
        "integrations/extra.py": "",
    })
    found = violations(root)
    arrows_found = [v for v in found if re.match(r"^[\w/]+\.py:\d+: ", v)]
    expect = [
        "hashplug/codes.py:5: hashplug.codes imports torch (inside a function); breaks 'numpy-only'",
        "hashplug/graph/__init__.py:1: hashplug.graph imports torch; breaks 'graph at import'",
        "hashplug/index/kernels.py:1: hashplug.index.kernels imports hashplug.index.mih; breaks 'kernels import mih",
        "hashplug/index/mih.py:1: hashplug.index.mih imports hashplug.index.kernels; breaks 'multi-index hashing'",
        "hashplug/modelcard.py:1: hashplug.modelcard imports hashplug.graph; breaks 'numpy-only'",
        "hashplug/modelcard.py:2: hashplug.modelcard imports hashplug; breaks 'numpy-only'",
        "hashplug/modelcard.py:2: hashplug.modelcard imports hashplug; breaks 'the face'",
        "integrations/arrow.py:1: hashplug.integrations.arrow imports hashplug.integrations.function; breaks "
        "'order inside hashplug.integrations'",
        "integrations/function.py:2: hashplug.integrations.function imports hashplug.encoders; breaks 'serving side'",
    ]
    assert len(arrows_found) == len(expect), "\n".join(arrows_found)
    for got, want in zip(arrows_found, expect):
        assert got.startswith(want), f"{got!r} does not start with {want!r}"
    # a new module of integrations/ must be placed; a rule naming a module that is gone is stale
    assert "hashplug.integrations.extra: not placed in the order of hashplug.integrations" in "\n".join(found)
    assert any(v.startswith("hashplug.integrations.lancedb: named in the order") for v in found)
    assert any(v.startswith("hashplug.train: named by rule 'training side' but no such module") for v in found)


def test_runtime_import_loads_no_graph():
    """``import hashplug.runtime`` (the serving side's entry) loads neither hashplug.graph nor torch / onnx."""
    code = (
        "import sys, hashplug.runtime, hashplug.modelcard\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx') or m.startswith('hashplug.graph'))\n"
        "print(bad)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]", f"import hashplug.runtime loaded {proc.stdout.strip()}"


def test_model_card_names_equal_the_graph_registries():
    """The model card holds the op names and code kinds as data (so it needs no graph); they are the graph's."""
    from hashplug import graph, modelcard

    own = {name for name, cls in graph.OPS.items() if cls.__module__.startswith("hashplug.")}
    assert set(modelcard.BUILTIN_OPS) == own
    assert own <= modelcard.PREPROCESSING_OPS
    assert modelcard.TIE_RULES == {kind: head.tie_rule for kind, head in graph.HEADS.items()}
    assert modelcard.CODE_KINDS == tuple(graph.HEADS)
