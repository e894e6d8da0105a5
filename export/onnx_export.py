"""Translate an encoder's graph (:mod:`hashplug.graph`) into an ONNX model.

Training side: imports ``onnx``. Every encoder goes through :func:`to_onnx`; there is no per-encoder
export code. The ONNX model has

* input ``x``: float32 of shape (N, *input_shape), N dynamic;
* output ``packed``: uint8 of shape (N, ceil(m/8)) in ``np.packbits`` (big) bit order;
* output ``indices`` (k-hot encoders only): int64 of shape (N, k), ascending;

and the model card (:mod:`hashplug.modelcard`) in its ``metadata_props``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..graph import check_steps
from ..modelcard import INPUT_NAME, OUTPUT_INDICES, OUTPUT_PACKED, ModelCard
from ..validation import HashplugError, ModelFileError, ModelNotFoundError, check_array

__all__ = ["to_onnx", "build_model", "read_metadata", "check_parity", "DEFAULT_OPSET", "SUPPORTED_OPSETS"]

DEFAULT_OPSET = 17
SUPPORTED_OPSETS = range(13, 23)


class _Builder:
    """Accumulates nodes and initializers with unique names."""

    def __init__(self, opset: int) -> None:
        self.opset = int(opset)
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._n = 0

    def name(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def const(self, base: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        nm = self.name(base)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), nm))
        return nm

    def node(
        self, op: str, inputs: list[str], n_out: int = 1, out: list[str] | None = None, **attrs: Any
    ) -> list[str]:
        from onnx import helper

        outs = out if out is not None else [self.name(op.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=self.name(f"n_{op}"), **attrs))
        return outs

    def one(self, op: str, inputs: list[str], **attrs: Any) -> str:
        return self.node(op, inputs, **attrs)[0]


def _emit_steps(b: _Builder, x: str, steps: list[dict[str, Any]]) -> str:
    """Emit the ONNX nodes of the graph steps; returns the name of the (N, m) float32 scores."""
    for st in steps:
        op = st["op"]
        if op == "affine":
            scale = np.asarray(st["scale"], dtype=np.float32)
            shift = np.asarray(st["shift"], dtype=np.float32)
            # x * s + t exactly as numpy does it (two float32 roundings); identities are skipped.
            if not (scale.ndim == 0 and scale == 1.0):
                x = b.one("Mul", [x, b.const("affine_scale", scale)])
            if not (shift.ndim == 0 and shift == 0.0):
                x = b.one("Add", [x, b.const("affine_shift", shift)])
        elif op == "l2_normalize":
            eps = np.asarray(st.get("eps", 1e-12), dtype=np.float32)
            if b.opset >= 18:
                nrm = b.one("ReduceL2", [x, b.const("axes", np.array([1], dtype=np.int64))], keepdims=1)
            else:
                nrm = b.one("ReduceL2", [x], axes=[1], keepdims=1)
            nrm = b.one("Max", [nrm, b.const("l2_eps", eps)])
            x = b.one("Div", [x, nrm])
        elif op == "matmul":
            acc = st.get("accumulate", "float32")
            if acc == "float64":
                # Exact sums for e.g. binary weights: mathematically tied scores stay tied on every backend.
                xd = b.one("Cast", [x], to=_onnx_type("float64"))
                sd = b.one("MatMul", [xd, b.const("weight", np.asarray(st["weight"], dtype=np.float64))])
                x = b.one("Cast", [sd], to=_onnx_type("float32"))
            elif acc == "float32":
                x = b.one("MatMul", [x, b.const("weight", np.asarray(st["weight"], dtype=np.float32))])
            else:
                raise HashplugError(f"matmul step has accumulate={acc!r}; use 'float32' or 'float64'.")
        elif op == "sin":
            x = b.one("Sin", [x])
        else:
            raise HashplugError(f"cannot export graph op {op!r}")
    return x


def _emit_pack(b: _Builder, bits_i32: str, m: int) -> str:
    """(N, m) int32 0/1 -> (N, ceil(m/8)) uint8 in packbits big order; returns the uint8 tensor name."""
    nbytes = (m + 7) // 8
    pad = 8 * nbytes - m
    if pad:
        pads = b.const("pads", np.array([0, 0, 0, pad], dtype=np.int64))
        bits_i32 = b.one("Pad", [bits_i32, pads], mode="constant")
    grouped = b.one("Reshape", [bits_i32, b.const("shape_groups", np.array([0, nbytes, 8], dtype=np.int64))])
    weights = b.const("bit_weights", (1 << np.arange(7, -1, -1)).astype(np.int32))  # 128, 64, ..., 1
    weighted = b.one("Mul", [grouped, weights])
    summed = b.one("ReduceSum", [weighted, b.const("axes", np.array([2], dtype=np.int64))], keepdims=0)
    return b.node("Cast", [summed], out=[OUTPUT_PACKED], to=_onnx_type("uint8"))[0]


def _onnx_type(name: str) -> int:
    from onnx import TensorProto

    return {
        "float32": TensorProto.FLOAT,
        "float64": TensorProto.DOUBLE,
        "int32": TensorProto.INT32,
        "int64": TensorProto.INT64,
        "uint8": TensorProto.UINT8,
    }[name]


def build_model(encoder: Any, *, opset: int = DEFAULT_OPSET, doc_string: str | None = None) -> Any:
    """Build (but do not save) the ``onnx.ModelProto`` of a fitted encoder.

    Parameters
    ----------
    encoder : BaseEncoder
        A fitted hashplug encoder; only its :attr:`graph`, ``method_name`` and ``weights_sha256()`` are used.
    opset : int
        ONNX default-domain opset (13 to 22).
    doc_string : str or None
        Free text stored in the model.

    Returns
    -------
    onnx.ModelProto
        Checked with ``onnx.checker.check_model``.
    """
    import onnx
    from onnx import TensorProto, helper

    if int(opset) not in SUPPORTED_OPSETS:
        raise HashplugError(
            f"opset must be in [{SUPPORTED_OPSETS.start}, {SUPPORTED_OPSETS.stop - 1}]; got {opset}."
        )
    graph = encoder.graph
    steps = graph["steps"]
    input_shape = [int(s) for s in graph["input_shape"]]
    d = int(np.prod(input_shape))
    m = check_steps(steps, d)
    if m != int(graph["m"]):
        raise HashplugError(f"graph steps produce {m} units but the encoder reports m={graph['m']}.")
    head, k = graph["head"], int(graph["k"])
    card = ModelCard.from_graph(graph, method=encoder.method_name, weights_sha256=encoder.weights_sha256())

    b = _Builder(opset)
    x = b.one("Reshape", [INPUT_NAME, b.const("shape_flat", np.array([-1, d], dtype=np.int64))])
    scores = _emit_steps(b, x, steps)

    outputs = [helper.make_tensor_value_info(OUTPUT_PACKED, TensorProto.UINT8, ["N", card.n_bytes])]
    if head == "dense":
        positive = b.one("Greater", [scores, b.const("zero", np.array(0.0, dtype=np.float32))])
        bits = b.one("Cast", [positive], to=TensorProto.INT32)
    elif head == "khot":
        # TopK orders equal values by lower index first (ONNX spec) == hashplug's tie rule.
        kk = b.const("k", np.array([k], dtype=np.int64))
        _, top_idx = b.node("TopK", [scores, kk], n_out=2, axis=1, largest=1, sorted=1)
        # Sort the k winners ascending: TopK(smallest) over the int64 indices themselves.
        b.node("TopK", [top_idx, kk], out=[OUTPUT_INDICES, b.name("unused")], axis=1, largest=0, sorted=1)
        zeros = b.one(
            "ConstantOfShape",
            [b.one("Shape", [scores])],
            value=helper.make_tensor("z", TensorProto.INT32, [1], [0]),
        )
        ones = b.one(
            "ConstantOfShape",
            [b.one("Shape", [top_idx])],
            value=helper.make_tensor("o", TensorProto.INT32, [1], [1]),
        )
        bits = b.one("ScatterElements", [zeros, top_idx, ones], axis=1)
        outputs.append(helper.make_tensor_value_info(OUTPUT_INDICES, TensorProto.INT64, ["N", k]))
    else:
        raise HashplugError(f"unknown head {head!r}; known heads are ['dense', 'khot'].")
    _emit_pack(b, bits, m)

    g = helper.make_graph(
        b.nodes,
        f"hashplug_{card.method}",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", *input_shape])],
        outputs,
        initializer=b.inits,
    )
    opsets = [helper.make_opsetid("", int(opset))]
    model = helper.make_model(
        g,
        opset_imports=opsets,
        producer_name="hashplug",
        producer_version=card.hashplug_version,
        ir_version=helper.find_min_ir_version_for(opsets),
        doc_string=doc_string
        or f"hashplug {card.method} encoder: m={card.m}, k={card.k}, {card.code_kind} codes.",
    )
    helper.set_model_props(model, card.to_metadata())
    onnx.checker.check_model(model, full_check=True)
    return model


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
        ONNX opset (default 17).
    doc_string : str or None
        Free text stored in the model.

    Returns
    -------
    Path
        The file written.
    """
    import onnx

    model = build_model(encoder, opset=opset, doc_string=doc_string)
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save_model(model, str(tmp))
    tmp.replace(path)  # atomic: a concurrent reader never sees a half-written file
    return path


