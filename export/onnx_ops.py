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

:data:`FUSIONS` emit a group of nodes as one unit when only the group's last value is read outside it
(:func:`find_fusions`; ``graph_model`` asks it first), with the same bits as the ops one by one:
``TopKPerLocation -> Relu -> MaxPool2d`` keeps the k winners of each location and pools them by a
max-scatter (opset 18) instead of building the dense inhibited map, and a float64 filter bank
(``Conv2d [/ PatchL2Norm] -> ...``) also runs its convolution, norm, division and top-k on the non-blank
patches only. Float64 convolutions and patch norms leave a channels-last twin (:func:`channels_last`) that
the ops after them read; values nobody reads are pruned from the model by the exporter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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

__all__ = ["Builder", "EMITTERS", "FUSIONS", "Fusion", "HEAD_EMITTERS", "channels_last", "find_fusions", "emits", "emits_head", "emitter_for", "head_emitter_for", "onnx_type"]

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
    eps = b.const("div_eps", np.asarray(op.eps, dtype=np.float32))
    cl_x, cl_d = channels_last(b, xs[0]), channels_last(b, xs[1])
    if cl_x is not None and cl_d is not None and len(shapes[0]) == 3:
        # the same elementwise division on the channels-last twins (a permutation keeps the broadcasting)
        return _channels_first(b, b.one("Div", [cl_x, b.one("Max", [cl_d, eps])]))
    return b.one("Div", [xs[0], b.one("Max", [xs[1], eps])])


def _window_attrs(kernel: int, stride: int, padding: int) -> dict[str, Any]:
    return {"kernel_shape": [kernel, kernel], "strides": [stride, stride], "pads": [padding] * 4}


#: Patches of at most this many values (C K K) are copied by one one-hot ``Conv``; larger ones by two
#: grouped one-hot ``Conv`` s (rows, then columns), whose work grows with K rather than K^2 per value.
ONEHOT_PATCH_MAX = 64


def _patches_f32(b: Builder, x: str, shape: Shape, kernel: int, stride: int, padding: int) -> str:
    """The C K K values of every patch of x (n, C, H, W) as (n, H', W', C K K) float32, copied exactly.

    Ordered like torch's ``unfold`` and a weight's ``reshape(F, C K K)`` (channel, row, column). A float32
    ``Conv`` with one-hot filters copies each value out (one product by 1.0, all others by 0.0: exact). For
    C K K <= :data:`ONEHOT_PATCH_MAX` one ``Conv`` with C K K one-hot filters; for larger patches (CIFAR-10's
    10 x 10 x 3) two grouped ones: K one-hot K x 1 filters per channel (the rows of each patch column, group
    per channel), then K one-hot 1 x K filters per (channel, row) (the columns), which gives the same order.
    Built once per input and window geometry and shared by the ops that need it (a convolution and its
    patch norm).
    """
    C = int(shape[0])
    key = ("patches_f32", x, C, int(kernel), int(stride), int(padding))
    if key not in b.memo:
        K, n = int(kernel), C * kernel * kernel
        if n <= ONEHOT_PATCH_MAX:
            onehot = np.eye(n, dtype=np.float32).reshape(n, C, K, K)
            cols = b.one("Conv", [x, b.const("patch_onehot", onehot)], **_window_attrs(K, stride, padding))
        else:
            rows_w = np.zeros((C * K, 1, K, 1), dtype=np.float32)
            rows_w[np.arange(C * K), 0, np.tile(np.arange(K), C), 0] = 1.0  # filter c K + a picks row a
            cols_w = np.zeros((C * K * K, 1, 1, K), dtype=np.float32)
            cols_w[np.arange(C * K * K), 0, 0, np.tile(np.arange(K), C * K)] = 1.0  # (c K + a) K + b picks b
            by_rows = b.one("Conv", [x, b.const("patch_rows", rows_w)], kernel_shape=[K, 1], strides=[stride, 1],
                            pads=[padding, 0, padding, 0], group=C)
            cols = b.one("Conv", [by_rows, b.const("patch_cols", cols_w)], kernel_shape=[1, K], strides=[1, stride],
                         pads=[0, padding, 0, padding], group=C * K)
        b.memo[key] = b.one("Transpose", [cols], perm=[0, 2, 3, 1])
    return b.memo[key]


