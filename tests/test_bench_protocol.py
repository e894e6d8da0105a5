"""The fair-comparison protocol (hashplug.bench.protocol): splits, chance floor, float ceiling, budgets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashplug.bench.protocol import (
    TuningBudget,
    chance_map,
    check_no_overlap,
    cosine_map,
    flat_setting,
    overlap_report,
    reference_rows,
    rows_digest,
    sampled_grid,
    seed_summary,
    validation_record,
    validation_rows,
)
from hashplug.metrics import mean_average_precision
from hashplug.validation import HashplugError


def test_chance_map_by_hand_one_relevant_of_two():
    # one query, database [relevant, irrelevant]: random order -> AP 1 (first) or 1/2 (second): mean 0.75
    assert chance_map(np.array([0]), np.array([0, 1]), None) == pytest.approx(0.75)
    # AP@1: the top item is relevant half the time (AP 1) else nothing relevant retrieved (AP 0)
    assert chance_map(np.array([0]), np.array([0, 1]), 1) == pytest.approx(0.5)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(3, 9), st.integers(1, 9))
def test_chance_map_equals_the_mean_over_all_permutations(seed, n_db, K):
    import itertools

    rng = np.random.default_rng(seed)
    yq, ydb = rng.integers(0, 3, 2), rng.integers(0, 3, n_db)
    K = min(K, n_db)
    if n_db <= 6:  # every ordering
        perms = list(itertools.permutations(range(n_db)))
    else:
        perms = [rng.permutation(n_db) for _ in range(3000)]
    vals = []
    for p in perms:
        D = np.empty((2, n_db), np.float32)
        D[:, np.asarray(p)] = np.arange(n_db)
        vals.append(mean_average_precision(D, yq, ydb, limit=K))
    tol = 1e-9 if n_db <= 6 else 0.03
    assert chance_map(yq, ydb, K) == pytest.approx(np.mean(vals), abs=tol)


def test_cosine_map_is_perfect_on_separated_classes_and_chance_on_noise():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 50)
    F = np.eye(4)[y] * 10 + rng.normal(0, 0.01, (200, 4))
    assert cosine_map(F[:20], F[20:], y[:20], y[20:], 30) == pytest.approx(1.0)
    noise = rng.normal(size=(200, 8))
    c = chance_map(y[:20], y[20:], 30)
    assert abs(cosine_map(noise[:20], noise[20:], y[:20], y[20:], 30) - c) < 0.15


def test_validation_rows_avoid_every_test_row_and_stay_in_the_training_side():
    train = np.arange(100, 1000)
    test_q = [np.arange(100, 200), np.arange(900, 950)]
    q, db = validation_rows(train, 50, 300, seed=3, exclude=test_q)
    assert np.intersect1d(q, db).size == 0
    assert np.isin(q, train).all() and np.isin(db, train).all()
    rep = overlap_report({"queries": q, "database": db}, {"0": {"queries": test_q[0]}, "1": {"queries": test_q[1]}})
    assert all(v == 0 for d in rep.values() for v in d.values())
    check_no_overlap(rep)
    bad = overlap_report({"queries": np.array([150])}, {"0": {"queries": test_q[0]}})
    assert bad == {"seed 0 queries": {"validation queries": 1}}
    with pytest.raises(HashplugError, match="shares rows"):
        check_no_overlap(bad)
    with pytest.raises(HashplugError, match="do not fit"):
        validation_rows(train, 500, 500, seed=0, exclude=test_q)


def test_validation_rows_per_class():
    y = np.repeat(np.arange(5), 40)
    q, db = validation_rows(np.arange(200), 25, 100, seed=1, labels=y)
    assert np.bincount(y[q], minlength=5).tolist() == [5] * 5


def test_tuning_budget_is_equal_per_method_and_recorded():
    tb = TuningBudget({"a": {"lr": [1, 2], "wd": [0, 1, 2]}, "b": {"lr": [1, 2, 3]}, "c": {}}, budget=3)
    assert [len(tb.settings[m]) for m in "abc"] == [3, 3, 1]
    js = tb.to_json()
    assert js["settings_per_method"] == {"a": 3, "b": 3, "c": 1}
    with pytest.raises(HashplugError, match="unequal tuning budgets"):
        TuningBudget({"a": {"lr": [1, 2]}, "b": {"lr": [1, 2, 3]}})
    assert sampled_grid({"x": [1, 2], "y": [3]}, None) == [{"x": 1, "y": 3}, {"x": 2, "y": 3}]


def test_seed_summary():
    s = seed_summary({"full": {"16": [0.5, 0.7]}})
    assert s["rows"]["full"]["16"] == 0.6
    assert s["std"]["full"]["16"] == pytest.approx(0.1414, abs=1e-4)
    assert s["per_seed"]["full"]["16"] == [0.5, 0.7]


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 30), st.integers(2, 40), st.booleans())
def test_chance_map_grouped_equals_all_queries_tied(seed, nq, ndb, multilabel):
    """chance_map scores one tied row per distinct label; the full (n_q, n_db) tied matrix gives the same."""
    rng = np.random.default_rng(seed)
    if multilabel:
        yq, ydb = rng.integers(0, 2, (nq, 3)), rng.integers(0, 2, (ndb, 3))
    else:
        yq, ydb = rng.integers(0, 4, nq), rng.integers(0, 4, ndb)
    for K in (None, 1, max(1, ndb // 2)):
        full = mean_average_precision(np.zeros((nq, ndb), np.float32), yq, ydb, limit=K, tie_aware=True)
        assert chance_map(yq, ydb, K) == pytest.approx(full, abs=1e-12)
    with pytest.raises(HashplugError, match="needs queries and a database"):
        chance_map(yq[:0], ydb, None)


def test_cosine_map_by_chunks_equals_one_block():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 70)
    F = rng.normal(size=(70, 5)) + y[:, None]
    D = -(F[:13] / np.linalg.norm(F[:13], axis=1, keepdims=True)) @ (F[13:] / np.linalg.norm(F[13:], axis=1,
                                                                                             keepdims=True)).T
    whole = mean_average_precision(D, y[:13], y[13:], limit=20, tie_aware=True)
    for chunk in (1, 4, 13, 100):
        assert cosine_map(F[:13], F[13:], y[:13], y[13:], 20, chunk=chunk) == pytest.approx(whole, abs=1e-6)


def test_validation_record_refuses_shared_rows_and_records_allowed_ones():
    test = {"0": {"queries": np.array([1, 2, 3]), "database": np.arange(10, 50)},
            "1": {"queries": np.array([4, 5])}}
    rec = validation_record({"queries": np.array([11, 12]), "database": np.arange(20, 30)}, test,
                            allowed=["seed 0 database"])
    assert rec["overlap"]["seed 0 database"] == {"validation queries": 2, "validation database": 10}
    assert rec["overlap"]["seed 1 queries"] == {"validation queries": 0, "validation database": 0}
    assert rec["sizes"] == {"queries": 2, "database": 10} and rec["allowed"] == ["seed 0 database"]
    assert rec["rows_sha256"] == rows_digest(np.array([12, 11]), np.arange(29, 19, -1))  # order inside a set: free
    assert rows_digest([1, 2], [3]) != rows_digest([1], [2, 3])  # which set a row is in counts
    with pytest.raises(HashplugError, match="seed 1 queries"):
        validation_record({"queries": np.array([5]), "database": np.array([20])}, test, allowed=["seed 0 database"])


def test_reference_rows_and_flat_setting():
    rows = reference_rows([10.0, 12.0], [40.0, 41.0], [16, 32])
    assert rows == {"chance": {"16": 11.0, "32": 11.0}, "float": {"16": 40.5, "32": 40.5}}
    with pytest.raises(HashplugError, match="at least one seed"):
        reference_rows([], [1.0], [16])
    assert flat_setting({"opt": {"optimizer": "adam", "lr": 1e-3}, "eta": 1}) == {"optimizer": "adam", "lr": 1e-3,
                                                                                  "eta": 1}
    with pytest.raises(HashplugError, match=r"set \['lr'\] twice"):
        flat_setting({"opt": {"optimizer": "adam", "lr": 1e-3}, "lr": 0.1})


def test_a_split_of_one_class_is_refused_and_stratified_rows_keep_every_class():
    """A data file sorted by label and cut by position gives a split of one class, on which every ranking
    scores mAP 1 (the first CIFAR-10 NeuroHash run chose its setting on such a split): refused by name."""
    from hashplug.bench.protocol import check_split_labels, stratified_rows

    y = np.repeat(np.arange(10), 50)  # sorted by label, as the CIFAR-10 file is
    with pytest.raises(HashplugError, match=r"validation split's queries hold 1 class\(es\) \[9\]"):
        check_split_labels(y[450:460], y[460:], "validation")
    check_split_labels(y[::7], y[1::7], "validation")
    first, rest = stratified_rows(y, 0.9, seed=0)
    assert first.size == 450 and rest.size == 50 and np.intersect1d(first, rest).size == 0
    assert (np.bincount(y[first]) == 45).all() and (np.bincount(y[rest]) == 5).all()
    np.testing.assert_array_equal(stratified_rows(y, 0.9, seed=0)[0], first)  # seeded
    assert not np.array_equal(stratified_rows(y, 0.9, seed=1)[0], first)
    with pytest.raises(HashplugError, match="share must lie in"):
        stratified_rows(y, 1.0, seed=0)