def read_metadata(path: str | Path) -> ModelCard:
    """Read and validate the model card of an ONNX file (training side; loads with ``onnx``)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"No ONNX file at {str(path)!r}; export one with hashplug.export.to_onnx(encoder, path).")
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelFileError(f"{str(path)!r} is not a readable ONNX file: {exc}") from exc
    return ModelCard.from_metadata({p.key: p.value for p in model.metadata_props}, source=path)


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
    from ..runtime import OnnxEncoder

    Xc = check_array(X, ndim=None, owner="check_parity")
    onx = OnnxEncoder(onnx_path, batch_size=batch_size)
    if (onx.m, onx.k, onx.code_kind) != (encoder.m, encoder.k, encoder.code_kind):
        raise HashplugError(
            f"{str(onnx_path)!r} encodes m={onx.m}, k={onx.k}, {onx.code_kind}; the encoder has "
            f"m={encoder.m}, k={encoder.k}, {encoder.code_kind}."
        )
    ref = encoder.encode(Xc, format="packed", batch_size=batch_size)
    got = onx.encode(Xc, format="packed")
    xor = ref ^ got
    diff_rows = np.flatnonzero(np.any(xor, axis=1))
    idx_rows = None
    if encoder.code_kind == "khot":
        ref_i = encoder.encode(Xc, format="indices", batch_size=batch_size)
        idx_rows = int(np.any(ref_i != onx.encode(Xc, format="indices"), axis=1).sum())
    at_ties = 0
    if diff_rows.size:
        sc = encoder.scores(Xc[diff_rows]).astype(np.float64)
        if encoder.code_kind == "khot":
            thr = -np.partition(-sc, encoder.k - 1, axis=1)[:, encoder.k - 1 : encoder.k]
        else:
            thr = np.zeros((sc.shape[0], 1))
        tol = rtol * np.maximum(np.abs(sc).max(axis=1, keepdims=True), 1e-30)
        bad = np.unpackbits(xor[diff_rows], axis=1, count=encoder.m).astype(bool)
        near = np.abs(sc - thr) <= tol
        at_ties = int(np.all(near | ~bad, axis=1).sum())
    sha_ok = onx.weights_sha256 == encoder.weights_sha256()
    return {
        "method": onx.card.method,
        "m": onx.m,
        "k": onx.k,
        "n_rows": int(ref.shape[0]),
        "rows_differing": int(diff_rows.size),
        "bits_differing": int(np.unpackbits(xor, axis=1).sum()),
        "indices_rows_differing": idx_rows,
        "rows_differing_at_ties": at_ties,
        "weights_sha256_match": bool(sha_ok),
        "identical": bool(diff_rows.size == 0 and not idx_rows and sha_ok),
    }
