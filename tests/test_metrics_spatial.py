"""Tests of the spatial retrieval metric mAP@K_r (NeuroHash, sec. IV) in hashplug.metrics."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hashplug.metrics as metrics
from hashplug.metrics import (
    map_at_k_r,
    mean_average_precision,
    per_query_map_at_k_r,
    relevance,
    spatial_relevance,
)
from hashplug.validation import HashplugError

NAN = np.nan

# ------------------------------------------------------------------------------------------------
# the worked example: 2 queries x 4 database images
#
# classes: 0 = dog, 1 = cat, 2 = car. Centres are multiples of 1/4, so every distance below is exact.
#
#   query 0: dog (.25, .25), cat (.75, .75), padding
#   query 1: car (.50, .50), padding at (.50, .50), padding (NaN)
#   db 0:    dog (.75, .25), padding (NaN)
#   db 1:    cat (.75, .50), car (.50, .75)
#   db 2:    dog (.25, .50), padding at (.50, .50)  <- same centre as query 1's padding slot
#   db 3:    car (.50, 1.0), dog (.50, .25)
#
# same-class pairs and their distances:
#   q0 dog - db0 dog: dx = .5            -> .5
#   q0 cat - db1 cat: dy = .25           -> .25
#   q0 dog - db2 dog: dy = .25           -> .25
#   q0 dog - db3 dog: dx = .25           -> .25
#   q1 car - db1 car: dy = .25           -> .25
#   q1 car - db3 car: dy = .5            -> .5
# ------------------------------------------------------------------------------------------------

QL = np.array([[0, 1, -1], [2, -1, -1]])
QC = np.array(
    [
        [[0.25, 0.25], [0.75, 0.75], [NAN, NAN]],
        [[0.5, 0.5], [0.5, 0.5], [NAN, NAN]],
    ]
)
DL = np.array([[0, -1], [1, 2], [0, -1], [2, 0]])
DC = np.array(
    [
        [[0.75, 0.25], [NAN, NAN]],
        [[0.75, 0.5], [0.5, 0.75]],
        [[0.25, 0.5], [0.5, 0.5]],
        [[0.5, 1.0], [0.5, 0.25]],
    ]
)
# query 0 ranks db1 (0), then the tie {db0, db3} (1; db0 first by index), then db2 (2)
# query 1 ranks db0 (0), db2 (1), db3 (2), db1 (3)
DIST = np.array([[1, 0, 2, 1], [0, 3, 1, 2]])


def test_relevance_worked_example_and_r_boundaries():
    rel = spatial_relevance(QL, QC, DL, DC, 0.25)
    assert rel.shape == (2, 4) and rel.dtype == np.bool_
    # distance exactly r = .25 counts (inclusive); db2 is NOT relevant to q1 although their padding slots
    # share the centre (.5, .5): padding never matches padding
    np.testing.assert_array_equal(rel, [[0, 1, 1, 1], [0, 1, 0, 0]])
    # just below .25: nothing; exactly .5: the two pairs at distance .5 join
    np.testing.assert_array_equal(spatial_relevance(QL, QC, DL, DC, 0.2499), np.zeros((2, 4)))
    np.testing.assert_array_equal(spatial_relevance(QL, QC, DL, DC, 0.5), [[1, 1, 1, 1], [0, 1, 0, 1]])
    np.testing.assert_array_equal(spatial_relevance(QL, QC, DL, DC, 0.0), np.zeros((2, 4)))
    # r = inf: class match only -- same as 0.5 here (no same-class pair is farther apart)
    np.testing.assert_array_equal(spatial_relevance(QL, QC, DL, DC, np.inf), [[1, 1, 1, 1], [0, 1, 0, 1]])


def test_r_zero_needs_identical_centres():
    ql, qc = np.array([[3]]), np.array([[[0.3, 0.7]]])
    dl = np.array([[3], [3], [4]])
    dc = np.array([[[0.3, 0.7]], [[0.3, 0.7000001]], [[0.3, 0.7]]])
    np.testing.assert_array_equal(spatial_relevance(ql, qc, dl, dc, 0), [[1, 0, 0]])


def test_map_at_k_r_worked_example():
    # r = .25, K = All.
    # q0: relevance [0, 1, 1, 1]; ranked db1, db0, db3, db2 -> [1, 0, 1, 1]:
    #     AP = (1/1 + 2/3 + 3/4) / 3 = (29/12) / 3 = 29/36
    # q1: relevance [0, 1, 0, 0]; ranked db0, db2, db3, db1 -> [0, 0, 0, 1]: AP = (1/4) / 1 = 1/4
    # mAP = (29/36 + 9/36) / 2 = 19/36
    np.testing.assert_allclose(per_query_map_at_k_r(DIST, QL, QC, DL, DC, 0.25), [29 / 36, 1 / 4])
    assert map_at_k_r(DIST, QL, QC, DL, DC, 0.25) == pytest.approx(19 / 36)
    # K = 2: q0 top 2 = [1, 0] -> 1/1 (denominator: relevant items retrieved in the top K); q1 [0, 0] -> 0
    assert map_at_k_r(DIST, QL, QC, DL, DC, 0.25, K=2) == pytest.approx(1 / 2)
    # K = 3: q0 [1, 0, 1] -> (1 + 2/3) / 2 = 5/6; q1 [0, 0, 0] -> 0; mAP = 5/12
    assert map_at_k_r(DIST, QL, QC, DL, DC, 0.25, K=3) == pytest.approx(5 / 12)
    # r = .5: q0 all relevant -> 1; q1 relevance [0, 1, 0, 1], ranked [0, 0, 1, 1] -> (1/3 + 2/4) / 2 = 5/12
    # mAP = (1 + 5/12) / 2 = 17/24
    assert map_at_k_r(DIST, QL, QC, DL, DC, 0.5) == pytest.approx(17 / 24)


def test_map_at_k_r_tie_aware_worked_example():
    # q0 has the tie {db0 (not relevant), db3 (relevant)} at distance 1, ranks 2-3; r = .25.
    # K = All: order db1, db0, db3, db2 -> [1, 0, 1, 1] -> 29/36
    #          order db1, db3, db0, db2 -> [1, 1, 0, 1] -> (1 + 1 + 3/4) / 3 = 33/36
    #          expected 31/36; q1 has no tie -> 1/4; mAP = (31/36 + 9/36) / 2 = 5/9
    assert map_at_k_r(DIST, QL, QC, DL, DC, 0.25, tie_aware=True) == pytest.approx(5 / 9)
    # K = 3 cuts no group but K = 2 cuts the tie: q0 top 2 is [1, 0] -> 1 or [1, 1] -> 1: expected 1
    # K = 3: [1, 0, 1] -> 5/6 or [1, 1, 0] -> 1: expected 11/12; q1 -> 0; mAP = 11/24
    assert map_at_k_r(DIST, QL, QC, DL, DC, 0.25, K=2, tie_aware=True) == pytest.approx(1 / 2)
    assert map_at_k_r(DIST, QL, QC, DL, DC, 0.25, K=3, tie_aware=True) == pytest.approx(11 / 24)


def test_q_mask_selects_query_objects():
    # q0 focused on the cat only: relevant = db1 only; ranked [1, 0, 0, 0] -> AP 1
    # q1: mask True everywhere, including its padding slots (ignored) -> unchanged 1/4; mAP = 5/8
    mask = np.array([[False, True, False], [True, True, True]])
    np.testing.assert_array_equal(
        spatial_relevance(QL, QC, DL, DC, 0.25, q_mask=mask), [[0, 1, 0, 0], [0, 1, 0, 0]]
    )
    assert map_at_k_r(DIST, QL, QC, DL, DC, 0.25, q_mask=mask) == pytest.approx(5 / 8)
    # q0 focused on the dog only: relevant db2, db3; ranked [0, 0, 1, 1] -> (1/3 + 2/4) / 2 = 5/12
    # q1 with no counted object: relevant to nothing -> AP 0
    inv = ~mask
    np.testing.assert_allclose(per_query_map_at_k_r(DIST, QL, QC, DL, DC, 0.25, q_mask=inv), [5 / 12, 0.0])
    # 0/1 integers are accepted as a mask
    assert map_at_k_r(DIST, QL, QC, DL, DC, 0.25, q_mask=mask.astype(int)) == pytest.approx(5 / 8)


def test_padding_ignored_even_when_centres_match():
    # the query's padding slot and the database's padding slot sit on the same centre; the real objects
    # are of different classes, so nothing is relevant at any r
    ql = np.array([[1, -1]])
    qc = np.array([[[0.1, 0.1], [0.5, 0.5]]])
    dl = np.array([[2, -1], [-1, -1]])
    dc = np.array([[[0.1, 0.1], [0.5, 0.5]], [[0.5, 0.5], [0.5, 0.5]]])
    np.testing.assert_array_equal(spatial_relevance(ql, qc, dl, dc, np.inf), [[0, 0]])
    assert map_at_k_r(np.array([[0, 1]]), ql, qc, dl, dc, 1.0) == 0.0


def test_different_max_objects_and_single_object_images():
    ql = np.array([[5]])  # one object per query
    qc = np.array([[[0.5, 0.5]]])
    dl = np.array([[7, 7, 7, 5], [7, -1, -1, -1]])  # up to 4 objects per database image
    dc = np.full((2, 4, 2), 0.5)
    np.testing.assert_array_equal(spatial_relevance(ql, qc, dl, dc, 0.0), [[1, 0]])


def test_r_need_not_be_a_python_float():
    a = spatial_relevance(QL, QC, DL, DC, np.float32(0.25))
    np.testing.assert_array_equal(a, spatial_relevance(QL, QC, DL, DC, 0.25))
    inf = spatial_relevance(QL, QC, DL, DC, np.inf)
    for r in (1, 1e200, 10**400):  # ints, and radii whose square overflows
        np.testing.assert_array_equal(spatial_relevance(QL, QC, DL, DC, r), inf)


def test_larger_radius_can_lower_map():
    # mAP@K_r is NOT monotone in r even for K = All and a fixed ranking: a larger r can make a low-ranked
    # item relevant, which adds a term below the current mean precision.
    # query: class 0 at (.5, .5); ranked db0..db3; db0 class 0 on the query, db3 class 0 at distance .5.
    ql, qc = np.array([[0]]), np.array([[[0.5, 0.5]]])
    dl = np.array([[0], [1], [1], [0]])
    dc = np.array([[[0.5, 0.5]], [[0.5, 0.5]], [[0.5, 0.5]], [[0.5, 1.0]]])
    d = np.arange(4)[None, :]
    assert map_at_k_r(d, ql, qc, dl, dc, 0.25) == pytest.approx(1.0)  # [1, 0, 0, 0]
    assert map_at_k_r(d, ql, qc, dl, dc, 0.5) == pytest.approx((1 + 2 / 4) / 2)  # [1, 0, 0, 1]


def test_small_blocks(monkeypatch):
    # query blocks of one row in _from_dist and one-row sub-blocks in the relevance computation
    expect = [
        map_at_k_r(DIST, QL, QC, DL, DC, 0.25, K=k, tie_aware=t) for k in (None, 2) for t in (False, True)
    ]
    rel = spatial_relevance(QL, QC, DL, DC, 0.25)
    monkeypatch.setattr(metrics, "_TEMP_BYTES", 1)
    got = [map_at_k_r(DIST, QL, QC, DL, DC, 0.25, K=k, tie_aware=t) for k in (None, 2) for t in (False, True)]
    np.testing.assert_allclose(got, expect)
    np.testing.assert_array_equal(spatial_relevance(QL, QC, DL, DC, 0.25), rel)


# ------------------------------------------------------------------------------------------------
# oracles (plain Python) and properties
# ------------------------------------------------------------------------------------------------


def rel_oracle(ql, qc, dl, dc, r, mask=None) -> np.ndarray:
    out = np.zeros((len(ql), len(dl)), dtype=bool)
    for i, j in itertools.product(range(len(ql)), range(len(dl))):
        for a, b in itertools.product(range(ql.shape[1]), range(dl.shape[1])):
            if ql[i, a] < 0 or dl[j, b] < 0 or (mask is not None and not mask[i, a]):
                continue
            if ql[i, a] != dl[j, b]:
                continue
            dx = qc[i, a, 0] - dc[j, b, 0]
            dy = qc[i, a, 1] - dc[j, b, 1]
            if dx * dx + dy * dy <= r * r:
                out[i, j] = True
    return out


def ap_of_list(rel) -> float:
    hits, total = 0, 0.0
    for pos, x in enumerate(rel, start=1):
        if x:
            hits += 1
            total += hits / pos
    return total / hits if hits else 0.0


def tie_orders(d):
    groups = [[j for j in range(len(d)) if d[j] == v] for v in sorted(set(d))]
    for perms in itertools.product(*(itertools.permutations(g) for g in groups)):
        yield [j for p in perms for j in p]


def ap_oracle(d, rel, K, tie_aware) -> float:
    if not tie_aware:
        order = sorted(range(len(d)), key=lambda j: (d[j], j))
        return ap_of_list([rel[j] for j in order[:K]])
    vals = [ap_of_list([rel[j] for j in order[:K]]) for order in tie_orders(d)]
    return sum(vals) / len(vals)


def pair_indicators(rel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Multi-label indicators with one class per (query, item) pair: q_ind @ db_ind.T > 0 is exactly rel."""
    nq, ndb = rel.shape
    q_ind = np.zeros((nq, nq * ndb), dtype=int)
    db_ind = np.zeros((ndb, nq * ndb), dtype=int)
    for i, j in zip(*np.nonzero(rel)):
        q_ind[i, i * ndb + j] = 1
        db_ind[j, i * ndb + j] = 1
    return q_ind, db_ind


