"""Every graph op: numpy, torch and onnxruntime agree on random shapes; every op has an emitter and a torch side.

The op classes are found by walking ``Op.__subclasses__()`` (not a hand-kept list), so a new op fails
these tests until it has an ONNX emitter, a torch implementation and a parity case in ``CASES`` below.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from hashplug.export import graph_model  # noqa: E402
from hashplug.export.onnx_ops import EMITTERS, HEAD_EMITTERS  # noqa: E402
from hashplug.graph import (  # noqa: E402
    OPS,
    Add,
    Affine,
    Concat,
    Conv2d,
    Cos,
    Divide,
    Flatten,
    Graph,
    GraphError,
    Head,
    KHot,
    L2Normalize,
    MatMul,
    MaxPool2d,
    Mul,
    Node,
    Op,
    PatchL2Norm,
    ReduceSum,
    Relu,
    Reshape,
    SafeDiv,
    Sin,
    TopKPerLocation,
)


def _walk(cls: type) -> set[type]:
    out: set[type] = set()
    for sub in cls.__subclasses__():
        out |= {sub} | _walk(sub)
    return out


# concrete ops: a class with its own name that did not opt out of the registry (test doubles do)
OP_CLASSES = sorted((c for c in _walk(Op) if c.__dict__.get("name") and c.registered), key=lambda c: c.name)
HEAD_CLASSES = sorted((c for c in _walk(Head) if c.__dict__.get("code_kind")), key=lambda c: c.code_kind)


# ---------------------------------------------------------------------------------------------- coverage
def test_walked_ops_are_the_registry():
    assert set(OP_CLASSES) == set(OPS.values())
    assert {c.name for c in OP_CLASSES} >= {
        "affine", "l2_normalize", "matmul", "sin", "cos", "mul", "safe_div", "conv2d", "patch_l2_norm",
        "topk_per_location", "max_pool2d", "reshape", "flatten", "relu", "concat",
    }  # fmt: skip


@pytest.mark.parametrize("cls", OP_CLASSES, ids=lambda c: c.__name__)
def test_every_op_has_an_onnx_emitter(cls):
    assert cls in EMITTERS, f"{cls.__name__} has no ONNX emitter: add @emits({cls.__name__}) to export/onnx_ops.py"


@pytest.mark.parametrize("cls", OP_CLASSES, ids=lambda c: c.__name__)
def test_every_op_has_a_torch_implementation(cls):
    assert cls.torch is not Op.torch, f"{cls.__name__} does not implement torch()"
    assert cls.numpy is not Op.numpy and cls.out_shape is not Op.out_shape


@pytest.mark.parametrize("cls", HEAD_CLASSES, ids=lambda c: c.__name__)
def test_every_head_has_an_onnx_emitter(cls):
    assert cls in HEAD_EMITTERS


@pytest.mark.parametrize("cls", OP_CLASSES, ids=lambda c: c.__name__)
def test_every_op_has_a_parity_case(cls):
    assert cls in CASES, f"add a parity case for {cls.__name__} to CASES in tests/test_graph_ops.py"


# ---------------------------------------------------------------------------------------------- cases
# A case draws (op, inputs, tolerance); tolerance None means exact equality on all three backends.
Case = tuple[Op, list[np.ndarray], "float | None"]


def _rng(data: Any) -> np.random.Generator:
    return np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))


def _shape(data: Any, min_dims: int = 1, max_dims: int = 3, max_side: int = 5) -> tuple[int, ...]:
    nd = data.draw(st.integers(min_dims, max_dims), label="ndim")
    return tuple(data.draw(st.integers(1, max_side), label=f"side{i}") for i in range(nd))


def _batch(data: Any) -> int:
    return data.draw(st.integers(1, 3), label="n")


def _param_shape(data: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape broadcasting to ``shape``: scalar, a trailing part, with some axes set to 1."""
    tail = shape[len(shape) - data.draw(st.integers(0, len(shape)), label="tail") :]
    return tuple(1 if data.draw(st.booleans(), label="one") else s for s in tail)


def _images(data: Any, rng: np.random.Generator, max_c: int = 3, max_hw: int = 8) -> np.ndarray:
    n = _batch(data)
    C = data.draw(st.integers(1, max_c), label="C")
    H, W = (data.draw(st.integers(1, max_hw), label=a) for a in "HW")
    return rng.standard_normal((n, C, H, W)).astype(np.float32)


