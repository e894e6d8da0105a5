r"""Retrieval metrics: mAP@R (BioHash paper, eq. 12-13), spatial mAP@K_r (NeuroHash), precision@R, recall@R.

Average precision
-----------------
For one query with the database ranked by ascending distance, ``Rel(l)`` = 1 if the item at rank ``l`` is
relevant and ``Precision(l)`` = (relevant items in ranks 1..l) / l. Following eq. 12 of the BioHash
paper (Ryali et al., ICML 2020)::

    AP(q)@R = 1 / (sum_{l<=R} Rel(l)) * sum_{l=1}^{R} Precision(l) Rel(l)

**The denominator is the number of relevant items retrieved in the top R**, as the equation is written. For
R < All this differs from the common "divide by all relevant items in the database" convention (it can
only be larger). For ``R=None`` (All) the two coincide. A query with no relevant item in its top R has
AP 0. ``mAP@R`` is the mean of AP over queries (eq. 13).

Ranking and ties
----------------
Items are ranked by ascending distance; **among equal distances the lower database index comes first**,
the same rule as :func:`hashplug.hamming.hamming_search`. With Hamming distances ties are common (k-hot
codes take only ``k + 1`` distinct distances), so the deterministic order can flatter or penalise a
method arbitrarily. ``tie_aware=True`` instead returns the **exact expected AP over uniformly random
orders within every group of equal distance** (McSherry & Najork, ECIR 2008).

Tie-aware AP, derivation
~~~~~~~~~~~~~~~~~~~~~~~~
Let the groups of equal distance, in ascending order, have ``n_g`` items of which ``r_g`` are relevant,
with ``N_g`` items and ``P_g`` relevant items ranked before the group. Within a group placed wholly in
the top R, position ``j`` (rank ``N_g + j``) is relevant with probability ``r_g / n_g``, and given that, the
number of relevant items at group positions ``1..j-1`` is hypergeometric with mean
``(j - 1)(r_g - 1)/(n_g - 1)``. So the expected sum of ``Precision(l) Rel(l)`` over the group is::

    S_g = (r_g / n_g) sum_{j=1}^{n_g} (P_g + 1 + (j - 1)(r_g - 1)/(n_g - 1)) / (N_g + j)
        = (r_g / n_g) [ (P_g + 1) S1 + (r_g - 1)/(n_g - 1) S2 ],
    S1 = H(N_g + n_g) - H(N_g),  S2 = n_g - (N_g + 1) S1,

with ``H`` the harmonic numbers (closed form, O(1) per group). If R ends exactly at a group boundary the
denominator ``D`` (relevant items in the top R) is fixed and ``E[AP] = sum_g S_g / D``; this is always
the case for R = All.

If R cuts a group ``b`` (``N_b < R < N_b + n_b``), only its first ``L = R - N_b`` positions count and
``D = P_b + X`` is random, ``X ~ Hypergeometric(n_b, r_b, L)``. Writing ``A`` for the precision sum of the
earlier groups (independent of the order inside ``b``) and ``B`` for that of the ``L`` retrieved positions
of ``b``, given ``X = x`` the relevant positions are a uniform ``x``-subset of ``1..L``, so
``E[B | x] = (x / L) [ (P_b + 1) S1' + (x - 1)/(L - 1) S2' ]`` with ``S1', S2'`` as above for ``L``
positions after ``N_b``, and::

    E[AP] = sum_x P(X = x) (E[A] + E[B | x]) / (P_b + x),   E[A] = sum_{g < b} S_g,

with the term 0 when ``P_b + x = 0``. This is exact (no approximation) and costs O(min(L, r_b)) per query.

Spatial relevance, mAP@K_r
--------------------------
NeuroHash (sec. IV) scores multi-object scenes with ``mAP@K_r``: mAP@K (eq. 12 above, K in place of R)
where database image ``j`` is relevant to query ``i`` when **one object pair** -- an object of ``i`` and
an object of ``j`` -- has the same class and centres within ``r``::

    (x_i/w_i - x_j/w_j)^2 + (y_i/h_i - y_j/h_j)^2 <= r^2.

Objects are passed as padded per-image arrays: ``labels`` int (n, max_objects) with -1 at padding slots and
``centres`` float (n, max_objects, 2) holding (x, y) already divided by the image's own width and height
(padding slots are ignored and may be NaN). The boundary is inclusive and the test is done exactly in
float64 on the given values (no tolerance). ``r = inf`` keeps only the class match, which is plain mAP@K with
multi-label indicator labels. A query mask restricts which query objects count (conditional queries, e.g.
the one focused object); all database objects always count. A query with no counted object has no relevant
item and scores AP 0.

numpy only: the serving side imports this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._deprecation import renamed_kwargs, spelled
from .hamming import (
    _TEMP_BYTES,
    _check_chunk,
    _check_limit,
    _check_packed_pair,
    _hamming_chunks,
)
from .ranking import order_rows
from .validation import HashplugError, check_array

__all__ = [
    "relevance",
    "average_precision",
    "per_query_average_precision",
    "mean_average_precision",
    "map_from_codes",
    "spatial_relevance",
    "map_at_k_r",
    "per_query_map_at_k_r",
    "precision_at_r",
    "recall_at_r",
]


# --------------------------------------------------------------------------------------------------
# labels and relevance
# --------------------------------------------------------------------------------------------------


class _Labels:
    """Validated query / database labels; computes relevance for blocks of queries."""

    def __init__(self, q_labels: Any, db_labels: Any, owner: str) -> None:
        q = check_array(q_labels, name="q_labels", ndim=(1, 2), dtype=None, owner=owner)
        db = check_array(db_labels, name="db_labels", ndim=(1, 2), dtype=None, owner=owner)
        if q.ndim != db.ndim:
            raise HashplugError(
                f"{owner}: q_labels has {q.ndim} dimension(s) but db_labels has {db.ndim}; use 1-D integer "
                "class labels for both (single-label) or 2-D 0/1 indicator matrices for both (multi-label)."
            )
        self.multi = q.ndim == 2
        if self.multi:
            if q.shape[1] != db.shape[1]:
                raise HashplugError(
                    f"{owner}: q_labels has {q.shape[1]} classes but db_labels has {db.shape[1]}; multi-label "
                    "indicator matrices need the same class columns."
                )
            for arr, name in ((q, "q_labels"), (db, "db_labels")):
                if not np.all((arr == 0) | (arr == 1)):
                    raise HashplugError(
                        f"{owner}: {name} is 2-D, so it must be a 0/1 multi-label indicator matrix; it has "
                        "other values. Pass 1-D integer labels for single-label data."
                    )
            self.q = q.astype(np.float32)
            self.dbT = np.ascontiguousarray(db.astype(np.float32).T)
        else:
            for arr, name in ((q, "q_labels"), (db, "db_labels")):
                if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
                    raise HashplugError(
                        f"{owner}: {name} must hold integer class labels; got dtype {arr.dtype}. "
                        "Convert with labels.astype(np.int64)."
                    )
            self.q = q.astype(np.int64, copy=False)
            self.db = db.astype(np.int64, copy=False)
        self.n_q = q.shape[0]
        self.n_db = db.shape[0]

    def check_sizes(self, n_q: int, n_db: int, owner: str, what: str = "dist") -> None:
        if self.n_q != n_q:
            raise HashplugError(f"{owner}: {what} has {n_q} query rows but q_labels has {self.n_q} labels.")
        if self.n_db != n_db:
            raise HashplugError(
                f"{owner}: {what} has {n_db} database items but db_labels has {self.n_db} labels."
            )

    def full(self, s: int, e: int) -> np.ndarray:
        """Relevance of queries s..e against the whole database: bool (e - s, n_db)."""
        if self.multi:
            return (self.q[s:e] @ self.dbT) > 0.5
        return self.q[s:e, None] == self.db[None, :]

    def gather(self, s: int, e: int, idx: np.ndarray) -> np.ndarray:
        """Relevance of queries s..e against database items ``idx`` (e - s, R): bool (e - s, R)."""
        if self.multi:
            return np.take_along_axis(self.full(s, e), idx, axis=1)
        return self.db[idx] == self.q[s:e, None]


def relevance(q_labels: Any, db_labels: Any) -> np.ndarray:
    """Relevance matrix between query and database labels.

    Parameters
    ----------
    q_labels : ndarray of shape (n_q,) int or (n_q, n_classes) 0/1
        Query labels: 1-D integer class labels (single-label) or a 2-D indicator matrix (multi-label).
    db_labels : ndarray of shape (n_db,) int or (n_db, n_classes) 0/1
        Database labels, in the same form as ``q_labels``.

    Returns
    -------
    rel : ndarray of shape (n_q, n_db), dtype=bool
        Single-label: same class. Multi-label: at least one shared class.
    """
    lab = _Labels(q_labels, db_labels, "relevance")
    return lab.full(0, lab.n_q)


def _object_arrays(
    labels: Any, centres: Any, lname: str, cname: str, owner: str
) -> tuple[np.ndarray, np.ndarray]:
    """Validate one side's padded objects -> labels int64 (n, M) and centres float64 (n, M, 2)."""
    lab = check_array(labels, name=lname, ndim=(1, 2), dtype=None, owner=owner)
    if lab.ndim == 1:
        raise HashplugError(
            f"{owner}: {lname} must be 2-D (n_images, max_objects), one class per object slot and -1 at "
            f"padding slots; got shape {lab.shape}. With one object per image pass {lname}[:, None]."
        )
    if not np.issubdtype(lab.dtype, np.integer):
        raise HashplugError(
            f"{owner}: {lname} must hold integer object classes (-1 = no object); got dtype {lab.dtype}. "
            f"Convert with {lname}.astype(np.int64)."
        )
    lab = lab.astype(np.int64, copy=False)
    if lab.size and int(lab.min()) < -1:
        i, k = (int(v) for v in np.argwhere(lab < -1)[0])
        raise HashplugError(
            f"{owner}: {lname}[{i}, {k}] = {int(lab[i, k])}; object classes must be >= 0, with -1 marking a "
            "padding slot (no object)."
        )
    cen = check_array(centres, name=cname, ndim=3, dtype=np.float64, finite=False, owner=owner)
    if cen.shape != lab.shape + (2,):
        raise HashplugError(
            f"{owner}: {cname} has shape {cen.shape} but {lname} has shape {lab.shape}; {cname} must be "
            f"(n_images, max_objects, 2) = {lab.shape + (2,)}, the (x, y) centre of each object slot."
        )
    real = lab >= 0
    bad = real & ~np.isfinite(cen).all(axis=2)
    if bad.any():
        i, k = (int(v) for v in np.argwhere(bad)[0])
        raise HashplugError(
            f"{owner}: {cname}[{i}, {k}] = {tuple(cen[i, k].tolist())} is not finite, but "
            f"{lname}[{i}, {k}] = {int(lab[i, k])} is a real object; give every object a finite centre, or "
            "set its label to -1 to mark a padding slot."
        )
    bad = real & ((cen < 0.0) | (cen > 1.0)).any(axis=2)
    if bad.any():
        i, k = (int(v) for v in np.argwhere(bad)[0])
        raise HashplugError(
            f"{owner}: {cname}[{i}, {k}] = {tuple(cen[i, k].tolist())} lies outside [0, 1]; centres must be "
            "normalised by the image's own size (x / width, y / height), not pixel coordinates."
        )
    return lab, cen


