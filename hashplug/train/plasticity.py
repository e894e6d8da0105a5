"""The Krotov-Hopfield local plasticity rule (BioHash paper, eq. 1-2), shared by BioHash,
NaiveBioHash and (later) BioConvHash.

For a minibatch of inputs ``x^A`` the rule ranks the hidden units by their p-norm inner product

    <W_mu, x>_mu = sum_i sign(W_mu i) |W_mu i|^(p-1) x_i

and updates

    dW_mu i = g[Rank_mu] (x_i - <W_mu, x>_mu W_mu i),   g = 1 for rank 1, -Delta for rank r, 0 otherwise,

summed over the minibatch, divided by the largest absolute entry of the update (as in the
Krotov-Hopfield reference implementation) and scaled by a learning rate annealed linearly to zero
over the epochs. Only 2 units per sample have a non-zero ``g`` (1 when Delta = 0), so only the rows of
the units ranked 1 (and r) in the minibatch change: the update is computed and applied on those rows
only, and :func:`train_plasticity` keeps ``sign(W)|W|^(p-1)`` between minibatches, refreshing only those
rows. The cost per minibatch is the forward product plus O(batch * d); the result is bit-identical to
the dense update ``W += lr * ds / max|ds|`` (the other rows of ``ds`` are zero).

Initial rows (:func:`init_weights`): ``"normal"``, N(0, init_scale) as in the Krotov-Hopfield reference,
or ``"data"``, randomly chosen training samples (as training sees them, e.g. centred) scaled to unit
p-norm, which start on the sphere the rule converges to and inside the data, so every unit can win.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._torch import RECHECK_SECONDS, require_torch, torch_threads

__all__ = [
    "INITS",
    "pnorm_weights",
    "pnorm_scores",
    "plasticity_step",
    "train_plasticity",
    "energy",
    "init_weights",
    "row_pnorms",
    "convergence_facts",
]

#: Initialisations of the synaptic rows (:func:`init_weights`).
INITS = ("normal", "data")


def pnorm_weights(W: Any, p: float) -> Any:
    """``sign(W) |W|^(p-1)``: the effective weights of the p-norm inner product (torch or numpy)."""
    if isinstance(W, np.ndarray):
        return (np.sign(W) * np.abs(W) ** (p - 1)).astype(np.float32)
    torch = require_torch()
    return torch.sign(W) * torch.abs(W) ** (p - 1)


def pnorm_scores(W: Any, x: Any, p: float) -> Any:
    """Scores (n, m) = x @ (sign(W)|W|^(p-1)).T for inputs x (n, d) and weights W (m, d)."""
    return x @ pnorm_weights(W, p).T


def plasticity_step(
    W: Any,
    x: Any,
    p: float,
    delta: float,
    r: int,
    lr: float,
    prec: float = 1e-30,
    *,
    Wp: Any = None,
    won: Any = None,
) -> None:
    """One in-place minibatch update of W (m, d) from inputs x (B, d).

    Only the rows of the units ranked 1 or r (when Delta > 0) for some sample change; they are the only
    rows computed and written. ``Wp``, when given, is ``pnorm_weights(W, p)`` kept up to date by the call
    (its changed rows are recomputed), so the caller need not recompute it over all m rows. ``won``, when
    given, is a bool tensor (m,) in which the units ranked 1 for some sample are set True.
    """
    torch = require_torch()
    m = W.shape[0]
    tot = x @ Wp.T if Wp is not None else pnorm_scores(W, x, p)  # (B, m)
    B = x.shape[0]
    if r >= 2 and m >= r and delta != 0:
        top = torch.topk(tot, r, dim=1).indices  # (B, r), descending
        first = top[:, 0]
        units = torch.cat([first, top[:, r - 1]])
        g = torch.cat([torch.ones(B, device=W.device, dtype=W.dtype), torch.full((B,), -delta, device=W.device, dtype=W.dtype)])
        xs = torch.cat([x, x])
        rows = torch.arange(B, device=W.device)
        act = torch.cat([tot[rows, first], tot[rows, top[:, r - 1]]])
    else:
        # Delta = 0 (or no rank-r unit): g is zero for every rank but the first, so only the winners move.
        # The winner is chosen exactly as before (top-r ranking when there is a rank-r unit, else argmax).
        first = torch.topk(tot, r, dim=1).indices[:, 0] if (r >= 2 and m >= r) else torch.argmax(tot, dim=1)
        units = first
        g = torch.ones(B, device=W.device, dtype=W.dtype)
        xs = x
        act = tot[torch.arange(B, device=W.device), units]
    if won is not None:
        won[first] = True
    # ds = sum_A g (x^A - <W,x^A> W)  ->  Hebbian part sum_A g x^A, decay part (sum_A g <W,x^A>) W,
    # on the touched rows only (the others are zero); sums in the order of ``units``, as the dense form
    touched, inv = torch.unique(units, return_inverse=True)
    ds = torch.zeros((touched.shape[0], W.shape[1]), device=W.device, dtype=W.dtype)
    ds.index_add_(0, inv, g[:, None] * xs)
    xx = torch.zeros(touched.shape[0], device=W.device, dtype=W.dtype)
    xx.index_add_(0, inv, g * act)
    Wt = W[touched]
    ds -= xx[:, None] * Wt
    nc = torch.clamp(ds.abs().max(), min=prec)
    Wt += (lr / nc) * ds
    W[touched] = Wt
    if Wp is not None:
        Wp[touched] = pnorm_weights(Wt, p)


def energy(W: np.ndarray, X: np.ndarray, p: float, delta: float = 0.0, r: int = 2) -> float:
    """The energy of eq. 3 (with the eq. 7 normalisation): mean over samples of

    ``-sum_mu g[Rank] <W_mu, x>_mu / <W_mu, W_mu>_mu^((p-1)/p)``, where ``<W,W>_mu = ||W_mu||_p^p``.

    numpy, float64. With ``delta = 0`` only the top-ranked unit contributes.
    """
    W = np.asarray(W, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    tot = X @ (np.sign(W) * np.abs(W) ** (p - 1)).T  # (n, m)
    norm = (np.abs(W) ** p).sum(axis=1) ** ((p - 1) / p)  # (m,)
    order = np.argsort(-tot, axis=1, kind="stable")
    rows = np.arange(X.shape[0])
    e = tot[rows, order[:, 0]] / norm[order[:, 0]]
    if delta and r >= 2 and W.shape[0] >= r:
        e = e - delta * tot[rows, order[:, r - 1]] / norm[order[:, r - 1]]
    return float(-e.mean())


def row_pnorms(W: np.ndarray, p: float) -> np.ndarray:
    """p-norms of the rows of W (m, d), float64 (the rule drives them to 1)."""
    return (np.abs(np.asarray(W, dtype=np.float64)) ** p).sum(axis=1) ** (1.0 / p)


def convergence_facts(W: np.ndarray, p: float) -> dict[str, float]:
    """``{"row_norm_dev_max", "row_norm_dev_median"}``: max and median over rows of |p-norm - 1|."""
    dev = np.abs(row_pnorms(W, p) - 1.0)
    return {"row_norm_dev_max": float(dev.max()), "row_norm_dev_median": float(np.median(dev))}


def init_weights(
    X: np.ndarray, m: int, p: float, init: str = "normal", scale: float = 1.0, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Initial synapses (m, d) float32 for training on X (n, d), drawn from ``rng``.

    ``"normal"``: ``scale * N(0, 1)`` entries (the Krotov-Hopfield reference). ``"data"``: m training
    samples chosen at random (without replacement when m <= n), each scaled to unit p-norm (an all-zero
    sample stays zero); ``scale`` is not used.
    """
    rng = np.random.default_rng() if rng is None else rng
    n, d = X.shape
    if init == "normal":
        return (float(scale) * rng.standard_normal((m, d))).astype(np.float32)
    if init == "data":
        idx = rng.choice(n, size=m, replace=m > n)
        W = np.asarray(X[idx], dtype=np.float64)
        norms = (np.abs(W) ** p).sum(axis=1) ** (1.0 / p)
        return (W / np.where(norms > 0, norms, 1.0)[:, None]).astype(np.float32)
    raise ValueError(f"init must be one of {list(INITS)}; got {init!r}")


