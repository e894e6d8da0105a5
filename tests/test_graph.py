"""Tests of hashplug.graph: the top-k tie rule, heads, the Graph (numpy/torch agree, shape checks)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hashplug.graph import (
    HEADS,
    Affine,
    Flatten,
    Graph,
    GraphError,
    KHot,
    L2Normalize,
    MatMul,
    Mul,
    Node,
    PackedSign,
    SafeDiv,
    Sin,
    head_for,
)
from hashplug.ranking import topk_mask
from hashplug.validation import HashplugError


@pytest.fixture
def torch():
    """torch, for the tests that run a graph in it (imported by them, never at collection)."""
    return pytest.importorskip("torch")


def topk_oracle(scores: np.ndarray, k: int) -> np.ndarray:
    """Stable descending sort: among equal scores the lower index comes first."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    mask = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask


# ------------------------------------------------------------------------------------------------
# topk_mask
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "k", "expected"),
    [
        ([1, 1, 1, 1], 2, [1, 1, 0, 0]),  # all tied: the k lowest indices
        ([0, 2, 2, 1, 2], 2, [0, 1, 1, 0, 0]),  # three tied at the top, two places
        ([3, 1, 1, 1, 0], 2, [1, 1, 0, 0, 0]),  # one clear winner, tie for the last place
        ([1, 3, 1, 1, 0], 3, [1, 1, 1, 0, 0]),
        ([5, 5, 5], 1, [1, 0, 0]),
        ([0, 0, 7, 0, 0, 0, 0, 0], 3, [1, 1, 1, 0, 0, 0, 0, 0]),
        ([-1, -1, -2, -1], 3, [1, 1, 0, 1]),  # the tie exactly fills the places
        ([2.5, -0.0, 0.0, 1.0], 3, [1, 1, 0, 1]),  # -0.0 == 0.0 is a tie: lower index wins
    ],
)
def test_topk_tie_rule_lower_index_wins(row, k, expected):
    got = topk_mask(np.array([row], dtype=np.float32), k)
    assert got.dtype == bool
    assert got.astype(int).tolist() == [expected]


def test_topk_rows_are_independent():
    scores = np.array([[1, 1, 1, 1], [0, 1, 2, 3], [3, 2, 1, 0], [2, 2, 0, 2]], dtype=np.float32)
    assert topk_mask(scores, 2).astype(int).tolist() == [
        [1, 1, 0, 0],
        [0, 0, 1, 1],
        [1, 1, 0, 0],
        [1, 1, 0, 0],
    ]


@settings(max_examples=200, deadline=None)
@given(
    shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=24),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_topk_equals_stable_argsort_oracle_with_ties(shape, seed, data):
    # integer scores in [-3, 3]: ties everywhere (drawn from a seed: hypothesis drawing 576 elements one by one
    # took most of this test's time)
    scores = np.random.default_rng(seed).integers(-3, 4, size=shape).astype(np.float32)
    m = scores.shape[1]
    k = data.draw(st.integers(1, m), label="k")
    got = topk_mask(scores, k)
    np.testing.assert_array_equal(got, topk_oracle(scores, k))
    assert (got.sum(axis=1) == k).all()


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 20), m=st.integers(1, 300))
def test_topk_equals_oracle_on_continuous_scores(seed, n, m):
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((n, m)).astype(np.float32)
    k = int(rng.integers(1, m + 1))
    np.testing.assert_array_equal(topk_mask(scores, k), topk_oracle(scores, k))


def test_topk_k_equals_m_selects_everything():
    scores = np.array([[3, 1, 2], [0, 0, 0]], dtype=np.float32)
    assert topk_mask(scores, 3).all()


@pytest.mark.parametrize("k", [0, -1, 6])
def test_topk_k_out_of_range(k):
    with pytest.raises(HashplugError, match=re.escape(f"k must be in [1, m=5]; got {k}.")):
        topk_mask(np.zeros((2, 5), np.float32), k)



# ------------------------------------------------------------------------------------------------
# heads
# ------------------------------------------------------------------------------------------------


