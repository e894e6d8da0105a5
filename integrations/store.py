"""Where a table's model lives: the model store inside a database, and how a saved config finds its model.

A hashplug table's embedding-function config (saved by LanceDB in the table's schema metadata) names its
model by **content** (``file_sha256``, the sha256 of the ONNX file's bytes) and by a **location**
(``model``), one of:

``{db}/_hashplug/models/<sha256>.onnx``
    A copy in the database's own model store, relative to the database folder (the folder holding
    ``<table>.lance``). Written by :func:`store_model` (which ``create_table``, ``ingest`` of a new table,
    ``schema(func, db=...)`` and ``relocate_model`` call): content-addressed, atomic and exactly once, also
    with several writers at once (:func:`hashplug._locations.write_once`). Copy or move the database folder
    and the model goes with it.
a URI
    ``s3://bucket/enc.onnx``, ``gs://...``, or any other scheme ``pyarrow.fs`` (or ``fsspec``) opens; read
    and checked against ``file_sha256`` on load.
an absolute local path
    What hashplug 0.1.x / 0.2 wrote (and still writes for a bare ``schema(func)``).
``$var:name``
    A LanceDB variable (``get_registry().set_var("name", "s3://...")``), resolved by LanceDB before hashplug
    sees the config.

LanceDB rebuilds the function from the saved config alone (``registry.parse_functions(metadata)`` ->
``create(**config)`` before 0.41, ``cls(**config)`` from 0.41) on every ``add``, search and
``table.embedding_functions``: it does not say which table or database it is rebuilding for.
:func:`resolve_encoder` therefore finds the model, in order:

1. by content in this process (:meth:`hashplug.runtime.OnnxEncoder.from_cache`): any copy already read and
   checked, whatever its location (``{db}`` and URI configs; a local path config is read from its path first);
2. at the configured location, with ``{db}`` resolved against the database of the table being opened:
   the nearest LanceDB table or connection object in the calling frames (LanceDB's own ``add`` / ``search``
   / ``embedding_functions`` / ``create_table`` frames, in the calling thread), else :func:`database_root`
   when hashplug opens the table; when neither tells it (LanceDB >= 0.41 rebuilds the function in a worker
   thread), the databases of the calls waiting on this thread (:func:`caller_roots`: other threads' frames and
   suspended asyncio tasks), the first whose store holds a copy with the config's sha256;
3. for a local path that is gone (a database written by 0.2, moved): the database's store, by sha256.

Every copy is checked against ``file_sha256`` before it is used; a missing or different model is an error
naming the location, the digest and the fix (``hashplug.relocate_model``), never a quiet answer.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from collections.abc import Iterator
from typing import Any

from .._locations import describe, exists, is_uri, join, local_path, parent, read_bytes, write_once
from ..validation import HashplugError, HashplugTypeError, ModelMismatchError, ModelNotFoundError

__all__ = [
    "DB_PREFIX",
    "STORE_DIR",
    "db_reference",
    "is_db_reference",
    "database_root",
    "current_root",
    "caller_roots",
    "table_root",
    "connection_root",
    "store_model",
    "resolve_encoder",
    "check_model",
    "upgrade_config",
]

#: The prefix of a location relative to the database folder.
DB_PREFIX = "{db}/"
#: The model store, relative to the database folder.
STORE_DIR = "_hashplug/models"

_ROOT: contextvars.ContextVar[str | None] = contextvars.ContextVar("hashplug_db_root", default=None)


def db_reference(sha256: str) -> str:
    """The location of a stored model in a config: ``{db}/_hashplug/models/<sha256>.onnx``."""
    return f"{DB_PREFIX}{STORE_DIR}/{sha256}.onnx"


def is_db_reference(location: Any) -> bool:
    """Whether ``location`` is relative to the database folder (starts with ``{db}/``)."""
    return isinstance(location, str) and location.startswith(DB_PREFIX)


@contextlib.contextmanager
def database_root(root: str | None) -> Iterator[None]:
    """Within the block, ``{db}`` locations resolve against ``root`` (a local folder or a URI)."""
    token = _ROOT.set(root)
    try:
        yield
    finally:
        _ROOT.reset(token)


def table_root(table: Any) -> str | None:
    """The folder (or URI) holding a LanceDB table's ``<name>.lance``: its database; None when unknown.

    Reads no data and never waits on LanceDB's event loop (safe inside LanceDB's own calls).
    """
    try:
        from lancedb.table import AsyncTable, LanceTable
    except ImportError:  # pragma: no cover - LanceDB is a base dependency
        return None
    try:
        if isinstance(table, LanceTable):
            location = getattr(table, "_location", None)  # a table opened at an explicit location
            if location:
                return parent(str(location))
            uri = getattr(getattr(table, "_conn", None), "uri", None)
            return (uri if is_uri(uri) else local_path(uri)) if isinstance(uri, str) and uri else None
        if isinstance(table, AsyncTable):
            inner = getattr(table, "_inner", None)
            return str(inner.database().uri) if inner is not None else None
    except Exception:  # noqa: BLE001 - a remote or closed table: the root cannot be told
        return None
    return None


def connection_root(db: Any) -> str | None:
    """The folder (or URI) of a LanceDB connection (sync or async), or of a path; None when unknown."""
    import os

    if isinstance(db, (str, os.PathLike)):
        text = os.fspath(db)
        return text if is_uri(text) else local_path(text)
    if db is None:
        return None
    root = table_root(db)  # a table: its database (never a table's ``uri`` property, which waits on LanceDB's loop)
    if root is not None:
        return root
    uri = getattr(db, "uri", None)
    if isinstance(uri, str) and uri:
        return uri if is_uri(uri) else local_path(uri)
    return None


def _lancedb_classes() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """LanceDB's (table classes, connection classes), from the loaded modules only (never imports LanceDB)."""
    mods = sys.modules
    tmod, dmod = mods.get("lancedb.table"), mods.get("lancedb.db")
    tables = tuple(t for t in (getattr(tmod, "LanceTable", None), getattr(tmod, "AsyncTable", None)) if t)
    conns = tuple(c for c in (getattr(dmod, "LanceDBConnection", None), getattr(dmod, "AsyncConnection", None)) if c)
    return tables, conns


