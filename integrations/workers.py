"""The Ray workers of :mod:`hashplug.integrations.ray`: the actors that encode batches and fragments.

A Ray actor is a fresh process that imports the module of its class. This module imports pyarrow, numpy,
onnxruntime (through :class:`hashplug.runtime.OnnxEncoder`) and hashplug's Arrow and model-store helpers only:
not LanceDB, whose import took 1.5 s of every actor's start (1.73 s for ``hashplug.integrations.ray`` against
0.23 s for this module's imports, measured 2026-12-07). pylance is imported by the backfill actor when it
opens a fragment. The driver checks the model once (:func:`hashplug.integrations.ray.load_model`, LanceDB's
embedding function); a worker opens the same file and checks it by the driver's sha256
(:func:`worker_model`, the same checks as the function's, :func:`hashplug.integrations.store.check_model`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ..validation import HashplugError, IngestError
from .arrow import column_to_numpy, encode_batch
from .store import check_model, resolve_encoder

#: The Lance row address column: ``fragment id << 32 | row offset``.
_ROWADDR = "_rowaddr"
_EXTRA = "hashplug[ray]"


def _need(module: str) -> Any:
    """Import ``module`` (ray, ray.data, lance, lance_ray) or say which extra brings it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"hashplug.integrations.ray needs {module.split('.')[0]!r} ({exc}); install the extra: "
            f"pip install '{_EXTRA}' (ray[data], lance-ray, pylance; no torch)."
        ) from exc


def worker_model(ref: dict[str, Any]) -> tuple[Any, str]:
    """``(OnnxEncoder, layout)`` of a driver's model reference (``{"model", "file_sha256", "layout"}``, what
    :func:`hashplug.integrations.ray.load_model` checked): the file found as the driver's function finds it
    (:func:`~hashplug.integrations.store.resolve_encoder`) and held to the driver's sha256, so a worker that
    sees another file at the same path fails with :class:`~hashplug.validation.ModelMismatchError` instead of
    writing other codes."""
    enc = resolve_encoder(ref["model"], ref["file_sha256"])
    check_model(enc, ref["model"], file_sha256=ref["file_sha256"], layout=ref["layout"])
    return enc, ref["layout"]


def _open_lance(path: str, version: int | None = None) -> Any:
    """The Lance dataset at ``path`` (at ``version``), or None when there is none."""
    lance = _need("lance")
    try:
        return lance.dataset(path, version=version)
    except (ValueError, FileNotFoundError, OSError) as exc:
        if "not found" in str(exc).lower() or "does not exist" in str(exc).lower() or isinstance(exc, FileNotFoundError):
            return None
        raise


def _position(batch: pa.Table, row: int | None, id_column: str | None) -> str:
    """Where row ``row`` of ``batch`` comes from: its Lance row address, its id, or its place in the batch."""
    if row is None:  # the error is about the column (its width, its type), not one row
        first = "" if batch.num_rows == 0 else f" starting at {_position(batch, 0, id_column)}"
        return f"the batch of {batch.num_rows} rows{first} (the whole column, not one row)"
    if _ROWADDR in batch.column_names:
        addr = int(batch.column(_ROWADDR)[row].as_py())
        return f"fragment {addr >> 32}, row {addr & 0xFFFFFFFF} (row address {addr})"
    if id_column is not None and id_column in batch.column_names:
        return f"the row with {id_column}={batch.column(id_column)[row].as_py()!r} (row {row} of its batch)"
    return (f"row {row} of a batch of {batch.num_rows} rows (give the dataset an id column, or pass id_column=, "
            "to have rows named by it)")


