"""Tests of hashplug.codes: bit order by hand, exact round trips, validation messages."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashplug import codes
from hashplug.codes import (
    check_indices,
    check_packed,
    convert,
    index_bits,
    indices_to_packed,
    indices_to_pm1,
    n_bytes,
    pack_bits,
    packed_to_indices,
    packed_to_pm1,
    pm1_to_packed,
    storage_bits,
    unpack_bits,
)
from hashplug.validation import HashplugError


def random_khot(rng: np.random.Generator, n: int, m: int, k: int) -> np.ndarray:
    """n sorted rows of k distinct units in [0, m)."""
    return np.sort(np.argsort(rng.random((n, m)), axis=1)[:, :k], axis=1).astype(np.int64)


# ------------------------------------------------------------------------------------------------
# worked examples
# ------------------------------------------------------------------------------------------------


def test_worked_example_m10():
    idx = np.array([[0, 9]])
    packed = indices_to_packed(idx, 10)
    assert packed.dtype == np.uint8
    assert packed.tolist() == [[0b10000000, 0b01000000]]
    pm1 = indices_to_pm1(idx, 10)
    assert pm1.dtype == np.int8
    assert pm1.tolist() == [[1, -1, -1, -1, -1, -1, -1, -1, -1, 1]]
    assert packed_to_indices(packed, 10).tolist() == [[0, 9]]
    assert packed_to_pm1(packed, 10).tolist() == pm1.tolist()


def test_worked_example_m16_several_rows():
    idx = np.array([[1, 8, 15], [0, 7, 14]])
    packed = indices_to_packed(idx, 16)
    assert packed.tolist() == [[0b01000000, 0b10000001], [0b10000001, 0b00000010]]
    assert packed_to_indices(packed, 16, k=3).tolist() == idx.tolist()


@pytest.mark.parametrize("m", [1, 7, 8, 9, 16, 17, 70])
def test_bit_order_unit_i_is_bit_7_minus_i_mod_8_of_byte_i_div_8(m):
    for i in range(m):
        packed = indices_to_packed(np.array([[i]]), m)
        expected = np.zeros((1, n_bytes(m)), dtype=np.uint8)
        expected[0, i // 8] = 1 << (7 - i % 8)
        np.testing.assert_array_equal(packed, expected)
        bits = unpack_bits(packed, m)
        assert bits.shape == (1, m)
        assert np.flatnonzero(bits[0]).tolist() == [i]


def test_pack_bits_matches_numpy_big_endian_packbits():
    rng = np.random.default_rng(0)
    bits = rng.random((5, 21)) < 0.5
    np.testing.assert_array_equal(pack_bits(bits), np.packbits(bits, axis=1, bitorder="big"))
    np.testing.assert_array_equal(unpack_bits(pack_bits(bits), 21), bits)


@pytest.mark.parametrize(("m", "nb"), [(1, 1), (8, 1), (9, 2), (16, 2), (17, 3), (160, 20)])
def test_n_bytes(m, nb):
    assert n_bytes(m) == nb


def test_n_bytes_rejects_zero():
    with pytest.raises(HashplugError, match=r"m must be >= 1\. Got 0 instead"):
        n_bytes(0)


@pytest.mark.parametrize(
    ("m", "bits"), [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (256, 8), (257, 9), (640, 10)]
)
def test_index_bits(m, bits):
    assert index_bits(m) == bits


def test_storage_bits():
    assert storage_bits(160, 8, "khot") == 8 * 8
    assert storage_bits(640, 16, "khot") == 16 * 10
    assert storage_bits(64, 64, "dense") == 64


# ------------------------------------------------------------------------------------------------
# round trips
# ------------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    m=st.integers(1, 80),
    n=st.integers(0, 6),
    k_frac=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_roundtrip_indices_packed_pm1(m, n, k_frac, seed):
    k = max(1, int(round(k_frac * m)))
    idx = random_khot(np.random.default_rng(seed), n, m, k)
    packed = indices_to_packed(idx, m)
    assert packed.shape == (n, n_bytes(m)) and packed.dtype == np.uint8
    check_packed(packed, m)  # padding bits are zero
    bits = unpack_bits(packed, m)
    assert (bits.sum(axis=1) == k).all()
    back = packed_to_indices(packed, m, k)
    assert back.dtype == np.int32 and back.shape == (n, k)
    np.testing.assert_array_equal(back, idx)
    pm1 = packed_to_pm1(packed, m)
    assert pm1.dtype == np.int8 and pm1.shape == (n, m)
    assert set(np.unique(pm1).tolist()) <= {-1, 1}
    np.testing.assert_array_equal(pm1 == 1, bits)
    np.testing.assert_array_equal(indices_to_pm1(idx, m), pm1)
    np.testing.assert_array_equal(pm1_to_packed(pm1), packed)
    # every pair of formats through convert agrees with the direct forms
    forms = {"packed": packed, "indices": idx, "pm1": pm1}
    for src, a in forms.items():
        for dst, b in forms.items():
            np.testing.assert_array_equal(convert(a, src, dst, m, k), b)


@settings(max_examples=150, deadline=None)
@given(m=st.integers(1, 80), n=st.integers(0, 6), p=st.floats(0.0, 1.0), seed=st.integers(0, 2**32 - 1))
def test_roundtrip_dense_packed_pm1(m, n, p, seed):
    bits = np.random.default_rng(seed).random((n, m)) < p
    packed = pack_bits(bits)
    check_packed(packed, m)
    np.testing.assert_array_equal(unpack_bits(packed, m), bits)
    pm1 = packed_to_pm1(packed, m)
    np.testing.assert_array_equal(pm1, np.where(bits, 1, -1))
    np.testing.assert_array_equal(pm1_to_packed(pm1), packed)
    np.testing.assert_array_equal(convert(pm1, "pm1", "packed", m), packed)


def test_one_dimensional_inputs_are_one_row():
    assert check_packed(np.array([0b10000000, 0b01000000], np.uint8), 10).shape == (1, 2)
    assert check_indices(np.array([0, 9]), 10).shape == (1, 2)


def test_empty_batches_keep_their_shapes():
    assert indices_to_packed(np.zeros((0, 3), np.int64), 10).shape == (0, 2)
    assert packed_to_indices(np.zeros((0, 2), np.uint8), 10, k=3).shape == (0, 3)
    assert packed_to_pm1(np.zeros((0, 2), np.uint8), 10).shape == (0, 10)


def test_check_indices_returns_int32_for_other_integer_dtypes():
    """hashplug's one index type (codes.INDEX_DTYPE), whatever integer type came in."""
    for dt in (np.uint16, np.int64, np.uint64):
        out = check_indices(np.array([[1, 5]], dtype=dt), 10)
        assert out.dtype == np.int32 and out.tolist() == [[1, 5]]
    with pytest.raises(HashplugError, match="m=4294967296 units cannot be named by int32 indices"):
        check_indices(np.array([[1, 5]]), 2**32)