def _root_of(obj: Any, tables: tuple[type, ...], conns: tuple[type, ...]) -> str | None:
    if tables and isinstance(obj, tables):
        return table_root(obj)
    if conns and isinstance(obj, conns):
        return connection_root(obj)
    return None


def _selves(f: Any, depth: int) -> Iterator[Any]:
    """The ``self`` of each of the ``depth`` frames from ``f`` outwards (frames without one skipped)."""
    for _ in range(depth):
        if f is None:
            return
        obj = f.f_locals.get("self")
        if obj is not None:
            yield obj
        f = f.f_back


def _root_from_stack(depth: int = 48) -> str | None:
    """The database of the nearest LanceDB table or connection in the calling frames (this thread)."""
    tables, conns = _lancedb_classes()
    if not tables and not conns:
        return None
    try:
        f = sys._getframe(2)
    except ValueError:  # pragma: no cover - called from the top of a thread's stack
        return None
    return next((r for r in (_root_of(o, tables, conns) for o in _selves(f, depth)) if r is not None), None)


def current_root() -> str | None:
    """The database ``{db}`` stands for here: the table LanceDB is rebuilding the function for (the calling
    frames), else the one hashplug named with :func:`database_root`; None when neither is known."""
    return _root_from_stack() or _ROOT.get()


