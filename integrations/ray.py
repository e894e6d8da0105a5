"""hashplug on Ray Data and Lance: encode a Ray ``Dataset``, write a hashplug table through Lance's Ray sink,
backfill codes into an existing table fragment by fragment, and build LanceDB's IVF_FLAT Hamming index with
Ray workers. Install with ``pip install 'hashplug[ray]'`` (ray, lance-ray, pylance; no torch).

:func:`encode_dataset`
    ``ds.map_batches`` with one actor class that holds one ONNX session per worker; each batch goes through
    :func:`hashplug.integrations.arrow.encode_batch`, the pure function :func:`hashplug.ingest` uses, so the
    code column has exactly the Arrow type the LanceDB integration writes (``fixed_size_list<uint8>[n_bytes]``
    packed, or ``list<int32>`` indices). Sources: ``fixed_size_list``, equal-length ``list``,
    ``fixed_shape_tensor`` and Ray's tensor columns (``ray.data.from_numpy``).
:func:`write_table`
    The encoded dataset written through Lance's Ray sink with hashplug's schema
    (:func:`hashplug.integrations.lancedb.schema`): workers write data files, the driver makes **one** commit
    at the end, so a failed job (a bad row, a dead worker, a killed driver) commits nothing and the table stays
    at its previous version. The commit carries ``job_id`` in its transaction properties: a rerun of a job
    that did commit finds it and writes nothing, so every row is written exactly once.
:func:`backfill`
    Adds the code column to a Lance / LanceDB table written without codes: one Ray actor call per fragment
    (``LanceFragment.merge_columns``), each finished fragment recorded in a done-list (JSON, atomic writes)
    so a rerun after a failure or a killed driver computes only the fragments left; one ``Merge`` commit adds
    the column, then the driver stamps the embedding function into the schema metadata (after the merge: a
    concurrent metadata update can race the merge).
:func:`create_lancedb_index`
    LanceDB's ``IVF_FLAT`` index with Hamming distance, built by Ray workers (``lance_ray.create_index``).
:func:`load_model`
    The one place a model reference becomes an embedding function, on the driver; the workers open the same
    file and hold it to the driver's sha256 (:mod:`hashplug.integrations.workers`, which imports no LanceDB:
    an actor starts 1.5 s sooner).
:func:`local_ray`
    A local Ray cluster for a script or a test (short temporary folder, removed afterwards).

Ranking is never done by ``lance_ray.vector_search``: lance-ray <= 0.5.0's flat fallback counts differing
*bytes*, not bits. Search the result with :func:`hashplug.search` (LanceDB's Hamming distance, bits).

Serving side: pyarrow, LanceDB, Lance, Ray and :class:`hashplug.runtime.OnnxEncoder` only (never torch, onnx
or scikit-learn); Ray, lance-ray and pylance are imported inside the functions that use them.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..validation import HashplugError, HashplugTypeError, IngestError, ModelMismatchError, check_int_param
from .arrow import normalize_layout
from .function import HashplugEmbeddings
from .ingest import _atomic_write, _TableLock
from .tables import check_column_name, code_field, schema
from .workers import _ROWADDR, _BackfillActor, _EncodeActor, _need, _open_lance

__all__ = [
    "encode_dataset",
    "write_table",
    "backfill",
    "create_lancedb_index",
    "load_model",
    "local_ray",
    "table_uri",
    "WriteResult",
    "BackfillResult",
    "JOB_PROPERTY",
]

#: The transaction property in which :func:`write_table` records its ``job_id`` (Lance keeps it with the
#: commit, atomically).
JOB_PROPERTY = "hashplug.job_id"
#: Columns ``lance_ray.read_lance(..., with_metadata=True)`` adds; never written to a table.
_META_COLS = (_ROWADDR, "_fragid")
_BACKFILL_VERSION = 1


# ---------------------------------------------------------------------------------------------------- the model
def load_model(
    model: Any, *, layout: str | None = None, file_sha256: str | None = None
) -> HashplugEmbeddings:
    """The embedding function of a model reference: the one place the driver loads a model (the workers open
    the same file by :func:`hashplug.integrations.workers.worker_model`, held to the driver's sha256).

    Parameters
    ----------
    model : str, PathLike, OnnxEncoder or HashplugEmbeddings
        The ONNX file (by path for now: every worker must see the file at that path), an encoder opened on
        it, or the function itself.
    layout : {"packed", "indices"} or None
        Code layout (default ``"packed"``, or the function's own).
    file_sha256 : str or None
        The sha256 the file must have (the workers get the driver's, so a worker that sees another file at
        the same path fails with :class:`~hashplug.validation.ModelMismatchError` instead of writing other
        codes).

    Returns
    -------
    HashplugEmbeddings
    """
    if isinstance(model, HashplugEmbeddings):
        if layout is not None and normalize_layout(layout, owner="load_model") != model.layout:
            raise ModelMismatchError(
                f"layout={layout!r} differs from the function's own layout {model.layout!r}; leave it out."
            )
        return model
    from lancedb.embeddings import get_registry

    path = getattr(model, "path", model)  # an OnnxEncoder or a path
    if not isinstance(path, (str, os.PathLike)):
        raise HashplugTypeError(
            f"model must be the path of a hashplug ONNX file (or an OnnxEncoder / hashplug function); got "
            f"{type(model).__name__} {model!r:.60}."
        )
    kwargs: dict[str, Any] = {"model": str(path)}
    if layout is not None:
        kwargs["layout"] = normalize_layout(layout, owner="load_model")
    if file_sha256 is not None:
        kwargs["file_sha256"] = file_sha256
    return get_registry().get("hashplug").create(**kwargs)


def _model_ref(func: HashplugEmbeddings) -> dict[str, Any]:
    """What travels to the workers: the model's path, its sha256 and the layout (plain, picklable)."""
    return {"model": func.model, "file_sha256": func.encoder.file_sha256, "layout": func.layout}


# ---------------------------------------------------------------------------------------------------- locations
def table_uri(uri: str | os.PathLike, name: str) -> str:
    """The Lance dataset of table ``name`` in the LanceDB database at ``uri``: ``<uri>/<name>.lance``."""
    check_column_name(name, "name", "hashplug.integrations.ray")  # a plain name: no separators, no '..'
    text = os.fspath(uri)
    if "://" in text:
        return text.rstrip("/") + f"/{name}.lance"
    return str(Path(text).expanduser().resolve() / f"{name}.lance")


def _committed_job(ds: Any, job_id: str) -> int | None:
    """The version whose commit carries ``job_id`` (:data:`JOB_PROPERTY`), or None."""
    for v in sorted((int(x["version"]) for x in ds.versions()), reverse=True):
        try:
            tx = ds.read_transaction(v)
        except Exception:  # noqa: BLE001 - a version whose transaction file was cleaned up
            continue
        if tx is not None and (tx.transaction_properties or {}).get(JOB_PROPERTY) == job_id:
            return v
    return None


def _check_resources(concurrency: int, num_cpus: float, writers: int, owner: str) -> None:
    """Refuse actor settings that leave a one-node cluster no CPU for the Lance write tasks (Ray then waits
    forever: two 1-CPU actors on a 2-CPU machine)."""
    ray = _need("ray")
    if not ray.is_initialized() or len([n for n in ray.nodes() if n.get("Alive")]) != 1:
        return  # a cluster of several nodes (or one that autoscales) is Ray's to schedule
    total = float(ray.cluster_resources().get("CPU", 0))
    need = concurrency * float(num_cpus) + writers
    if total and need > total:
        raise HashplugError(
            f"{owner}: concurrency={concurrency} actors of num_cpus={num_cpus} CPU"
            + (" plus a Lance write task (1 CPU)" if writers else "")
            + f" need {need:g} CPUs, but this one-node Ray cluster has {total:g}: Ray would wait forever. Pass "
            f"fractional CPUs (e.g. num_cpus={max(0.1, (total - writers) / max(concurrency, 1)):.2g}) or a "
            "smaller concurrency."
        )


def _dataset_schema(ds: Any) -> pa.Schema | None:
    """The dataset's pyarrow schema when Ray knows it without running the dataset (else None)."""
    try:
        sch = ds.schema(fetch_if_missing=False)
    except TypeError:  # an older Ray without fetch_if_missing
        sch = None
    if sch is None:
        return None
    base = getattr(sch, "base_schema", sch)
    return base if isinstance(base, pa.Schema) else None


def _map_args(batch_size: int, concurrency: int, num_cpus: float, num_gpus: float, owner: str) -> dict[str, Any]:
    batch_size = check_int_param(batch_size, "batch_size", owner, 1)
    concurrency = check_int_param(concurrency, "concurrency", owner, 1)
    for name, v in (("num_cpus", num_cpus), ("num_gpus", num_gpus)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
            raise HashplugError(f"{owner}: {name} must be a number >= 0 (fractions allowed); got {v!r}.")
    if num_cpus == 0 and num_gpus == 0:
        raise HashplugError(f"{owner}: num_cpus and num_gpus are both 0; an actor needs some resource.")
    args: dict[str, Any] = {"batch_format": "pyarrow", "batch_size": batch_size, "concurrency": concurrency,
                            "num_cpus": num_cpus}
    if num_gpus:
        args["num_gpus"] = num_gpus
    return args


def _map(ds: Any, ctor_args: tuple[Any, ...], args: dict[str, Any]) -> Any:
    """``ds.map_batches`` over a pool of ``args["concurrency"]`` :class:`_EncodeActor`; the mapped dataset's own
    context raises the worker's exception itself (Ray Data otherwise replaces it by ``UserCodeException``, losing
    the row a hashplug error names)."""
    ray_data = _need("ray.data")
    kw = {k: v for k, v in args.items() if k != "concurrency"}
    out = ds.map_batches(_EncodeActor, fn_constructor_args=ctor_args,
                         compute=ray_data.ActorPoolStrategy(size=args["concurrency"]), **kw)
    ctx = getattr(out, "context", None)
    if ctx is not None and hasattr(ctx, "raise_original_map_exception"):
        ctx.raise_original_map_exception = True  # this dataset's copy of the context, not the user's
    return out


def encode_dataset(
    ds: Any,
    model: Any,
    *,
    source: str = "vector",
    target: str = "code",
    layout: str | None = None,
    batch_size: int = 4096,
    concurrency: int = 1,
    num_cpus: float = 1,
    num_gpus: float = 0,
    id_column: str | None = None,
) -> Any:
    """A Ray ``Dataset`` with a code column: ``ds.map_batches`` over actors holding one ONNX session each.

    Lazy, as Ray Data is: nothing runs until the dataset is consumed (written, iterated, materialized).

    Parameters
    ----------
    ds : ray.data.Dataset
        Has the ``source`` column: samples as ``fixed_size_list`` (nested for images), equal-length
        ``list``, ``fixed_shape_tensor`` or Ray tensor columns (``ray.data.from_numpy`` names its column
        ``"data"``: pass ``source="data"``).
    model : str, PathLike, OnnxEncoder or HashplugEmbeddings
        The ONNX file (every worker opens it at this path and checks its sha256 against the driver's).
    source, target : str
        The sample column and the code column (replaced if present).
    layout : {"packed", "indices"} or None
        ``"packed"`` codes as ``fixed_size_list<uint8>[n_bytes]`` (default), ``"indices"`` the k active units
        of a k-hot model as ``list<int32>``.
    batch_size : int
        Rows per batch handed to an actor.
    concurrency : int
        Actors (each holds one session).
    num_cpus, num_gpus : float
        Resources per actor; fractions allowed (two actors on a 2-CPU machine need ``num_cpus=0.5`` or less
        to leave room for the tasks that write).
    id_column : str or None
        A column naming rows in error messages (default ``"id"`` when the dataset has one; a Lance source read
        with ``lance_ray.read_lance(..., with_metadata=True)`` is named by its row addresses).

    Returns
    -------
    ray.data.Dataset
        The input's columns (the code column replaced or appended last). A bad row (null, NaN, wrong width)
        fails the job with :class:`~hashplug.validation.IngestError` naming where it comes from.
    """
    owner = "encode_dataset"
    _need("ray.data")
    check_column_name(source, "source", owner)
    check_column_name(target, "target", owner)
    func = load_model(model, layout=layout)
    args = _map_args(batch_size, concurrency, num_cpus, num_gpus, owner)
    sch = _dataset_schema(ds)
    if sch is not None and source not in sch.names:
        raise HashplugError(f"{owner}: the dataset has no source column {source!r}; its columns: {sch.names}.")
    if id_column is None and sch is not None and "id" in sch.names:
        id_column = "id"
    _check_resources(args["concurrency"], num_cpus, 0, owner)
    return _map(ds, (_model_ref(func), source, target, id_column), args)


# ---------------------------------------------------------------------------------------------------- write_table
@dataclass
class WriteResult:
    """What :func:`write_table` did.

    Attributes
    ----------
    uri : str
        The table's Lance dataset (``<database>/<name>.lance``).
    version : int
        The table's version after the call.
    rows_written : int
        Rows this call committed (0 when ``job_id`` had committed already).
    job_id : str or None
    already_committed : bool
        ``job_id`` was found in the table's history: an earlier run committed it, nothing was written.
    """

    uri: str
    version: int
    rows_written: int
    job_id: str | None
    already_committed: bool


_SINKS: dict[str, type] = {}


def _sink_class() -> type:
    """A ``lance_ray`` datasink whose one commit, made by the driver after every worker finished, carries the
    job id, under the table's lock, after checking that no earlier run committed the same job."""
    if "sink" in _SINKS:
        return _SINKS["sink"]
    import pickle

    lance = _need("lance")
    datasink = _need("lance_ray.datasink")

    class HashplugLanceSink(datasink.LanceDatasink):
        job_id: str | None = None
        committed: tuple[int, int] | None = None  # (version, rows)

        def on_write_complete(self, write_result: Any) -> None:
            returns = getattr(write_result, "write_returns", write_result) or []
            fragments, sch = [], None
            for part in returns:
                for frag, frag_schema in part:
                    fragments.append(pickle.loads(frag))  # noqa: S301 - written by this job's own workers
                    sch = pickle.loads(frag_schema)  # noqa: S301
            if sch is None:
                sch = self.schema
            rows = sum(int(f.physical_rows) for f in fragments)
            if self.mode == "append":
                op = lance.LanceOperation.Append(fragments)
            else:
                op = lance.LanceOperation.Overwrite(sch, fragments)
            props = {JOB_PROPERTY: self.job_id} if self.job_id else {}
            with _TableLock(self.uri) as lock:
                try:
                    current = _open_lance(self.uri)
                    if self.job_id and current is not None:
                        done = _committed_job(current, self.job_id)
                        if done is not None:
                            raise _AlreadyCommitted(done)
                    if self.mode == "create" and current is not None:
                        raise HashplugError(
                            f"write_table: the table at {self.uri!r} was created by another writer while this job ran; "
                            "nothing was committed."
                        )
                    tx = lance.Transaction(int(self.read_version or 0), op, transaction_properties=props)
                    out = lance.LanceDataset.commit(self.uri, tx, storage_options=self.storage_options or None)
                finally:
                    lock.close()
            self.committed = (int(out.version), rows)

    _SINKS["sink"] = HashplugLanceSink
    return HashplugLanceSink


class _AlreadyCommitted(Exception):
    """Raised inside the commit when ``job_id`` is already in the table's history (caught by write_table)."""

    def __init__(self, version: int) -> None:
        super().__init__(f"job already committed at version {version}")
        self.version = version


def _find(exc: BaseException, kind: type) -> BaseException | None:
    """The first exception of ``kind`` in ``exc``'s chain (Ray wraps a worker's error: ``RayTaskError.cause``,
    ``UserCodeException`` and ``__cause__``)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        cause = getattr(e, "cause", None)
        if isinstance(e, kind):
            return cause if isinstance(cause, kind) else e  # RayTaskError(X).cause: the worker's own X
        todo += [cause, e.__cause__, e.__context__]
    return None


def _text(exc: BaseException) -> str:
    """A hashplug error's own message (Ray appends lines about its retry settings to a worker's error)."""
    text = str(exc.args[0]) if exc.args else str(exc)
    return text.split("\n", 1)[0]


def _own_class(exc: BaseException) -> type:
    """The hashplug error class of ``exc`` (not Ray's ``RayTaskError(...)`` wrapper class)."""
    return next(c for c in type(exc).__mro__ if c.__module__ == HashplugError.__module__)


def _version_text(ds: Any) -> str:
    return "no table was created" if ds is None else f"the table stays at version {ds.version}"


def _columns(ds: Any, known: pa.Schema | None) -> Any:
    """The dataset's columns: ``known`` when given, else what Ray knows without running the dataset, else
    what Ray learns by running its first block (once per call: the caller keeps the result)."""
    sch = known if known is not None else _dataset_schema(ds)
    if sch is None:
        sch = ds.schema()
        sch = getattr(sch, "base_schema", sch)
    return sch


def _table_schema(func: HashplugEmbeddings, sch: Any, source: str, target: str, source_type: str,
                  db: Any = None) -> pa.Schema:
    """hashplug's schema for a new table: the dataset's other columns (``sch``: :func:`_columns`), the source,
    the code column."""
    if not isinstance(sch, pa.Schema):
        raise HashplugError("write_table: the dataset's schema is not known (an empty dataset?); nothing was written.")
    if source not in sch.names:
        raise HashplugError(f"write_table: the dataset has no source column {source!r}; its columns: {sch.names}.")
    extra = [pa.field(f.name, f.type) for f in sch if f.name not in (source, target, *_META_COLS)]
    bad = [f"{f.name} ({f.type})" for f in extra if isinstance(f.type, pa.ExtensionType)]
    if bad:
        raise HashplugError(
            f"write_table: columns {bad} are extension types LanceDB does not read back as such; convert them "
            "(e.g. to fixed_size_list) before writing. Nothing was written."
        )
    # db=: the model goes into the database's store and the table names it relative to the database
    return schema(func, source=source, target=target, source_type=source_type, extra=extra, db=db)


def write_table(
    ds: Any,
    uri: str | os.PathLike,
    name: str,
    model: Any,
    *,
    mode: str = "create",
    job_id: str | None = None,
    source: str = "vector",
    target: str = "code",
    layout: str | None = None,
    source_type: str = "list",
    batch_size: int = 4096,
    concurrency: int = 1,
    num_cpus: float = 1,
    num_gpus: float = 0,
    id_column: str | None = None,
    min_rows_per_file: int = 131_072,
    max_rows_per_file: int = 64 * 1024 * 1024,
    schema: pa.Schema | None = None,
) -> WriteResult:
    """Encode a Ray ``Dataset`` and write it as a hashplug table, in one commit.

    Ray workers encode (:func:`encode_dataset`: one actor, one session) and write Lance data files; the driver
    then commits them all at once (``lance_ray``'s sink, hashplug's schema with the embedding function in its
    metadata), so the result opens in LanceDB as a hashplug table: ``hashplug.search(db.open_table(name), x)``
    and ``table.search(hashplug.Query(x))`` work, in any process that sees the model file.

    A bad row (null, NaN, infinity, wrong width) fails the job with
    :class:`~hashplug.validation.IngestError` naming its source position (its ``id_column`` value, or its Lance
    row address), and nothing is committed: the table stays at its previous version (``mode="create"``: no
    table). ``job_id`` makes reruns safe: it is committed with the rows (a Lance transaction property), and a
    rerun that finds it in the table's history writes nothing, so every row is written exactly once, whether
    the first run failed before its commit (the rerun writes it all) or was killed after it (the rerun is a
    no-op).

    Parameters
    ----------
    ds : ray.data.Dataset
        The rows: the ``source`` column (as :func:`encode_dataset` takes it) and any other columns (ids,
        labels, ...), which are stored as they are.
    uri : str or PathLike
        The LanceDB database (a folder or an object-store URI); the table is ``<uri>/<name>.lance``.
    name : str
        The table name.
    model : str, PathLike, OnnxEncoder or HashplugEmbeddings
        The ONNX file (by path: every worker opens it there and checks its sha256 against the driver's).
    mode : {"create", "append", "overwrite"}
        ``"create"`` refuses an existing table; ``"append"`` adds to a hashplug table of the same model (its
        column types and model sha256 are checked first) and needs ``job_id``; ``"overwrite"`` replaces the
        table's rows in one commit (older versions stay readable until cleaned up).
    job_id : str or None
        The job's name, recorded with its commit; required for ``"append"`` (a rerun of an append without it
        could not tell its rows were committed).
    source, target, layout, batch_size, concurrency, num_cpus, num_gpus, id_column
        As in :func:`encode_dataset`.
    source_type : {"list", "fixed"}
        How a new table stores the samples (:func:`hashplug.integrations.lancedb.schema`): flat
        ``list<float32>`` (default) or ``fixed_size_list<float32>``.
    min_rows_per_file, max_rows_per_file : int
        Rows per Lance data file: a write task gathers at least ``min_rows_per_file`` rows (bounded memory per
        write task: ~0.4 GB of MNIST-sized rows at the default) and splits files above ``max_rows_per_file``.
    schema : pyarrow.Schema or None
        The dataset's columns (names and types), when the caller knows them. Ray knows a dataset's schema
        without running it for sources such as ``from_arrow``, but not after a ``map_batches``: there
        ``write_table`` would run the dataset's first block (starting its actors) once just to learn the
        columns of a new table. Given here, the new table's columns come from it. Every batch the job encodes
        must carry exactly these columns (Ray's metadata columns aside): one that lacks a column fails the job,
        and so does one that carries a column the table does not have; nothing is committed either way.

    Returns
    -------
    WriteResult

    Raises
    ------
    IngestError
        A bad row; nothing committed.
    HashplugError
        Bad arguments, an existing table for ``mode="create"``, a table of another model for ``"append"``
        (checked before anything runs), or a job that failed in Ray (nothing committed).
    """
    owner = "write_table"
    _need("ray.data")
    _need("lance_ray")
    if mode not in ("create", "append", "overwrite"):
        raise HashplugError(f"{owner}: mode must be 'create', 'append' or 'overwrite'; got {mode!r}.")
    if job_id is not None and (not isinstance(job_id, str) or not job_id.strip()):
        raise HashplugTypeError(f"{owner}: job_id must be a non-empty str (the job's name); got {job_id!r:.60}.")
    if mode == "append" and job_id is None:
        raise HashplugError(
            f"{owner}: mode='append' needs job_id= (a name for this job, e.g. 'import-2024-06-01'): it is committed "
            "with the rows, so a rerun after a failure or a killed driver can tell whether they are in the table "
            "and never adds them twice."
        )
    check_column_name(source, "source", owner)
    check_column_name(target, "target", owner)
    path = table_uri(uri, name)
    func = load_model(model, layout=layout)
    if func.encoder.card.multi_input:
        raise HashplugError(
            f"{owner}: {func.model!r} takes named inputs (a struct source column); write_table stores one sample "
            "column. Encode with encode_dataset and write with hashplug.ingest, or write the rows without codes "
            "and use hashplug.ingest / hashplug.add. Nothing was written."
        )
    if schema is not None and not isinstance(schema, pa.Schema):
        raise HashplugTypeError(
            f"{owner}: schema must be a pyarrow.Schema of the dataset's columns (e.g. pa.schema([('id', pa.int64()), "
            f"('vector', pa.list_(pa.float32(), 64))])) or None; got {type(schema).__name__}. Nothing was written."
        )
    args = _map_args(batch_size, concurrency, num_cpus, num_gpus, owner)
    before = _open_lance(path)
    if before is not None and job_id is not None:
        done = _committed_job(before, job_id)
        if done is not None:
            return WriteResult(path, int(before.version), 0, job_id, True)
    if mode == "create" and before is not None:
        raise HashplugError(
            f"{owner}: table {name!r} already exists at {path!r}; pass mode='append' (with job_id=) to add rows, or "
            "mode='overwrite' to replace them. Nothing was written."
        )
    if mode == "append":
        if before is None:
            raise HashplugError(f"{owner}: mode='append' but there is no table {name!r} at {path!r}; use mode='create'.")
        out_schema = _append_schema(uri, name, func, target)
    else:
        columns = _columns(ds, schema)  # the dataset's columns, learned once for both schemas below
        out_schema = _table_schema(func, columns, source, target, source_type)
    if source not in out_schema.names:
        raise HashplugError(f"{owner}: the table has no source column {source!r}; its columns: {out_schema.names}.")
    if id_column is None and "id" in out_schema.names:
        id_column = "id"
    _check_resources(args["concurrency"], num_cpus, 1, owner)
    sch = schema if schema is not None else _dataset_schema(ds)
    drop = [] if sch is None else [c for c in sch.names if c not in out_schema.names and c not in _META_COLS]
    if drop:
        raise HashplugError(
            f"{owner}: the dataset's columns {drop} are not in table {name!r} (its columns: {out_schema.names}); "
            "select the table's columns first (ds.select_columns([...])). Nothing was written."
        )
    if mode != "append":  # after every check (a refused call writes nothing): the model into the database's store
        out_schema = _table_schema(func, columns, source, target, source_type, db=uri)
    encoded = _map(ds, (_model_ref(func), source, target, id_column, out_schema, _META_COLS), args)
    min_rows = check_int_param(min_rows_per_file, "min_rows_per_file", owner, 1)
    max_rows = check_int_param(max_rows_per_file, "max_rows_per_file", owner, min_rows)
    sink = _sink_class()(path, schema=out_schema, mode=mode, max_rows_per_file=max_rows, min_rows_per_file=min_rows)
    sink.job_id = job_id
    if mode == "overwrite" and before is not None:
        sink.read_version = int(before.version)
    failure: BaseException | WriteResult | None = None
    try:
        encoded.write_datasink(sink)
    except Exception as exc:  # a dying driver (KeyboardInterrupt, SystemExit) goes through untouched
        failure = _write_failure(exc, path, job_id, before, owner)
    if failure is not None:
        # Ray frees a failed job's actors (and their CPUs) only once nothing refers to the job any more: the
        # worker's exception and its traceback hold it, so they are dropped before the error is raised
        del encoded, sink
        gc.collect()
        if isinstance(failure, WriteResult):
            return failure
        raise failure
    if sink.committed is None:  # an empty dataset: Ray made no write, nothing to commit
        now = _open_lance(path)
        return WriteResult(path, int(now.version) if now is not None else 0, 0, job_id, False)
    return WriteResult(path, sink.committed[0], sink.committed[1], job_id, False)


def _write_failure(exc: Exception, path: str, job_id: str | None, before: Any, owner: str) -> BaseException | WriteResult:
    """What a failed Ray write becomes: the result of a job an earlier run committed, or hashplug's error (the
    row a worker named, the table's version), holding no reference to Ray's exception."""
    if _find(exc, _AlreadyCommitted) is not None:
        return WriteResult(path, int(_open_lance(path).version), 0, job_id, True)
    after = _open_lance(path)
    if before is None and after is None:
        _remove_uncommitted(path)
    state = _version_text(after if before is not None else None)
    bad = _find(exc, IngestError)
    if bad is not None:
        return IngestError(f"{_text(bad)} Nothing was committed: {state}.", row=getattr(bad, "row", None))
    hp = _find(exc, HashplugError)
    if hp is not None:
        return _own_class(hp)(f"{_text(hp)} Nothing was committed: {state}.")
    return HashplugError(f"{owner}: the Ray job failed ({type(exc).__name__}: {str(exc)[:2000]}); nothing was "
                         f"committed: {state}.")


def _append_schema(uri: Any, name: str, func: HashplugEmbeddings, target: str) -> pa.Schema:
    """The schema of the existing table ``name``, after checking it is a hashplug table of ``func``'s model."""
    import lancedb

    from .tables import check_table

    tbl = lancedb.connect(os.fspath(uri)).open_table(name)
    col, _, _ = check_table(tbl, func)
    if col != target:
        raise HashplugError(f"write_table: the table's code column is {col!r}, not target={target!r}.")
    return tbl.schema


def _remove_uncommitted(path: str) -> None:
    """Remove the data files a failed ``mode="create"`` job left in a folder that never got a version (local
    folders only; on object storage they stay unreferenced, as after any failed Lance write)."""
    if "://" in path:
        return
    p = Path(path)
    if p.is_dir() and not (p / "_versions").exists():
        import shutil

        shutil.rmtree(p, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------- backfill
@dataclass
class BackfillResult:
    """What :func:`backfill` did.

    Attributes
    ----------
    uri : str
        The table's Lance dataset.
    version : int
        The table's version after the call.
    fragments_encoded : int
        Fragments encoded by this call.
    fragments_resumed : int
        Fragments a previous, interrupted run had encoded (taken from its done-list).
    already_done : bool
        The table had the code column already (nothing encoded; the metadata stamped if it was missing).
    """

    uri: str
    version: int
    fragments_encoded: int
    fragments_resumed: int
    already_done: bool


def _default_checkpoint(path: str) -> Path | None:
    return None if "://" in path else Path(path.rstrip("/") + ".hashplug-backfill.json")


def _read_done_list(ckpt: Path | None, identity: dict[str, Any]) -> dict[str, str]:
    """Fragments an interrupted run finished (id -> fragment JSON), when its done-list is for this very backfill
    (same table version, model, columns); another backfill's list is ignored (its files stay unreferenced)."""
    if ckpt is None or not ckpt.is_file():
        return {}
    try:
        state = json.loads(ckpt.read_text())
    except (OSError, ValueError) as exc:
        raise HashplugError(f"backfill: the done-list {str(ckpt)!r} cannot be read ({exc}); delete it to start over.") from None
    if not isinstance(state, dict) or state.get("format") != _BACKFILL_VERSION or not isinstance(state.get("fragments"), dict):
        raise HashplugError(f"backfill: {str(ckpt)!r} is not a hashplug backfill done-list; pass another checkpoint= path.")
    if {k: state.get(k) for k in identity} != identity:
        return {}  # another backfill (or the table changed since): start over
    return {str(k): str(v) for k, v in state["fragments"].items()}


def backfill(
    uri: str | os.PathLike,
    model: Any,
    *,
    name: str | None = None,
    source: str = "vector",
    target: str = "code",
    layout: str | None = None,
    batch_size: int = 4096,
    concurrency: int = 1,
    num_cpus: float = 1,
    num_gpus: float = 0,
    checkpoint: str | os.PathLike | None = None,
) -> BackfillResult:
    """Add the code column to an existing Lance / LanceDB table written without codes.

    Each fragment is encoded by a Ray actor (one ONNX session each) into new data files; every finished
    fragment goes into a done-list (JSON, written atomically); one ``Merge`` commit then adds the column to
    every fragment at once, and the driver stamps the embedding function into the table's schema metadata,
    so the table opens in LanceDB as a hashplug table. A rerun after a failure or a killed driver encodes only
    the fragments the done-list lacks (when the table is still at the version the list was made from); a
    rerun after the commit only stamps what is missing. Idempotent: a table that has the column already is
    checked and left as it is.

    Parameters
    ----------
    uri : str or PathLike
        The LanceDB database (with ``name``) or the table's ``.lance`` dataset itself.
    model : str, PathLike, OnnxEncoder or HashplugEmbeddings
        The ONNX file (by path: every worker opens it there; its sha256 is checked against the driver's).
    name : str or None
        The table, when ``uri`` is a database.
    source, target : str
        The sample column and the new code column.
    layout : {"packed", "indices"} or None
        Code layout (default ``"packed"``).
    batch_size : int
        Rows per encoded batch inside a fragment.
    concurrency : int
        Actors encoding fragments at once.
    num_cpus, num_gpus : float
        Resources per actor (fractions allowed).
    checkpoint : path-like or None
        The done-list (default ``<table>.lance.hashplug-backfill.json`` beside a local table; on object
        storage give a local path, or reruns start over).

    Returns
    -------
    BackfillResult

    Raises
    ------
    IngestError
        A bad row, named by fragment and row; nothing committed (the table stays at its version), the
        fragments finished so far stay in the done-list.
    """
    owner = "backfill"
    _need("ray")
    lance = _need("lance")
    check_column_name(source, "source", owner)
    check_column_name(target, "target", owner)
    path = table_uri(uri, name) if name is not None else _lance_path(uri)
    func = load_model(model, layout=layout)
    concurrency = check_int_param(concurrency, "concurrency", owner, 1)
    args = _map_args(batch_size, concurrency, num_cpus, num_gpus, owner)
    ds = _open_lance(path)
    if ds is None:
        raise HashplugError(f"{owner}: there is no Lance table at {path!r}.")
    if source not in ds.schema.names:
        raise HashplugError(f"{owner}: the table has no source column {source!r}; its columns: {ds.schema.names}.")
    ckpt = Path(checkpoint) if checkpoint is not None else _default_checkpoint(path)
    if target in ds.schema.names:
        version = _stamp(ds, func, source, target)
        if ckpt is not None and ckpt.is_file():
            ckpt.unlink()
        return BackfillResult(path, version, 0, 0, True)
    identity = {"format": _BACKFILL_VERSION, "table": path, "table_version": int(ds.version),
                "model_sha256": func.encoder.file_sha256, "layout": func.layout, "source": source, "target": target}
    done = _read_done_list(ckpt, identity)
    frag_ids = [int(f.fragment_id) for f in ds.get_fragments()]
    resumed = {k: v for k, v in done.items() if int(k) in frag_ids}
    todo = [f for f in frag_ids if str(f) not in resumed]
    if not todo and frag_ids:
        todo, resumed = [frag_ids[0]], {k: v for k, v in resumed.items() if int(k) != frag_ids[0]}  # the schema
    _check_resources(concurrency, num_cpus, 0, owner)
    lance_schema, new = _encode_fragments(ds, path, func, todo, resumed, identity, ckpt, source, target,
                                          args, num_gpus)
    fragments = [lance.fragment.FragmentMetadata.from_json(v) for _, v in sorted(
        {**resumed, **new}.items(), key=lambda kv: int(kv[0]))]
    if lance_schema is None:  # a table without fragments
        sch = pa.schema([*ds.schema, code_field(func, target)], metadata=ds.schema.metadata)
        lance_schema = lance.schema.LanceSchema.from_pyarrow(sch)
    lance.LanceDataset.commit(path, lance.LanceOperation.Merge(fragments, lance_schema), read_version=int(ds.version))
    version = _stamp(_open_lance(path), func, source, target)
    if ckpt is not None and ckpt.is_file():
        ckpt.unlink()
    return BackfillResult(path, version, len(new), len(resumed), False)


def _lance_path(uri: Any) -> str:
    text = os.fspath(uri)
    if not text.rstrip("/").endswith(".lance"):
        raise HashplugError(
            f"backfill: {text!r} is not a '<name>.lance' table; pass the database and name=, or the table's path."
        )
    return text if "://" in text else str(Path(text).expanduser().resolve())


def _encode_fragments(ds: Any, path: str, func: HashplugEmbeddings, todo: list[int], resumed: dict[str, str],
                      identity: dict[str, Any], ckpt: Path | None, source: str, target: str, args: dict[str, Any],
                      num_gpus: float) -> tuple[Any, dict[str, str]]:
    """Encode the fragments ``todo`` on a pool of actors; record each in the done-list as it finishes.

    Returns the new schema (from the workers) and ``{fragment id: fragment JSON}`` of this run."""
    ray = _need("ray")
    from ray.util import ActorPool

    opts: dict[str, Any] = {"num_cpus": args["num_cpus"]}
    if num_gpus:
        opts["num_gpus"] = num_gpus
    cls = ray.remote(**opts)(_BackfillActor)
    field = code_field(func, target)
    actors = [cls.remote(_model_ref(func), path, int(ds.version), source, target, args["batch_size"], field)
              for _ in range(min(args["concurrency"], max(len(todo), 1)))]
    new: dict[str, str] = {}
    lance_schema = None
    try:
        for fid, meta, sch in ActorPool(actors).map_unordered(lambda a, f: a.merge.remote(f), todo):
            new[str(fid)] = meta
            lance_schema = sch
            if ckpt is not None:
                _atomic_write(ckpt, {**identity, "fragments": {**resumed, **new}})
    except Exception as exc:
        bad = _find(exc, IngestError)
        state = f"the table stays at version {ds.version}; {len(resumed) + len(new)} of {len(resumed) + len(todo)} "
        state += "fragments are done and kept in the done-list" if ckpt is not None else "fragments were done"
        if bad is not None:
            raise IngestError(f"{_text(bad)} Nothing was committed: {state}.", row=getattr(bad, "row", None)) from None
        raise HashplugError(f"backfill: the Ray job failed ({type(exc).__name__}: {str(exc)[:2000]}); nothing was "
                            f"committed: {state}.") from exc
    finally:
        for a in actors:
            ray.kill(a)
    return lance_schema, new


def _stamp(ds: Any, func: HashplugEmbeddings, source: str, target: str) -> int:
    """Check the code column and record the embedding function in the table's schema metadata (from the
    driver, after the merge); returns the table's version. Nothing is written when it is there already."""
    field = ds.schema.field(target)
    if field.type != func.arrow_type():
        raise ModelMismatchError(
            f"backfill: the table's column {target!r} is {field.type}, but the model writes {func.arrow_type()}; "
            "nothing was changed."
        )
    from lancedb.embeddings import EmbeddingFunctionConfig, get_registry

    # the model goes into the database's store, named relative to it: the table travels with its folder
    func = func.for_database(os.path.dirname(str(ds.uri).rstrip("/")))
    meta = {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
            for k, v in (ds.schema.metadata or {}).items()}
    ours = json.loads(get_registry().get_table_metadata(
        [EmbeddingFunctionConfig(source_column=source, vector_column=target, function=func)]
    )["embedding_functions"])
    current = json.loads(meta.get("embedding_functions", "[]") or "[]")
    have = [c for c in current if c.get("vector_column") == target]
    if have:
        recorded = (have[0].get("model") or {}).get("file_sha256")
        if have[0].get("name") != "hashplug" or recorded not in (None, func.encoder.file_sha256):
            raise ModelMismatchError(
                f"backfill: column {target!r} is recorded with another embedding function or model "
                f"({have[0].get('name')!r}, file sha256 {recorded}); nothing was changed."
            )
        return int(ds.version)
    merged = [c for c in current if c.get("vector_column") != target] + ours
    ds.update_schema_metadata({"embedding_functions": json.dumps(merged)})
    return int(_open_lance(ds.uri).version)


# ---------------------------------------------------------------------------------------------------- a local cluster
@contextlib.contextmanager
def local_ray(num_cpus: int | None = None) -> Iterator[Path | None]:
    """A local Ray cluster for a script, an example or a test: started, then shut down and its files removed.

    Ray keeps its session files (and its sockets) under a temporary folder; a socket's path must stay under
    107 characters, which a deep temp dir (a test's) exceeds, so the folder is made where it stays short
    (the system temp dir, or ``/tmp``). Progress bars are off. A cluster already running is used as it is
    (and left running): one this process is connected to, or the one the ``RAY_ADDRESS`` environment variable
    names (Ray's own convention; ``num_cpus`` is then the cluster's, not this call's).

    Parameters
    ----------
    num_cpus : int or None
        CPUs of the cluster (default: this machine's).

    Yields
    ------
    pathlib.Path or None
        Ray's temporary folder (removed on exit); None when a cluster was running already.
    """
    ray = _need("ray")
    _need("ray.data")
    if ray.is_initialized():
        yield None
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False, configure_logging=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        try:
            yield None
        finally:
            ray.shutdown()  # this driver's connection; the cluster keeps running
        return
    import shutil
    import tempfile

    base = tempfile.gettempdir()
    folder = Path(tempfile.mkdtemp(prefix="ray-", dir=base if len(base) <= 30 else "/tmp"))
    try:
        with warnings.catch_warnings():
            # Ray starts its processes with fork + exec, which LanceDB's fork hook warns about although nothing
            # of LanceDB runs in the child before the exec
            warnings.filterwarnings("ignore", message="lancedb fork support is experimental", category=RuntimeWarning)
            ray.init(num_cpus=int(num_cpus or os.cpu_count() or 2), include_dashboard=False, _temp_dir=str(folder),
                     log_to_driver=False, configure_logging=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        yield folder
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------- the index
def create_lancedb_index(
    uri: str | os.PathLike,
    name: str,
    *,
    column: str | None = None,
    num_partitions: int | None = None,
    num_workers: int = 2,
    replace: bool = True,
) -> int:
    """LanceDB's ``IVF_FLAT`` index with Hamming distance on a packed code column, built by Ray workers.

    The distributed counterpart of :func:`hashplug.integrations.lancedb.create_lancedb_index` for tables too
    large for one machine to index (``lance_ray.create_index``: the workers train and assign partitions,
    the driver commits the index); :func:`hashplug.search` uses it (``nprobes=`` to trade recall for speed;
    ``exact=True`` ignores it).

    Parameters
    ----------
    uri : str or PathLike
        The LanceDB database.
    name : str
        The table.
    column : str or None
        The code column (default: the table's hashplug column).
    num_partitions : int or None
        IVF partitions (default ``sqrt(rows)``, at most 4096 and at most ``rows / 256``: Lance samples 256 rows
        per partition to train the centroids).
    num_workers : int
        Ray workers building the index.
    replace : bool
        Replace an existing index on the column.

    Returns
    -------
    int
        The table's version after the index commit.
    """
    import lancedb

    lance_ray = _need("lance_ray")
    from .tables import get_function

    tbl = lancedb.connect(os.fspath(uri)).open_table(name)
    col, _, func = get_function(tbl, column)
    if func.layout != "packed":
        raise HashplugError(
            "create_lancedb_index (Ray): layout='indices' tables take a LABEL_LIST index, which LanceDB builds on one "
            "node: use hashplug.integrations.lancedb.create_lancedb_index(table)."
        )
    num_workers = check_int_param(num_workers, "num_workers", "create_lancedb_index", 1)
    n = tbl.count_rows()
    # Lance trains the centroids on 256 sampled rows per partition: never ask for more partitions than that allows
    parts = num_partitions or max(1, min(4096, int(np.sqrt(max(n, 1))), n // 256))
    out = lance_ray.create_index(table_uri(uri, name), col, "IVF_FLAT", metric="hamming", num_partitions=int(parts),
                                 num_workers=num_workers, replace=bool(replace))
    return int(out.version)

