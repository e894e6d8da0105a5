"""The fair-comparison protocol every table bench follows (issue 30): validation splits cut per seed from that
seed's training side and disjoint from every reported seed's test queries, one tuning budget for every method
of a table (the grid stored in the JSON), and the two reference columns of every table: the **chance floor**
(the expected mAP of a uniformly random ranking) and the **float ceiling** (cosine on the same features the
hashing methods see).

Nothing here knows a method or a dataset by name; numpy only (the metrics are :mod:`hashplug.metrics`').

* :func:`validation_rows` cuts a validation query set and database out of the rows a seed may train on,
  minus every row any reported seed tests on, and :func:`overlap_report` measures what a split shares with the
  test rows (recorded in the JSON as ``"validation_overlap"``: all zeros, or the bench refuses to run).
* :func:`chance_map` is exact: tie-aware mAP (the expected AP over uniformly random orders within groups of
  equal distance) of a ranking in which every database item is tied, i.e. the expectation over uniformly
  random rankings, including the cut at K.
* :func:`cosine_map` scores float cosine similarity on given features (the ceiling a code approximates).
* :class:`TuningBudget` holds the grid of each method over the knobs that apply to it, checks that every
  method of a table gets the same number of settings, and writes itself into the JSON.
* :func:`seed_summary` turns per-seed values into the ``rows`` / ``std`` / ``per_seed`` triple of a table.
* :func:`validation_record` is what a table bench writes for one validation split: the sha256 of its rows
  (:func:`rows_digest`), its sizes and the measured overlap with every reported seed's test sets, after
  :func:`check_no_overlap` (a split that shares a row is refused, not recorded).
* :func:`reference_rows` are the ``"chance"`` and ``"float"`` rows of a table (one value per column: the
  references do not depend on the code length).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..validation import HashplugError

__all__ = [
    "validation_rows",
    "overlap_report",
    "check_no_overlap",
    "check_split_labels",
    "stratified_rows",
    "chance_map",
    "cosine_map",
    "TuningBudget",
    "seed_summary",
    "sampled_grid",
    "rows_digest",
    "validation_record",
    "reference_rows",
    "flat_setting",
]


# ---------------------------------------------------------------------------------------------- splits
def validation_rows(
    train_rows: Any,
    n_q: int,
    n_db: int,
    seed: int,
    *,
    exclude: Iterable[Any] = (),
    labels: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Validation queries and database cut from ``train_rows`` (a seed's training side) minus ``exclude``.

    Parameters
    ----------
    train_rows : array-like of int, shape (n,)
        Rows the seed may train on.
    n_q, n_db : int
        Validation queries and database rows (``n_q + n_db`` must fit in what is left).
    seed : int
        Seed of the draw (``np.random.default_rng(seed)``).
    exclude : iterable of array-like of int
        Rows that must not be used: every reported seed's test queries (and test database rows where the
        database is not the training side).
    labels : array-like of int, shape (n_rows,), optional
        Class of every row: queries are then drawn per class (``n_q // n_classes`` each, the rest at random).

    Returns
    -------
    q_rows, db_rows : ndarray of shape (n_q,) and (n_db,), int64
        Sorted, disjoint, inside ``train_rows``, outside every ``exclude`` set.
    """
    pool = np.unique(np.asarray(train_rows, dtype=np.int64))
    for ex in exclude:
        pool = np.setdiff1d(pool, np.asarray(ex, dtype=np.int64), assume_unique=False)
    n_q, n_db = int(n_q), int(n_db)
    if n_q < 1 or n_db < 1 or n_q + n_db > pool.size:
        raise HashplugError(
            f"validation_rows: {n_q} queries + {n_db} database rows do not fit in the {pool.size} training rows "
            "left after removing every reported seed's test rows; ask for fewer validation rows or report fewer "
            "seeds.")
    rng = np.random.default_rng(int(seed))
    if labels is None:
        pick = rng.permutation(pool)
        q = pick[:n_q]
    else:
        y = np.asarray(labels)[pool]
        classes = np.unique(y)
        per = n_q // classes.size
        q_parts = [rng.permutation(pool[y == c])[:per] for c in classes]
        q = np.concatenate(q_parts) if q_parts else np.empty(0, np.int64)
        rest = np.setdiff1d(pool, q)
        q = np.concatenate([q, rng.permutation(rest)[: n_q - q.size]])
        pick = np.concatenate([q, rng.permutation(np.setdiff1d(pool, q))])
    db = np.setdiff1d(pick, q)
    db = rng.permutation(db)[:n_db]
    if labels is not None:  # a split on which every ranking is perfect chooses nothing
        check_split_labels(np.asarray(labels)[q], np.asarray(labels)[db], "validation")
    return np.sort(q).astype(np.int64), np.sort(db).astype(np.int64)