def caller_roots(depth: int = 64) -> list[str]:
    """The databases of the LanceDB tables and connections this call may be made for, as seen from another
    thread: those in other threads' stacks, then those in the suspended asyncio tasks of the event loops
    running there. Nearest frame first in each stack.

    Where a ``{db}`` model is looked for when the calling frames do not tell the database: LanceDB >= 0.41
    rebuilds a table's function in a worker thread (``asyncio.to_thread``), while the table's own frames wait
    in the caller's thread (sync API) or in a suspended task (async API). Several such callers may be waiting
    at once; any database whose store holds a file with the table's ``file_sha256`` holds the table's model (a
    model is named by content, and each copy is checked), so the first such file found is the right one.
    """
    import asyncio
    import threading

    tables, conns = _lancedb_classes()
    if not tables and not conns:
        return []
    seen: dict[str, None] = {}
    loops: list[Any] = []
    me = threading.get_ident()
    for ident, frame in sys._current_frames().items():
        if ident == me:
            continue
        for obj in _selves(frame, depth):  # one walk: the tables / connections, and the event loops running
            root = _root_of(obj, tables, conns)
            if root is not None:
                seen.setdefault(root, None)
            elif isinstance(obj, asyncio.AbstractEventLoop) and obj not in loops:
                loops.append(obj)
    for loop in loops:
        try:
            tasks = list(asyncio.all_tasks(loop))
        except RuntimeError:  # pragma: no cover - the task set changed during the copy
            continue
        for task in tasks:
            coro: Any = task.get_coro()
            for _ in range(depth):  # the chain of awaits: each coroutine's own (suspended) frame
                frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
                if frame is None:
                    break
                root = _root_of(frame.f_locals.get("self"), tables, conns)
                if root is not None:
                    seen.setdefault(root, None)
                coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return list(seen)


def _from_caller_roots(
    rel: str, sha256: str, providers: list[str] | None, batch_size: int | None
) -> tuple[Any, list[str]]:
    """``(model, roots looked in)``: the model at ``<root>/<rel>`` in the first database of
    :func:`caller_roots` whose copy has ``sha256``, or None."""
    from ..runtime import OnnxEncoder
    from ..validation import ModelMismatchError

    roots = caller_roots()
    for root in roots:
        where = join(root, rel)
        try:
            if exists(where):
                return OnnxEncoder(where, providers=providers, batch_size=batch_size, sha256=sha256), roots
        except (ModelMismatchError, ModelNotFoundError, OSError):
            continue  # a file under this name that is not this model: another caller's, not ours
    return None, roots


def _model_bytes(model: Any, owner: str) -> tuple[bytes, str]:
    """``(bytes, where from)`` of an ONNX file (path or URI), an ``OnnxEncoder`` or a hashplug function."""
    import os

    from .._onnx_wire import DEFAULT_MAX_BYTES

    enc = getattr(model, "encoder", None) if hasattr(model, "encode_query") else model
    if hasattr(enc, "model_bytes") and hasattr(enc, "file_sha256"):
        return enc.model_bytes, enc.origin
    if isinstance(model, (str, os.PathLike)) and str(model):
        loc = os.fspath(model)
        return read_bytes(loc, DEFAULT_MAX_BYTES), describe(loc)
    raise HashplugTypeError(
        f"{owner}: model must be the path or URI of an ONNX file, an OnnxEncoder or a hashplug embedding function; "
        f"got {type(model).__name__} {model!r:.60}."
    )


