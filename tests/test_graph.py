"""Tests of hashplug.graph: the top-k tie rule, the numpy/torch interpreters, step validation."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hashplug.graph import HEADS, STEP_OPS, check_steps, run_steps, run_steps_torch, scores_to_bits, topk_mask
from hashplug.validation import HashplugError

torch = pytest.importorskip("torch")


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
    scores=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=24),
        elements=st.integers(-3, 3).map(float),
    ),
    data=st.data(),
)
def test_topk_equals_stable_argsort_oracle_with_ties(scores, data):
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


def test_scores_to_bits_heads():
    scores = np.array([[1.0, 0.0, -0.0, -2.0, 3.0]], np.float32)
    # dense: strictly positive only (0 is bit 0)
    assert scores_to_bits(scores, "dense", None).astype(int).tolist() == [[1, 0, 0, 0, 1]]
    assert scores_to_bits(scores, "khot", 2).astype(int).tolist() == [[1, 0, 0, 0, 1]]
    assert scores_to_bits(scores, "khot", 3).astype(int).tolist() == [[1, 1, 0, 0, 1]]
    with pytest.raises(
        HashplugError, match=re.escape("unknown head 'sparse'; known heads are ['dense', 'khot'].")
    ):
        scores_to_bits(scores, "sparse", 2)
    assert HEADS == ("dense", "khot")


# ------------------------------------------------------------------------------------------------
# numpy and torch interpreters agree
# ------------------------------------------------------------------------------------------------


def _case(op: str, rng: np.random.Generator, d: int) -> list[dict]:
    if op == "affine_scalar":
        return [{"op": "affine", "scale": np.float32(1.7), "shift": np.float32(-0.3)}]
    if op == "affine_vector":
        return [
            {
                "op": "affine",
                "scale": rng.standard_normal(d).astype(np.float32),
                "shift": rng.standard_normal(d).astype(np.float32),
            }
        ]
    if op == "l2_normalize":
        return [{"op": "l2_normalize", "eps": 1e-6}]
    if op == "matmul32":
        return [{"op": "matmul", "weight": rng.standard_normal((d, 11)).astype(np.float32)}]
    if op == "matmul64":
        return [
            {
                "op": "matmul",
                "weight": rng.standard_normal((d, 11)).astype(np.float32),
                "accumulate": "float64",
            }
        ]
    if op == "sin":
        return [{"op": "sin"}]
    if op == "chain":  # the SpectralHash shape: centre, project, shift, sin
        return [
            {"op": "affine", "scale": np.float32(1.0), "shift": -rng.random(d).astype(np.float32)},
            {"op": "l2_normalize"},
            {"op": "matmul", "weight": rng.standard_normal((d, 7)).astype(np.float32)},
            {"op": "affine", "scale": np.float32(3.0), "shift": rng.random(7).astype(np.float32)},
            {"op": "sin"},
        ]
    raise AssertionError(op)


CASES = ["affine_scalar", "affine_vector", "l2_normalize", "matmul32", "matmul64", "sin", "chain"]


def test_every_op_is_covered():
    covered = {st["op"] for case in CASES for st in _case(case, np.random.default_rng(0), 4)}
    assert covered == set(STEP_OPS)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_run_steps_numpy_and_torch_agree(case, seed):
    rng = np.random.default_rng(seed)
    d = 9
    X = (3 * rng.standard_normal((17, d))).astype(np.float32)
    X[3] = 0.0  # a zero row exercises the eps of l2_normalize
    steps = _case(case, rng, d)
    width = check_steps(steps, d)
    out_np = run_steps(steps, X)
    assert out_np.dtype == np.float32 and out_np.shape == (17, width)
    cache: dict = {}
    out_t = run_steps_torch(steps, torch.as_tensor(X), cache=cache)
    assert out_t.dtype == torch.float32
    np.testing.assert_allclose(out_t.numpy(), out_np, rtol=1e-5, atol=1e-5)
    # a second call reuses the cached parameter tensors and gives the same result
    np.testing.assert_array_equal(
        run_steps_torch(steps, torch.as_tensor(X), cache=cache).numpy(), out_t.numpy()
    )


def test_run_steps_reference_values():
    X = np.array([[3.0, 4.0], [0.0, 0.0]], np.float32)
    np.testing.assert_array_equal(
        run_steps([{"op": "l2_normalize"}], X), np.float32([[0.6, 0.8], [0.0, 0.0]])
    )
    aff = [{"op": "affine", "scale": np.array([2.0, -1.0], np.float32), "shift": np.float32(1.0)}]
    assert run_steps(aff, X).tolist() == [[7.0, -3.0], [1.0, 1.0]]
    W = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], np.float32)
    assert run_steps([{"op": "matmul", "weight": W}], X).tolist() == [[3.0, 4.0, 7.0], [0.0, 0.0, 0.0]]
    assert run_steps([], X.astype(np.float64)).dtype == np.float32


def test_float64_accumulation_gives_identical_ties_on_both_backends():
    # 0/1 weights (FlyHash): sums of the same pixels in a different order must tie exactly
    rng = np.random.default_rng(0)
    d, m = 64, 200
    X = (rng.integers(0, 17, (50, d)) / 16.0 + rng.random((50, d)) * 1e-3).astype(np.float32)
    W = np.zeros((d, m), np.float32)
    for j in range(m):
        W[rng.choice(d, 6, replace=False), j] = 1.0
    W[:, 1] = W[:, 0][::-1]  # same count, other pixels
    W[:, 2] = W[:, 0]  # an exact duplicate unit: always ties with unit 0
    steps = [{"op": "matmul", "weight": W, "accumulate": "float64"}]
    s_np = run_steps(steps, X)
    s_t = run_steps_torch(steps, torch.as_tensor(X)).numpy()
    np.testing.assert_array_equal(s_np, s_t)
    np.testing.assert_array_equal(s_np[:, 0], s_np[:, 2])
    np.testing.assert_array_equal(topk_mask(s_np, 8), topk_mask(s_t, 8))


# ------------------------------------------------------------------------------------------------
# check_steps
# ------------------------------------------------------------------------------------------------


def test_check_steps_returns_output_width():
    steps = [
        {"op": "affine", "scale": np.float32(1), "shift": np.zeros(4, np.float32)},
        {"op": "matmul", "weight": np.zeros((4, 6), np.float32)},
        {"op": "affine", "scale": np.ones(6, np.float32), "shift": np.float32(0)},
        {"op": "sin"},
        {"op": "l2_normalize"},
    ]
    assert check_steps(steps, 4) == 6
    assert check_steps([], 5) == 5


def test_check_steps_unknown_op():
    with pytest.raises(
        HashplugError,
        match=re.escape(
            "graph step 1 has unknown op 'relu'; known ops are ['affine', 'l2_normalize', 'matmul', 'sin']."
        ),
    ):
        check_steps([{"op": "sin"}, {"op": "relu"}], 4)
    with pytest.raises(HashplugError, match=r"graph step 0 has unknown op None"):
        check_steps([{"weight": np.zeros((4, 2))}], 4)


def test_check_steps_matmul_shape():
    with pytest.raises(
        HashplugError, match=re.escape("graph step 0 (matmul) weight has shape (5, 3); expected (4, m).")
    ):
        check_steps([{"op": "matmul", "weight": np.zeros((5, 3))}], 4)
    with pytest.raises(
        HashplugError, match=re.escape("graph step 1 (matmul) weight has shape (3,); expected (3, m).")
    ):
        check_steps(
            [{"op": "matmul", "weight": np.zeros((4, 3))}, {"op": "matmul", "weight": np.zeros(3)}], 4
        )


def test_check_steps_affine_shapes():
    with pytest.raises(
        HashplugError, match=re.escape("graph step 0 (affine) scale has shape (3,); expected () or (4,).")
    ):
        check_steps([{"op": "affine", "scale": np.ones(3), "shift": 0.0}], 4)
    with pytest.raises(
        HashplugError, match=re.escape("graph step 0 (affine) shift has shape (1, 4); expected () or (4,).")
    ):
        check_steps([{"op": "affine", "scale": 1.0, "shift": np.zeros((1, 4))}], 4)
    # the width after a matmul is what an affine is checked against
    with pytest.raises(
        HashplugError, match=re.escape("graph step 1 (affine) shift has shape (4,); expected () or (2,).")
    ):
        check_steps(
            [
                {"op": "matmul", "weight": np.zeros((4, 2))},
                {"op": "affine", "scale": 1.0, "shift": np.zeros(4)},
            ],
            4,
        )