def _patches_f64(b: Builder, x: str, shape: Shape, kernel: int, stride: int, padding: int) -> str:
    """:func:`_patches_f32` widened to float64 (exact), (n, H', W', C K K); built once per input and geometry."""
    key = ("patches_f64", x, int(shape[0]), int(kernel), int(stride), int(padding))
    if key not in b.memo:
        b.memo[key] = b.one("Cast", [_patches_f32(b, x, shape, kernel, stride, padding)], to=onnx_type("float64"))
    return b.memo[key]


def channels_last(b: Builder, x: str) -> str | None:
    """The channels-last twin (n, H', W', C) of the image value ``x`` (n, C, H', W') when an emitter built one.

    Emitters that compute channels last (the float64 convolution and patch norm, a division of such values)
    record their result before transposing it back, so the per-location ops after them (the cross-channel
    top-k) read it without a transpose; a channels-first value nobody reads is pruned from the model.
    """
    return b.memo.get(("channels_last", x))


def _channels_first(b: Builder, cl: str) -> str:
    """(n, H', W', F) -> (n, F, H', W'); remembers ``cl`` as the result's channels-last twin."""
    out = b.one("Transpose", [cl], perm=[0, 3, 1, 2])
    b.memo[("channels_last", out)] = cl
    return out


@emits(Conv2d)
def _conv2d(b: Builder, op: Conv2d, xs: list[str], shapes: list[Shape]) -> str:
    if op.accumulate == "float64":
        F, C, K, _ = op.weight.shape
        cols = _patches_f64(b, xs[0], shapes[0], K, op.stride, op.padding)
        wt = np.ascontiguousarray(op.weight.reshape(F, C * K * K).T, dtype=np.float64)
        # (n, H', W', F): one rounding of each double sum to float32
        cl = b.one("Cast", [b.one("MatMul", [cols, b.const("conv_weight", wt)])], to=onnx_type("float32"))
        return _channels_first(b, cl)
    return b.one("Conv", [xs[0], b.const("conv_weight", op.weight)], **_window_attrs(op.kernel, op.stride, op.padding))


@emits(PatchL2Norm)
def _patch_l2_norm(b: Builder, op: PatchL2Norm, xs: list[str], shapes: list[Shape]) -> str:
    if op.accumulate == "float64":
        cols = _patches_f64(b, xs[0], shapes[0], op.kernel, op.stride, op.padding)
        sq = b.one("Mul", [cols, cols])
        if b.opset >= 13:  # axes as an input from opset 13 (see _reduce_sum)
            sq = b.one("ReduceSum", [sq, b.const("axes", np.array([3], dtype=np.int64))], keepdims=1)
        else:
            sq = b.one("ReduceSum", [sq], axes=[3], keepdims=1)
        return _channels_first(b, b.one("Cast", [b.one("Sqrt", [sq])], to=onnx_type("float32")))
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


# ---------------------------------------------------------------------------------------------- fusions
@dataclass(frozen=True)
class Fusion:
    """A group of graph nodes emitted as one unit (the values inside it are never materialised).

    Attributes
    ----------
    name : str
    match : callable ``(graph, i, readers) -> tuple of int or None``
        The positions of the group's nodes when node ``i`` anchors one (``readers`` maps every value to the
        positions of the nodes reading it), else None.
    emit : callable ``(builder, graph, positions, names) -> str``
        Appends the nodes computing the group's last node's value from the ONNX names of its inputs
        (``names``: graph value -> ONNX value) and returns that value's name.
    """

    name: str
    match: Callable[[Any, int, dict[str, list[int]]], tuple[int, ...] | None]
    emit: Callable[[Builder, Any, tuple[int, ...], dict[str, str]], str]


#: Fusions tried at every node, in this order (the first whose group is free of earlier groups wins).
FUSIONS: list[Fusion] = []