def store_model(db: Any, model: Any, *, owner: str = "hashplug.store_model") -> str:
    """Copy a model into a database's model store; returns its config location ``{db}/_hashplug/models/<sha>.onnx``.

    The bytes are checked as a hashplug model first (nothing is written for a file that is not one), then
    written once, atomically, as ``<db>/_hashplug/models/<sha256>.onnx`` (a copy already there is checked and
    kept; several writers at once leave one whole file). A table whose config names this location finds its
    model wherever the database folder is copied or moved.

    Parameters
    ----------
    db : lancedb connection (sync or async), table, str or PathLike
        The database: a connection, one of its tables, or its folder / URI.
    model : str, PathLike, OnnxEncoder or HashplugEmbeddings
        The model (a path or a URI is read, at most 1 GiB).
    owner : str
        The entry point named in messages.

    Returns
    -------
    str
        ``{db}/_hashplug/models/<sha256>.onnx``.

    Raises
    ------
    HashplugError
        The database's folder cannot be told (e.g. a LanceDB Cloud ``db://`` connection: keep the model at a
        URI every client can read and point the table there, ``hashplug.relocate_model(table, uri, copy=False)``).
    ModelFileError
        Not a hashplug ONNX model, or the store cannot be written.
    """
    from ..runtime import OnnxEncoder

    root = connection_root(db)
    if root is None or root.startswith("db://"):
        raise HashplugError(
            f"{owner}: cannot tell the folder of the database {db!r:.80}, so its model cannot be stored inside it (a "
            "LanceDB Cloud db:// database has no folder). Keep the model at a URI every client can read and point "
            "the table at it: hashplug.relocate_model(table, 's3://bucket/model.onnx', copy=False)."
        )
    data, origin = _model_bytes(model, owner)
    enc = OnnxEncoder.from_bytes(data, origin=origin)  # a hashplug model, or nothing is written
    write_once(join(root, STORE_DIR), data)
    return db_reference(enc.file_sha256)


def _not_found(model: str, sha: str | None, where: str | None, why: str) -> ModelNotFoundError:
    digest = f" (sha256 {sha})" if sha else ""
    at = f" at {where!r}" if where else ""
    return ModelNotFoundError(
        f"The table's model {model!r}{digest} was not found{at}: {why}. Copy the database folder together with its "
        f"{STORE_DIR.split('/')[0]}/ folder, or re-point the table at a copy of the model (checked by sha256): "
        "hashplug.relocate_model(table, 'path/or/uri/of/model.onnx')."
    )


def check_model(enc: Any, model: str, *, file_sha256: str | None = None, m: int | None = None, k: int | None = None,
                code_kind: str | None = None, layout: str = "packed") -> None:
    """Check an opened model against what a table's config (or a driver's reference) expects of it.

    Parameters
    ----------
    enc : OnnxEncoder
        The model found at ``model``.
    model : str
        Where it was found (named in the messages).
    file_sha256, m, k, code_kind : optional
        The file's sha256 and the code's length, number of active units and kind the config records (None:
        not checked).
    layout : {"packed", "indices"}
        The code column's layout (``"indices"`` needs a k-hot model).

    Raises
    ------
    ModelMismatchError
        Another file (sha256), or a model that does not produce the recorded codes.
    """
    if file_sha256 is not None and file_sha256 != enc.file_sha256:
        raise ModelMismatchError(
            f"The ONNX file at {model!r} is not the model this table was built with: its sha256 is "
            f"{enc.file_sha256} but the table's saved config expects {file_sha256} (file sha256; the file's "
            f"weights_sha256 is {enc.weights_sha256}). Put the original file back at that path, or rebuild the "
            "table's codes with the new model."
        )
    diffs = [
        f"{key}: table {want} != file {getattr(enc, key)}"
        for key, want in (("m", m), ("k", k), ("code_kind", code_kind))
        if want is not None and want != getattr(enc, key)
    ]
    if diffs:
        raise ModelMismatchError(f"The ONNX file at {model!r} does not match the saved config ({'; '.join(diffs)}).")
    if layout == "indices" and enc.code_kind != "khot":
        raise ModelMismatchError(
            f"layout='indices' stores the active unit ids of k-hot codes, but {model!r} produces "
            f"{enc.code_kind} codes (m={enc.m}); use layout='packed'."
        )


