"""The one check of an ONNX file's bytes before anything runs it (standard library + numpy only).

The serving side has no ``onnx`` package and onnxruntime cannot list a graph's initializers, so this module
reads the protobuf wire format itself: only the fields hashplug needs (``ModelProto.graph``,
``opset_import``, ``metadata_props``; ``GraphProto.node`` / ``initializer`` / ``output``;
``NodeProto.op_type`` / ``domain`` / ``attribute``; ``TensorProto`` data location; ``ValueInfoProto`` shapes).

:func:`verify_model_bytes` is the validator every path that opens an ONNX file uses
(:class:`hashplug.runtime.OnnxEncoder`, ``hashplug.export.read_metadata``, and the exporters on the file
they have just written). It returns the validated :class:`~hashplug.modelcard.ModelCard` or raises
:class:`~hashplug.validation.ModelFileError` naming the file, what is wrong and what to do:

* size: at most ``max_bytes`` (default :data:`DEFAULT_MAX_BYTES`);
* structure: a well-formed ModelProto; no local functions, training info, sparse or external initializers,
  no subgraph attributes;
* operators: only the default ONNX domain (``""`` / ``"ai.onnx"``) and only :data:`ALLOWED_OPS`, the ops
  hashplug's emitters (``hashplug.export.onnx_ops``) and the torch export of its networks
  (``hashplug.export.module_export``) write, or :data:`MODULE_OPS`, the standard feed-forward ops a user's
  own torch backbone may export to; control flow (``Loop``, ``If``, ``Scan``), sequence, optional and random
  ops never are;
* outputs: ``packed`` uint8 (N, n_bytes) and, for k-hot codes, ``indices`` int64 (N, k), as the card says;
* digest: files written by this hashplug carry ``hashplug.digest`` (:func:`model_digest`), a sha256 over
  every ``hashplug.*`` metadata key (method, m, k, weights_sha256, preprocessing, ...) and every other
  top-level field of the model (the graph with its weights and nodes, the opsets, the producer); a file
  whose weights or card were changed without recomputing it is refused. Files written before the digest
  existed (hashplug 0.1.0 exports) have no ``hashplug.digest``: they get every other check above, and
  their weights cannot be verified (``OnnxEncoder.integrity == "legacy"``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .validation import ModelFileError

__all__ = [
    "ALLOWED_OPS",
    "ALLOWED_DOMAINS",
    "DEFAULT_MAX_BYTES",
    "DIGEST_KEY",
    "ModelSummary",
    "parse_model",
    "model_digest",
    "verify_model_bytes",
    "verify_model_file",
]

#: The metadata key holding :func:`model_digest`.
DIGEST_KEY = "hashplug.digest"
_DIGEST_TAG = b"hashplug-digest/1\x00"

#: Largest ONNX file opened (bytes): 1 GiB (hashplug's largest encoders are a few tens of MB).
DEFAULT_MAX_BYTES = 1 << 30

#: Operator domains hashplug writes (the default ONNX domain).
ALLOWED_DOMAINS = frozenset({"", "ai.onnx"})

#: Every ONNX op hashplug writes: the emitters of ``hashplug.export.onnx_ops`` (one per graph op and head) and
#: what ``torch.onnx.export`` writes for hashplug's networks (the digit CNN, a backbone with a linear hashing
#: layer) in ``hashplug.export.module_export``. ``tests/test_model_contract.py`` checks that every registered
#: encoder's export stays inside it. Control flow (Loop, If, Scan) and everything else is refused.
ALLOWED_OPS = frozenset(
    {
        # hashplug.export.onnx_ops
        "Add", "Cast", "Concat", "ConstantOfShape", "Conv", "Cos", "Div", "Flatten", "Gather", "Greater", "Identity",
        "MatMul", "Max", "MaxPool", "Mul", "NonZero", "Pad", "ReduceL2", "ReduceSum", "Relu", "Reshape", "ScatterElements",
        "Shape", "Sin", "Sqrt", "TopK", "Transpose", "Where",
        # torch.onnx.export of hashplug's networks (module_export)
        "Constant", "Gemm", "ReduceMean",
    }
)

#: Standard feed-forward ops that ``torch.onnx.export`` writes for users' own backbones
#: (``hashplug.export.module_export``, MIHash on any ``torch.nn.Module``): pure tensor functions with no
#: subgraph, no loop, no sequence or optional values and no randomness, so their cost is bounded by their
#: input shapes. Accepted beside :data:`ALLOWED_OPS`; control flow (``Loop``, ``If``, ``Scan``), sequence,
#: optional and random ops, and every other op or domain are refused.
MODULE_OPS = frozenset(
    {
        "Abs", "And", "ArgMax", "ArgMin", "AveragePool", "BatchNormalization", "Ceil", "Celu", "Clip",
        "ConvTranspose", "CumSum", "DepthToSpace", "Dropout", "Einsum", "Elu", "Equal", "Erf", "Exp", "Expand",
        "Floor", "Gather", "GatherElements", "GatherND", "Gelu", "GlobalAveragePool", "GlobalMaxPool",
        "GreaterOrEqual", "GroupNormalization", "HardSigmoid", "HardSwish", "InstanceNormalization", "LRN",
        "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual", "Log", "LogSoftmax", "Min", "Mish", "Mod", "Neg",
        "Not", "Or", "PRelu", "Pow", "Reciprocal", "ReduceLogSumExp", "ReduceMax", "ReduceMin", "ReduceProd",
        "ReduceSumSquare", "ReduceL1", "Resize", "Round", "Selu", "Shrink", "Sigmoid", "Sign", "Size", "Slice",
        "Softmax", "Softplus", "Softsign", "SpaceToDepth", "Split", "Squeeze", "Sub", "Sum", "Tan", "Tanh",
        "ThresholdedRelu", "Tile", "Trilu", "Unsqueeze", "Xor", "Mean", "Acos", "Asin", "Atan", "Cosh", "Sinh",
        "Acosh", "Asinh", "Atanh", "IsNaN", "IsInf", "Hardmax", "LpNormalization", "MeanVarianceNormalization",
        "CastLike", "Upsample",
    }
)

# ONNX TensorProto element types used by the outputs
_UINT8, _INT64 = 2, 7
_ELEM_NAMES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 11: "float64"}


class _WireError(Exception):
    """Malformed protobuf bytes (turned into a ModelFileError naming the file)."""


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _WireError(f"truncated or overlong varint at byte {pos}")
        b = buf[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        if b < 0x80:
            return out, pos
        shift += 7


def _fields(buf: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int, Any, int, int]]:
    """``(field number, wire type, value, field start, field end)`` of one message in ``buf[start:end]``.

    ``value`` is an int (varint), a ``(start, end)`` slice of ``buf`` (length-delimited) or the raw bytes
    (fixed 32 / 64 bit).
    """
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        f0 = pos
        key, pos = _varint(buf, pos, end)
        fno, wt = key >> 3, key & 7
        if fno == 0:
            raise _WireError(f"field number 0 at byte {f0}")
        if wt == 0:
            val, pos = _varint(buf, pos, end)
        elif wt == 2:
            n, pos = _varint(buf, pos, end)
            if pos + n > end:
                raise _WireError(f"field {fno} at byte {f0} runs past the end of its message")
            val, pos = (pos, pos + n), pos + n
        elif wt == 1:
            if pos + 8 > end:
                raise _WireError(f"truncated fixed64 at byte {f0}")
            val, pos = buf[pos : pos + 8], pos + 8
        elif wt == 5:
            if pos + 4 > end:
                raise _WireError(f"truncated fixed32 at byte {f0}")
            val, pos = buf[pos : pos + 4], pos + 4
        else:
            raise _WireError(f"unsupported wire type {wt} at byte {f0}")
        yield fno, wt, val, f0, pos


def _text(buf: bytes, span: Any) -> str:
    if not isinstance(span, tuple):
        raise _WireError("a string field is not length-delimited")
    try:
        return bytes(buf[span[0] : span[1]]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _WireError(f"a string field is not UTF-8 ({exc})") from None


def _span(val: Any) -> tuple[int, int]:
    if not isinstance(val, tuple):
        raise _WireError("a message field is not length-delimited")
    return val


@dataclass
class ModelSummary:
    """What :func:`parse_model` read from a ModelProto.

    Attributes
    ----------
    metadata : dict of str to str
        ``metadata_props``.
    opsets : list of (str, int)
        ``opset_import`` (domain, version).
    ops : list of (str, str)
        (domain, op_type) of every graph node, in order.
    initializers : list of (str, int, tuple of int)
        (name, element type, dims) of every initializer.
    outputs : dict of str to (int, list)
        Graph outputs: element type and dims (an int, a symbolic name or None per axis).
    problems : list of str
        Structures hashplug never writes (functions, subgraphs, external data, ...).
    digest_fields : list of bytes
        The raw bytes of every top-level field but ``metadata_props``, in file order (hashed by the digest).
    """

    metadata: dict[str, str] = field(default_factory=dict)
    opsets: list[tuple[str, int]] = field(default_factory=list)
    ops: list[tuple[str, str]] = field(default_factory=list)
    initializers: list[tuple[str, int, tuple[int, ...]]] = field(default_factory=list)
    outputs: dict[str, tuple[int, list[Any]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    digest_fields: list[bytes] = field(default_factory=list)


def _parse_tensor(buf: bytes, s: int, e: int, out: ModelSummary) -> None:
    name, dtype, dims = "", 0, []
    for fno, _wt, val, _a, _b in _fields(buf, s, e):
        if fno == 1:
            if isinstance(val, tuple):  # packed repeated int64
                p = val[0]
                while p < val[1]:
                    d, p = _varint(buf, p, val[1])
                    dims.append(d)
            else:
                dims.append(int(val))
        elif fno == 2 and isinstance(val, int):
            dtype = val
        elif fno == 8:
            name = _text(buf, val)
        elif fno == 13 or (fno == 14 and val == 1):
            out.problems.append(f"initializer {name or '?'!r} keeps its data in an external file")
    out.initializers.append((name, dtype, tuple(dims)))


def _parse_node(buf: bytes, s: int, e: int, out: ModelSummary) -> None:
    op_type, domain = "", ""
    for fno, _wt, val, _a, _b in _fields(buf, s, e):
        if fno == 4:
            op_type = _text(buf, val)
        elif fno == 7:
            domain = _text(buf, val)
        elif fno == 5:
            a0, a1 = _span(val)
            for afno, _awt, aval, _c, _d in _fields(buf, a0, a1):
                if afno in (6, 11) or (afno == 20 and aval in (5, 10)):
                    out.problems.append(f"node {op_type or '?'!r} has a subgraph attribute")
                    break
    out.ops.append((domain, op_type))


def _parse_value_info(buf: bytes, s: int, e: int) -> tuple[str, int, list[Any]]:
    name, elem, dims = "", 0, []
    for fno, _wt, val, _a, _b in _fields(buf, s, e):
        if fno == 1:
            name = _text(buf, val)
        elif fno == 2:  # TypeProto
            t0, t1 = _span(val)
            for tfno, _twt, tval, _c, _d in _fields(buf, t0, t1):
                if tfno != 1:  # tensor_type only
                    continue
                u0, u1 = _span(tval)
                for ufno, _uwt, uval, _f, _g in _fields(buf, u0, u1):
                    if ufno == 1 and isinstance(uval, int):
                        elem = uval
                    elif ufno == 2:
                        h0, h1 = _span(uval)
                        for hfno, _hwt, hval, _i, _j in _fields(buf, h0, h1):
                            if hfno != 1:
                                continue
                            d0, d1 = _span(hval)
                            dim: Any = None
                            for dfno, _dwt, dval, _k, _l in _fields(buf, d0, d1):
                                if dfno == 1 and isinstance(dval, int):
                                    dim = dval
                                elif dfno == 2:
                                    dim = _text(buf, dval)
                            dims.append(dim)
    return name, elem, dims


def _parse_graph(buf: bytes, s: int, e: int, out: ModelSummary) -> None:
    for fno, _wt, val, _a, _b in _fields(buf, s, e):
        if fno == 1:
            _parse_node(buf, *_span(val), out)
        elif fno == 5:
            _parse_tensor(buf, *_span(val), out)
        elif fno == 12:
            name, elem, dims = _parse_value_info(buf, *_span(val))
            out.outputs[name] = (elem, dims)
        elif fno == 15:
            out.problems.append("the graph has sparse initializers")


def parse_model(data: bytes) -> ModelSummary:
    """Read the parts of a serialized ``onnx.ModelProto`` that hashplug checks (raises ``ValueError`` on
    malformed bytes)."""
    out = ModelSummary()
    graphs = 0
    try:
        for fno, _wt, val, a, b in _fields(data):
            if fno != 14:
                out.digest_fields.append(bytes(data[a:b]))
            if fno == 7:
                graphs += 1
                _parse_graph(data, *_span(val), out)
            elif fno == 8:
                domain, version = "", 0
                for ofno, _owt, oval, _c, _d in _fields(data, *_span(val)):
                    if ofno == 1:
                        domain = _text(data, oval)
                    elif ofno == 2 and isinstance(oval, int):
                        version = oval
                out.opsets.append((domain, version))
            elif fno == 14:
                key = value = ""
                for mfno, _mwt, mval, _c, _d in _fields(data, *_span(val)):
                    if mfno == 1:
                        key = _text(data, mval)
                    elif mfno == 2:
                        value = _text(data, mval)
                out.metadata[key] = value
            elif fno == 20:
                out.problems.append("the model has training info")
            elif fno == 25:
                out.problems.append("the model defines local functions")
    except _WireError as exc:
        raise ValueError(str(exc)) from None
    if graphs != 1:
        raise ValueError(f"a model has exactly one graph; this one has {graphs}")
    return out


def model_digest(metadata: dict[str, str], digest_fields: list[bytes]) -> str:
    """sha256 binding the card to the model: every ``hashplug.*`` metadata key but the digest itself (sorted,
    as JSON), then every top-level field of the ModelProto but ``metadata_props`` (the graph with its nodes
    and weights, the opsets, the producer), in file order."""
    card = {k: v for k, v in metadata.items() if k.startswith("hashplug.") and k != DIGEST_KEY}
    h = hashlib.sha256(_DIGEST_TAG)
    h.update(json.dumps(card, sort_keys=True, ensure_ascii=True).encode())
    h.update(b"\x00")
    for chunk in digest_fields:
        h.update(chunk)
    return h.hexdigest()


def verify_model_bytes(data: bytes, source: str | Path | None = None) -> tuple[Any, ModelSummary]:
    """Validate a hashplug ONNX model's bytes; returns ``(ModelCard, ModelSummary)``.

    Raises
    ------
    ModelFileError
        Not a well-formed ONNX model, not a hashplug file, an op or domain hashplug never writes, outputs
        that disagree with the card, or a digest that does not match (weights or card changed after export).
    """
    from .modelcard import OUTPUT_INDICES, OUTPUT_PACKED, ModelCard

    where = repr(str(source)) if source is not None else "the model"
    try:
        summ = parse_model(data)
    except ValueError as exc:
        raise ModelFileError(
            f"{where} could not be loaded: it is not a well-formed ONNX model ({exc}); it is truncated, corrupt or "
            "not an .onnx file. "
            "Export it again with hashplug.export.to_onnx(encoder, path)."
        ) from None
    card = ModelCard.from_metadata(summ.metadata, source=source)
    fix = "Export the encoder again with hashplug.export.to_onnx (or `hashplug export`)."
    bad_dom = sorted({d for d, _ in summ.opsets if d not in ALLOWED_DOMAINS} | {d for d, _ in summ.ops if d not in ALLOWED_DOMAINS})
    if bad_dom:
        raise ModelFileError(
            f"{where} uses operator domain(s) {bad_dom}; hashplug models use only the default ONNX domain. {fix}"
        )
    bad_ops = sorted({op for _, op in summ.ops if op not in ALLOWED_OPS and op not in MODULE_OPS})
    if bad_ops:
        ctrl = [op for op in bad_ops if op in ("Loop", "If", "Scan")]
        what = "control-flow op(s)" if ctrl else "op(s)"
        raise ModelFileError(
            f"{where} contains {what} {bad_ops}, which hashplug never accepts (hashplug's exports use "
            f"{sorted(ALLOWED_OPS)}; users' torch backbones may also use standard feed-forward ops, "
            "hashplug._onnx_wire.MODULE_OPS); "
            f"refused. {fix}"
        )
    if summ.problems:
        raise ModelFileError(f"{where}: {summ.problems[0]}, which hashplug never writes; refused. {fix}")
    want = {OUTPUT_PACKED: (_UINT8, card.n_bytes, "n_bytes")}
    if card.code_kind == "khot":
        want[OUTPUT_INDICES] = (_INT64, card.k, "k")
    missing = [name for name in want if name not in summ.outputs]
    if missing:
        raise ModelFileError(f"{where}: graph lacks outputs {missing} required for {card.code_kind} codes. {fix}")
    for name, (elem, width, key) in want.items():
        got_elem, dims = summ.outputs[name]
        if got_elem != elem or len(dims) != 2 or dims[1] != width:
            shown = ["?" if d is None else d for d in dims]
            raise ModelFileError(
                f"{where}: graph output {name!r} is {_ELEM_NAMES.get(got_elem, got_elem)} of shape {shown}, but the "
                f"card says {_ELEM_NAMES[elem]} (N, {width}) (hashplug.{key}={width}, m={card.m}); the file was "
                f"changed after export. {fix}"
            )
    recorded = summ.metadata.get(DIGEST_KEY)
    if recorded is not None:
        actual = model_digest(summ.metadata, summ.digest_fields)
        if recorded != actual:
            raise ModelFileError(
                f"{where}: digest mismatch ({DIGEST_KEY} {recorded[:12]!r}..., computed {actual[:12]}...): its "
                "weights, graph or model card (method, m, k, weights_sha256, preprocessing, ...) were changed after "
                f"export; refused. {fix}"
            )
    return card, summ


def verify_model_file(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[Any, ModelSummary, bytes]:
    """Read ``path`` (at most ``max_bytes``) and :func:`verify_model_bytes` it; returns ``(card, summary, bytes)``."""
    import os

    from .validation import ModelNotFoundError

    p = Path(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        raise ModelNotFoundError(
            f"No ONNX model file at {str(path)!r} ({exc.strerror}); export one with "
            "hashplug.export.to_onnx(encoder, path) or `hashplug export model.npz --out model.onnx`."
        ) from None
    if not p.is_file():
        raise ModelFileError(f"{str(path)!r} is not a file; pass the path of an exported .onnx model.")
    if st.st_size > max_bytes:
        raise ModelFileError(
            f"{str(path)!r} is {st.st_size:,} bytes, over the limit of {max_bytes:,} (max_bytes); hashplug models "
            "are far smaller. Pass a larger max_bytes only for a file you trust."
        )
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"{str(path)!r} cannot be read ({exc.strerror}).") from None
    if len(data) > max_bytes:
        raise ModelFileError(f"{str(path)!r} grew past the limit of {max_bytes:,} bytes while being read.")
    card, summ = verify_model_bytes(data, source=path)
    return card, summ, data