def _window(data: Any, H: int, W: int, max_pad: int | None = None) -> tuple[int, int, int]:
    """(kernel, stride, padding) whose window fits an H x W input."""
    padding = data.draw(st.integers(0, 2 if max_pad is None else max_pad), label="padding")
    kernel = data.draw(st.integers(1, min(H, W) + 2 * padding), label="kernel")
    if max_pad is not None and padding > kernel // 2:
        padding = kernel // 2
    stride = data.draw(st.integers(1, 3), label="stride")
    return kernel, stride, padding


def _affine(data: Any) -> Case:
    rng, s = _rng(data), _shape(data)
    x = rng.standard_normal((_batch(data), *s)).astype(np.float32)
    scale = rng.standard_normal(_param_shape(data, s))
    shift = rng.standard_normal(_param_shape(data, s))
    return Affine(scale, shift), [x], 1e-6


def _l2_normalize(data: Any) -> Case:
    rng, s = _rng(data), _shape(data)
    x = (3 * rng.standard_normal((_batch(data) + 1, *s))).astype(np.float32)
    x[0] = 0.0  # the eps branch
    acc = data.draw(st.sampled_from(["float32", "float64"]), label="accumulate")
    op = L2Normalize(data.draw(st.sampled_from([1e-12, 1e-6, 1.0]), label="eps"), acc)
    return op, [x], (1e-5 if acc == "float32" else None)


def _matmul(data: Any) -> Case:
    rng, s = _rng(data), _shape(data, 1, 2, 8)
    m = data.draw(st.integers(1, 9), label="m")
    x = rng.standard_normal((_batch(data), *s)).astype(np.float32)
    acc = data.draw(st.sampled_from(["float32", "float64"]), label="accumulate")
    return MatMul(rng.standard_normal((s[-1], m)), accumulate=acc), [x], 1e-4


def _sin(data: Any) -> Case:
    rng, s = _rng(data), _shape(data)
    return Sin(), [(3 * rng.standard_normal((_batch(data), *s))).astype(np.float32)], 1e-5


def _cos(data: Any) -> Case:
    rng, s = _rng(data), _shape(data)
    return Cos(), [(3 * rng.standard_normal((_batch(data), *s))).astype(np.float32)], 1e-5


def _mul(data: Any) -> Case:
    rng, s = _rng(data), _shape(data)
    n = _batch(data)
    x = rng.standard_normal((n, *s)).astype(np.float32)
    if data.draw(st.booleans(), label="constant"):
        return Mul(rng.standard_normal(_param_shape(data, s))), [x], 1e-6
    other = tuple(1 if data.draw(st.booleans(), label="one") else v for v in s)
    return Mul(), [x, rng.standard_normal((n, *other)).astype(np.float32)], 1e-6


def _safe_div(data: Any) -> Case:
    rng, s = _rng(data), _shape(data)
    n = _batch(data)
    x = rng.standard_normal((n, *s)).astype(np.float32)
    den_shape = tuple(1 if data.draw(st.booleans(), label="one") else v for v in s)
    den = np.abs(rng.standard_normal((n, *den_shape))).astype(np.float32)
    den.reshape(-1)[0] = 0.0  # the eps branch
    return SafeDiv(data.draw(st.sampled_from([1e-12, 1e-3, 0.5]), label="eps")), [x, den], 1e-5


def _conv2d(data: Any) -> Case:
    rng = _rng(data)
    x = _images(data, rng)
    kernel, stride, padding = _window(data, *x.shape[2:])
    F = data.draw(st.integers(1, 5), label="F")
    W = rng.standard_normal((F, x.shape[1], kernel, kernel))
    acc = data.draw(st.sampled_from(["float32", "float64"]), label="accumulate")
    # float64: one rounding of a double sum, the same bits on every backend
    return Conv2d(W, stride=stride, padding=padding, accumulate=acc), [x], (1e-4 if acc == "float32" else None)


def _patch_l2_norm(data: Any) -> Case:
    rng = _rng(data)
    x = _images(data, rng)
    kernel, stride, padding = _window(data, *x.shape[2:])
    acc = data.draw(st.sampled_from(["float32", "float64"]), label="accumulate")
    return PatchL2Norm(kernel, stride, padding, acc), [x], (1e-5 if acc == "float32" else None)