# ------------------------------------------------------------------------------------------------
# validation errors
# ------------------------------------------------------------------------------------------------


def test_packed_wrong_dtype():
    with pytest.raises(
        HashplugError, match=r"codes must be packed bits of dtype uint8; got int64\..*pack_bits"
    ):
        check_packed(np.zeros((2, 2), np.int64), 10)


def test_packed_wrong_width():
    with pytest.raises(
        HashplugError, match=re.escape("codes must have shape (n, 2) for m=10 units; got (1, 3).")
    ):
        check_packed(np.zeros((1, 3), np.uint8), 10)
    with pytest.raises(HashplugError, match=re.escape("must have shape (n, 2)")):
        unpack_bits(np.zeros((4, 1), np.uint8), 10)


def test_packed_nonzero_padding_bits():
    ok = np.array([[0, 0b01000000]], np.uint8)  # unit 9: the last real bit
    check_packed(ok, 10)
    for pad_byte in (0b00100000, 0b00000001):
        bad = np.array([[0, pad_byte]], np.uint8)
        with pytest.raises(HashplugError, match=r"non-zero padding bits beyond unit m=10"):
            check_packed(bad, 10)
        with pytest.raises(HashplugError, match="padding"):
            packed_to_indices(bad, 10)
    # m a multiple of 8 has no padding: every bit is a unit
    check_packed(np.array([[0xFF, 0xFF]], np.uint8), 16)


