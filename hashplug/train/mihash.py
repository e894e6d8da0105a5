"""The mutual-information objective of MIHash (Cakir, He, Bargal, Sclaroff, TPAMI 2019), sections 3-4.

For a minibatch of M relaxed codes ``phi = 2 sigmoid(gamma f) - 1`` (eq. 19) every item is in turn the
anchor (the query) and the other M - 1 items its database (eq. 29). The relaxed Hamming distance
``d = (b - phi_i . phi_j) / 2`` (eq. 20) is soft-assigned to histogram bins by the triangular kernel
``max(0, 1 - |d - c_l| / width)`` (eq. 21); the bins' centres run from 0 to b inclusive (``b + 1`` bins of
width 1 by default, or ``n_bins`` bins of floating-point width ``b / (n_bins - 1)``), so the kernels are a
partition of unity on [0, b] and every histogram sums to 1. Conditional histograms over the anchor's
neighbours and non-neighbours (the anchor itself in neither) give

    I(D; C) = H(D) - p+ H(D | C=1) - p- H(D | C=0)            (eq. 8, with 0 log 0 = 0)

with the priors ``p+ = N+ / (M - 1)``, ``p- = N- / (M - 1)`` and ``p_D = p+ p_D+ + p- p_D-`` (eq. 17). An
anchor without neighbours or without non-neighbours has I = 0 (H(C) = 0). The objective is the mean over
anchors (eq. 11). :func:`mi_gradient_closed_form` is eq. 50 (tests compare it with autograd).

Neighbourhoods (who is a neighbour of whom) come from single labels, multi-labels (share at least one)
or a distance threshold (the LabelMe rule of section 5.1: distance below a percentile of the pairwise
distances; Euclidean, or cosine for text embeddings): :class:`Neighbourhood`. Beyond the paper, ``knn``
makes each item's exact nearest neighbours in the training set its neighbours and builds every minibatch
from groups of an item and some of them (:meth:`Neighbourhood.batches`), so that the objective sees the
pairs a top-R search has to keep close.

torch is imported inside the functions (training side only).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..validation import HashplugError

__all__ = [
    "Neighbourhood",
    "bin_centres",
    "mutual_information",
    "mutual_information_numpy",
    "mi_gradient_closed_form",
    "relaxed_codes",
    "relaxed_distances",
    "soft_histograms",
]

NEIGHBOURHOOD_KINDS = ("labels", "multilabels", "distance", "rank", "knn")
DISTANCE_METRICS = ("euclidean", "cosine")


def bin_centres(b: int, n_bins: int | None = None) -> tuple[np.ndarray, float]:
    """Histogram bin centres (float64, 0..b inclusive) and their width for b-bit distances.

    ``n_bins=None`` gives the paper's b + 1 bins of width 1; otherwise ``n_bins >= 2`` evenly spaced centres
    from 0 to b with the floating-point width ``b / (n_bins - 1)`` (never rounded to an integer).
    """
    if n_bins is None:
        n_bins = int(b) + 1
    if int(n_bins) < 2:
        raise HashplugError(f"n_bins must be an int >= 2 (or None for b + 1 = {b + 1}); got {n_bins}.")
    width = float(b) / (int(n_bins) - 1)
    return np.arange(int(n_bins), dtype=np.float64) * width, width


def relaxed_codes(scores: Any, gamma: float) -> Any:
    """``phi = 2 sigmoid(gamma f) - 1`` (eq. 19), written as ``tanh(gamma f / 2)`` (the same function)."""
    import torch

    return torch.tanh(0.5 * float(gamma) * scores)


def relaxed_distances(phi: Any) -> Any:
    """``d_ij = (b - phi_i . phi_j) / 2`` (eq. 20) for relaxed codes phi (M, b): (M, M)."""
    b = phi.shape[1]
    return 0.5 * (b - phi @ phi.T)


def soft_histograms(d: Any, centres: Any, width: float) -> Any:
    """Triangular-kernel bin weights (eq. 21) ``max(0, 1 - |d - c_l| / width)``: (..., L) for d (...)."""
    import torch

    return torch.clamp(1.0 - (d.unsqueeze(-1) - centres).abs() / float(width), min=0.0)


def _xlogx(p: Any) -> Any:
    """p log p with 0 log 0 = 0 and a finite (zero) gradient at 0."""
    import torch

    tiny = torch.finfo(p.dtype).tiny
    return torch.where(p > 0, p * torch.log(p.clamp_min(tiny)), torch.zeros_like(p))


def _masks(S: Any) -> tuple[Any, Any]:
    """Neighbour and non-neighbour masks of a boolean (M, M) relation, the diagonal in neither."""
    import torch

    M = S.shape[0]
    if S.shape != (M, M):
        raise HashplugError(f"the neighbour matrix must be square (M, M); got shape {tuple(S.shape)}.")
    off = ~torch.eye(M, dtype=torch.bool, device=S.device)
    S = S.to(torch.bool)
    return S & off, ~S & off


def _conditional_histograms(phi: Any, S: Any, n_bins: int | None):
    import torch

    M, b = phi.shape
    pos, neg = _masks(S)
    c, width = bin_centres(b, n_bins)
    centres = torch.as_tensor(c, dtype=phi.dtype, device=phi.device)
    d = relaxed_distances(phi)
    delta = soft_histograms(d, centres, width)  # (M, M, L)
    n_pos = pos.sum(1).to(phi.dtype)
    n_neg = neg.sum(1).to(phi.dtype)
    h_pos = torch.einsum("ijl,ij->il", delta, pos.to(phi.dtype)) / n_pos.clamp_min(1).unsqueeze(1)
    h_neg = torch.einsum("ijl,ij->il", delta, neg.to(phi.dtype)) / n_neg.clamp_min(1).unsqueeze(1)
    prior_pos = n_pos / max(M - 1, 1)
    prior_neg = n_neg / max(M - 1, 1)
    return d, delta, pos, neg, h_pos, h_neg, prior_pos, prior_neg, centres, width


def mutual_information(phi: Any, S: Any, n_bins: int | None = None, reduction: str = "mean") -> Any:
    """The MIHash objective on a minibatch: I(D; C) per anchor (eq. 8), averaged (eq. 11, 29).

    Parameters
    ----------
    phi : torch.Tensor of shape (M, b), float
        Relaxed codes in [-1, 1] (:func:`relaxed_codes`); exact +-1 codes give the discrete objective.
    S : torch.Tensor of shape (M, M), bool
        ``S[i, j]``: item j is a neighbour of anchor i (symmetric; the diagonal is ignored).
    n_bins : int or None
        Histogram bins over [0, b]; None: b + 1 bins of width 1 (centres 0..b).
    reduction : {"mean", "none"}
        The mean over anchors (a scalar) or the per-anchor values (M,).
    """
    import torch

    if phi.ndim != 2 or phi.shape[0] < 2:
        raise HashplugError(f"phi must have shape (M, b) with M >= 2 items; got {tuple(phi.shape)}.")
    _, _, _, _, h_pos, h_neg, pp, pn, _, _ = _conditional_histograms(phi, S, n_bins)
    p = pp.unsqueeze(1) * h_pos + pn.unsqueeze(1) * h_neg  # eq. 17
    H_D = -_xlogx(p).sum(1)
    H_D_given_C = -(pp * _xlogx(h_pos).sum(1) + pn * _xlogx(h_neg).sum(1))
    mi = H_D - H_D_given_C
    if reduction == "none":
        return mi
    if reduction != "mean":
        raise HashplugError(f"reduction must be 'mean' or 'none'; got {reduction!r}.")
    return torch.mean(mi)


def mi_gradient_closed_form(phi: Any, S: Any, n_bins: int | None = None) -> Any:
    """d mean_i I_i / d phi by eq. 50, as (M, b) (the paper's b x M matrix, transposed).

    ``-Phi / (2M) sum_l (A+_l B+_l + B+_l A+_l + A-_l B-_l + B-_l A-_l)`` with
    ``alpha+_{l,i} = p+_i (log p+_{il} - log p_{il}) / N+_i`` (eq. 16, 41; 0 where p+_{il} = 0) and
    ``beta+_l(i, j) = 1[j in N+(i)] delta'_l(d_ij)`` (eq. 22, 35).
    """
    import torch

    M, b = phi.shape
    d, _, pos, neg, h_pos, h_neg, pp, pn, centres, width = _conditional_histograms(phi, S, n_bins)
    p = pp.unsqueeze(1) * h_pos + pn.unsqueeze(1) * h_neg
    tiny = torch.finfo(phi.dtype).tiny

    def alpha(h, prior, n):
        a = prior.unsqueeze(1) * (torch.log(h.clamp_min(tiny)) - torch.log(p.clamp_min(tiny)))
        return torch.where(h > 0, a, torch.zeros_like(a)) / n.clamp_min(1).unsqueeze(1)  # (M, L)

    # delta'_l(d): +1/width on [c_l - width, c_l), -1/width on [c_l, c_l + width)
    diff = d.unsqueeze(-1) - centres  # (M, M, L)
    slope = torch.where((diff >= -width) & (diff < 0), 1.0 / width, 0.0) + torch.where(
        (diff >= 0) & (diff < width), -1.0 / width, 0.0
    )
    slope = slope.to(phi.dtype)
    total = torch.zeros((M, M), dtype=phi.dtype, device=phi.device)
    for mask, h, prior in ((pos, h_pos, pp), (neg, h_neg, pn)):
        a = alpha(h, prior, mask.sum(1).to(phi.dtype))  # (M, L): a[i, l] = alpha_{l,i}
        B = slope * mask.to(phi.dtype).unsqueeze(-1)  # B[i, j, l] = beta_l(i, j)
        AB = torch.einsum("il,ijl->ij", a, B)  # sum_l A_l B_l
        BA = torch.einsum("ijl,jl->ij", B, a)  # sum_l B_l A_l
        total = total + AB + BA
    # paper: Phi (b x M) @ total (M x M); here rows are items: (total^T @ phi) = (Phi total)^T
    return -(total.T @ phi) / (2.0 * M)


@dataclass
class Neighbourhood:
    """Who is a neighbour of whom inside a minibatch.

    Parameters
    ----------
    kind : {"labels", "multilabels", "distance", "rank"}
        ``labels``: the same class; ``multilabels``: at least one shared label (rows of a 0/1 matrix);
        ``distance``: distance below ``threshold`` (the LabelMe rule; :meth:`from_distances`); ``rank``: the
        ``share`` of the minibatch nearest to each anchor (a per-anchor percentile: adapts to local density;
        not symmetric, which the objective allows).
    metric : {"euclidean", "cosine"}
        For ``distance``: Euclidean, or cosine distance ``1 - cos`` (text embeddings).
    threshold : float
        For ``distance``: the neighbour cut-off.
    """

    kind: str
    metric: str = "euclidean"
    threshold: float = float("nan")
    share: float = 0.05
    table: np.ndarray | None = None
    group_size: int = 4

    def __post_init__(self) -> None:
        if self.kind not in NEIGHBOURHOOD_KINDS:
            raise HashplugError(f"Neighbourhood kind must be one of {list(NEIGHBOURHOOD_KINDS)}; got {self.kind!r}.")
        if self.metric not in DISTANCE_METRICS:
            raise HashplugError(f"distance metric must be one of {list(DISTANCE_METRICS)}; got {self.metric!r}.")
        if self.kind == "knn":
            if self.table is None or np.asarray(self.table).ndim != 2 or np.asarray(self.table).shape[1] < 1:
                raise HashplugError("a 'knn' Neighbourhood needs table: the (n, K) int indices of each training "
                                    "item's K nearest neighbours (Neighbourhood.from_knn builds it).")
            if int(self.group_size) < 1:
                raise HashplugError(f"group_size must be an int >= 1; got {self.group_size}.")
        self._table_t: Any = None

    @classmethod
    def from_knn(
        cls, X: np.ndarray, n_neighbours: int = 10, metric: str = "euclidean", group_size: int = 4,
        chunk: int = 1024,
    ) -> Neighbourhood:
        """Each row's ``n_neighbours`` exact nearest other rows of X as its neighbours.

        Parameters
        ----------
        X : ndarray of shape (n, d)
            Training features (the metric's space).
        n_neighbours : int
            K, in [1, n - 1].
        metric : {"euclidean", "cosine"}
        group_size : int
            Items per group in :meth:`batches`: a seed item and ``group_size - 1`` of its K neighbours.
        """
        table = knn_table(X, n_neighbours, metric, chunk=chunk)
        return cls("knn", metric=metric, table=table, group_size=int(group_size))

    def batches(self, n: int, M: int, rng: np.random.Generator) -> list[np.ndarray]:
        """One epoch's minibatches: ``n // M`` index arrays of M distinct rows of the training set.

        ``knn``: groups of a seed (from a fresh permutation, walked in order across the batches) and
        ``group_size - 1`` of its K nearest neighbours drawn at random; a row already in the batch is skipped
        and the next group fills its place, so about ``group_size - 1`` of each anchor's neighbours are in
        its batch (an epoch then has as many steps as any other, and sees about n / group_size seeds).
        Every other kind: a fresh permutation in full minibatches.
        """
        perm = rng.permutation(n)
        if self.kind != "knn":
            return [perm[s : s + M] for s in range(0, n - M + 1, M)]
        table = np.asarray(self.table)
        K = table.shape[1]
        g = max(1, min(int(self.group_size), K + 1, M))
        out, pos = [], 0
        for _ in range(n // M):
            idx: list[int] = []
            seen: set[int] = set()
            while len(idx) < M:
                seed_item = int(perm[pos % n])
                pos += 1
                group = [seed_item, *table[seed_item, rng.choice(K, size=g - 1, replace=False)].tolist()]
                for j in group:
                    if j not in seen and len(idx) < M:
                        seen.add(j)
                        idx.append(int(j))
            out.append(np.asarray(idx, dtype=np.int64))
        return out

    @classmethod
    def from_labels(cls, y: np.ndarray) -> Neighbourhood:
        """Single labels (n,) -> ``labels``; a 0/1 matrix (n, L) -> ``multilabels`` (share at least one)."""
        y = np.asarray(y)
        if y.ndim == 1:
            return cls("labels")
        if y.ndim == 2:
            if not np.isin(y, (0, 1)).all():
                raise HashplugError("multi-labels must be a 0/1 matrix of shape (n, n_labels).")
            return cls("multilabels")
        raise HashplugError(f"labels must have shape (n,) or (n, n_labels); got {y.shape}.")

    @classmethod
    def from_distances(
        cls, X: np.ndarray, percentile: float = 5.0, metric: str = "euclidean", n_pairs: int = 200_000,
        seed: int | None = 0,
    ) -> Neighbourhood:
        """The LabelMe rule: neighbours are closer than the ``percentile``-th percentile of pairwise distances.

        The percentile is estimated on ``n_pairs`` random pairs of distinct rows (all pairs when fewer).
        """
        X = np.asarray(X, dtype=np.float64)
        n = X.shape[0]
        if n < 2:
            raise HashplugError(f"the distance rule needs at least 2 rows; got {n}.")
        if not 0 < float(percentile) < 100:
            raise HashplugError(f"percentile must be in (0, 100); got {percentile}.")
        rng = np.random.default_rng(seed)
        if n * (n - 1) // 2 <= n_pairs:
            i, j = np.triu_indices(n, 1)
        else:
            i = rng.integers(0, n, n_pairs)
            j = (i + rng.integers(1, n, n_pairs)) % n  # j != i
        dist = np.concatenate([_pair_distances(X[i[s : s + _PAIR_BLOCK]], X[j[s : s + _PAIR_BLOCK]], metric)
                               for s in range(0, len(i), _PAIR_BLOCK)])
        return cls("distance", metric=metric, threshold=float(np.percentile(dist, float(percentile))))

    def matrix(self, targets: Any) -> Any:
        """The boolean (M, M) relation of a minibatch: labels (M,), multi-labels (M, L) or features (M, d)."""
        import torch

        if self.kind == "labels":
            return targets.unsqueeze(0) == targets.unsqueeze(1)
        if self.kind == "multilabels":
            t = targets.to(torch.float32)
            return (t @ t.T) > 0
        if self.kind == "knn":  # targets: the rows' indices into the training set
            if self._table_t is None or self._table_t.device != targets.device:
                self._table_t = torch.as_tensor(np.asarray(self.table), dtype=torch.long, device=targets.device)
            ids = targets.to(torch.long)
            S = (self._table_t[ids].unsqueeze(2) == ids.view(1, 1, -1)).any(1)  # j in kNN(i)
            return S | S.T
        x = targets.to(torch.float64)
        if self.metric == "cosine":
            xn = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
            dist = 1.0 - xn @ xn.T
        else:
            sq = (x * x).sum(1)
            dist = (sq.unsqueeze(0) + sq.unsqueeze(1) - 2.0 * x @ x.T).clamp_min(0).sqrt()
        if self.kind == "rank":
            M = dist.shape[0]
            r = self.rank_count(M)
            dist = dist + torch.diag(torch.full((M,), float("inf"), dtype=dist.dtype, device=dist.device))
            idx = torch.topk(dist, r, dim=1, largest=False).indices
            return torch.zeros((M, M), dtype=torch.bool, device=dist.device).scatter_(1, idx, True)
        return dist < self.threshold

    def rank_count(self, M: int) -> int:
        """Neighbours per anchor of the ``rank`` rule in a minibatch of M: ``round(share (M - 1))``, >= 1."""
        return max(1, min(M - 1, int(round(self.share * (M - 1)))))

    def matrix_numpy(self, a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
        """The relation between rows of ``a`` and rows of ``b`` (default ``a``) as a boolean numpy matrix."""
        b = a if b is None else b
        if self.kind == "knn":  # a, b: row indices into the training set
            table = np.asarray(self.table)
            ia, ib = np.asarray(a, np.int64), np.asarray(b, np.int64)
            S = (table[ia][:, :, None] == ib[None, None, :]).any(1)
            return S | (table[ib][:, :, None] == ia[None, None, :]).any(1).T
        if self.kind == "labels":
            return np.asarray(a)[:, None] == np.asarray(b)[None, :]
        if self.kind == "multilabels":
            return (np.asarray(a, np.float32) @ np.asarray(b, np.float32).T) > 0
        A, B = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if self.metric == "cosine":
            A = A / np.maximum(np.linalg.norm(A, axis=1, keepdims=True), 1e-12)
            B = B / np.maximum(np.linalg.norm(B, axis=1, keepdims=True), 1e-12)
            dist = 1.0 - A @ B.T
        else:
            sq = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * A @ B.T
            dist = np.sqrt(np.maximum(sq, 0))
        if self.kind == "rank":
            if dist.shape[0] == dist.shape[1]:
                np.fill_diagonal(dist, np.inf)
            r = self.rank_count(dist.shape[1] if dist.shape[0] != dist.shape[1] else dist.shape[0])
            idx = np.argsort(dist, axis=1, kind="stable")[:, :r]
            S = np.zeros(dist.shape, dtype=bool)
            np.put_along_axis(S, idx, True, axis=1)
            return S
        return dist < self.threshold

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind == "distance":
            out.update(metric=self.metric, threshold=float(self.threshold))
        if self.kind == "rank":
            out.update(metric=self.metric, share=float(self.share))
        if self.kind == "knn":
            out.update(metric=self.metric, n_neighbours=int(np.asarray(self.table).shape[1]),
                       group_size=int(self.group_size))
        return out


#: The last table :func:`knn_table` computed, by (digest of X, shape, K, metric): a validation grid fits the same
#: training set many times, and an exact table of 120,000 rows takes minutes.
_KNN_CACHE: dict[tuple, np.ndarray] = {}


def knn_table(X: np.ndarray, n_neighbours: int, metric: str = "euclidean", chunk: int = 1024) -> np.ndarray:
    """The exact ``n_neighbours`` nearest other rows of each row of X, nearest first.

    The last table is kept (keyed by a digest of X's bytes, K and the metric), so fitting the same data again
    does not recompute it.

    Returns
    -------
    table : ndarray of shape (n, n_neighbours), dtype=int64
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    K = int(n_neighbours)
    if not 1 <= K <= n - 1:
        raise HashplugError(f"n_neighbours must be an int in [1, n - 1] = [1, {n - 1}]; got {n_neighbours}.")
    if metric not in DISTANCE_METRICS:
        raise HashplugError(f"distance metric must be one of {list(DISTANCE_METRICS)}; got {metric!r}.")
    key = (hashlib.sha1(np.ascontiguousarray(X).view(np.uint8)).hexdigest(), X.shape, K, metric)
    if key in _KNN_CACHE:
        return _KNN_CACHE[key].copy()
    if metric == "cosine":
        X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    sq = (X * X).sum(1)
    table = np.empty((n, K), dtype=np.int64)
    for s in range(0, n, int(chunk)):
        A = X[s : s + int(chunk)]
        if metric == "cosine":
            dist = 1.0 - A @ X.T
        else:
            dist = sq[s : s + len(A), None] + sq[None, :] - 2.0 * (A @ X.T)
        dist[np.arange(len(A)), np.arange(s, s + len(A))] = np.inf  # not its own neighbour
        part = np.argpartition(dist, K - 1, axis=1)[:, :K]  # the K nearest, unordered
        order = np.argsort(np.take_along_axis(dist, part, 1), axis=1, kind="stable")
        table[s : s + len(A)] = np.take_along_axis(part, order, 1)
    _KNN_CACHE.clear()
    _KNN_CACHE[key] = table.copy()
    return table


#: Pairs per block of :meth:`Neighbourhood.from_distances`: the rows of 200,000 pairs of 384 float64 features
#: gathered at once were two 614 MB temporaries; a block's distances are the same numbers (each is its own row's).
_PAIR_BLOCK = 8192


def _pair_distances(A: np.ndarray, B: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        na = np.maximum(np.linalg.norm(A, axis=1), 1e-12)
        nb = np.maximum(np.linalg.norm(B, axis=1), 1e-12)
        return 1.0 - (A * B).sum(1) / (na * nb)
    return np.linalg.norm(A - B, axis=1)


def mutual_information_numpy(codes: np.ndarray, S: np.ndarray, n_bins: int | None = None) -> float:
    """:func:`mutual_information` in numpy (float64), averaged over anchors: for evaluating fitted codes.

    ``codes`` (M, b) are relaxed or exact +-1 codes; ``S`` (M, M) the boolean neighbour relation.
    """
    phi = np.asarray(codes, dtype=np.float64)
    M, b = phi.shape
    if M < 2:
        raise HashplugError(f"codes must have shape (M, b) with M >= 2 items; got {phi.shape}.")
    S = np.asarray(S, dtype=bool)
    off = ~np.eye(M, dtype=bool)
    pos, neg = S & off, ~S & off
    c, width = bin_centres(b, n_bins)
    d = 0.5 * (b - phi @ phi.T)
    delta = np.maximum(0.0, 1.0 - np.abs(d[..., None] - c) / width)  # (M, M, L)
    n_pos, n_neg = pos.sum(1).astype(np.float64), neg.sum(1).astype(np.float64)
    h_pos = np.einsum("ijl,ij->il", delta, pos) / np.maximum(n_pos, 1)[:, None]
    h_neg = np.einsum("ijl,ij->il", delta, neg) / np.maximum(n_neg, 1)[:, None]
    pp, pn = n_pos / (M - 1), n_neg / (M - 1)
    p = pp[:, None] * h_pos + pn[:, None] * h_neg

    def xlogx(v: np.ndarray) -> np.ndarray:
        return np.where(v > 0, v * np.log(np.where(v > 0, v, 1.0)), 0.0)

    mi = -xlogx(p).sum(1) + pp * xlogx(h_pos).sum(1) + pn * xlogx(h_neg).sum(1)
    return float(mi.mean())


def train_minibatches(
    module: Any,
    param_groups: list[dict[str, Any]],
    X: np.ndarray,
    targets: np.ndarray,
    neighbourhood: Neighbourhood,
    objective: Any,
    *,
    epochs: int,
    batch_size: int,
    optimizer: str = "sgd",
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    lr_step: int | None = None,
    lr_decay: float = 0.5,
    rng: np.random.Generator,
    device: Any,
    verbose: bool = False,
    desc: str = "MIHash",
    name: str = "mi",
) -> list[float]:
    """Maximise ``objective(module(x_batch), S_batch)`` by minibatch SGD (momentum) or Adam; returns the mean
    objective per epoch.

    Each epoch's minibatches come from :meth:`Neighbourhood.batches` (a fresh permutation walked in full
    minibatches of ``batch_size``; ``knn``: groups of near neighbours); every anchor sees M - 1 items. ``param_groups`` are torch optimiser groups; a group's ``"lr_scale"`` multiplies ``lr``
    (section 5.1: pretrained layers at 0.01). Step decay multiplies every learning rate by ``lr_decay`` each
    ``lr_step`` epochs. ``device`` is where ``module`` lives; the thread policy of :mod:`hashplug._torch`
    applies. The progress bar shows the objective under ``name``.
    """
    import torch

    from .loop import Step, run_epochs

    n = X.shape[0]
    M = min(int(batch_size), n)
    groups = [{**{k: v for k, v in g.items() if k != "lr_scale"}, "lr": float(lr) * float(g.get("lr_scale", 1.0))}
              for g in param_groups]
    if optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=float(lr), momentum=float(momentum), weight_decay=float(weight_decay))
    elif optimizer == "adam":
        opt = torch.optim.Adam(groups, lr=float(lr), weight_decay=float(weight_decay))
    else:
        raise HashplugError(f"optimizer must be 'sgd' or 'adam'; got {optimizer!r}.")
    sched = torch.optim.lr_scheduler.StepLR(opt, int(lr_step), float(lr_decay)) if lr_step is not None else None
    Xt = torch.as_tensor(np.ascontiguousarray(X, dtype=np.float32), device=device)
    Tt = torch.as_tensor(np.ascontiguousarray(targets), device=device)

    def step(epoch: int, b: np.ndarray) -> Step:
        idx = torch.as_tensor(b, device=device)
        value = objective(module(Xt[idx]), neighbourhood.matrix(Tt[idx]))
        opt.zero_grad(set_to_none=True)
        (-value).backward()
        opt.step()
        return Step({name: float(value.detach())})

    def end_epoch(epoch: int, record: dict[str, float]) -> None:
        if sched is not None:
            sched.step()

    records = run_epochs(
        step, lambda epoch: neighbourhood.batches(n, M, rng), epochs=int(epochs), desc=desc, verbose=verbose,
        metrics=(name,), end_epoch=end_epoch, postfix=lambda rec: {name: f"{rec[name]:.4f}"},
    )
    history = [rec[name] for rec in records]
    return history