def _topk_per_location(data: Any) -> Case:
    rng = _rng(data)
    F = data.draw(st.integers(1, 6), label="F")
    spatial = _shape(data, 0, 2, 4)
    # small integers: many ties, also at 0 (blank patches tie everywhere at 0)
    x = rng.choice(np.float32([-2, -1, 0, 1, 2]), size=(_batch(data), F, *spatial))
    return TopKPerLocation(data.draw(st.integers(1, F), label="k")), [x], None


def _max_pool2d(data: Any) -> Case:
    rng = _rng(data)
    x = _images(data, rng)
    x = rng.permutation(x.size).reshape(x.shape).astype(np.float32) - x.size / 2  # distinct values
    kernel, stride, padding = _window(data, *x.shape[2:], max_pad=1)
    return MaxPool2d(kernel, stride, padding), [x], None


def _reshape(data: Any) -> Case:
    rng, s = _rng(data), _shape(data)
    x = rng.standard_normal((_batch(data), *s)).astype(np.float32)
    target = data.draw(st.sampled_from([(-1,), tuple(reversed(s)), (*s[:-1], -1), (1, -1)]), label="target")
    return Reshape(target), [x], None


def _flatten(data: Any) -> Case:
    rng, s = _rng(data), _shape(data, 1, 4, 4)
    return Flatten(), [rng.standard_normal((_batch(data), *s)).astype(np.float32)], None


def _relu(data: Any) -> Case:
    rng, s = _rng(data), _shape(data)
    x = rng.standard_normal((_batch(data), *s)).astype(np.float32)
    x.reshape(-1)[0] = 0.0
    return Relu(), [x], None


def _concat(data: Any) -> Case:
    rng, s = _rng(data), _shape(data)
    n_in, b = data.draw(st.integers(1, 4), label="n_in"), _batch(data)
    xs = [
        rng.standard_normal((b, data.draw(st.integers(1, 4), label=f"first{i}"), *s[1:])).astype(np.float32)
        for i in range(n_in)
    ]
    return Concat(n_in), xs, None


def _add(data: Any) -> Case:
    rng, s = _rng(data), _shape(data)
    n = _batch(data)
    other = tuple(1 if data.draw(st.booleans(), label="one") else v for v in s)
    x = rng.standard_normal((n, *s)).astype(np.float32)
    return Add(), [x, rng.standard_normal((n, *other)).astype(np.float32)], 1e-6


def _divide(data: Any) -> Case:
    rng, s = _rng(data), _shape(data)
    x = (255 * rng.random((_batch(data), *s))).astype(np.float32)
    divisor = data.draw(st.sampled_from([1.0, 16.0, 255.0, 3.7, 1e-3]), label="divisor")
    return Divide(divisor), [x], None  # one float32 rounding on every backend: exact


def _reduce_sum(data: Any) -> Case:
    rng, s = _rng(data), _shape(data)
    axis = data.draw(st.integers(-len(s), len(s) - 1), label="axis")
    return ReduceSum(axis), [rng.standard_normal((_batch(data), *s)).astype(np.float32)], 1e-5


CASES: dict[type[Op], Callable[[Any], Case]] = {
    Add: _add,
    ReduceSum: _reduce_sum,
    Affine: _affine,
    L2Normalize: _l2_normalize,
    MatMul: _matmul,
    Sin: _sin,
    Cos: _cos,
    Mul: _mul,
    SafeDiv: _safe_div,
    Conv2d: _conv2d,
    PatchL2Norm: _patch_l2_norm,
    TopKPerLocation: _topk_per_location,
    MaxPool2d: _max_pool2d,
    Reshape: _reshape,
    Flatten: _flatten,
    Relu: _relu,
    Concat: _concat,
    Divide: _divide,
}


def _session(model: Any) -> Any:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _one_op_graph(op: Op, xs: list[np.ndarray]) -> Graph:
    names = [f"in{i}" for i in range(len(xs))]
    return Graph({nm: x.shape[1:] for nm, x in zip(names, xs)}, [Node(op, tuple(names), "y")])


def _close(got: np.ndarray, want: np.ndarray, tol: float | None, what: str) -> None:
    assert got.shape == want.shape and got.dtype == np.float32, (what, got.shape, want.shape, got.dtype)
    if tol is None:
        np.testing.assert_array_equal(got, want, err_msg=what)
    else:
        scale = max(1.0, float(np.abs(want).max(initial=0.0)))
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=what)


