"""The bad-input catalogue's harness (issue 27): a world to break, its snapshot, and one ``Case`` per bad input.

Every ``tests/test_catalogue_*.py`` module defines ``CASES`` (a list of :class:`Case`) and runs them with
:func:`check_case` against a module-scoped :class:`World`: a LanceDB database holding a packed table ``t``
(LSH, 32 bits) and a k-hot table ``s`` (FlyHash, layout ``indices``) of 300 digits rows each, both with a saved
Hamming index, plus the ONNX files and a checkpoint folder. Before and after each case the world is
snapshotted (every table's row count, version and a digest of its codes; every file under the database
folder with its sha256), and the two must be equal: a bad input gets a clear error and changes nothing
already stored.

``docs/errors.md`` is generated from the catalogue (``python tests/_catalogue.py --write``) and a test checks
that it is current.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Case:
    """One bad input and what hashplug must answer.

    Attributes
    ----------
    id : str
        Short unique id (the pytest id).
    entry : str
        The public entry point, e.g. ``"hashplug.ingest"`` or ``"hashplug ingest (CLI)"``.
    input : str
        The bad input, for a person (one line; it goes into ``docs/errors.md``).
    exc : type or str
        The exception class raised, or ``"exit 2"`` for a CLI case (one line on stderr, no traceback).
    match : str
        A regular expression the message must contain (``re.search``).
    run : callable
        ``run(world)`` performs the call; for CLI cases it returns the argv list run through
        :func:`hashplug.cli.main`.
    mutates : bool
        True only for cases allowed to change the world (none today).
    """

    id: str
    entry: str
    input: str
    exc: type | str
    match: str
    run: Callable[[World], Any]
    mutates: bool = False


@dataclass
class World:
    """The database under attack: folder, tables, models and the data used to build them."""

    root: Path
    db_path: Path
    db: Any
    t: Any  # packed table (LSH 32 bits), index built
    s: Any  # indices table (FlyHash k-hot), index built
    lsh_path: Path
    fly_path: Path
    X: np.ndarray
    y: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)

    def table(self, name: str) -> Any:
        """The table reopened (a fresh handle, so commits of other handles are seen)."""
        return self.db.open_table(name)


def make_world(root: Path) -> World:
    """Build the world in ``root`` (takes about a second)."""
    import lancedb
    from sklearn.datasets import load_digits

    import hashplug
    from hashplug.export import to_onnx

    d = load_digits()
    X = (d.data / 16.0).astype(np.float32)
    y = np.asarray(d.target, dtype=np.int64)
    lsh = hashplug.get_encoder("lsh", k=32, random_state=0).fit(X)
    fly = hashplug.get_encoder("flyhash", k=8, expansion=4, random_state=0).fit(X)
    models = root / "models"
    models.mkdir(parents=True, exist_ok=True)
    lsh_path = to_onnx(lsh, models / "lsh.onnx")
    fly_path = to_onnx(fly, models / "fly.onnx")
    db_path = root / "db"
    n = 300
    cols = {"id": np.arange(n, dtype=np.int64), "label": y[:n]}
    t = hashplug.ingest(db_path, X[:n], name="t", model=str(lsh_path), columns=cols, progress=False).table
    s = hashplug.ingest(db_path, X[:n], name="s", model=str(fly_path), layout="indices", columns=cols,
                        progress=False).table
    hashplug.build_hamming_index(t)
    hashplug.build_hamming_index(s)
    (root / "ckpt").mkdir(exist_ok=True)
    db = lancedb.connect(str(db_path))
    return World(root, db_path, db, db.open_table("t"), db.open_table("s"), Path(lsh_path), Path(fly_path), X, y)


def snapshot(world: World) -> dict[str, Any]:
    """Row counts, versions and code digests of every table, and every file under the database (sha256)."""
    out: dict[str, Any] = {}
    for name in _table_names(world.db):
        tbl = world.db.open_table(name)
        tb = tbl.to_arrow()
        h = hashlib.sha256()
        for col in tb.column_names:
            h.update(col.encode())
            h.update(repr(tb[col].to_pylist()[:: max(1, tb.num_rows // 50)]).encode())
        out[f"table:{name}"] = (tbl.count_rows(), int(tbl.version), h.hexdigest())
    for p in sorted(world.root.rglob("*")):
        if p.is_file():
            out[f"file:{p.relative_to(world.root)}"] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _table_names(db: Any) -> list[str]:
    """Every table of the database (all pages of ``list_tables``)."""
    names: list[str] = []
    token = None
    while True:
        resp = db.list_tables(page_token=token)
        names += list(resp.tables)
        token = resp.page_token
        if not token:
            return sorted(names)


def run_case(case: Case, world: World, capsys: Any = None) -> tuple[str, str]:
    """Run one case; returns ``(what was raised, its message)`` (``"exit N"`` for the CLI)."""
    if case.exc == "exit 2" or str(case.exc).startswith("exit"):
        from hashplug.cli import main

        argv = [str(a) for a in case.run(world)]
        if capsys is not None:
            capsys.readouterr()
        try:
            code: Any = main(argv)
        except SystemExit as exc:
            code = exc.code
        err = capsys.readouterr().err if capsys is not None else ""
        return f"exit {code}", err
    try:
        case.run(world)
    except Exception as exc:  # noqa: BLE001 - the catalogue records whatever is raised
        return type(exc).__name__, str(exc)
    return "no error", ""


def check_case(case: Case, world: World, capsys: Any = None) -> None:
    """Run ``case``: the expected exception with a matching message, and the world unchanged."""
    before = snapshot(world)
    got, msg = run_case(case, world, capsys)
    if isinstance(case.exc, str):
        assert got == case.exc, f"{case.id}: expected {case.exc}, got {got}: {msg}"
        assert "Traceback" not in msg, msg
        assert len(msg.strip().splitlines()) == 1, msg
    else:
        assert got == case.exc.__name__ or _is_sub(got, case.exc), f"{case.id}: expected {case.exc.__name__}, got {got}: {msg}"
    assert re.search(case.match, msg), f"{case.id}: message {msg!r} does not match {case.match!r}"
    after = snapshot(world)
    if not case.mutates:
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        assert not changed, f"{case.id}: the bad input changed {changed}"


def _is_sub(name: str, exc: type) -> bool:
    import hashplug.validation as v

    cls = getattr(v, name, None)
    return isinstance(cls, type) and issubclass(cls, exc)


def all_cases() -> list[tuple[str, Case]]:
    """Every catalogue module's cases, as ``(module, case)`` in file order."""
    import importlib

    here = Path(__file__).parent
    sys.path.insert(0, str(here))
    out = []
    for f in sorted(here.glob("test_catalogue_*.py")):
        mod = importlib.import_module(f.stem)
        out += [(f.stem.removeprefix("test_catalogue_"), c) for c in getattr(mod, "CASES", [])]
    return out


def render_docs() -> str:
    """``docs/errors.md``: the catalogue as a table (entry point, input, exception, message pattern)."""
    lines = [
        "# Bad inputs and what hashplug answers",
        "",
        "Generated from the bad-input catalogue (`tests/test_catalogue_*.py`, `python tests/_catalogue.py "
        "--write`); every row is a test that also checks that nothing stored changed (table rows, versions, "
        "codes and every file under the database, before and after). CLI rows exit with code 2 and print one "
        "line `hashplug <command>: error: ...`, never a traceback.",
        "",
        "| area | entry point | bad input | raises | message contains |",
        "| --- | --- | --- | --- | --- |",
    ]
    for area, c in all_cases():
        exc = c.exc if isinstance(c.exc, str) else c.exc.__name__
        pat = c.match.replace("|", "\\|").replace("\\\\|", "\\|")
        lines.append(f"| {area} | `{c.entry}` | {c.input.replace('|', '/')} | `{exc}` | `{pat}` |")
    lines.append("")
    lines.append(f"{len(all_cases())} cases.")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - a maintenance command
    doc = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
    if "--write" in sys.argv:
        doc.write_text(render_docs())
        print(f"wrote {doc}")
    else:
        print(render_docs())