def train_plasticity(
    X: np.ndarray,
    m: int,
    *,
    p: float,
    delta: float,
    r: int,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int | None,
    device: Any,
    W0: np.ndarray | None = None,
    verbose: bool = False,
    desc: str = "plasticity",
    callback: Any = None,
    n_threads: int | str | None = None,
    init: str = "normal",
    stats: dict | None = None,
) -> np.ndarray:
    """Train W (m, d) on X (n, d) float32 with the rule; returns float32 numpy weights.

    ``lr`` decays linearly from ``lr`` to 0 across epochs (per epoch, as in the reference).
    ``callback(epoch, W_numpy)`` is called after each epoch when given.

    Without ``W0`` the rows start from :func:`init_weights` with ``init`` (``"normal"``: N(0, 1);
    ``"data"``: random samples of X scaled to unit p-norm), drawn from the seeded generator.
    ``stats``, when given, is filled after training with ``units_ever_won`` (share of the m units ranked
    first for at least one sample during training), ``row_norm_dev_max`` and ``row_norm_dev_median``
    (max and median over rows of |p-norm - 1| of the returned weights).

    ``n_threads`` (int, ``"auto"`` or None) is torch's intra-op thread count during training, restored
    afterwards (:func:`hashplug._torch.torch_threads`). None follows ``hashplug._torch.default_threads``,
    then the ``HASHPLUG_NUM_THREADS`` environment variable, then ``"auto"``: the cores not kept busy by
    other processes, measured on the running training after 0.1 s and then every 0.5 s.
    """
    torch = require_torch()
    from .loop import permutation_batches, run_epochs

    # checks n_threads / HASHPLUG_NUM_THREADS before any work; "auto" follows the load between minibatches
    threads = torch_threads(n_threads, recheck=RECHECK_SECONDS)
    rng = np.random.default_rng(seed)
    n, d = X.shape
    if W0 is None:
        W0 = init_weights(X, m, p, init, 1.0, rng)
    W = torch.as_tensor(np.array(W0, dtype=np.float32), device=device)
    Wp = pnorm_weights(W, p)  # kept up to date by plasticity_step (changed rows only)
    won = torch.zeros(m, dtype=torch.bool, device=device)
    Xt = torch.as_tensor(np.ascontiguousarray(X, dtype=np.float32), device=device)

    def step(ep: int, idx: Any) -> None:
        eps = lr * (1.0 - ep / epochs)  # annealed linearly to 0 over the epochs
        plasticity_step(W, Xt[idx], p, delta, r, eps, Wp=Wp, won=won)

    def end_epoch(ep: int, record: dict) -> None:
        if callback is not None:
            callback(ep, W.cpu().numpy().copy())  # a snapshot, never a view of live W

    with torch.no_grad():
        run_epochs(step, permutation_batches(n, batch_size, rng, device=device), epochs=epochs, desc=desc,
                   verbose=verbose, threads=threads, end_epoch=end_epoch)
    out = W.cpu().numpy().astype(np.float32)
    if stats is not None:
        stats["units_ever_won"] = float(won.float().mean().item()) if m else 0.0
        stats.update(convergence_facts(out, p))
    return out