def find_fusions(graph: Any) -> dict[int, tuple[Fusion, tuple[int, ...]]]:
    """The node groups of ``graph`` to emit fused, keyed by the position of the group's first node.

    A group qualifies when only its last node's value is read outside it (and no other is the graph's
    output), and everything it reads from outside is defined before its first node, so emitting the whole
    group at that position keeps the model in topological order.
    """
    readers: dict[str, list[int]] = {}
    for i, node in enumerate(graph.nodes):
        for name in node.inputs:
            readers.setdefault(name, []).append(i)
    defined_at = {name: -1 for name in graph.inputs}
    defined_at.update({node.output: i for i, node in enumerate(graph.nodes)})
    found: dict[int, tuple[Fusion, tuple[int, ...]]] = {}
    taken: set[int] = set()
    for i in range(len(graph.nodes)):
        for fusion in FUSIONS:
            group = fusion.match(graph, i, readers)
            if not group or taken.intersection(group):
                continue
            group = tuple(sorted(set(group)))
            inner = set(group)
            last = max(group, key=lambda j: j)
            ok = all(
                graph.nodes[j].output != graph.output and set(readers.get(graph.nodes[j].output, [])) <= inner
                for j in group if j != last
            ) and all(
                defined_at[v] < group[0] for j in group for v in graph.nodes[j].inputs if defined_at[v] not in inner
            )
            if ok:
                found[group[0]] = (fusion, group)
                taken.update(group)
                break
    return found


def _only_reader(graph: Any, readers: dict[str, list[int]], j: int) -> int | None:
    """The position of the one node reading node j's value through its only input, else None."""
    value = graph.nodes[j].output
    nxt = readers.get(value, [])
    if len(nxt) != 1 or graph.nodes[nxt[0]].inputs != (value,):
        return None
    return nxt[0]


def _match_inhibit_pool(graph: Any, i: int, readers: dict[str, list[int]]) -> tuple[int, ...] | None:
    """TopKPerLocation -> Relu -> MaxPool2d, each reading the previous one alone."""
    run = [i]
    for cls in (TopKPerLocation, Relu, MaxPool2d):
        if cls is not TopKPerLocation:
            nxt = _only_reader(graph, readers, run[-1])
            if nxt is None:
                return None
            run.append(nxt)
        if type(graph.nodes[run[-1]].op) is not cls:
            return None
    return tuple(run)


def _match_unit_conv_bank(graph: Any, i: int, readers: dict[str, list[int]]) -> tuple[int, ...] | None:
    """A float64 filter bank: Conv2d [/ PatchL2Norm by SafeDiv] -> TopKPerLocation -> Relu -> MaxPool2d.

    Anchored at the TopKPerLocation node; the convolution and the norm (same window, same input, both
    accumulating in float64) feed the division directly.
    """
    tail = _match_inhibit_pool(graph, i, readers)
    if tail is None:
        return None
    producers = {node.output: j for j, node in enumerate(graph.nodes)}
    src = producers.get(graph.nodes[i].inputs[0])
    if src is None:
        return None
    node = graph.nodes[src]
    if type(node.op) is Conv2d:
        conv, group = src, (src,)
    elif type(node.op) is SafeDiv:
        conv, norm = (producers.get(v) for v in node.inputs)
        if conv is None or norm is None:
            return None
        c, nm = graph.nodes[conv], graph.nodes[norm]
        if type(c.op) is not Conv2d or type(nm.op) is not PatchL2Norm or c.inputs != nm.inputs:
            return None
        if (nm.op.kernel, nm.op.stride, nm.op.padding, nm.op.accumulate) != (
            c.op.kernel, c.op.stride, c.op.padding, c.op.accumulate
        ):
            return None
        group = (conv, norm, src)
    else:
        return None
    if graph.nodes[conv].op.accumulate != "float64" or len(graph.shapes[graph.nodes[conv].inputs[0]]) != 3:
        return None
    return (*group, *tail)


@dataclass(frozen=True)
class _PoolPlan:
    """Where each location of an (H, W) map goes in a max-pool (see :func:`_pool_plan`)."""

    table: np.ndarray  # (H W, R) int64: the slots of every location
    covered: np.ndarray  # (H W,) float32: 0.0 for a location no window holds
    slots: tuple[int, int]  # the slot grid (rows, columns)
    cells: int  # > 1: slots are cells, pooled after the scatter by a MaxPool of cells x cells, stride 1
    out: tuple[int, int]  # (H', W')


