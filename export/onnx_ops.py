"""ONNX emitters: one per graph op class and one per head class (training side; imports ``onnx`` lazily).

``EMITTERS[op class](builder, op, xs, shapes) -> name`` appends the ONNX nodes computing ``op(*xs)``
(``xs`` the input value names, ``shapes`` their per-sample shapes) and returns the output value name.
``HEAD_EMITTERS[head class](builder, head, scores, m) -> outputs`` appends the nodes turning the (N, m)
float32 scores into the model outputs (``packed``, and ``indices`` for k-hot) and returns their
``ValueInfoProto``. Register with ``@emits(OpClass)`` / ``@emits_head(HeadClass)``; the lookup is by exact
class, so a new op (even a subclass) needs its own emitter (a test walks every op class).

Every emitter reproduces its op's numpy arithmetic operation for operation (e.g. ``x * s + t`` as Mul
then Add, float64 accumulation as Cast/MatMul/Cast), so scores match numpy to the last bit where the
backends' kernels do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..graph import (
    Add,
    Affine,
    Concat,
    Conv2d,
    Cos,
    Divide,
    Flatten,
    Head,
    KHot,
    L2Normalize,
    MatMul,
    MaxPool2d,
    Mul,
    Op,
    PackedSign,
    PatchL2Norm,
    ReduceSum,
    Relu,
    Reshape,
    SafeDiv,
    Shape,
    Sin,
    TopKPerLocation,
)
from ..modelcard import OUTPUT_INDICES, OUTPUT_PACKED
from ..validation import HashplugError

__all__ = ["Builder", "EMITTERS", "HEAD_EMITTERS", "emits", "emits_head", "emitter_for", "head_emitter_for", "onnx_type"]

Emitter = Callable[["Builder", Any, list[str], list[Shape]], str]
HeadEmitter = Callable[["Builder", Any, str, int], list[Any]]

#: Op class -> emitter.
EMITTERS: dict[type[Op], Emitter] = {}
#: Head class -> emitter.
HEAD_EMITTERS: dict[type[Head], HeadEmitter] = {}


def emits(op_cls: type[Op]) -> Callable[[Emitter], Emitter]:
    """Decorator registering the emitter of ``op_cls``."""

    def deco(fn: Emitter) -> Emitter:
        EMITTERS[op_cls] = fn
        return fn

    return deco


def emits_head(head_cls: type[Head]) -> Callable[[HeadEmitter], HeadEmitter]:
    """Decorator registering the emitter of ``head_cls``."""

    def deco(fn: HeadEmitter) -> HeadEmitter:
        HEAD_EMITTERS[head_cls] = fn
        return fn

    return deco


def emitter_for(op: Op) -> Emitter:
    """The emitter of ``type(op)``; a clear error when there is none."""
    fn = EMITTERS.get(type(op))
    if fn is None:
        raise HashplugError(
            f"cannot export graph op {type(op).__name__} ({op.name!r}): it has no ONNX emitter. "
            "Register one in hashplug.export.onnx_ops with @emits(...)."
        )
    return fn


def head_emitter_for(head: Head) -> HeadEmitter:
    """The emitter of ``type(head)``; a clear error when there is none."""
    fn = HEAD_EMITTERS.get(type(head))
    if fn is None:
        raise HashplugError(
            f"cannot export head {type(head).__name__}: it has no ONNX emitter. "
            "Register one in hashplug.export.onnx_ops with @emits_head(...)."
        )
    return fn


def onnx_type(name: str) -> int:
    """``TensorProto`` element type of a numpy dtype name."""
    from onnx import TensorProto

    return {
        "float32": TensorProto.FLOAT,
        "float64": TensorProto.DOUBLE,
        "int32": TensorProto.INT32,
        "int64": TensorProto.INT64,
        "uint8": TensorProto.UINT8,
        "bool": TensorProto.BOOL,
    }[name]


class Builder:
    """Accumulates ONNX nodes and initializers with unique names for one default-domain opset."""

    def __init__(self, opset: int) -> None:
        self.opset = int(opset)
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._n = 0
        #: Values built once and shared by several emitters (keyed by what they compute from which input).
        self.memo: dict[tuple, str] = {}

    def name(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def const(self, base: str, value: np.ndarray) -> str:
        """An initializer holding ``value`` (dtype kept); returns its name."""
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

    def axes(self, op: str, x: str, axes: list[int], keepdims: int) -> str:
        """A reduction over ``axes`` (attribute before opset 18, input from 18 on)."""
        if self.opset >= 18:
            return self.one(op, [x, self.const("axes", np.array(axes, dtype=np.int64))], keepdims=keepdims)
        return self.one(op, [x], axes=list(axes), keepdims=keepdims)


# ---------------------------------------------------------------------------------------------- ops
@emits(Affine)
def _affine(b: Builder, op: Affine, xs: list[str], shapes: list[Shape]) -> str:
    # x * s + t exactly as numpy does it (two float32 roundings); identities are skipped (exact anyway).
    x = xs[0]
    if not (op.scale.ndim == 0 and op.scale == 1.0):
        x = b.one("Mul", [x, b.const("affine_scale", op.scale)])
    if not (op.shift.ndim == 0 and op.shift == 0.0):
        x = b.one("Add", [x, b.const("affine_shift", op.shift)])
    return x


@emits(Divide)
def _divide(b: Builder, op: Divide, xs: list[str], shapes: list[Shape]) -> str:
    # one correctly rounded float32 division, as numpy's x / np.float32(d)
    return b.one("Div", [xs[0], b.const("divisor", np.asarray(op.divisor, dtype=np.float32))])


@emits(L2Normalize)
def _l2_normalize(b: Builder, op: L2Normalize, xs: list[str], shapes: list[Shape]) -> str:
    axes = list(range(1, len(shapes[0]) + 1))
    if op.accumulate == "float64":
        nrm = b.axes("ReduceL2", b.one("Cast", [xs[0]], to=onnx_type("float64")), axes, keepdims=1)
        nrm = b.one("Cast", [nrm], to=onnx_type("float32"))
    else:
        nrm = b.axes("ReduceL2", xs[0], axes, keepdims=1)
    nrm = b.one("Max", [nrm, b.const("l2_eps", np.asarray(op.eps, dtype=np.float32))])
    return b.one("Div", [xs[0], nrm])


@emits(MatMul)
def _matmul(b: Builder, op: MatMul, xs: list[str], shapes: list[Shape]) -> str:
    if op.accumulate == "float64":
        # Exact sums for e.g. binary weights: mathematically tied scores stay tied on every backend.
        xd = b.one("Cast", [xs[0]], to=onnx_type("float64"))
        sd = b.one("MatMul", [xd, b.const("weight", np.asarray(op.weight, dtype=np.float64))])
        return b.one("Cast", [sd], to=onnx_type("float32"))
    return b.one("MatMul", [xs[0], b.const("weight", op.weight)])


@emits(Sin)
def _sin(b: Builder, op: Sin, xs: list[str], shapes: list[Shape]) -> str:
    return b.one("Sin", [xs[0]])


@emits(Cos)
def _cos(b: Builder, op: Cos, xs: list[str], shapes: list[Shape]) -> str:
    return b.one("Cos", [xs[0]])


@emits(Mul)
def _mul(b: Builder, op: Mul, xs: list[str], shapes: list[Shape]) -> str:
    other = b.const("mul_factor", op.factor) if op.factor is not None else xs[1]
    return b.one("Mul", [xs[0], other])


@emits(Add)
def _add(b: Builder, op: Add, xs: list[str], shapes: list[Shape]) -> str:
    return b.one("Add", [xs[0], xs[1]])


@emits(ReduceSum)
def _reduce_sum(b: Builder, op: ReduceSum, xs: list[str], shapes: list[Shape]) -> str:
    axis = 1 + op.axis % len(shapes[0])
    if b.opset >= 13:  # ReduceSum took its axes as an input from opset 13 (the other reductions from 18)
        return b.one("ReduceSum", [xs[0], b.const("axes", np.array([axis], dtype=np.int64))], keepdims=0)
    return b.one("ReduceSum", [xs[0]], axes=[axis], keepdims=0)


@emits(SafeDiv)
def _safe_div(b: Builder, op: SafeDiv, xs: list[str], shapes: list[Shape]) -> str:
    den = b.one("Max", [xs[1], b.const("div_eps", np.asarray(op.eps, dtype=np.float32))])
    return b.one("Div", [xs[0], den])


def _window_attrs(kernel: int, stride: int, padding: int) -> dict[str, Any]:
    return {"kernel_shape": [kernel, kernel], "strides": [stride, stride], "pads": [padding] * 4}


def _patches_f64(b: Builder, x: str, channels: int, kernel: int, stride: int, padding: int) -> str:
    """The C K K values of every patch of x (n, C, H, W) as (n, H', W', C K K) float64, copied exactly.

    onnxruntime's CPU ``Conv`` has no double kernel, so a float32 ``Conv`` with one-hot filters (one per
    patch position, ordered like torch's ``unfold`` and a weight's ``reshape(F, C K K)``) copies each value
    out (one product by 1.0, all others by 0.0: exact), then ``Cast`` widens. Built once per input and
    window geometry and shared by the ops that need it (a convolution and its patch norm).
    """
    key = ("patches_f64", x, int(channels), int(kernel), int(stride), int(padding))
    if key not in b.memo:
        n = int(channels) * kernel * kernel
        onehot = np.eye(n, dtype=np.float32).reshape(n, int(channels), kernel, kernel)
        cols = b.one("Conv", [x, b.const("patch_onehot", onehot)], **_window_attrs(kernel, stride, padding))
        b.memo[key] = b.one("Cast", [b.one("Transpose", [cols], perm=[0, 2, 3, 1])], to=onnx_type("float64"))
    return b.memo[key]


def _channels_first_f32(b: Builder, x: str) -> str:
    """(n, H', W', F) float64 -> (n, F, H', W') float32, one rounding."""
    return b.one("Transpose", [b.one("Cast", [x], to=onnx_type("float32"))], perm=[0, 3, 1, 2])


@emits(Conv2d)
def _conv2d(b: Builder, op: Conv2d, xs: list[str], shapes: list[Shape]) -> str:
    if op.accumulate == "float64":
        F, C, K, _ = op.weight.shape
        cols = _patches_f64(b, xs[0], C, K, op.stride, op.padding)
        wt = np.ascontiguousarray(op.weight.reshape(F, C * K * K).T, dtype=np.float64)
        return _channels_first_f32(b, b.one("MatMul", [cols, b.const("conv_weight", wt)]))
    return b.one("Conv", [xs[0], b.const("conv_weight", op.weight)], **_window_attrs(op.kernel, op.stride, op.padding))


@emits(PatchL2Norm)
def _patch_l2_norm(b: Builder, op: PatchL2Norm, xs: list[str], shapes: list[Shape]) -> str:
    if op.accumulate == "float64":
        cols = _patches_f64(b, xs[0], shapes[0][0], op.kernel, op.stride, op.padding)
        sq = b.one("Mul", [cols, cols])
        if b.opset >= 13:  # axes as an input from opset 13 (see _reduce_sum)
            sq = b.one("ReduceSum", [sq, b.const("axes", np.array([3], dtype=np.int64))], keepdims=1)
        else:
            sq = b.one("ReduceSum", [sq], axes=[3], keepdims=1)
        return _channels_first_f32(b, b.one("Sqrt", [sq]))
    sq = b.one("Mul", [xs[0], xs[0]])
    ones = b.const("patch_ones", op.ones(shapes[0][0]))
    return b.one("Sqrt", [b.one("Conv", [sq, ones], **_window_attrs(op.kernel, op.stride, op.padding))])


@emits(TopKPerLocation)
def _topk_per_location(b: Builder, op: TopKPerLocation, xs: list[str], shapes: list[Shape]) -> str:
    from onnx import TensorProto, helper

    # TopK orders equal values by lower index first (ONNX spec) == hashplug's tie rule.
    kk = b.const("k", np.array([op.k], dtype=np.int64))
    _, idx = b.node("TopK", [xs[0], kk], n_out=2, axis=1, largest=1, sorted=1)
    zeros = b.one(
        "ConstantOfShape", [b.one("Shape", [xs[0]])], value=helper.make_tensor("z", TensorProto.INT32, [1], [0])
    )
    ones = b.one("ConstantOfShape", [b.one("Shape", [idx])], value=helper.make_tensor("o", TensorProto.INT32, [1], [1]))
    mask = b.one("Cast", [b.one("ScatterElements", [zeros, idx, ones], axis=1)], to=onnx_type("bool"))
    return b.one("Where", [mask, xs[0], b.const("zero", np.array(0.0, dtype=np.float32))])


@emits(MaxPool2d)
def _max_pool2d(b: Builder, op: MaxPool2d, xs: list[str], shapes: list[Shape]) -> str:
    return b.one("MaxPool", [xs[0]], **_window_attrs(op.kernel, int(op.stride), op.padding))


@emits(Reshape)
def _reshape(b: Builder, op: Reshape, xs: list[str], shapes: list[Shape]) -> str:
    # 0 copies the batch dimension (also for an empty batch, where -1 would be ambiguous).
    target = np.array([0, *op.out_shape(shapes[0])], dtype=np.int64)
    return b.one("Reshape", [xs[0], b.const("shape", target)])


@emits(Flatten)
def _flatten(b: Builder, op: Flatten, xs: list[str], shapes: list[Shape]) -> str:
    return b.one("Flatten", [xs[0]], axis=1)


@emits(Relu)
def _relu(b: Builder, op: Relu, xs: list[str], shapes: list[Shape]) -> str:
    return b.one("Relu", [xs[0]])


@emits(Concat)
def _concat(b: Builder, op: Concat, xs: list[str], shapes: list[Shape]) -> str:
    return b.one("Concat", list(xs), axis=1)


# ---------------------------------------------------------------------------------------------- heads
def _emit_pack(b: Builder, bits_i32: str, m: int) -> str:
    """(N, m) int32 0/1 -> (N, ceil(m/8)) uint8 ``packed`` in packbits big order; returns its name."""
    nbytes = (m + 7) // 8
    pad = 8 * nbytes - m
    if pad:
        pads = b.const("pads", np.array([0, 0, 0, pad], dtype=np.int64))
        bits_i32 = b.one("Pad", [bits_i32, pads], mode="constant")
    grouped = b.one("Reshape", [bits_i32, b.const("shape_groups", np.array([0, nbytes, 8], dtype=np.int64))])
    weights = b.const("bit_weights", (1 << np.arange(7, -1, -1)).astype(np.int32))  # 128, 64, ..., 1
    weighted = b.one("Mul", [grouped, weights])
    summed = b.one("ReduceSum", [weighted, b.const("axes", np.array([2], dtype=np.int64))], keepdims=0)
    return b.node("Cast", [summed], out=[OUTPUT_PACKED], to=onnx_type("uint8"))[0]


def _packed_info(m: int) -> Any:
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(OUTPUT_PACKED, TensorProto.UINT8, ["N", (m + 7) // 8])


@emits_head(PackedSign)
def _packed_sign(b: Builder, head: PackedSign, scores: str, m: int) -> list[Any]:
    positive = b.one("Greater", [scores, b.const("zero", np.array(0.0, dtype=np.float32))])
    _emit_pack(b, b.one("Cast", [positive], to=onnx_type("int32")), m)
    return [_packed_info(m)]


@emits_head(KHot)
def _khot(b: Builder, head: KHot, scores: str, m: int) -> list[Any]:
    from onnx import TensorProto, helper

    # TopK orders equal values by lower index first (ONNX spec) == hashplug's tie rule.
    kk = b.const("k", np.array([head.k], dtype=np.int64))
    _, top_idx = b.node("TopK", [scores, kk], n_out=2, axis=1, largest=1, sorted=1)
    # Sort the k winners ascending: TopK(smallest) over the int64 indices themselves.
    b.node("TopK", [top_idx, kk], out=[OUTPUT_INDICES, b.name("unused")], axis=1, largest=0, sorted=1)
    zeros = b.one(
        "ConstantOfShape", [b.one("Shape", [scores])], value=helper.make_tensor("z", TensorProto.INT32, [1], [0])
    )
    ones = b.one(
        "ConstantOfShape", [b.one("Shape", [top_idx])], value=helper.make_tensor("o", TensorProto.INT32, [1], [1])
    )
    _emit_pack(b, b.one("ScatterElements", [zeros, top_idx, ones], axis=1), m)
    return [_packed_info(m), helper.make_tensor_value_info(OUTPUT_INDICES, TensorProto.INT64, ["N", head.k])]