def test_packed_error_names_the_argument():
    with pytest.raises(HashplugError, match=r"^query must be packed bits"):
        check_packed(np.zeros((1, 2), np.float32), 10, name="query")


@pytest.mark.parametrize("row", [[3, 1], [2, 2], [0, 5, 5], [4, 2, 9]])
def test_indices_unsorted_or_duplicate(row):
    with pytest.raises(HashplugError, match=r"rows must be strictly ascending \(no repeats\)"):
        check_indices(np.array([row]), 10)
    with pytest.raises(HashplugError, match="strictly ascending"):
        indices_to_packed(np.array([row]), 10)


def test_indices_k_greater_than_m():
    with pytest.raises(
        HashplugError, match=re.escape("indices has k=3 > m=2 active units per row; k must be in [1, m].")
    ):
        check_indices(np.array([[0, 1, 2]]), 2)


@pytest.mark.parametrize(("row", "lo", "hi"), [([0, 10], 0, 10), ([-1, 3], -1, 3), ([5, 12], 5, 12)])
def test_indices_out_of_range(row, lo, hi):
    with pytest.raises(
        HashplugError, match=re.escape(f"indices must lie in [0, 9]; got values in [{lo}, {hi}].")
    ):
        check_indices(np.array([row]), 10)


def test_indices_wrong_dtype_or_ndim():
    with pytest.raises(
        HashplugError, match=r"must be a 2-D integer array \(n, k\); got shape \(1, 2\), dtype float64"
    ):
        check_indices(np.array([[0.0, 1.0]]), 10)
    with pytest.raises(HashplugError, match=r"2-D integer array.*shape \(1, 1, 2\)"):
        check_indices(np.zeros((1, 1, 2), np.int64), 10)


def test_indices_wrong_k():
    with pytest.raises(HashplugError, match=re.escape("indices must have k=3 columns; got 2.")):
        check_indices(np.array([[0, 1]]), 10, k=3)


def test_packed_to_indices_rejects_non_khot():
    packed = indices_to_packed(np.array([[0, 1]]), 10)
    mixed = np.vstack([packed, indices_to_packed(np.array([[4]]), 10)])
    with pytest.raises(
        HashplugError, match=r"not k-hot: rows have between 1 and 2 set bits, expected the same number"
    ):
        packed_to_indices(mixed, 10)
    with pytest.raises(HashplugError, match=r"not k-hot: rows have between 2 and 2 set bits, expected k=3"):
        packed_to_indices(packed, 10, k=3)


@pytest.mark.parametrize("bad", [np.array([[1, 0, -1]]), np.array([[2, -1]]), np.array([1, -1])])
def test_pm1_rejects_other_values_or_ndim(bad):
    with pytest.raises(HashplugError, match=r"pm1 codes must be a 2-D array whose entries are all \+1 or -1"):
        pm1_to_packed(bad)


def test_pack_bits_requires_2d():
    with pytest.raises(HashplugError, match=re.escape("bits must be 2-D (n, m); got shape (3,).")):
        pack_bits(np.array([True, False, True]))


@pytest.mark.parametrize(("src", "dst"), [("bits", "packed"), ("packed", "hex")])
def test_convert_unknown_format(src, dst):
    bad = src if src not in codes.FORMATS else dst
    with pytest.raises(
        HashplugError,
        match=re.escape(f"Unknown code layout {bad!r}; use one of ['packed', 'indices', 'pm1']."),  # 0.2.0 word
    ):
        convert(np.zeros((1, 2), np.uint8), src, dst, 10)


@pytest.mark.parametrize(
    ("width", "dst"),
    [(12, "packed"), (9, "indices"), (16, "pm1")],
    ids=["pad-bits", "too-narrow", "src==dst"],
)
def test_convert_checks_pm1_width_against_m(width, dst):
    pm1 = np.ones((1, width), np.int8)
    with pytest.raises(HashplugError, match=r"m=10"):
        convert(pm1, "pm1", dst, m=10)