def test_heads_bits_and_registry():
    scores = np.array([[1.0, 0.0, -0.0, -2.0, 3.0]], np.float32)
    # dense: strictly positive only (0 is bit 0)
    assert PackedSign().bits(scores).astype(int).tolist() == [[1, 0, 0, 0, 1]]
    assert KHot(2).bits(scores).astype(int).tolist() == [[1, 0, 0, 0, 1]]
    assert KHot(3).bits(scores).astype(int).tolist() == [[1, 1, 0, 0, 1]]  # 0.0 == -0.0: lower index
    assert KHot(3).indices(scores).tolist() == [[0, 1, 4]]
    assert head_for("khot", 3) == KHot(3) and head_for("dense", 99) == PackedSign()
    with pytest.raises(GraphError, match=re.escape("unknown head 'sparse'; known heads are ['dense', 'khot'].")):
        head_for("sparse", 2)
    assert HEADS == {"dense": PackedSign, "khot": KHot}
    assert (PackedSign.tie_rule, KHot.tie_rule) == ("score>0", "lower-index")


# ------------------------------------------------------------------------------------------------
# numpy and torch run the same graph
# ------------------------------------------------------------------------------------------------


def _case(case: str, rng: np.random.Generator, d: int) -> list:
    if case == "affine_scalar":
        return [Affine(np.float32(1.7), np.float32(-0.3))]
    if case == "affine_vector":
        return [Affine(rng.standard_normal(d), rng.standard_normal(d))]
    if case == "l2_normalize":
        return [L2Normalize(1e-6)]
    if case == "matmul32":
        return [MatMul(rng.standard_normal((d, 11)))]
    if case == "matmul64":
        return [MatMul(rng.standard_normal((d, 11)), accumulate="float64")]
    if case == "sin":
        return [Sin()]
    if case == "chain":  # the SpectralHash shape: centre, project, shift, sin
        return [
            Affine(np.float32(1.0), -rng.random(d)),
            L2Normalize(),
            MatMul(rng.standard_normal((d, 7))),
            Affine(np.float32(3.0), rng.random(7)),
            Sin(),
        ]
    raise AssertionError(case)


CASES = ["affine_scalar", "affine_vector", "l2_normalize", "matmul32", "matmul64", "sin", "chain"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_graph_numpy_and_torch_agree(case, seed, torch):
    rng = np.random.default_rng(seed)
    d = 9
    X = (3 * rng.standard_normal((17, d))).astype(np.float32)
    X[3] = 0.0  # a zero row exercises the eps of l2_normalize
    g = Graph.chain(_case(case, rng, d), (d,), PackedSign())
    out_np = g.numpy(x=X)
    assert out_np.dtype == np.float32 and out_np.shape == (17, g.m)
    out_t = g.to_torch()(torch.as_tensor(X))
    assert out_t.dtype == torch.float32
    np.testing.assert_allclose(out_t.detach().numpy(), out_np, rtol=1e-5, atol=1e-5)
    # keyword inputs, trainable parameters: the same numbers
    out_tt = g.to_torch(trainable=True)(x=torch.as_tensor(X))
    np.testing.assert_array_equal(out_tt.detach().numpy(), out_t.detach().numpy())


def test_graph_reference_values():
    X = np.array([[3.0, 4.0], [0.0, 0.0]], np.float32)
    np.testing.assert_array_equal(Graph.chain([L2Normalize()], (2,)).numpy(x=X), np.float32([[0.6, 0.8], [0.0, 0.0]]))
    aff = Graph.chain([Affine(np.array([2.0, -1.0]), np.float32(1.0))], (2,))
    assert aff.numpy(x=X).tolist() == [[7.0, -3.0], [1.0, 1.0]]
    W = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], np.float32)
    assert Graph.chain([MatMul(W)], (2,)).numpy(x=X).tolist() == [[3.0, 4.0, 7.0], [0.0, 0.0, 0.0]]
    assert Graph.chain([], (2,)).numpy(x=X.astype(np.float64)).dtype == np.float32
    # image input, flattened in C order
    img = np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2)
    assert Graph.chain([Flatten()], (3, 2, 2)).numpy(x=img).tolist() == [list(range(12))]


