"""Translate a :class:`hashplug.graph.Graph` (an encoder's inference) into an ONNX model.

Training side: imports ``onnx``. There is no per-encoder export code: :func:`graph_model` walks the graph's
nodes and asks each op's emitter (:mod:`hashplug.export.onnx_ops`, one per op class) and the head's emitter
for the ONNX nodes. Every graph input becomes an ONNX input of the same name, float32 of shape
(N, *shape) with N dynamic. An encoder's model (:func:`build_model`) has

* input ``x``: float32 of shape (N, *input_shape);
* output ``packed``: uint8 of shape (N, ceil(m/8)) in ``np.packbits`` (big) bit order;
* output ``indices`` (k-hot encoders only): int64 of shape (N, k), ascending;

and the model card (:mod:`hashplug.modelcard`) in its ``metadata_props``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_write
from ..codes import packed_to_indices, unpack_bits
from ..graph import Graph
from ..modelcard import INPUT_NAME, ModelCard, is_hashplug_metadata
from ..validation import (
    HashplugError,
    HashplugTypeError,
    ModelFileError,
    ModelNotFoundError,
    check_array,
    check_path,
)
from .onnx_ops import Builder, emitter_for, find_fusions, head_emitter_for

__all__ = [
    "to_onnx",
    "build_model",
    "graph_model",
    "read_metadata",
    "check_parity",
    "seal_model",
    "DEFAULT_OPSET",
    "SUPPORTED_OPSETS",
]

DEFAULT_OPSET = 18
SUPPORTED_OPSETS = range(13, 23)


def _check_opset(opset: int) -> int:
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or int(opset) not in SUPPORTED_OPSETS:
        raise HashplugError(
            f"opset must be in [{SUPPORTED_OPSETS.start}, {SUPPORTED_OPSETS.stop - 1}]; got {opset}."
        )
    return int(opset)


def graph_model(
    graph: Graph,
    *,
    opset: int = DEFAULT_OPSET,
    name: str = "hashplug",
    doc_string: str = "",
    metadata: dict[str, str] | None = None,
    producer_version: str = "",
) -> Any:
    """Build the ``onnx.ModelProto`` of a graph (no model card unless ``metadata`` is given).

    Parameters
    ----------
    graph : Graph
        Inputs become ONNX inputs of the same names, float32 (N, *shape).
    opset : int
        ONNX default-domain opset (13 to 22).
    name, doc_string : str
        Graph name and model doc string.
    metadata : dict of str to str or None
        ``metadata_props`` (e.g. ``ModelCard.to_metadata()``).
    producer_version : str
        Recorded as the producer version (producer ``hashplug``).

    Returns
    -------
    onnx.ModelProto
        Outputs are the head's (``packed``, and ``indices`` for k-hot) or, for a graph without head, its
        float32 output value under the graph's output name. Checked with ``onnx.checker.check_model``.
    """
    import onnx
    from onnx import TensorProto, helper

    b = Builder(_check_opset(opset))
    names = {n: n for n in graph.inputs}
    fused = find_fusions(graph)
    inside = {j for _, group in fused.values() for j in group[1:]}
    for i, node in enumerate(graph.nodes):
        if i in inside:  # emitted with its group's first node
            continue
        if i in fused:
            fusion, group = fused[i]
            names[graph.nodes[group[-1]].output] = fusion.emit(b, graph, group, names)
            continue
        emit = emitter_for(node.op)
        names[node.output] = emit(b, node.op, [names[v] for v in node.inputs], [graph.shapes[v] for v in node.inputs])
    scores = names[graph.output]
    if graph.head is not None:
        outputs = head_emitter_for(graph.head)(b, graph.head, scores, graph.m)
    else:
        out_name = graph.output if graph.output not in graph.inputs else f"{graph.output}_out"
        b.node("Identity", [scores], out=[out_name])
        outputs = [
            helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["N", *graph.shapes[graph.output]])
        ]
    nodes, inits = _prune(b.nodes, b.inits, [o.name for o in outputs])
    g = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", *s]) for n, s in graph.inputs.items()],
        outputs,
        initializer=inits,
    )
    opsets = [helper.make_opsetid("", b.opset)]
    model = helper.make_model(
        g,
        opset_imports=opsets,
        producer_name="hashplug",
        producer_version=producer_version,
        ir_version=helper.find_min_ir_version_for(opsets),
        doc_string=doc_string,
    )
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    if metadata and is_hashplug_metadata(metadata):
        seal_model(model)
    return model


def _prune(nodes: list[Any], inits: list[Any], outputs: list[str]) -> tuple[list[Any], list[Any]]:
    """The nodes and initializers the outputs depend on, in their order (emitters may leave values unread,
    e.g. the channels-first copy of a map whose readers took its channels-last twin)."""
    needed = set(outputs)
    keep = []
    for node in reversed(nodes):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    return keep[::-1], [t for t in inits if t.name in needed]


def seal_model(model: Any) -> Any:
    """Write ``hashplug.digest`` into a model's metadata (in place; returns the model).

    The digest (:func:`hashplug._onnx_wire.model_digest`) covers every ``hashplug.*`` key and every other
    top-level field of the model (graph, weights, opsets, producer), so :class:`~hashplug.runtime.OnnxEncoder`
    refuses a file whose weights or card were changed afterwards. Call it last, after every other change.
    """
    from .._onnx_wire import DIGEST_KEY, model_digest, parse_model

    keep = [p for p in model.metadata_props if p.key != DIGEST_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    summ = parse_model(model.SerializeToString())
    entry = model.metadata_props.add()
    entry.key = DIGEST_KEY
    entry.value = model_digest(summ.metadata, summ.digest_fields)
    return model


def build_model(encoder: Any, *, opset: int = DEFAULT_OPSET, doc_string: str | None = None) -> Any:
    """Build (but do not save) the ``onnx.ModelProto`` of a fitted encoder.

    Parameters
    ----------
    encoder : BaseEncoder
        A fitted hashplug encoder; only its :attr:`graph` (a :class:`~hashplug.graph.Graph` with one input
        ``x`` and a head, or several named inputs for an encoder with ``input_defaults``), ``method_name``,
        ``weights_sha256()`` and ``input_defaults`` are used.
    opset : int
        ONNX default-domain opset (13 to 22).
    doc_string : str or None
        Free text stored in the model.

    Returns
    -------
    onnx.ModelProto
        Checked with ``onnx.checker.check_model``.
    """
    from ..encoders.base import BaseEncoder

    _check_opset(opset)
    # a fitted hashplug encoder, or any object with the same three members (a graph, method_name,
    # weights_sha256()); None, arrays, torch modules and the like are refused with the right call
    duck = all(hasattr(type(encoder), a) or hasattr(encoder, a) for a in ("graph", "method_name", "weights_sha256"))
    if not isinstance(encoder, BaseEncoder) and not duck:
        raise HashplugTypeError(
            f"to_onnx/build_model export a fitted hashplug encoder (e.g. hashplug.get_encoder('lsh', k=16).fit(X)); "
            f"got {type(encoder).__name__} {encoder!r:.60}. Export a torch network with export_module(module, path, "
            "input_shape)."
        )
    graph = encoder.graph
    if not isinstance(graph, Graph):
        raise HashplugError(f"encoder.graph must be a hashplug.graph.Graph; got {type(graph).__name__}.")
    single = list(graph.inputs) == [INPUT_NAME]
    named = INPUT_NAME not in graph.inputs and getattr(encoder, "input_defaults", None) is not None
    if graph.head is None or not (single or named):
        raise HashplugError(
            f"an encoder's graph needs a head and one input {INPUT_NAME!r} (or, for encoders with several named "
            f"inputs, none named {INPUT_NAME!r} and an 'input_defaults' mapping on the encoder); this graph has "
            f"inputs {list(graph.inputs)} and head {graph.head!r}. Export other graphs with graph_model(graph)."
        )
    for node in graph.nodes:  # an op without emitter is named before the card rejects its unknown name
        emitter_for(node.op)
    card = ModelCard.from_graph(
        graph,
        method=encoder.method_name,
        weights_sha256=encoder.weights_sha256(),
        input_defaults=getattr(encoder, "input_defaults", None),
        input_domains=getattr(encoder, "input_domains", None),
    )
    return graph_model(
        graph,
        opset=opset,
        name=f"hashplug_{card.method}",
        doc_string=doc_string or f"hashplug {card.method} encoder: m={card.m}, k={card.k}, {card.code_kind} codes.",
        metadata=card.to_metadata(),
        producer_version=card.hashplug_version,
    )


def to_onnx(
    encoder: Any, path: str | Path, *, opset: int = DEFAULT_OPSET, doc_string: str | None = None
) -> Path:
    """Export a fitted encoder to an ONNX file.

    Parameters
    ----------
    encoder : BaseEncoder
        A fitted hashplug encoder.
    path : str or Path
        Destination; ``.onnx`` is appended when the name has no suffix. Parent folders are created.
    opset : int
        ONNX opset (default 18: from 18 on, BioConvHash's filter banks pool with one max-scatter).
    doc_string : str or None
        Free text stored in the model.

    Returns
    -------
    Path
        The file written.
    """
    path = check_path(path, "path", "to_onnx")
    if doc_string is not None and not isinstance(doc_string, str):
        raise HashplugTypeError(f"to_onnx: doc_string must be a str or None; got {type(doc_string).__name__}.")
    return save_model(build_model(encoder, opset=opset, doc_string=doc_string), path)


def save_model(model: Any, path: str | Path) -> Path:
    """Write an ``onnx.ModelProto`` atomically (``.onnx`` appended when the name has no suffix; parent folders
    created); returns the path written."""
    from .._onnx_wire import verify_model_bytes

    path = check_path(path, "path", "save_model")
    if path.is_dir():
        raise ModelFileError(f"{str(path)!r} is a folder; pass the path of the .onnx file to write.")
    if not path.suffix:
        path = path.with_suffix(".onnx")
    data = model.SerializeToString()
    if is_hashplug_metadata({p.key: p.value for p in model.metadata_props}):
        verify_model_bytes(data, source=path)  # the validator every reader runs: never write what it refuses
    if path.is_dir():
        raise ModelFileError(f"{str(path)!r} is a folder; pass the path of the .onnx file to write.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: f.write(data))  # a concurrent reader never sees a half-written file
    except OSError as exc:
        raise ModelFileError(
            f"cannot write the ONNX file {str(path)!r} ({exc.strerror}); pass a path in a writable folder."
        ) from None
    return path


def read_metadata(path: str | Path) -> ModelCard:
    """Read and validate the model card of an ONNX file (training side; loads with ``onnx``)."""
    from .._onnx_wire import verify_model_file

    path = check_path(path, "path", "read_metadata")
    if not path.is_file() and not path.exists():
        raise ModelNotFoundError(f"No ONNX file at {str(path)!r}; export one with hashplug.export.to_onnx(encoder, path).")
    return verify_model_file(path)[0]


def check_parity(
    encoder: Any, onnx_path: str | Path, X: Any, *, batch_size: int = 8192, rtol: float = 1e-5
) -> dict[str, Any]:
    """Compare ``encoder.encode`` (numpy) with the ONNX file run by onnxruntime on the same inputs.

    Parameters
    ----------
    encoder : BaseEncoder
        The fitted encoder that was exported.
    onnx_path : str or Path
        The exported file.
    X : array-like of shape (n, *input_shape)
        Inputs.
    batch_size : int
        Rows per call on both sides.
    rtol : float
        Relative tolerance (to the row's largest absolute score) under which a differing unit counts as a
        float-rounding tie: its score is that close to the decision threshold (0 for dense codes, the k-th
        largest score for k-hot codes).

    Returns
    -------
    dict
        ``method``, ``m``, ``k``, ``n_rows`` compared, ``rows_differing`` and ``bits_differing`` (packed codes),
        ``indices_rows_differing`` (k-hot only, else None), ``rows_differing_at_ties`` (differing rows whose
        every differing unit is a near-tie, i.e. explained by float32 rounding), ``weights_sha256_match`` and
        ``identical`` (bool: no differing row and matching weights digest).
    """
    from collections.abc import Mapping

    from ..runtime import OnnxEncoder

    Xc = dict(X) if isinstance(X, Mapping) else check_array(X, ndim=None, owner="check_parity")
    onx = OnnxEncoder(onnx_path, batch_size=batch_size)
    m, k = encoder.graph.m, encoder.graph.k  # the fitted sizes (m_, k_), not the parameters
    if (onx.m, onx.k, onx.code_kind) != (m, k, encoder.code_kind):
        raise HashplugError(
            f"{str(onnx_path)!r} encodes m={onx.m}, k={onx.k}, {onx.code_kind}; the encoder has "
            f"m={m}, k={k}, {encoder.code_kind}."
        )
    ref = encoder.encode(Xc, layout="packed", batch_size=batch_size)
    got = onx.encode(Xc, layout="packed")
    xor = ref ^ got
    diff_rows = np.flatnonzero(np.any(xor, axis=1))
    idx_rows = None
    if encoder.code_kind == "khot":
        # encode(layout="indices") is the packed code's set bits: derive it instead of running the graph again
        ref_i = packed_to_indices(ref, m, k)
        idx_rows = int(np.any(ref_i != onx.encode(Xc, layout="indices"), axis=1).sum())
    at_ties = 0
    if diff_rows.size:
        rows = {nm: np.asarray(v)[diff_rows] for nm, v in Xc.items()} if isinstance(Xc, dict) else Xc[diff_rows]
        sc = encoder.scores(rows).astype(np.float64)
        if encoder.code_kind == "khot":
            thr = -np.partition(-sc, k - 1, axis=1)[:, k - 1 : k]
        else:
            thr = np.zeros((sc.shape[0], 1))
        tol = rtol * np.maximum(np.abs(sc).max(axis=1, keepdims=True), 1e-30)
        bad = unpack_bits(xor[diff_rows], m)
        near = np.abs(sc - thr) <= tol
        at_ties = int(np.all(near | ~bad, axis=1).sum())
    sha_ok = onx.weights_sha256 == encoder.weights_sha256()
    return {
        "method": onx.card.method,
        "m": onx.m,
        "k": onx.k,
        "n_rows": int(ref.shape[0]),
        "rows_differing": int(diff_rows.size),
        "bits_differing": int(unpack_bits(xor, 8 * xor.shape[1]).sum()),
        "indices_rows_differing": idx_rows,
        "rows_differing_at_ties": at_ties,
        "weights_sha256_match": bool(sha_ok),
        "identical": bool(diff_rows.size == 0 and not idx_rows and sha_ok),
    }