def resolve_encoder(
    model: str, sha256: str | None, providers: list[str] | None = None, batch_size: int | None = None
) -> Any:
    """The :class:`~hashplug.runtime.OnnxEncoder` a saved config names (see the module's docstring).

    A ``{db}`` or URI location is checked against ``sha256`` here; a local path is returned as found (the
    caller compares its sha256, to name both files in its message).

    Raises
    ------
    ModelNotFoundError
        No copy found, with where it looked and the fix.
    ModelMismatchError
        A copy at a ``{db}`` / URI location whose sha256 differs from ``sha256``.
    """
    from ..runtime import OnnxEncoder

    prov = list(providers) if providers else None
    bs = None if batch_size is None else int(batch_size)  # None: sized by the model card's work_bytes
    if is_db_reference(model) or is_uri(model):
        if sha256:
            hit = OnnxEncoder.from_cache(sha256, providers=prov, batch_size=bs)
            if hit is not None:
                return hit
        if is_uri(model):
            return OnnxEncoder(model, providers=prov, batch_size=bs, sha256=sha256)
        rel = model[len(DB_PREFIX):]
        root = current_root()
        if root is None and sha256:  # LanceDB >= 0.41 rebuilds functions in a worker thread: ask its callers
            hit, looked = _from_caller_roots(rel, sha256, prov, bs)
            if hit is not None:
                return hit
            if looked:
                raise _not_found(model, sha256, None, "none of the databases this call was made for holds it "
                                 f"({', '.join(join(r, rel) for r in looked)})")
        if root is None:
            raise _not_found(model, sha256, None, "it is stored relative to its database folder, and this call did "
                             "not come from a table whose database could be told (open the table with "
                             "lancedb.connect(folder).open_table(name), or hashplug.integrations.lancedb.get_function)")
        if exists(join(root, rel)):
            return OnnxEncoder(join(root, rel), providers=prov, batch_size=bs, sha256=sha256)
        raise _not_found(model, sha256, join(root, rel), "the database's model store has no such file")
    path = local_path(model)
    if exists(path) or not sha256:
        if not exists(path):
            raise ModelNotFoundError(
                f"No ONNX model at {path!r}. The table's embedding function was configured with this path; restore "
                "the file there, or re-point the table at a copy (checked by sha256): hashplug.relocate_model(table, "
                "'path/or/uri/of/model.onnx')."
            )
        return OnnxEncoder(path, providers=prov, batch_size=bs)
    # a local path that is gone (a database written by 0.2 and moved): the same content, found elsewhere
    hit = OnnxEncoder.from_cache(sha256, providers=prov, batch_size=bs)
    if hit is not None:
        return hit
    root = current_root()
    rel = f"{STORE_DIR}/{sha256}.onnx"
    if root is not None and exists(join(root, rel)):
        return OnnxEncoder(join(root, rel), providers=prov, batch_size=bs, sha256=sha256)
    if root is None:
        hit, _ = _from_caller_roots(rel, sha256, prov, bs)
        if hit is not None:
            return hit
    raise ModelNotFoundError(
        f"No ONNX model at {path!r} (sha256 {sha256}). The table's embedding function was configured with this path; "
        "restore the file there, or re-point the table at a copy (checked by sha256): "
        "hashplug.relocate_model(table, 'path/or/uri/of/model.onnx')."
    )


def upgrade_config(kwargs: dict[str, Any]) -> dict[str, Any]:
    """0.1.0 configs (``code="dense" | "sparse"``, ``sha256=``) in today's names (``layout``, ``file_sha256``)."""
    from .arrow import _layout_arg

    kw = dict(kwargs)
    if "sha256" in kw:
        old = kw.pop("sha256")
        if kw.get("file_sha256") not in (None, old):
            raise HashplugError("pass file_sha256= only (sha256= is its 0.1.0 name).")
        kw["file_sha256"] = old
    if "code" in kw:  # tables written by 0.1.0 keep opening, with a DeprecationWarning
        kw["layout"] = _layout_arg(kw.get("layout"), kw.pop("code"), "the hashplug embedding function")
    return kw