def class_indicators(labels: np.ndarray, n_classes: int, mask=None) -> np.ndarray:
    ind = np.zeros((len(labels), n_classes), dtype=int)
    for i, k in zip(*np.nonzero(labels >= 0)):
        if mask is None or mask[i, k]:
            ind[i, labels[i, k]] = 1
    return ind


GRID = [i / 8 for i in range(9)]  # multiples of 1/8: many pairs exactly at the radius
RADII = [0.0, 0.125, 0.25, 0.3, 0.5, 1.0, float("inf")]


@st.composite
def scenes(draw, max_q=3, max_db=5):
    nq = draw(st.integers(1, max_q))
    ndb = draw(st.integers(1, max_db))
    mq = draw(st.integers(1, 3))
    mdb = draw(st.integers(1, 3))
    ql = np.array(draw(st.lists(st.integers(-1, 2), min_size=nq * mq, max_size=nq * mq))).reshape(nq, mq)
    dl = np.array(draw(st.lists(st.integers(-1, 2), min_size=ndb * mdb, max_size=ndb * mdb))).reshape(
        ndb, mdb
    )
    qc = np.array(draw(st.lists(st.sampled_from(GRID), min_size=nq * mq * 2, max_size=nq * mq * 2)))
    dc = np.array(draw(st.lists(st.sampled_from(GRID), min_size=ndb * mdb * 2, max_size=ndb * mdb * 2)))
    qc, dc = qc.reshape(nq, mq, 2), dc.reshape(ndb, mdb, 2)
    qc[ql < 0] = np.nan  # padding centres are ignored, even NaN
    dc[dl < 0] = np.nan
    r = draw(st.sampled_from(RADII))
    mask = None
    if draw(st.booleans()):
        mask = np.array(draw(st.lists(st.booleans(), min_size=nq * mq, max_size=nq * mq))).reshape(nq, mq)
    d = np.array(draw(st.lists(st.integers(0, 2), min_size=nq * ndb, max_size=nq * ndb))).reshape(nq, ndb)
    K = draw(st.one_of(st.none(), st.integers(1, ndb)))
    return ql, qc, dl, dc, r, mask, d, K