def overlap_report(val: Mapping[str, Any], test: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """How many rows each validation set shares with each seed's test sets.

    Parameters
    ----------
    val : mapping of str to array-like of int
        E.g. ``{"queries": q_rows, "database": db_rows}`` of one validation split.
    test : mapping of str to mapping of str to array-like of int
        Per reported seed (as a string), its test sets, e.g. ``{"1": {"queries": ..., "database": ...}}``.

    Returns
    -------
    report : dict
        ``{"seed 1 queries": {"validation queries": 0, "validation database": 0}, ...}``.
    """
    out: dict[str, dict[str, int]] = {}
    for s, sets in test.items():
        for tname, rows in sets.items():
            t = np.asarray(rows, dtype=np.int64)
            out[f"seed {s} {tname}"] = {f"validation {vname}": int(np.intersect1d(np.asarray(v, np.int64), t).size)
                                        for vname, v in val.items()}
    return out


def check_no_overlap(report: Mapping[str, Mapping[str, int]], allowed: Sequence[str] = ()) -> None:
    """Refuse a validation split that shares a row with a test set (``allowed`` names test sets it may share,
    e.g. ``"seed 0 database"`` where the test database is the seed's own training side)."""
    bad = {t: v for t, v in report.items() if t not in allowed and any(n for n in v.values())}
    if bad:
        raise HashplugError(f"the validation split shares rows with test sets: {bad}; cut it from rows no "
                            "reported seed tests on (hashplug.bench.protocol.validation_rows).")


def check_split_labels(y_q: Any, y_db: Any, what: str) -> None:
    """Refuse a single-label split on which every ranking is perfect: its queries or its database hold one
    class only, so mAP is 1 for every method and nothing can be chosen or compared there (a data file sorted
    by label, cut by position, does this)."""
    cq, cdb = np.unique(np.asarray(y_q)), np.unique(np.asarray(y_db))
    if cq.size < 2 or cdb.size < 2:
        raise HashplugError(
            f"the {what} split's queries hold {cq.size} class(es) {cq[:5].tolist()} and its database {cdb.size} "
            f"{cdb[:5].tolist()}: every ranking scores mAP 1 there. Draw the split per class "
            "(hashplug.bench.protocol.stratified_rows); the data file may be sorted by label.")


def stratified_rows(y: Any, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split the rows of ``y`` into ``share`` of every class and the rest, each sorted.

    Parameters
    ----------
    y : array-like of int, shape (n,)
    share : float in (0, 1)
    seed : int
        Seed of the per-class permutations (classes in sorted label order).

    Returns
    -------
    first, rest : ndarray of int64, sorted
        ``round(share * n_c)`` rows of each class c, and the others.
    """
    y = np.asarray(y)
    if not 0 < float(share) < 1:
        raise HashplugError(f"share must lie in (0, 1); got {share!r}.")
    rng = np.random.default_rng(seed)
    first, rest = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n = int(round(float(share) * idx.size))
        first.append(idx[:n])
        rest.append(idx[n:])
    return np.sort(np.concatenate(first)).astype(np.int64), np.sort(np.concatenate(rest)).astype(np.int64)


def rows_digest(*rows: Any) -> str:
    """sha256 of row index sets (each sorted, as int64, with its length): equal digests mean the same rows.

    Parameters
    ----------
    *rows : array-like of int
        E.g. a split's validation queries and database, in that order (the order of the sets counts, the
        order inside a set does not).

    Returns
    -------
    digest : str
        64 hex digits.
    """
    import hashlib

    h = hashlib.sha256()
    for r in rows:
        a = np.sort(np.asarray(r, dtype=np.int64).ravel())
        h.update(str(a.size).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def validation_record(val: Mapping[str, Any], test: Mapping[str, Mapping[str, Any]],
                      allowed: Sequence[str] = ()) -> dict[str, Any]:
    """The JSON record of one validation split, refused if it shares a row with a test set.

    Parameters
    ----------
    val : mapping of str to array-like of int
        The split's row sets (``{"queries": ..., "database": ...}``, and ``"training"`` where it has one),
        as indices into the dataset's rows.
    test : mapping of str to mapping of str to array-like of int
        Per reported seed, its test sets (as :func:`overlap_report`).
    allowed : sequence of str
        Test sets the split may share rows with (as :func:`check_no_overlap`: e.g. ``"seed 0 database"`` when
        that database is the seed's own training side). Their overlap is still measured and recorded.

    Returns
    -------
    record : dict
        ``{"rows_sha256": rows_digest(*val.values()), "sizes": {name: n}, "overlap": overlap_report(...),
        "allowed": [...]}``.

    Raises
    ------
    HashplugError
        If any test set outside ``allowed`` shares a row with the split.
    """
    report = overlap_report(val, test)
    check_no_overlap(report, allowed)
    return {"rows_sha256": rows_digest(*val.values()), "sizes": {k: int(np.asarray(v).size) for k, v in val.items()},
            "overlap": report, "allowed": list(allowed)}


# ---------------------------------------------------------------------------------------------- references
def chance_map(q_relevance: Any, db_relevance: Any, K: int | None) -> float:
    """Expected mAP@K of a uniformly random ranking (the chance floor of a table).

    Parameters
    ----------
    q_relevance, db_relevance : ndarray of shape (n_q,) / (n_db,) int, or (n, n_classes) 0/1
        Labels as :func:`hashplug.metrics.mean_average_precision` takes them (same class, or a shared label).
    K : int or None
        Ranks scored (None: all).

    Returns
    -------
    map : float
        Exact: the tie-aware mAP of a ranking in which every database item is tied at one distance (the
        expectation over uniformly random orders), not an estimate from sampled rankings.
    """
    from ..metrics import mean_average_precision

    q = np.asarray(q_relevance)
    ndb = len(db_relevance)
    if len(q) == 0 or ndb == 0:
        raise HashplugError(f"chance_map needs queries and a database; got {len(q)} queries and {ndb} rows.")
    # a random ranking's expected AP depends on the query only through its relevance labels: one (1, n_db)
    # row of ties per distinct label (row), weighted by how many queries carry it (exact, bounded memory)
    uniq, counts = np.unique(q.reshape(len(q), -1), axis=0, return_counts=True)
    uniq = uniq.reshape((len(uniq),) + q.shape[1:])
    limit = None if K is None else min(int(K), ndb)
    D = np.zeros((1, ndb), dtype=np.float32)
    aps = [mean_average_precision(D, u[None], db_relevance, limit=limit, tie_aware=True) for u in uniq]
    return float(np.dot(np.asarray(aps, dtype=np.float64), counts) / counts.sum())


def _unit(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def cosine_distances(Fq: Any, Fdb: Any, center: Any = None) -> np.ndarray:
    """``-cos(q, x)`` (n_q, n_db) float32 on features centred by ``center`` (None: not centred)."""
    Fq, Fdb = np.asarray(Fq, np.float32), np.asarray(Fdb, np.float32)
    if center is not None:
        Fq, Fdb = Fq - center, Fdb - center
    return -(_unit(Fq) @ _unit(Fdb).T)


def cosine_map(Fq: Any, Fdb: Any, q_relevance: Any, db_relevance: Any, K: int | None, center: Any = None,
               *, chunk: int = 256) -> float:
    """mAP@K (tie-aware) of float cosine similarity on ``Fq`` (n_q, d) against ``Fdb`` (n_db, d): the float
    ceiling. Queries are scored ``chunk`` at a time (memory: a (chunk, n_db) float32 block), the mean weighted
    by chunk size, so the result equals scoring all queries at once."""
    from ..metrics import mean_average_precision

    Fq, Fdb = np.asarray(Fq, np.float32), np.asarray(Fdb, np.float32)
    if center is not None:
        Fq, Fdb = Fq - center, Fdb - center
    Uq, Udb = _unit(Fq), _unit(Fdb)
    yq = np.asarray(q_relevance)
    limit = None if K is None else min(int(K), Udb.shape[0])
    total = 0.0
    for i in range(0, len(Uq), int(chunk)):
        D = -(Uq[i : i + int(chunk)] @ Udb.T)
        total += len(D) * float(mean_average_precision(D, yq[i : i + int(chunk)], db_relevance, limit=limit,
                                                       tie_aware=True))
    return total / len(Uq)


# ---------------------------------------------------------------------------------------------- tuning
def sampled_grid(grid: Mapping[str, Sequence[Any]], budget: int | None, seed: int = 0) -> list[dict[str, Any]]:
    """The settings of ``grid`` (knob -> values): all of them, or ``budget`` drawn without replacement with
    ``np.random.default_rng(seed)`` (random search) when the product is larger; in the product's order."""
    keys = list(grid)
    combos = [dict(zip(keys, c)) for c in itertools.product(*(list(grid[k]) for k in keys))]
    if budget is None or budget >= len(combos):
        return combos
    if budget < 1:
        raise HashplugError(f"The tuning budget must be an int >= 1. Got {budget!r} instead.")
    pick = np.sort(np.random.default_rng(int(seed)).choice(len(combos), size=int(budget), replace=False))
    return [combos[i] for i in pick]


@dataclass
class TuningBudget:
    """One tuning budget for every method of a table.

    Parameters
    ----------
    grids : dict of str to dict of str to list
        Per method, its knobs (only those that apply to it: weight decay, lr, epochs, loss weights ...) and
        their values. A method without knobs has ``{}`` (one setting: its defaults).
    budget : int or None
        Settings tried per method that has knobs (random search over its grid when the product is larger);
        None: the whole grid, which must then have the same size for every method with knobs.
    seed : int
        Seed of the random search.
    """

    grids: dict[str, dict[str, list[Any]]]
    budget: int | None = None
    seed: int = 0
    settings: dict[str, list[dict[str, Any]]] = field(init=False)

    def __post_init__(self) -> None:
        self.settings = {m: sampled_grid(g, self.budget, self.seed) if g else [{}] for m, g in self.grids.items()}
        sizes = {m: len(s) for m, s in self.settings.items() if self.grids[m]}
        if len(set(sizes.values())) > 1:
            raise HashplugError(f"unequal tuning budgets {sizes}: give every method with knobs the same number of "
                                "settings (pass budget=N for a random search of N settings each).")

    def to_json(self) -> dict[str, Any]:
        """The grids, the budget and the settings tried, as stored in a table's JSON under ``"tuning"``."""
        return {"grids": self.grids, "budget": self.budget, "seed": self.seed,
                "settings_per_method": {m: len(s) for m, s in self.settings.items()}, "settings": self.settings}


# ---------------------------------------------------------------------------------------------- seeds
def seed_summary(per_seed: Mapping[str, Mapping[str, Sequence[float]]], digits: int = 4) -> dict[str, Any]:
    """``{"rows": mean, "std": sample std (ddof = 1; 0 for one seed), "per_seed": values}`` of
    ``per_seed[row][column] = [value of seed 0, seed 1, ...]``."""
    rows: dict[str, dict[str, float]] = {}
    std: dict[str, dict[str, float]] = {}
    for r, cols in per_seed.items():
        for c, vals in cols.items():
            v = np.round(np.asarray(vals, dtype=np.float64), digits)  # the stored values: merges reproduce it
            rows.setdefault(r, {})[c] = round(float(v.mean()), digits)
            std.setdefault(r, {})[c] = round(float(v.std(ddof=1)) if v.size > 1 else 0.0, digits)
    return {"rows": rows, "std": std,
            "per_seed": {r: {c: [round(float(x), digits) for x in v] for c, v in cols.items()}
                         for r, cols in per_seed.items()}}


def reference_rows(chance: Sequence[float], ceiling: Sequence[float], columns: Sequence[Any],
                   digits: int = 2) -> dict[str, dict[str, float]]:
    """The ``"chance"`` and ``"float"`` rows of a table, ``{row: {column: value}}`` for every column.

    Parameters
    ----------
    chance, ceiling : sequence of float
        Per seed, :func:`chance_map` and :func:`cosine_map` (already in the table's unit, e.g. percent).
    columns : sequence
        The table's columns (hash lengths); each gets the mean over seeds (the references do not depend on
        the code length).

    Returns
    -------
    rows : dict
        ``{"chance": {str(c): mean}, "float": {str(c): mean}}``.
    """
    if not len(chance) or not len(ceiling):
        raise HashplugError("reference_rows needs at least one seed's chance floor and float ceiling.")
    c, f = round(float(np.mean(chance)), digits), round(float(np.mean(ceiling)), digits)
    return {"chance": {str(k): c for k in columns}, "float": {str(k): f for k in columns}}


def flat_setting(setting: Mapping[str, Any]) -> dict[str, Any]:
    """A setting of :func:`sampled_grid` with dict-valued knobs merged in: ``{"opt": {"optimizer": "adam",
    "lr": 1e-3}, "eta": 1}`` -> ``{"optimizer": "adam", "lr": 1e-3, "eta": 1}`` (a knob whose values are
    coupled parameters, e.g. an optimiser with its learning rate). Two knobs that set one name are an error."""
    out: dict[str, Any] = {}
    for knob, v in setting.items():
        part = dict(v) if isinstance(v, Mapping) else {knob: v}
        clash = set(part) & set(out)
        if clash:
            raise HashplugError(f"the knobs of {dict(setting)} set {sorted(clash)} twice; give each parameter one knob.")
        out.update(part)
    return out
