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
    overlap_report,
    sampled_grid,
    seed_summary,
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