@settings(max_examples=150, deadline=None)
@given(scenes(), st.booleans())
def test_matches_python_oracle(scene, tie_aware):
    ql, qc, dl, dc, r, mask, d, K = scene
    rel = spatial_relevance(ql, qc, dl, dc, r, q_mask=mask)
    np.testing.assert_array_equal(rel, rel_oracle(ql, qc, dl, dc, r, mask))
    ap = per_query_map_at_k_r(d, ql, qc, dl, dc, r, K, tie_aware, q_mask=mask)
    kk = d.shape[1] if K is None else K
    expect = [ap_oracle(list(d[i]), list(rel[i]), kk, tie_aware) for i in range(d.shape[0])]
    np.testing.assert_allclose(ap, expect, rtol=1e-9, atol=1e-12)
    # the same numbers as mean_average_precision given this relevance (pair indicators), any chunk size
    q_ind, db_ind = pair_indicators(rel)
    m = map_at_k_r(d, ql, qc, dl, dc, r, K, tie_aware, q_mask=mask, chunk_size=1)
    assert m == pytest.approx(mean_average_precision(d, q_ind, db_ind, K, tie_aware), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(scenes(), st.booleans())
def test_r_inf_is_multilabel_map(scene, tie_aware):
    # r = inf: relevant = a shared class among the counted objects = mAP@K of multi-label indicator matrices
    ql, qc, dl, dc, _, mask, d, K = scene
    q_ind = class_indicators(ql, 3, mask)
    db_ind = class_indicators(dl, 3)
    np.testing.assert_array_equal(
        spatial_relevance(ql, qc, dl, dc, np.inf, q_mask=mask), relevance(q_ind, db_ind)
    )
    got = map_at_k_r(d, ql, qc, dl, dc, np.inf, K, tie_aware, q_mask=mask)
    assert got == pytest.approx(mean_average_precision(d, q_ind, db_ind, K, tie_aware), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(scenes(), st.sampled_from(RADII))
def test_relevance_grows_with_r(scene, r2):
    # relevance sets are nested in r (the metric itself is not monotone: test_larger_radius_can_lower_map)
    ql, qc, dl, dc, r, mask, _, _ = scene
    lo, hi = sorted([r, r2])
    a = spatial_relevance(ql, qc, dl, dc, lo, q_mask=mask)
    b = spatial_relevance(ql, qc, dl, dc, hi, q_mask=mask)
    assert not np.any(a & ~b)


@settings(max_examples=100, deadline=None)
@given(scenes(), st.randoms(use_true_random=False))
def test_invariances(scene, rnd):
    ql, qc, dl, dc, r, mask, _, _ = scene
    rel = spatial_relevance(ql, qc, dl, dc, r, q_mask=mask)
    # swapping query and database transposes the relation (without a mask)
    np.testing.assert_array_equal(
        spatial_relevance(dl, dc, ql, qc, r).T, spatial_relevance(ql, qc, dl, dc, r)
    )
    # an all-True mask is no mask
    full = np.ones(ql.shape, dtype=bool)
    np.testing.assert_array_equal(
        spatial_relevance(ql, qc, dl, dc, r, q_mask=full), spatial_relevance(ql, qc, dl, dc, r)
    )
    # permuting the object slots of the database, or appending a padding slot, changes nothing
    perm = list(range(dl.shape[1]))
    rnd.shuffle(perm)
    dl2 = np.concatenate([dl[:, perm], np.full((len(dl), 1), -1)], axis=1)
    dc2 = np.concatenate([dc[:, perm], np.full((len(dl), 1, 2), np.nan)], axis=1)
    np.testing.assert_array_equal(spatial_relevance(ql, qc, dl2, dc2, r, q_mask=mask), rel)


# ------------------------------------------------------------------------------------------------
# input errors
# ------------------------------------------------------------------------------------------------


def test_errors():
    def call(**kw):
        args = dict(dist=DIST, q_labels=QL, q_centres=QC, db_labels=DL, db_centres=DC, r=0.25)
        args.update(kw)
        return map_at_k_r(**args)

    with pytest.raises(
        HashplugError, match=r"q_centres has shape \(2, 2, 2\) but q_labels has shape \(2, 3\)"
    ):
        call(q_centres=QC[:, :2])
    with pytest.raises(HashplugError, match=r"db_centres has shape \(4, 2, 3\)"):
        call(db_centres=np.zeros((4, 2, 3)))
    with pytest.raises(HashplugError, match="q_centres must have 3 dimensions"):
        call(q_centres=QC[:, :, 0])
    with pytest.raises(HashplugError, match=r"db_labels must be 2-D .* db_labels\[:, None\]"):
        call(db_labels=DL[:, 0], db_centres=DC[:, :1])
    with pytest.raises(HashplugError, match="dist has 2 query rows but q_labels has 1 query images"):
        call(q_labels=QL[:1], q_centres=QC[:1])
    with pytest.raises(HashplugError, match="dist has 3 database items but db_labels has 4"):
        call(dist=DIST[:, :3])
    with pytest.raises(HashplugError, match=r"q_mask has shape \(2, 2\) but q_labels has shape \(2, 3\)"):
        call(q_mask=np.ones((2, 2), dtype=bool))
    with pytest.raises(HashplugError, match="q_mask must be boolean"):
        call(q_mask=np.full((2, 3), 2))
    # a NaN centre on a real object (a NaN at a padding slot is fine, see QC)
    qc = QC.copy()
    qc[1, 0, 1] = np.nan
    with pytest.raises(
        HashplugError, match=r"q_centres\[1, 0\] = \(0.5, nan\) is not finite, but q_labels\[1, 0\] = 2"
    ):
        call(q_centres=qc)
    dc = DC.copy()
    dc[3, 1, 0] = np.inf
    with pytest.raises(HashplugError, match=r"db_centres\[3, 1\].*set its label to -1"):
        call(db_centres=dc)
    with pytest.raises(HashplugError, match=r"outside \[0, 1\].*not pixel coordinates"):
        call(db_centres=DC * 640)
    with pytest.raises(HashplugError, match="integer object classes"):
        call(q_labels=QL.astype(float))
    with pytest.raises(HashplugError, match="integer object classes"):
        call(q_labels=QL >= 0)
    bad = DL.copy()
    bad[2, 1] = -3
    with pytest.raises(HashplugError, match=r"db_labels\[2, 1\] = -3; object classes must be >= 0"):
        call(db_labels=bad)
    for r in (-0.1, np.nan, "0.5", None, True):
        with pytest.raises(HashplugError, match=r"r must be a radius >= 0.*got"):
            call(r=r)
    with pytest.raises(HashplugError, match=r"K must be an int in \[1, 4\].*got 5"):
        call(K=5)
    with pytest.raises(HashplugError, match=r"K must be an int in \[1, 4\].*got 0"):
        call(K=0)
    with pytest.raises(HashplugError, match="chunk_size"):
        call(chunk_size=0)
    with pytest.raises(HashplugError, match="NaN"):
        call(dist=np.where(DIST == 3, np.nan, DIST))
    with pytest.raises(HashplugError, match="r must be a radius"):
        spatial_relevance(QL, QC, DL, DC, -1.0)
    with pytest.raises(HashplugError, match="empty batch"):
        spatial_relevance(QL[:0], QC[:0], DL, DC, 0.25)