class _EncodeActor:
    """One Ray actor: one model (one onnxruntime session), called on pyarrow batches.

    The model is opened by :func:`worker_model` from the driver's reference and checked against the driver's
    sha256. With ``out_schema`` (what :func:`write_table` writes) the source column is stored flat as the
    schema declares and every column is cast to its declared type; without it (:func:`encode_dataset`) the
    batch keeps its columns and gains the code column.
    """

    def __init__(self, ref: dict[str, Any], source: str, target: str, id_column: str | None,
                 out_schema: pa.Schema | None = None, drop: Sequence[str] = ()) -> None:
        self.encoder, self.layout = worker_model(ref)
        self.source, self.target, self.id_column = source, target, id_column
        self.out_schema, self.drop = out_schema, list(drop)
        self.shape = tuple(int(s) for s in self.encoder.input_shape)

    def __call__(self, batch: pa.Table) -> pa.Table:
        if not isinstance(batch, pa.Table):
            batch = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else pa.table(batch)
        try:
            if self.out_schema is not None:  # validated and stored flat, as the table declares it
                flat = column_to_numpy(batch.column(self.source), (int(np.prod(self.shape)),),
                                       name=f"column {self.source!r}")
                vec = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])
                batch = batch.set_column(batch.column_names.index(self.source), self.source, vec)
            out = pa.Table.from_batches([encode_batch(batch, self.encoder, source=self.source, target=self.target,
                                                      layout=self.layout)])
        except HashplugError as exc:
            row = getattr(exc, "row", None)
            err = IngestError(f"hashplug.integrations.ray: bad row at {_position(batch, row, self.id_column)}: {exc}",
                              row=row)
            raise err from None
        if self.drop:
            out = out.drop_columns([c for c in self.drop if c in out.column_names])
        if self.out_schema is not None:
            extra = [c for c in out.column_names if c not in self.out_schema.names]
            if extra:  # never dropped quietly: the caller's data would be lost
                raise HashplugError(
                    f"hashplug.integrations.ray: the dataset's columns {extra} are not in the table (its columns: "
                    f"{self.out_schema.names}); select the table's columns first (ds.select_columns([...]))."
                )
            out = _conform(out, self.out_schema)
        return out


def _conform(t: pa.Table, sch: pa.Schema) -> pa.Table:
    """``t`` with the columns of ``sch``, in its order and types (a cast error names the column)."""
    cols = []
    for f in sch:
        if f.name not in t.column_names:
            raise HashplugError(f"hashplug.integrations.ray: the batch has no column {f.name!r} that the table declares.")
        try:
            cols.append(t.column(f.name).cast(f.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise HashplugError(
                f"hashplug.integrations.ray: column {f.name!r} ({t.column(f.name).type}) cannot be stored as "
                f"{f.type}: {exc}"
            ) from None
    return pa.Table.from_arrays(cols, schema=sch)


class _BackfillActor:
    """One Ray actor: one model (one onnxruntime session); encodes whole fragments of one table version into new data
    files (``LanceFragment.merge_columns``), committed later by the driver."""

    def __init__(self, ref: dict[str, Any], path: str, version: int, source: str, target: str,
                 batch_size: int, code_field_: pa.Field) -> None:
        self.encoder, self.layout = worker_model(ref)
        self.path, self.version, self.source, self.target = path, version, source, target
        self.batch_size, self.field = batch_size, code_field_

    def merge(self, fragment_id: int) -> tuple[int, str, Any]:
        ds = _open_lance(self.path, self.version)
        frag = ds.get_fragment(int(fragment_id))
        out_schema = pa.schema([self.field])

        failed: list[IngestError] = []

        def udf(batch: pa.RecordBatch) -> pa.RecordBatch:
            try:
                out = encode_batch(batch, self.encoder, source=self.source, target=self.target, layout=self.layout)
            except HashplugError as exc:
                row = getattr(exc, "row", None)
                t = pa.Table.from_batches([batch])
                failed.append(IngestError(
                    f"hashplug.integrations.ray.backfill: bad row at {_position(t, row, None)}: {exc}", row=row))
                raise failed[-1] from None
            return pa.RecordBatch.from_arrays([out.column(self.target)], schema=out_schema)

        try:
            meta, lance_schema = frag.merge_columns(udf, columns=[self.source, _ROWADDR], batch_size=self.batch_size)
        except Exception:
            if failed:  # Lance hands the UDF's error back as a ValueError of its text: raise the error itself
                raise failed[-1] from None
            raise
        return int(fragment_id), json.dumps(meta.to_json()), lance_schema