def test_float64_accumulation_gives_identical_ties_on_both_backends(torch):
    # 0/1 weights (FlyHash): sums of the same pixels in a different order must tie exactly
    rng = np.random.default_rng(0)
    d, m = 64, 200
    X = (rng.integers(0, 17, (50, d)) / 16.0 + rng.random((50, d)) * 1e-3).astype(np.float32)
    W = np.zeros((d, m), np.float32)
    for j in range(m):
        W[rng.choice(d, 6, replace=False), j] = 1.0
    W[:, 1] = W[:, 0][::-1]  # same count, other pixels
    W[:, 2] = W[:, 0]  # an exact duplicate unit: always ties with unit 0
    g = Graph.chain([MatMul(W, accumulate="float64")], (d,), KHot(8))
    s_np = g.numpy(x=X)
    s_t = g.to_torch()(torch.as_tensor(X)).numpy()
    np.testing.assert_array_equal(s_np, s_t)
    np.testing.assert_array_equal(s_np[:, 0], s_np[:, 2])
    np.testing.assert_array_equal(g.bits(x=X), topk_mask(s_t, 8))


def test_the_torch_module_frees_a_value_after_its_last_reader(torch):
    """Like Graph.numpy, the torch module drops an intermediate once no later node reads it: while the last node
    runs, "proj" (read by "prod" and "s") and "prod" are gone; "s" (its input) is alive. Training is unchanged:
    autograd keeps what the backward pass needs."""
    import weakref

    rng = np.random.default_rng(0)
    W = rng.standard_normal((5, 6)).astype(np.float32)
    g = Graph({"a": (5,), "b": (6,)},
              [Node(MatMul(W), "a", "proj"), Node(Mul(), ("proj", "b"), "prod"), Node(Sin(), "prod", "s"),
               Node(Affine(np.float32(2.0), np.float32(1.0)), "s", "scores")], KHot(2))
    mod = g.to_torch(trainable=True)
    made: dict[str, object] = {}
    alive_at_last: dict[str, bool] = {}
    for op, node in zip(mod.ops, g.nodes):
        op.register_forward_hook(lambda m, i, o, name=node.output: made.__setitem__(name, weakref.ref(o)))
    mod.ops[-1].register_forward_pre_hook(
        lambda m, i: alive_at_last.update({n: r() is not None for n, r in made.items()}))
    a, b = torch.as_tensor(rng.standard_normal((4, 5)), dtype=torch.float32), torch.ones(4, 6)
    with torch.no_grad():
        out = mod(a, b)
    assert alive_at_last == {"proj": False, "prod": False, "s": True}
    np.testing.assert_allclose(out.numpy(), g.numpy(a=a.numpy(), b=b.numpy()), rtol=1e-5, atol=1e-6)
    out = mod(a, b)  # with gradients: the backward pass still reaches the matrix
    out.sum().backward()
    (W_t,) = mod.ops[0].parameters()
    assert W_t.grad is not None and float(W_t.grad.abs().sum()) > 0


def test_dag_with_several_named_inputs(torch):
    """Two inputs, a value read by two nodes, a two-input op: numpy and torch agree."""
    rng = np.random.default_rng(0)
    W = rng.standard_normal((5, 6)).astype(np.float32)
    g = Graph(
        {"a": (5,), "b": (6,)},
        [
            Node(MatMul(W), "a", "proj"),
            Node(Mul(), ("proj", "b"), "prod"),
            Node(Sin(), "proj", "s"),
            Node(SafeDiv(1e-3), ("prod", "s"), "scores"),
        ],
        KHot(2),
    )
    assert g.shapes == {"a": (5,), "b": (6,), "proj": (6,), "prod": (6,), "s": (6,), "scores": (6,)}
    A, B = rng.standard_normal((7, 5)), rng.standard_normal((7, 6))
    want = (A.astype(np.float32) @ W) * B.astype(np.float32)
    want = want / np.maximum(np.sin(A.astype(np.float32) @ W), np.float32(1e-3))
    np.testing.assert_allclose(g.numpy(a=A, b=B), want, rtol=1e-5)
    t = g.to_torch()(b=torch.as_tensor(B, dtype=torch.float32), a=torch.as_tensor(A, dtype=torch.float32))
    np.testing.assert_allclose(t.numpy(), g.numpy(a=A, b=B), rtol=1e-4, atol=1e-5)
    with pytest.raises(GraphError, match=r"missing \['b'\]"):
        g.numpy(a=A)
    with pytest.raises(GraphError, match="input_shape needs exactly one"):
        _ = g.input_shape