@pytest.mark.parametrize("cls", [c for c in OP_CLASSES if c in CASES], ids=lambda c: c.__name__)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_op_numpy_torch_onnxruntime_agree(cls, data):
    op, xs, tol = CASES[cls](data)
    assert type(op) is cls
    g = _one_op_graph(op, xs)
    want_shape = op.out_shape(*(x.shape[1:] for x in xs))
    assert g.shapes["y"] == want_shape

    y_np = op.numpy(*xs)
    assert y_np.shape == (xs[0].shape[0], *want_shape) and y_np.dtype == np.float32
    np.testing.assert_array_equal(g.numpy(**{f"in{i}": x for i, x in enumerate(xs)}), y_np)

    txs = [torch.from_numpy(x) for x in xs]
    for trainable in (False, True):
        y_t = op.to_torch(trainable)(*txs).detach().numpy()
        _close(y_t, y_np, tol, f"torch (trainable={trainable}) vs numpy, {op!r}")
    _close(op.torch(*txs).numpy(), y_np, tol, f"op.torch vs numpy, {op!r}")

    opset = data.draw(st.sampled_from([13, 17, 18, 21]), label="opset")
    sess = _session(graph_model(g, opset=opset))
    (y_ort,) = sess.run(["y"], {f"in{i}": x for i, x in enumerate(xs)})
    _close(y_ort, y_np, tol, f"onnxruntime (opset {opset}) vs numpy, {op!r}")


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_topk_per_location_follows_the_lower_index_tie_rule(data):
    op, (x,), _ = _topk_per_location(data)
    xt = np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])
    order = np.argsort(-xt, axis=1, kind="stable")[:, : op.k]  # stable: equal values keep index order
    oracle = np.zeros(xt.shape, dtype=bool)
    np.put_along_axis(oracle, order, True, axis=1)
    oracle = np.moveaxis(oracle.reshape(*np.moveaxis(x, 1, -1).shape), -1, 1)
    y = op.numpy(x)
    np.testing.assert_array_equal(y, np.where(oracle, x, 0))
    assert not np.signbit(y[y == 0]).any()  # every zero is +0.0
    y_t = op.torch(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(y_t, np.where(oracle, x, 0))


def test_op_errors_name_the_problem():
    with pytest.raises(GraphError, match=re.escape("conv2d weight has shape (2, 1, 3, 2); expected (F, C, K, K).")):
        Conv2d(np.zeros((2, 1, 3, 2)))
    with pytest.raises(GraphError, match=re.escape("graph node 0 (conv2d): weight has shape (2, 3, 3, 3)")):
        Graph.chain([Conv2d(np.zeros((2, 3, 3, 3)))], (1, 5, 5))
    with pytest.raises(GraphError, match="kernel 5 with padding 0 does not fit the input height 4"):
        Graph.chain([PatchL2Norm(5)], (1, 4, 9))
    with pytest.raises(GraphError, match=re.escape("k=4 must be in [1, F]")):
        Graph.chain([TopKPerLocation(4)], (3, 2, 2))
    with pytest.raises(GraphError, match="padding=2 must be <= kernel // 2 = 1"):
        MaxPool2d(3, padding=2)
    with pytest.raises(GraphError, match=re.escape("cannot reshape (2, 3) (6 values) to (4,)")):
        Graph.chain([Reshape((4,))], (2, 3))
    with pytest.raises(GraphError, match=re.escape("concat inputs must agree on every axis but the first")):
        Graph({"a": (3, 2), "b": (2, 3)}, [Node(Concat(2), ("a", "b"), "y")])
    with pytest.raises(GraphError, match=re.escape("takes 3 input(s)")):
        Graph({"a": (3,), "b": (2,)}, [Node(Concat(3), ("a", "b"), "y")])
    with pytest.raises(GraphError, match="different ranks"):
        Graph({"a": (3, 2, 2), "b": (2, 2)}, [Node(SafeDiv(), ("a", "b"), "y")])


def test_describe_is_json_with_shapes_of_arrays():
    conv = Conv2d(np.zeros((4, 2, 3, 3)), stride=2, padding=1)
    assert conv.describe() == {
        "op": "conv2d", "weight_shape": [4, 2, 3, 3], "stride": 2, "padding": 1, "accumulate": "float32"
    }
    assert Affine(2.0, np.zeros(3)).describe() == {"op": "affine", "scale": 2.0, "shift_shape": [3]}
    assert Mul().describe() == {"op": "mul"} and Mul().n_inputs == 2 and Mul(2.0).n_inputs == 1
    assert MaxPool2d(2).describe() == {"op": "max_pool2d", "kernel": 2, "stride": 2, "padding": 0}
    assert Reshape((2, -1)).describe() == {"op": "reshape", "shape": [2, -1]}
    assert set(Conv2d(np.ones((1, 1, 1, 1))).arrays()) == {"weight"} and Mul().arrays() == {}


# ---------------------------------------------------------------------------------------------- training
def test_trainable_graph_gets_gradients_and_exports_what_it_trained():
    """Gradients reach conv and matmul parameters; the trained values written back export to ONNX == numpy."""
    rng = np.random.default_rng(0)
    F, C, K = 6, 2, 3
    g = Graph(
        {"x": (C, 9, 9)},
        [
            Node(Conv2d(rng.standard_normal((F, C, K, K)), stride=1, padding=1), "x", "conv"),
            Node(PatchL2Norm(K, 1, 1), "x", "norm"),
            Node(SafeDiv(1e-6), ("conv", "norm"), "cos"),
            Node(TopKPerLocation(2), "cos", "sparse"),
            Node(MaxPool2d(3, 3), "sparse", "pooled"),
            Node(Flatten(), "pooled", "flat"),
            Node(MatMul(rng.standard_normal((F * 9, 40)) * 0.1), "flat", "proj"),
            Node(Affine(np.float32(1.0), rng.standard_normal(40)), "proj", "shifted"),
            Node(Cos(), "shifted", "scores"),
        ],
        KHot(5),
    )
    X = rng.standard_normal((16, C, 9, 9)).astype(np.float32)
    module = g.to_torch(trainable=True)
    params = dict(module.named_parameters())
    assert {"ops.0.weight", "ops.6.weight", "ops.7.scale", "ops.7.shift"} <= set(params)
    opt = torch.optim.SGD(module.parameters(), lr=0.5)
    before = {k: v.detach().clone() for k, v in params.items()}
    for _ in range(3):
        opt.zero_grad()
        scores = module(torch.from_numpy(X))
        loss = (scores - 1.0).square().mean()
        loss.backward()
        for key in ("ops.0.weight", "ops.6.weight", "ops.7.shift"):
            grad = params[key].grad
            assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, key
        opt.step()
    assert not torch.equal(before["ops.0.weight"], params["ops.0.weight"].detach())

    trained = module.to_graph()
    assert isinstance(trained.nodes[0].op, Conv2d)
    np.testing.assert_array_equal(trained.nodes[0].op.weight, params["ops.0.weight"].detach().numpy())
    with torch.no_grad():
        np.testing.assert_allclose(trained.numpy(x=X), module(torch.from_numpy(X)).numpy(), rtol=1e-4, atol=1e-5)

    sess = _session(graph_model(trained))
    packed, idx = sess.run(["packed", "indices"], {"x": X})
    bits = trained.bits(x=X)
    np.testing.assert_array_equal(packed, np.packbits(bits, axis=1))
    np.testing.assert_array_equal(idx, np.nonzero(bits)[1].reshape(len(X), 5))


# ---------------------------------------------------------------------------------------------- fused export
def _bank_case(data: Any, norm: bool, accumulate: str) -> tuple[Graph, np.ndarray]:
    """A BioConvHash-like filter bank (conv [/ patch norm], top-k, relu, max-pool, flatten) on images with
    blank regions, a blank image and, sometimes, a duplicated filter (exact ties)."""
    from hashplug.graph import MaxPool2d as Pool

    rng = _rng(data)
    C = data.draw(st.integers(1, 3), label="C")
    H, W = (data.draw(st.integers(3, 11), label=a) for a in "HW")
    K = data.draw(st.integers(1, min(H, W)), label="K")
    pad = data.draw(st.integers(0, 1), label="pad")
    stride = data.draw(st.integers(1, 2), label="stride")
    F = data.draw(st.integers(2, 12), label="F")
    kci = data.draw(st.integers(1, F), label="kci")
    weight = rng.standard_normal((F, C, K, K)).astype(np.float32)
    if data.draw(st.booleans(), label="duplicate"):
        weight[-1] = weight[0]
    Ho, Wo = (H + 2 * pad - K) // stride + 1, (W + 2 * pad - K) // stride + 1
    kp = data.draw(st.integers(1, min(Ho, Wo)), label="pool")
    sp = data.draw(st.integers(1, kp + 1), label="pool_stride")
    pp = data.draw(st.integers(0, kp // 2), label="pool_pad")
    nodes = [Node(Conv2d(weight, stride, pad, accumulate), ("x",), "conv")]
    src = "conv"
    if norm:
        nodes += [Node(PatchL2Norm(K, stride, pad, accumulate), ("x",), "norm"),
                  Node(SafeDiv(1e-3), ("conv", "norm"), "unit")]
        src = "unit"
    nodes += [Node(TopKPerLocation(kci), (src,), "inhibited"), Node(Relu(), ("inhibited",), "relu"),
              Node(Pool(kp, sp, pp), ("relu",), "pooled"), Node(Flatten(), ("pooled",), "y")]
    g = Graph({"x": (C, H, W)}, nodes, None, "y")
    n = data.draw(st.integers(1, 4), label="n")
    x = rng.standard_normal((n, C, H, W)).astype(np.float32)
    for i in range(n):  # blank rectangles: their patches score +-0 everywhere
        a, b = sorted(rng.integers(0, H + 1, 2)), sorted(rng.integers(0, W + 1, 2))
        x[i, :, a[0] : a[1], b[0] : b[1]] = 0.0
    x[0] = 0.0  # one all-blank image
    return g, x


def _unfused(model_of: Callable[[], Any]) -> Any:
    """The model built with every op emitted on its own (no fusions)."""
    from hashplug.export import onnx_ops

    saved = list(onnx_ops.FUSIONS)
    onnx_ops.FUSIONS.clear()
    try:
        return model_of()
    finally:
        onnx_ops.FUSIONS.extend(saved)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), norm=st.booleans(), accumulate=st.sampled_from(["float64", "float32"]),
       opset=st.sampled_from([17, 18]))
def test_fused_filter_bank_is_bit_identical_to_the_ops(data, norm, accumulate, opset):
    """The fused emission of a filter bank (non-blank rows, max-scatter pooling) returns the per-op emission's
    bits on onnxruntime, and, accumulating in float64, numpy's: blank patches, exact ties between filters,
    overlapping, tiling and gapped pools (stride > window), padded convolutions, 1 to 3 channels."""
    g, x = _bank_case(data, norm, accumulate)
    fused = graph_model(g, opset=opset)
    ops = {n.op_type for n in fused.graph.node}
    if opset >= 18:  # pooled by a max-scatter; the float64 bank on its non-blank rows
        scatters = [n for n in fused.graph.node if n.op_type == "ScatterElements"]
        assert scatters and all([a.s for a in n.attribute if a.name == "reduction"] == [b"max"] for n in scatters)
        assert ("NonZero" in ops) == (accumulate == "float64")
    (y_fused,) = _session(fused).run(["y"], {"x": x})
    (y_ops,) = _session(_unfused(lambda: graph_model(g, opset=opset))).run(["y"], {"x": x})
    np.testing.assert_array_equal(y_fused, y_ops)
    assert not np.signbit(y_fused[y_fused == 0]).any()  # every pooled zero is +0.0, as the ops give
    if accumulate == "float64":
        np.testing.assert_array_equal(y_fused, g.numpy(x=x))
    (empty,) = _session(fused).run(["y"], {"x": x[:0]})
    assert empty.shape == (0, *g.shapes["y"])


def test_fused_bank_runs_on_the_non_blank_rows_only():
    """Opset 18: the float64 bank's matrix product and top-k see only the M non-blank locations (NonZero),
    the pool is one max-scatter over the pooled size, and no dense (n, F, H', W') map is built."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((6, 1, 3, 3)).astype(np.float32)
    g = Graph({"x": (1, 9, 9)}, [
        Node(Conv2d(weight, accumulate="float64"), ("x",), "conv"),
        Node(PatchL2Norm(3, accumulate="float64"), ("x",), "norm"),
        Node(SafeDiv(1e-3), ("conv", "norm"), "unit"),
        Node(TopKPerLocation(2), ("unit",), "inhibited"), Node(Relu(), ("inhibited",), "relu"),
        Node(MaxPool2d(4, 2, 1), ("relu",), "pooled"), Node(Flatten(), ("pooled",), "y"),
    ], None, "y")
    model = graph_model(g, opset=18)
    nodes = list(model.graph.node)
    assert [n.op_type for n in nodes].count("NonZero") == 1
    (scatter,) = [n for n in nodes if n.op_type == "ScatterElements"]
    assert [a.s for a in scatter.attribute if a.name == "reduction"] == [b"max"]
    x = np.zeros((2, 1, 9, 9), np.float32)
    x[1, 0, 4, 4] = 1.0  # one pixel: the 9 locations of image 1 whose 3 x 3 patch holds it are non-blank
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (matmul_in,) = [n.input[0] for n in nodes if n.op_type == "MatMul"]
    probe = graph_model(g, opset=18)
    probe.graph.output.append(__import__("onnx").helper.make_tensor_value_info(matmul_in, 11, None))
    _, rows = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        ["y", matmul_in], {"x": x})
    assert rows.shape == (9, 9)  # M = 9 patches of 3 x 3 values
    np.testing.assert_array_equal(sess.run(["y"], {"x": x})[0], g.numpy(x=x))


def test_a_value_read_outside_a_fusion_keeps_the_ops_apart():
    """When the inhibited map is read by another node too, the ops are emitted one by one (same bits)."""
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((5, 1, 2, 2)).astype(np.float32)
    g = Graph({"x": (1, 6, 6)}, [
        Node(Conv2d(weight, accumulate="float64"), ("x",), "conv"),
        Node(TopKPerLocation(2), ("conv",), "inhibited"), Node(Relu(), ("inhibited",), "relu"),
        Node(MaxPool2d(2), ("relu",), "pooled"), Node(Flatten(), ("pooled",), "f1"),
        Node(Flatten(), ("relu",), "f2"), Node(Concat(2), ("f1", "f2"), "y"),
    ], None, "y")
    from hashplug.export.onnx_ops import find_fusions

    assert find_fusions(g) == {}
    x = rng.standard_normal((3, 1, 6, 6)).astype(np.float32)
    (y,) = _session(graph_model(g, opset=18)).run(["y"], {"x": x})
    np.testing.assert_array_equal(y, g.numpy(x=x))


def test_macs_count_the_products_by_hand():
    w = np.ones((4, 2, 3, 3), np.float32)
    assert Conv2d(w, stride=1, padding=0).macs((2, 10, 8)) == 4 * 8 * 6 * 2 * 9  # F H' W' C K K
    assert Conv2d(w, stride=2, padding=1).macs((2, 10, 8)) == 4 * 5 * 4 * 2 * 9
    assert PatchL2Norm(3).macs((2, 10, 8)) == 8 * 6 * 2 * 9
    assert MatMul(np.ones((5, 7), np.float32)).macs((5,)) == 35
    assert MatMul(np.ones((5, 7), np.float32)).macs((3, 5)) == 105
    assert L2Normalize().macs((4, 5)) == 20
    assert Relu().macs((4, 5)) == 0 and TopKPerLocation(2).macs((4, 5)) == 0


def test_work_bytes_count_outputs_patches_and_double_copies_by_hand():
    """What sizes a run (the model card's ``work_bytes``): outputs in float32, patch matrices and float64
    copies where an op makes them; an op never counts less than its own output."""
    w = np.ones((4, 2, 3, 3), np.float32)
    locs = 8 * 6  # (10 - 3 + 1) x (8 - 3 + 1)
    assert Conv2d(w).work_bytes((2, 10, 8)) == locs * (18 * 4 + 4 * 4)  # patches and output, float32
    assert Conv2d(w, accumulate="float64").work_bytes((2, 10, 8)) == locs * (18 * 12 + 4 * 12)
    assert PatchL2Norm(3, accumulate="float64").work_bytes((2, 10, 8)) == locs * (18 * 8 + 4)
    assert TopKPerLocation(2).work_bytes((4, 5)) == 8 * 20 + 12 * 2 * 5
    assert MatMul(np.ones((5, 7), np.float32)).work_bytes((5,)) == 28
    assert MatMul(np.ones((5, 7), np.float32), accumulate="float64").work_bytes((5,)) == 28 + 40 + 56
    assert Relu().work_bytes((4, 5)) == 80
    g = Graph({"x": (2, 10, 8)}, [Node(Conv2d(w), ("x",), "c"), Node(Relu(), ("c",), "r"),
                                  Node(Flatten(), ("r",), "f")], KHot(3))
    m = 4 * locs
    assert g.work_bytes() == 4 * 160 + locs * (18 * 4 + 16) + 4 * m + 4 * m + 12 * m