def _pool_plan(H: int, W: int, pool: MaxPool2d) -> _PoolPlan:
    """How a max-scatter reproduces ``pool`` on an (H, W) map.

    Windows that tile the map (stride >= window) take each location once: its slot is its window. Overlapping
    windows whose size is a multiple of the stride split the map into stride x stride cells, every window
    being a square of whole cells: each location is scattered once into its cell and a ``MaxPool`` over the
    (small) cell grid finishes the pool. Otherwise a location goes to every window that holds it (R slots,
    the first repeated up to R: a repeat changes no maximum). A location no window holds (stride larger
    than the window) points at slot 0 with ``covered`` 0.0 (its values become +0.0).
    """
    K, S, P = int(pool.kernel), int(pool.stride), int(pool.padding)
    Ho, Wo = (H + 2 * P - K) // S + 1, (W + 2 * P - K) // S + 1

    def holders(size: int, out: int) -> list[list[int]]:
        return [[o for o in range(out) if o * S - P <= r < o * S - P + K] for r in range(size)]

    rows, cols = holders(H, Ho), holders(W, Wo)
    covered = np.array([1.0 if rows[i] and cols[j] else 0.0 for i in range(H) for j in range(W)], np.float32)
    if K > S and K % S == 0:
        c = K // S
        Hc, Wc = Ho + c - 1, Wo + c - 1

        def cell_ok(size: int, out: int, held: list[list[int]]) -> bool:
            # the rows of cell q are those with (r + P) // S == q; window o must hold exactly cells o..o+c-1
            return all(not held[r] or held[r] == [o for o in range((r + P) // S - c + 1, (r + P) // S + 1)
                                                  if 0 <= o < out] for r in range(size))

        if cell_ok(H, Ho, rows) and cell_ok(W, Wo, cols):
            table = np.array([[((i + P) // S) * Wc + (j + P) // S if rows[i] and cols[j] else 0]
                              for i in range(H) for j in range(W)], dtype=np.int64)
            return _PoolPlan(table, covered, (Hc, Wc), c, (Ho, Wo))
    held = [[r * Wo + q for r in rows[i] for q in cols[j]] for i in range(H) for j in range(W)]
    R = max(1, max(len(h) for h in held))
    table = np.array([(h + [h[0]] * (R - len(h))) if h else [0] * R for h in held], dtype=np.int64)
    return _PoolPlan(table, covered, (Ho, Wo), 1, (Ho, Wo))


def _scatter_pool(
    b: Builder, x: str, vals: str, idx: str, k: int, F: int, loc_shape: tuple[int, int], pool: MaxPool2d,
    rows: str | None = None,
) -> str:
    """The (n, F, H', W') max-pool of a +0.0 map holding ``vals`` at channels ``idx`` (k per location).

    ``vals`` (>= +0.0) and ``idx`` are (n, H, W, k), or (M, k) for the locations ``rows`` (flat
    ``image * H W + location``, int64 (M,)) of a compacted batch. Opset 18's ``ScatterElements`` with
    ``reduction="max"`` writes every value into its slots (:func:`_pool_plan`: its windows, or its cell)
    over a +0.0 map: the same maximum as pooling the dense map, all of whose other entries are +0.0.
    """
    from onnx import TensorProto, helper

    H, W = loc_shape
    plan = _pool_plan(H, W, pool)
    R = plan.table.shape[1]
    n_slots = plan.slots[0] * plan.slots[1]
    i64 = lambda v: np.array(v, dtype=np.int64)  # noqa: E731
    batch = b.one("Shape", [x], start=0, end=1)  # (1,) int64: n
    if rows is None:  # every location of every image: (n, H W, k, R), scattered along each image's row
        shaped, axis = [0, H * W, k, 1], 1
        slot = b.const("pool_slots", plan.table.reshape(1, H * W, 1, R))
        cover = b.const("pool_covered", plan.covered.reshape(1, H * W, 1, 1)) if not plan.covered.all() else None
        size = b.one("Concat", [batch, b.const("pooled_size", i64([F * n_slots]))], axis=0)
        out_flat = i64([0, H * W * k * R])  # explicit: a -1 beside a 0 is ambiguous for an empty batch
    else:  # the locations ``rows``: (M, k, R), scattered into the flat batch
        shaped, axis = [-1, k, 1], 0
        image = b.one("Div", [rows, b.const("locations", i64(H * W))])
        loc = b.one("Add", [rows, b.one("Mul", [image, b.const("minus_locations", i64(-H * W))])])
        slot = b.one("Reshape", [b.one("Gather", [b.const("pool_slots", plan.table), loc], axis=0),
                                 b.const("shape", i64([-1, 1, R]))])
        # the image's offset in the flat (n, F, slots) map
        slot = b.one("Add", [slot, b.one("Reshape", [b.one("Mul", [image, b.const("image_stride", i64(F * n_slots))]),
                                                     b.const("shape", i64([-1, 1, 1]))])])
        cover = None
        if not plan.covered.all():
            cover = b.one("Reshape", [b.one("Gather", [b.const("pool_covered", plan.covered), loc], axis=0),
                                      b.const("shape", i64([-1, 1, 1]))])
        size = b.one("Mul", [batch, b.const("pooled_size", i64([F * n_slots]))])
        out_flat = i64([-1])
    upd = b.one("Reshape", [vals, b.const("shape", i64(shaped))])
    if cover is not None:  # a location no window holds adds +0.0, which changes no maximum
        upd = b.one("Mul", [upd, cover])
    if R > 1:
        upd = b.one("Add", [upd, b.const("pool_repeat", np.zeros(R, dtype=np.float32))])  # v + 0.0 == v, R copies
    # target: channel * slots + slot (+ the image's offset), the (n, F, slot rows, slot columns) order
    chan = b.one("Mul", [b.one("Reshape", [idx, b.const("shape", i64(shaped))]), b.const("n_slots", i64(n_slots))])
    target = b.one("Add", [chan, slot])
    base = b.one("ConstantOfShape", [size], value=helper.make_tensor("z", TensorProto.FLOAT, [1], [0.0]))
    flat = b.const("shape", out_flat)
    pooled = b.one("ScatterElements", [base, b.one("Reshape", [target, flat]), b.one("Reshape", [upd, flat])],
                   axis=axis, reduction="max")
    pooled = b.one("Reshape", [pooled, b.const("shape", i64([-1, F, *plan.slots]))])
    if plan.cells > 1:  # every window is a square of whole cells
        pooled = b.one("MaxPool", [pooled], kernel_shape=[plan.cells] * 2, strides=[1, 1])
    return pooled


def _positive(b: Builder, vals: str) -> str:
    """``Relu`` of kept values with every zero +0.0 (the op's ``x != 0`` rule, then ``max(x, 0)``)."""
    zero = b.const("zero", np.array(0.0, dtype=np.float32))
    return b.one("Where", [b.one("Greater", [vals, zero]), vals, zero])


def _emit_inhibit_pool(b: Builder, graph: Any, group: tuple[int, ...], names: dict[str, str]) -> str:
    """``MaxPool2d(Relu(TopKPerLocation(x)))`` for x (n, F, H, W) without the dense inhibited map.

    The top-k of every location (along the channels-last twin's last axis when an emitter built one, else
    after one ``Transpose``; ``TopK`` keeps the lower channel among equal values, the op's tie rule) leaves
    k values per location; ``Relu`` keeps the positive ones (every other value, kept or not, is +0.0). From
    opset 18 the pool is one max-scatter of these (:func:`_scatter_pool`); before, they are scattered into
    a dense +0.0 map pooled by ``MaxPool``. Bit for bit the ops' result.
    """
    from onnx import TensorProto, helper

    topk, _, pool = (graph.nodes[j].op for j in group)
    xname = graph.nodes[group[0]].inputs[0]
    x = names[xname]
    F, H, W = graph.shapes[xname]
    cl = channels_last(b, x) or b.one("Transpose", [x], perm=[0, 2, 3, 1])
    kk = b.const("k", np.array([topk.k], dtype=np.int64))
    vals, idx = b.node("TopK", [cl, kk], n_out=2, axis=3, largest=1, sorted=0)  # (n, H, W, k)
    pos = _positive(b, vals)
    if b.opset >= 18:
        return _scatter_pool(b, x, pos, idx, topk.k, F, (H, W), pool)
    zeros = b.one("ConstantOfShape", [b.one("Shape", [cl])],
                  value=helper.make_tensor("z", TensorProto.FLOAT, [1], [0.0]))
    dense = b.one("ScatterElements", [zeros, idx, pos], axis=3)  # TopK's k indices of a row are distinct
    return b.one("MaxPool", [b.one("Transpose", [dense], perm=[0, 3, 1, 2])],
                 **_window_attrs(pool.kernel, int(pool.stride), pool.padding))


def _emit_unit_conv_bank(b: Builder, graph: Any, group: tuple[int, ...], names: dict[str, str]) -> str:
    """A float64 filter bank up to its pooled map, computed on the non-blank locations only.

    A blank patch (all zeros: a float64 sum of squares of 0) gives every filter the score +-0, so none of
    its values survives the inhibition's ``Relu``: its location adds +0.0 to every pool. From opset 18 the
    patches (:func:`_patches_f64`) of all images are one (n H' W', C K K) matrix, ``NonZero`` of its sums of
    squares picks the M non-blank rows, and the convolution (the double ``MatMul``, one rounding), the patch
    norm, the division, the top-k and the pool (:func:`_scatter_pool`) run on those M rows alone; each row's
    sums are the same double sums as the unfused ops', so the pooled map is bit for bit theirs. Before opset
    18 the ops are emitted one by one and the tail by :func:`_emit_inhibit_pool`.
    """
    ops = [graph.nodes[j] for j in group]
    conv, tail = ops[0], group[-3:]
    if b.opset < 18:
        for node in ops[:-3]:
            names[node.output] = emitter_for(node.op)(
                b, node.op, [names[v] for v in node.inputs], [graph.shapes[v] for v in node.inputs])
        return _emit_inhibit_pool(b, graph, tail, names)
    norm = ops[1] if len(ops) == 6 else None
    topk, pool = ops[-3].op, ops[-1].op
    x = names[conv.inputs[0]]
    shape = graph.shapes[conv.inputs[0]]
    F, C, K, _ = conv.op.weight.shape
    _, H, W = graph.shapes[conv.output]
    i64 = lambda v: np.array(v, dtype=np.int64)  # noqa: E731
    flat = b.const("shape", i64([-1, C * K * K]))
    cols = b.one("Reshape", [_patches_f64(b, x, shape, K, conv.op.stride, conv.op.padding), flat])
    sq = b.one("ReduceSum", [b.one("Mul", [cols, cols]), b.const("axes", i64([1]))], keepdims=0)
    rows = b.one("Reshape", [b.one("NonZero", [b.one("Greater", [sq, b.const("zero_d", np.array(0.0))])]),
                             b.const("shape", i64([-1]))])
    wt = np.ascontiguousarray(conv.op.weight.reshape(F, C * K * K).T, dtype=np.float64)
    # the non-blank rows, copied in float32 (half the bytes), then widened
    cols32 = b.one("Reshape", [_patches_f32(b, x, shape, K, conv.op.stride, conv.op.padding), flat])
    picked = b.one("Cast", [b.one("Gather", [cols32, rows], axis=0)], to=onnx_type("float64"))  # (M, C K K)
    score = b.one("Cast", [b.one("MatMul", [picked, b.const("conv_weight", wt)])], to=onnx_type("float32"))
    if norm is not None:
        nrm = b.one("Cast", [b.one("Sqrt", [b.one("Gather", [sq, rows], axis=0)])], to=onnx_type("float32"))
        eps = b.const("div_eps", np.asarray(ops[2].op.eps, dtype=np.float32))
        den = b.one("Max", [b.one("Reshape", [nrm, b.const("shape", i64([-1, 1]))]), eps])
        score = b.one("Div", [score, den])  # (M, F)
    kk = b.const("k", i64([topk.k]))
    vals, idx = b.node("TopK", [score, kk], n_out=2, axis=1, largest=1, sorted=0)
    return _scatter_pool(b, x, _positive(b, vals), idx, topk.k, F, (H, W), pool, rows=rows)


FUSIONS.extend([
    Fusion("unit_conv_bank", _match_unit_conv_bank, _emit_unit_conv_bank),
    Fusion("inhibit_pool", _match_inhibit_pool, _emit_inhibit_pool),
])


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