class _SpatialRelevance:
    """Validated padded objects of queries and database (NeuroHash mAP@K_r); relevance for query blocks.

    Same interface as :class:`_Labels`: ``n_q``, ``n_db``, ``check_sizes``, ``full``, ``gather``.
    """

    def __init__(
        self, q_labels: Any, q_centres: Any, db_labels: Any, db_centres: Any, r: Any, q_mask: Any, owner: str
    ) -> None:
        ql, self.qc = _object_arrays(q_labels, q_centres, "q_labels", "q_centres", owner)
        dl, self.dc = _object_arrays(db_labels, db_centres, "db_labels", "db_centres", owner)
        if (
            isinstance(r, (bool, np.bool_))
            or not isinstance(r, (int, float, np.integer, np.floating))
            or r != r  # NaN
            or r < 0
        ):
            raise HashplugError(
                f"{owner}: r must be a radius >= 0 in normalised image coordinates (a float; inf means class "
                f"match only); got {r!r}."
            )
        # centres lie in [0, 1], so any r >= sqrt(2) is a class match only
        self.check_pos = bool(r < 2)
        self.r2 = float(r) * float(r) if self.check_pos else np.inf
        if q_mask is not None:
            m = check_array(q_mask, name="q_mask", ndim=2, dtype=None, owner=owner)
            if m.shape != ql.shape:
                raise HashplugError(
                    f"{owner}: q_mask has shape {m.shape} but q_labels has shape {ql.shape}; pass one flag "
                    "per query object slot (True = this object counts)."
                )
            if m.dtype != np.bool_:
                if not np.all((m == 0) | (m == 1)):
                    raise HashplugError(f"{owner}: q_mask must be boolean (or 0/1); it has other values.")
                m = m != 0
            ql = np.where(m, ql, -1)
        # padding and masked query slots: -1; database padding: -2, so that they never match each other
        self.ql = ql
        self.dl = np.where(dl >= 0, dl, -2)
        self.db_slots = [b for b in range(dl.shape[1]) if (dl[:, b] >= 0).any()]
        self.n_q = ql.shape[0]
        self.n_db = dl.shape[0]

    def check_sizes(self, n_q: int, n_db: int, owner: str, what: str = "dist") -> None:
        if self.n_q != n_q:
            raise HashplugError(
                f"{owner}: {what} has {n_q} query rows but q_labels has {self.n_q} query images."
            )
        if self.n_db != n_db:
            raise HashplugError(
                f"{owner}: {what} has {n_db} database items but db_labels has {self.n_db} database images."
            )

    def _block(self, s: int, e: int, idx: np.ndarray | None) -> np.ndarray:
        """Relevance of queries s..e against all database items (idx None) or items ``idx`` (e - s, R)."""
        ncols = self.n_db if idx is None else idx.shape[1]
        out = np.zeros((e - s, ncols), dtype=bool)
        # sub-blocks of rows: the match indices and offsets take up to ~40 bytes per (query, item) pair
        step = max(1, _TEMP_BYTES // (40 * max(1, ncols)))
        for s2 in range(s, e, step):
            e2 = min(s2 + step, e)
            sub = None if idx is None else idx[s2 - s : e2 - s]
            out[s2 - s : e2 - s] = self._pairs(s2, e2, sub, ncols)
        return out

    def _pairs(self, s: int, e: int, idx: np.ndarray | None, ncols: int) -> np.ndarray:
        ql, qc = self.ql[s:e], self.qc[s:e]
        out = np.zeros((e - s, ncols), dtype=bool)
        q_slots = [a for a in range(ql.shape[1]) if (ql[:, a] >= 0).any()]
        for b in self.db_slots:  # loop over object slot pairs, vectorised over queries and database items
            dlb = self.dl[None, :, b] if idx is None else self.dl[idx, b]
            for a in q_slots:
                rows, cols = np.nonzero(ql[:, a, None] == dlb)
                if rows.size and self.check_pos:
                    items = cols if idx is None else idx[rows, cols]
                    dx = qc[rows, a, 0] - self.dc[items, b, 0]
                    dy = qc[rows, a, 1] - self.dc[items, b, 1]
                    ok = dx * dx + dy * dy <= self.r2
                    rows, cols = rows[ok], cols[ok]
                out[rows, cols] = True
        return out

    def full(self, s: int, e: int) -> np.ndarray:
        """Relevance of queries s..e against the whole database: bool (e - s, n_db)."""
        return self._block(s, e, None)

    def gather(self, s: int, e: int, idx: np.ndarray) -> np.ndarray:
        """Relevance of queries s..e against database items ``idx`` (e - s, R): bool (e - s, R)."""
        return self._block(s, e, idx)


_RelSource = _Labels | _SpatialRelevance


def spatial_relevance(
    q_labels: Any,
    q_centres: Any,
    db_labels: Any,
    db_centres: Any,
    r: float,
    q_mask: Any = None,
) -> np.ndarray:
    """Relevance matrix of NeuroHash's mAP@K_r: same-class objects with centres within ``r``.

    Database image ``j`` is relevant to query ``i`` when some counted object ``a`` of ``i`` and some object
    ``b`` of ``j`` have the same class and ``(x_a - x_b)^2 + (y_a - y_b)^2 <= r^2`` (centres normalised by
    each image's own width and height; inclusive, tested exactly in float64).

    Parameters
    ----------
    q_labels : ndarray of shape (n_q, max_q_objects), integer
        Class of each query object slot; -1 marks a padding slot (no object). Other negatives raise.
    q_centres : ndarray of shape (n_q, max_q_objects, 2), float
        (x, y) centre of each query object, already divided by the image width and height, so in [0, 1].
        Values at padding slots are ignored (they may be NaN); real objects need finite centres in [0, 1].
    db_labels : ndarray of shape (n_db, max_db_objects), integer
        Database object classes, as ``q_labels`` (``max_db_objects`` may differ from ``max_q_objects``).
    db_centres : ndarray of shape (n_db, max_db_objects, 2), float
        Database object centres, as ``q_centres``.
    r : float
        Radius, >= 0, in normalised coordinates; ``inf`` keeps only the class match (then the result equals
        :func:`relevance` of multi-label indicator matrices built from the classes present).
    q_mask : ndarray of shape (n_q, max_q_objects), bool, optional
        Which query objects count (e.g. only the focused object of a conditional query); None: all of them.
        True at a padding slot is ignored. Database objects always all count.

    Returns
    -------
    rel : ndarray of shape (n_q, n_db), dtype=bool
        A query with no counted object is relevant to nothing.
    """
    src = _SpatialRelevance(q_labels, q_centres, db_labels, db_centres, r, q_mask, "spatial_relevance")
    out = np.empty((src.n_q, src.n_db), dtype=bool)
    chunk = _query_chunk(None, src.n_db)
    for s in range(0, src.n_q, chunk):
        e = min(s + chunk, src.n_q)
        out[s:e] = src.full(s, e)
    return out


# --------------------------------------------------------------------------------------------------
# core computations
# --------------------------------------------------------------------------------------------------


def _ap_ranked(rel: np.ndarray) -> np.ndarray:
    """AP (paper denominator) of ranked relevance rows (c, R) bool -> float64 (c,)."""
    c = rel.shape[0]
    rows, cols = np.nonzero(rel)  # row-major: the relevant ranks of each row, ascending
    nrel = np.bincount(rows, minlength=c)
    first = np.cumsum(nrel) - nrel
    hits = np.arange(1, rows.size + 1, dtype=np.float64) - first[rows]  # relevant items up to this rank
    num = np.bincount(rows, weights=hits / (cols + 1.0), minlength=c)
    return np.divide(num, nrel, out=np.zeros(c), where=nrel > 0)


class _Tables:
    """Harmonic numbers H[i] and log-factorials lf[i] for i = 0..n."""

    def __init__(self, n: int) -> None:
        i = np.arange(1, n + 1, dtype=np.float64)
        self.H = np.concatenate([[0.0], np.cumsum(1.0 / i)])
        self.lf = np.concatenate([[0.0], np.cumsum(np.log(i))])


def _group_hist(D: np.ndarray, rel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row counts of items and of relevant items in each group of equal distance, ascending.

    Returns ``n, r`` int64 of shape (c, V); groups may be empty (n = 0).
    """
    c, ndb = D.shape
    codes = None
    if np.issubdtype(D.dtype, np.integer) or D.dtype == np.bool_:
        lo, hi = int(D.min()), int(D.max())
        if hi - lo < ndb + 1:  # histogram no larger than the input: count per distance value
            V = hi - lo + 1
            codes = D.astype(np.int64)
            codes += (np.arange(c, dtype=np.int64) * V - lo)[:, None]
    if codes is None:  # general values: sort, then number the runs of equal values
        order = order_rows(D)
        Ds = np.take_along_axis(D, order, axis=1)
        rel = np.take_along_axis(rel, order, axis=1)
        codes = np.zeros((c, ndb), dtype=np.int64)
        np.cumsum(Ds[:, 1:] != Ds[:, :-1], axis=1, out=codes[:, 1:])
        V = int(codes[:, -1].max()) + 1
        codes += (np.arange(c, dtype=np.int64) * V)[:, None]
    n = np.bincount(codes.ravel(), minlength=c * V).reshape(c, V)
    r = np.bincount(codes[rel], minlength=c * V).reshape(c, V)
    return n, r


def _cut_groups(n: np.ndarray, r: np.ndarray, R: int):
    Nend = np.cumsum(n, axis=1)
    N = Nend - n
    Pend = np.cumsum(r, axis=1)
    P = Pend - r
    inside = Nend <= R
    cut = (N < R) & (Nend > R)
    return N, Nend, P, inside, cut


def _tie_aware_ap(n: np.ndarray, r: np.ndarray, R: int, T: _Tables) -> np.ndarray:
    """Exact expected AP@R over random orders within tie groups, from group counts (c, V) -> (c,)."""
    N, Nend, P, inside, cut = _cut_groups(n, r, R)
    H = T.H
    with np.errstate(divide="ignore", invalid="ignore"):
        S1 = H[Nend] - H[N]
        S2 = n - (N + 1) * S1
        coef = np.where(n > 1, (r - 1) / np.maximum(n - 1, 1), 0.0)
        S = np.where(inside & (r > 0), (r / np.maximum(n, 1)) * ((P + 1) * S1 + coef * S2), 0.0)
    A = S.sum(axis=1)
    D = np.where(inside, r, 0).sum(axis=1)
    ap = np.divide(A, D, out=np.zeros(A.shape[0]), where=D > 0)
    rows = np.flatnonzero(cut.any(axis=1))
    if rows.size:
        g = np.argmax(cut[rows], axis=1)
        Nb, nb, rb, Pb = N[rows, g], n[rows, g], r[rows, g], P[rows, g]
        hi = np.minimum(R - Nb, rb)
        # blocks of rows so the (block, max hi + 1) grids stay small
        step = max(1, 2**20 // (int(hi.max()) + 1))
        for s in range(0, rows.size, step):
            sl = slice(s, s + step)
            ap[rows[sl]] = _cut_group_ap(A[rows[sl]], Nb[sl], nb[sl], rb[sl], Pb[sl], R, T)
    return ap


def _cut_group_ap(
    A: np.ndarray, Nb: np.ndarray, nb: np.ndarray, rb: np.ndarray, Pb: np.ndarray, R: int, T: _Tables
) -> np.ndarray:
    """Expected AP of rows whose tie group (Nb items before it, nb items, rb relevant, Pb relevant before
    it) is cut by R; ``A`` is the expected precision sum of the earlier groups. All (c,) -> (c,).
    """
    H, lf = T.H, T.lf
    L = R - Nb
    lo = np.maximum(0, L - (nb - rb))
    hi = np.minimum(L, rb)
    x = np.arange(int(hi.max()) + 1, dtype=np.int64)[None, :]
    valid = (x >= lo[:, None]) & (x <= hi[:, None])

    def lfc(v: np.ndarray) -> np.ndarray:
        return lf[np.clip(v, 0, None)]

    rb_, nb_, L_ = rb[:, None], nb[:, None], L[:, None]
    # hypergeometric pmf P(X = x) = C(rb, x) C(nb - rb, L - x) / C(nb, L), via log-factorials
    logp = (
        lfc(rb_)
        - lfc(x)
        - lfc(rb_ - x)
        + lfc(nb_ - rb_)
        - lfc(L_ - x)
        - lfc(nb_ - rb_ - L_ + x)
        - (lf[nb] - lf[L] - lf[nb - L])[:, None]
    )
    p = np.where(valid, np.exp(np.where(valid, logp, 0.0)), 0.0)
    p /= p.sum(axis=1, keepdims=True)
    S1b = (H[Nb + L] - H[Nb])[:, None]
    S2b = L_ - (Nb[:, None] + 1) * S1b
    coefx = np.where(L_ > 1, (x - 1) / np.maximum(L_ - 1, 1), 0.0)
    EB = (x / L_) * ((Pb[:, None] + 1) * S1b + coefx * S2b)
    Dx = Pb[:, None] + x
    term = np.divide(p * (A[:, None] + EB), Dx, out=np.zeros(p.shape), where=Dx > 0)
    return term.sum(axis=1)


def _tie_aware_precision(n: np.ndarray, r: np.ndarray, R: int) -> np.ndarray:
    """Expected precision@R over random orders within tie groups -> (c,)."""
    N, Nend, P, inside, cut = _cut_groups(n, r, R)
    part = np.where(cut, (R - N) * r / np.maximum(n, 1), 0.0)
    return (np.where(inside, r, 0).sum(axis=1) + part.sum(axis=1)) / R


def _metric_rows(
    D: np.ndarray, lab: _RelSource, s: int, e: int, R: int, tie_aware: bool, kind: str, T: _Tables | None
) -> np.ndarray:
    """AP@R or precision@R for queries s..e given their distance rows D (e - s, n_db)."""
    if tie_aware:
        n, r = _group_hist(D, lab.full(s, e))
        if kind == "ap":
            return _tie_aware_ap(n, r, R, T)
        return _tie_aware_precision(n, r, R)
    idx = order_rows(D)[:, :R]
    rel = lab.gather(s, e, idx)
    if kind == "ap":
        return _ap_ranked(rel)
    return np.count_nonzero(rel, axis=1) / R


def _query_chunk(chunk_size: int | None, n_db: int) -> int:
    if chunk_size is not None:
        return chunk_size
    return max(1, _TEMP_BYTES // (8 * max(1, n_db)))


def _from_dist(
    dist: Any, lab: _RelSource, R: Any, tie_aware: bool, chunk_size: Any, kind: str, owner: str
) -> np.ndarray:
    """Per-query AP@R or precision@R from a distance matrix; ``lab`` (already validated) gives relevance."""
    d = check_array(dist, name="dist", ndim=2, dtype=None, owner=owner)
    if d.shape[1] == 0:
        raise HashplugError(f"{owner}: dist has 0 database columns (shape {d.shape}).")
    lab.check_sizes(d.shape[0], d.shape[1], owner)
    R = _check_limit(R, d.shape[1], owner)
    chunk = _query_chunk(_check_chunk(chunk_size, owner), d.shape[1])
    T = _Tables(d.shape[1]) if (tie_aware and kind == "ap") else None
    out = np.empty(d.shape[0], dtype=np.float64)
    for s in range(0, d.shape[0], chunk):
        e = min(s + chunk, d.shape[0])
        out[s:e] = _metric_rows(d[s:e], lab, s, e, R, bool(tie_aware), kind, T)
    return out


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------


def average_precision(rel: Any) -> np.ndarray:
    """AP of each query from relevance flags already in ranked order (BioHash eq. 12).

    Parameters
    ----------
    rel : ndarray of shape (n_q, R), dtype=bool (or 0/1 integers)
        ``rel[i, l]`` is True if the item at rank ``l + 1`` for query ``i`` is relevant.

    Returns
    -------
    ap : ndarray of shape (n_q,), dtype=float64
        ``sum_l Precision(l) Rel(l) / sum_l Rel(l)``: the denominator is the number of relevant items in
        these R ranks (not in the whole database); 0 for a row without relevant items.
    """
    owner = "average_precision"
    arr = check_array(rel, name="rel", ndim=2, dtype=None, owner=owner)
    if arr.shape[1] == 0:
        raise HashplugError(f"{owner}: rel has 0 ranks (shape {arr.shape}); pass at least one column.")
    if arr.dtype != np.bool_:
        if not np.all((arr == 0) | (arr == 1)):
            raise HashplugError(f"{owner}: rel must be boolean or 0/1; it has other values.")
        arr = arr != 0
    return _ap_ranked(arr)


@renamed_kwargs(R="limit")
def per_query_average_precision(
    dist: Any,
    q_labels: Any,
    db_labels: Any,
    limit: int | None = None,
    tie_aware: bool = False,
    *,
    chunk_size: int | None = None,
) -> np.ndarray:
    """AP@R of every query; see :func:`mean_average_precision` for the parameters.

    Returns
    -------
    ap : ndarray of shape (n_q,), dtype=float64
    """
    owner = "per_query_average_precision"
    return _from_dist(dist, _Labels(q_labels, db_labels, owner), limit, tie_aware, chunk_size, "ap", owner)


@renamed_kwargs(R="limit")
def mean_average_precision(
    dist: Any,
    q_labels: Any,
    db_labels: Any,
    limit: int | None = None,
    tie_aware: bool = False,
    *,
    chunk_size: int | None = None,
) -> float:
    """mAP@R (BioHash eq. 12-13) from a query-by-database distance matrix.

    Parameters
    ----------
    dist : ndarray of shape (n_q, n_db)
        Distances, any real dtype (smaller is closer); NaN and infinity are rejected.
    q_labels : ndarray of shape (n_q,) int or (n_q, n_classes) 0/1
        Query labels: 1-D class labels (relevant = same label) or a multi-label indicator matrix
        (relevant = at least one shared label).
    db_labels : ndarray of shape (n_db,) int or (n_db, n_classes) 0/1
        Database labels, in the same form.
    limit : int or None, default=None
        Ranks scored (the R of mAP@R), in [1, n_db]; None means All. ``limit > n_db`` raises. (0.1.0 name:
        ``R``, deprecated.)
    tie_aware : bool, default=False
        False: rank by ascending distance, ties -> lower database index first (as
        :func:`hashplug.hamming.hamming_search`). True: exact expected AP over uniformly random orders within
        each group of equal distance, including a group cut by R (see the module docstring).
    chunk_size : int or None, default=None
        Queries processed at once (None: ~16 MB per (chunk, n_db) temporary).

    Returns
    -------
    map : float
        Mean over queries of ``AP(q)@R = sum_{l<=R} Precision(l) Rel(l) / sum_{l<=R} Rel(l)``. The
        denominator counts relevant items **retrieved in the top R** (eq. 12 as written), not all relevant
        items in the database; the two agree for R = All. Queries without a relevant item in the top R
        score 0.
    """
    owner = "mean_average_precision"
    ap = _from_dist(dist, _Labels(q_labels, db_labels, owner), limit, tie_aware, chunk_size, "ap", owner)
    return float(ap.mean())


@renamed_kwargs(R="limit")
def precision_at_r(
    dist: Any,
    q_labels: Any,
    db_labels: Any,
    limit: int,
    tie_aware: bool = False,
    *,
    chunk_size: int | None = None,
) -> float:
    """Mean fraction of relevant items among the top R of each query.

    Parameters are those of :func:`mean_average_precision` (``limit`` is required). With ``tie_aware=True``
    the expected precision over random orders within tie groups is returned.

    Returns
    -------
    precision : float
    """
    if limit is None:
        raise HashplugError(f"precision_at_r: {spelled('limit')} is required (an int in [1, n_db]).")
    owner = "precision_at_r"
    p = _from_dist(dist, _Labels(q_labels, db_labels, owner), limit, tie_aware, chunk_size, "precision", owner)
    return float(p.mean())


@renamed_kwargs(R="limit")
def map_from_codes(
    Q_packed: Any,
    DB_packed: Any,
    q_labels: Any,
    db_labels: Any,
    limit: int | None = None,
    tie_aware: bool = False,
    *,
    chunk_size: int | None = None,
) -> float:
    """mAP@R of packed binary codes under Hamming distance, without forming the full distance matrix.

    Parameters
    ----------
    Q_packed : ndarray of shape (n_q, n_bytes), dtype=uint8
        Packed query codes.
    DB_packed : ndarray of shape (n_db, n_bytes), dtype=uint8
        Packed database codes.
    q_labels, db_labels, limit, tie_aware, chunk_size
        As in :func:`mean_average_precision`; distances are computed ``chunk_size`` queries at a time.

    Returns
    -------
    map : float
        Same value as ``mean_average_precision(hamming_distances(Q_packed, DB_packed), ...)``.
    """
    owner = "map_from_codes"
    Q, DB = _check_packed_pair(Q_packed, DB_packed, ("Q_packed", "DB_packed"), owner)
    lab = _Labels(q_labels, db_labels, owner)
    lab.check_sizes(Q.shape[0], DB.shape[0], owner, what="the codes")
    R = _check_limit(limit, DB.shape[0], owner)
    chunk = _query_chunk(_check_chunk(chunk_size, owner), DB.shape[0])
    T = _Tables(DB.shape[0]) if tie_aware else None
    total = 0.0
    for s, e, D in _hamming_chunks(Q, DB, chunk):
        total += float(_metric_rows(D, lab, s, e, R, bool(tie_aware), "ap", T).sum())
    return total / Q.shape[0]


def _check_K(K: Any, n_db: int, owner: str) -> int:
    if K is None:
        return n_db
    if isinstance(K, (bool, np.bool_)) or not isinstance(K, (int, np.integer)) or not 1 <= int(K) <= n_db:
        raise HashplugError(
            f"{owner}: K must be an int in [1, {n_db}] (the database size) or None for all items; got {K!r}."
        )
    return int(K)


def per_query_map_at_k_r(
    dist: Any,
    q_labels: Any,
    q_centres: Any,
    db_labels: Any,
    db_centres: Any,
    r: float,
    K: int | None = None,
    tie_aware: bool = False,
    *,
    q_mask: Any = None,
    chunk_size: int | None = None,
) -> np.ndarray:
    """AP@K_r of every query; see :func:`map_at_k_r` for the parameters.

    Returns
    -------
    ap : ndarray of shape (n_q,), dtype=float64
    """
    owner = "per_query_map_at_k_r"
    src = _SpatialRelevance(q_labels, q_centres, db_labels, db_centres, r, q_mask, owner)
    K = _check_K(K, src.n_db, owner)
    return _from_dist(dist, src, K, tie_aware, chunk_size, "ap", owner)


def map_at_k_r(
    dist: Any,
    q_labels: Any,
    q_centres: Any,
    db_labels: Any,
    db_centres: Any,
    r: float,
    K: int | None = None,
    tie_aware: bool = False,
    *,
    q_mask: Any = None,
    chunk_size: int | None = None,
) -> float:
    """Spatial mAP@K_r (NeuroHash, sec. IV) from a query-by-database distance matrix.

    mAP@K (:func:`mean_average_precision` with ``R = K``) where database image ``j`` is relevant to query
    ``i`` when an object of ``i`` and an object of ``j`` have the same class and centres within ``r``, in
    coordinates normalised by each image's own width and height (:func:`spatial_relevance`).

    Parameters
    ----------
    dist : ndarray of shape (n_q, n_db)
        Distances, any real dtype (smaller is closer); NaN and infinity are rejected.
    q_labels : ndarray of shape (n_q, max_q_objects), integer
        Query object classes, -1 at padding slots.
    q_centres : ndarray of shape (n_q, max_q_objects, 2), float
        Query object (x, y) centres normalised to [0, 1]; ignored (may be NaN) at padding slots.
    db_labels : ndarray of shape (n_db, max_db_objects), integer
        Database object classes, -1 at padding slots.
    db_centres : ndarray of shape (n_db, max_db_objects, 2), float
        Database object centres, as ``q_centres``.
    r : float
        Radius >= 0 in normalised coordinates (inclusive); ``inf``: class match only, i.e. plain mAP@K of
        multi-label scenes.
    K : int or None, default=None
        Ranks scored, in [1, n_db]; None means All.
    tie_aware : bool, default=False
        As in :func:`mean_average_precision`: False ranks ties by lower database index; True returns the
        exact expected AP over random orders within groups of equal distance.
    q_mask : ndarray of shape (n_q, max_q_objects), bool, optional
        Which query objects count (conditional queries); None: all.
    chunk_size : int or None, default=None
        Queries processed at once (None: ~16 MB per (chunk, n_db) temporary).

    Returns
    -------
    map : float
        Mean over queries of ``AP@K = sum_{l<=K} Precision(l) Rel(l) / sum_{l<=K} Rel(l)``; as in the rest of
        this module the denominator counts the relevant items **retrieved in the top K** (equal to all
        relevant items for K = All). Queries without a relevant item in the top K (including queries with no
        counted object) score 0.
    """
    owner = "map_at_k_r"
    src = _SpatialRelevance(q_labels, q_centres, db_labels, db_centres, r, q_mask, owner)
    K = _check_K(K, src.n_db, owner)
    return float(_from_dist(dist, src, K, tie_aware, chunk_size, "ap", owner).mean())


@renamed_kwargs(R="limit")
def recall_at_r(retrieved_idx: Any, true_idx: Any, limit: int | None = None) -> float:
    """Mean fraction of the true top-R neighbours found among the retrieved top R.

    Parameters
    ----------
    retrieved_idx : ndarray of shape (n_q, R_ret), dtype=int
        Database indices returned by the search, best first (duplicates count once).
    true_idx : ndarray of shape (n_q, R_true), dtype=int
        Indices of the exact nearest neighbours (e.g. by cosine similarity), best first, no duplicates.
    limit : int or None, default=None
        Compare ``retrieved_idx[:, :limit]`` with ``true_idx[:, :limit]`` (the R of recall@R); None uses
        ``R_true``. Must not exceed ``R_true``; ``retrieved_idx`` may have fewer columns than ``limit``
        (missing results count as misses). (0.1.0 name: ``R``, deprecated.)

    Returns
    -------
    recall : float
        Mean over queries of ``|retrieved[:R] & true[:R]| / R`` (e.g. recall@10 of exact neighbours).
    """
    owner = "recall_at_r"
    ret = check_array(retrieved_idx, name="retrieved_idx", ndim=2, dtype=None, owner=owner)
    tru = check_array(true_idx, name="true_idx", ndim=2, dtype=None, owner=owner)
    for arr, name in ((ret, "retrieved_idx"), (tru, "true_idx")):
        if not np.issubdtype(arr.dtype, np.integer):
            raise HashplugError(f"{owner}: {name} must hold integer indices; got dtype {arr.dtype}.")
    if ret.shape[0] != tru.shape[0]:
        raise HashplugError(
            f"{owner}: retrieved_idx has {ret.shape[0]} query rows but true_idx has {tru.shape[0]}."
        )
    if tru.shape[1] == 0:
        raise HashplugError(f"{owner}: true_idx has 0 columns; pass at least one true neighbour per query.")
    R = tru.shape[1] if limit is None else limit
    if isinstance(R, bool) or not isinstance(R, (int, np.integer)) or not 1 <= int(R) <= tru.shape[1]:
        raise HashplugError(
            f"{owner}: {spelled('limit')} must be an int in [1, {tru.shape[1]}] (columns of true_idx); "
            f"got {R!r}."
        )
    R = int(R)
    ret = ret[:, :R].astype(np.int64)
    tru = tru[:, :R].astype(np.int64)
    lo = min(int(ret.min()) if ret.size else 0, int(tru.min()))
    span = max(int(ret.max()) if ret.size else 0, int(tru.max())) - lo + 1
    off = (np.arange(tru.shape[0], dtype=np.int64) * span)[:, None] - lo
    t_flat = np.sort((tru + off).ravel())
    if np.any(t_flat[1:] == t_flat[:-1]):
        raise HashplugError(
            f"{owner}: true_idx has a repeated index within a row; true neighbours must be distinct."
        )
    r_flat = np.unique((ret + off).ravel())
    hits = np.isin(r_flat, t_flat, assume_unique=True)
    per_row = np.bincount(r_flat[hits] // span, minlength=tru.shape[0])
    return float((per_row / R).mean())


def mutual_information_from_distances(D: Any, q_labels: Any, db_labels: Any, n_bits: int) -> np.ndarray:
    """Per-query mutual information I(D; C) (MIHash eq. 8) of integer Hamming distances and relevance.

    For query i the distances to its relevant items (``C = 1``) and to the others (``C = 0``) give the
    conditional histograms ``p+`` and ``p-`` over 0..n_bits (eq. 12, hard assignment), the priors are the
    shares of relevant and other items, and ``I = H(D) - p+ H(D | C=1) - p- H(D | C=0)`` with 0 log 0 = 0
    (natural log). A query with no relevant item (or only relevant items) has I = 0.

    Parameters
    ----------
    D : ndarray of shape (n_q, n_db), integer
        Hamming distances (e.g. :func:`hashplug.hamming.hamming_distances`), in [0, n_bits].
    q_labels, db_labels : array-like
        Labels as in :func:`mean_average_precision` (single labels or 0/1 multi-label rows).
    n_bits : int
        Code length b.

    Returns
    -------
    mi : ndarray of shape (n_q,), float64
    """
    owner = "mutual_information_from_distances"
    Dm = check_array(D, name="D", ndim=2, dtype=None, owner=owner)
    if not np.issubdtype(Dm.dtype, np.integer):
        raise HashplugError(f"{owner}: D must hold integer Hamming distances; got dtype {Dm.dtype}.")
    b = int(n_bits)
    if Dm.size and (int(Dm.min()) < 0 or int(Dm.max()) > b):
        raise HashplugError(f"{owner}: distances must lie in [0, n_bits={b}]; got [{int(Dm.min())}, {int(Dm.max())}].")
    rel = relevance(q_labels, db_labels)
    if rel.shape != Dm.shape:
        raise HashplugError(f"{owner}: labels give a {rel.shape} relevance matrix but D has shape {Dm.shape}.")
    nq, ndb = Dm.shape
    L = b + 1
    codes = Dm.astype(np.int64) + (np.arange(nq, dtype=np.int64) * L)[:, None]
    n_all = np.bincount(codes.ravel(), minlength=nq * L).reshape(nq, L).astype(np.float64)
    n_pos = np.bincount(codes[rel], minlength=nq * L).reshape(nq, L).astype(np.float64)
    n_neg = n_all - n_pos
    N_pos, N_neg = n_pos.sum(1), n_neg.sum(1)

    def plogp(c: np.ndarray, tot: np.ndarray) -> np.ndarray:
        p = c / np.maximum(tot, 1)[:, None]
        return np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(1)

    pp, pn = N_pos / ndb, N_neg / ndb
    return -plogp(n_all, N_pos + N_neg) + pp * plogp(n_pos, N_pos) + pn * plogp(n_neg, N_neg)