# ------------------------------------------------------------------------------------------------
# shape checks
# ------------------------------------------------------------------------------------------------


def test_graph_shapes_and_sizes():
    g = Graph.chain(
        [
            Flatten(),
            Affine(np.float32(1), np.zeros(4, np.float32)),
            MatMul(np.zeros((4, 6), np.float32)),
            Affine(np.ones(6, np.float32), np.float32(0)),
            Sin(),
            L2Normalize(),
        ],
        (2, 2),
        KHot(3),
    )
    assert (g.m, g.k, g.code_kind, g.input_shape) == (6, 3, "khot", (2, 2))
    assert Graph.chain([], (5,), PackedSign()).k == 5
    assert [d["op"] for d in g.describe()] == ["flatten", "affine", "matmul", "affine", "sin", "l2_normalize"]


def test_graph_rejects_non_ops_and_bad_names():
    with pytest.raises(GraphError, match=r"graph node 1 holds \{'op': 'relu'\}, which is not a hashplug.graph Op"):
        Graph.chain([Sin(), {"op": "relu"}], (4,))
    with pytest.raises(GraphError, match=r"graph node 0 \(sin\) reads \['y'\], defined by no input or earlier node"):
        Graph({"x": (4,)}, [Node(Sin(), "y", "z")])
    with pytest.raises(GraphError, match=r"graph node 0 \(safe_div\) takes 2 input\(s\); got \['x'\]"):
        Graph({"x": (4,)}, [Node(SafeDiv(), "x", "z")])
    with pytest.raises(GraphError, match=r"graph node 0 \(sin\) redefines the value 'x'"):
        Graph({"x": (4,)}, [Node(Sin(), "x", "x")])
    with pytest.raises(GraphError, match=r"a head needs scores \(m,\)"):
        Graph.chain([], (2, 2), PackedSign())
    with pytest.raises(GraphError, match=re.escape("k-hot head k=5 must be in [1, m=4].")):
        Graph.chain([], (4,), KHot(5))


def test_graph_matmul_shape():
    with pytest.raises(
        HashplugError, match=re.escape("graph node 0 (matmul): weight has shape (5, 3); expected (4, m).")
    ):
        Graph.chain([MatMul(np.zeros((5, 3)))], (4,))
    with pytest.raises(
        HashplugError, match=re.escape("graph node 1 (matmul): weight has shape (3,); expected (3, m).")
    ):
        Graph.chain([MatMul(np.zeros((4, 3))), MatMul(np.zeros(3))], (4,))
    with pytest.raises(GraphError, match="accumulate='float16'"):
        MatMul(np.zeros((4, 3)), accumulate="float16")


def test_graph_affine_shapes():
    with pytest.raises(
        HashplugError,
        match=re.escape("graph node 0 (affine): scale has shape (3,); it must broadcast to the input shape (4,)"),
    ):
        Graph.chain([Affine(np.ones(3), 0.0)], (4,))
    with pytest.raises(HashplugError, match=re.escape("shift has shape (1, 4); it must broadcast to the input shape (4,)")):
        Graph.chain([Affine(1.0, np.zeros((1, 4)))], (4,))
    # the width after a matmul is what an affine is checked against
    with pytest.raises(HashplugError, match=re.escape("graph node 1 (affine): shift has shape (4,)")):
        Graph.chain([MatMul(np.zeros((4, 2))), Affine(1.0, np.zeros(4))], (4,))
    # per-channel parameters of an image broadcast
    assert Graph.chain([Affine(np.ones((3, 1, 1)), 0.0)], (3, 5, 5)).shapes["v0"] == (3, 5, 5)


def test_graph_package_imports_without_torch():
    """``hashplug.graph`` is numpy-only at import: it builds and runs graphs with torch unavailable."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # any `import torch` raises ImportError
        import numpy as np
        import hashplug.graph as g
        G = g.Graph.chain([g.Flatten(), g.MatMul(np.eye(4, dtype=np.float32))], (2, 2), g.KHot(1))
        assert G.bits(x=np.arange(8, dtype=np.float32).reshape(2, 2, 2)).sum() == 2
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
