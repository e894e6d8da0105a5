"""The Krotov-Hopfield local plasticity rule (BioHash paper, eq. 1-2), shared by BioHash,
NaiveBioHash and (later) BioConvHash.

For a minibatch of inputs ``x^A`` the rule ranks the hidden units by their p-norm inner product

    <W_mu, x>_mu = sum_i sign(W_mu i) |W_mu i|^(p-1) x_i

and updates

    dW_mu i = g[Rank_mu] (x_i - <W_mu, x>_mu W_mu i),   g = 1 for rank 1, -Delta for rank r, 0 otherwise,

summed over the minibatch, divided by the largest absolute entry of the update (as in the
Krotov-Hopfield reference implementation) and scaled by a learning rate annealed linearly to zero
over the epochs. Only 2 units per sample have a non-zero ``g``, so the update is applied sparsely
(``index_add_``): the cost per minibatch is the forward product plus O(batch * d).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._torch import RECHECK_SECONDS, require_torch, torch_threads

__all__ = ["pnorm_weights", "pnorm_scores", "plasticity_step", "train_plasticity", "energy"]


def pnorm_weights(W: Any, p: float) -> Any:
    """``sign(W) |W|^(p-1)``: the effective weights of the p-norm inner product (torch or numpy)."""
    if isinstance(W, np.ndarray):
        return (np.sign(W) * np.abs(W) ** (p - 1)).astype(np.float32)
    torch = require_torch()
    return torch.sign(W) * torch.abs(W) ** (p - 1)


def pnorm_scores(W: Any, x: Any, p: float) -> Any:
    """Scores (n, m) = x @ (sign(W)|W|^(p-1)).T for inputs x (n, d) and weights W (m, d)."""
    return x @ pnorm_weights(W, p).T


def plasticity_step(W: Any, x: Any, p: float, delta: float, r: int, lr: float, prec: float = 1e-30) -> None:
    """One in-place minibatch update of W (m, d) from inputs x (B, d)."""
    torch = require_torch()
    m = W.shape[0]
    tot = pnorm_scores(W, x, p)  # (B, m)
    B = x.shape[0]
    if r >= 2 and m >= r:
        top = torch.topk(tot, r, dim=1).indices  # (B, r), descending
        units = torch.cat([top[:, 0], top[:, r - 1]])
        g = torch.cat([torch.ones(B, device=W.device, dtype=W.dtype), torch.full((B,), -delta, device=W.device, dtype=W.dtype)])
        xs = torch.cat([x, x])
        rows = torch.arange(B, device=W.device)
        act = torch.cat([tot[rows, top[:, 0]], tot[rows, top[:, r - 1]]])
    else:
        units = torch.argmax(tot, dim=1)
        g = torch.ones(B, device=W.device, dtype=W.dtype)
        xs = x
        act = tot[torch.arange(B, device=W.device), units]
    # ds = sum_A g (x^A - <W,x^A> W)  ->  Hebbian part sum_A g x^A, decay part (sum_A g <W,x^A>) W
    ds = torch.zeros_like(W)
    ds.index_add_(0, units, g[:, None] * xs)
    xx = torch.zeros(m, device=W.device, dtype=W.dtype)
    xx.index_add_(0, units, g * act)
    touched = torch.unique(units)
    ds[touched] -= xx[touched, None] * W[touched]
    nc = torch.clamp(ds.abs().max(), min=prec)
    W += (lr / nc) * ds


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
) -> np.ndarray:
    """Train W (m, d) on X (n, d) float32 with the rule; returns float32 numpy weights.

    ``lr`` decays linearly from ``lr`` to 0 across epochs (per epoch, as in the reference).
    ``callback(epoch, W_numpy)`` is called after each epoch when given.

    ``n_threads`` (int, ``"auto"`` or None) is torch's intra-op thread count during training, restored
    afterwards (:func:`hashplug._torch.torch_threads`). None follows ``hashplug._torch.default_threads``,
    then the ``HASHPLUG_NUM_THREADS`` environment variable, then ``"auto"``: the cores not kept busy by
    other processes, measured on the running training after 0.1 s and then every 0.5 s.
    """
    torch = require_torch()
    from tqdm.auto import tqdm

    # checks n_threads / HASHPLUG_NUM_THREADS before any work; "auto" follows the load between minibatches
    threads = torch_threads(n_threads, recheck=RECHECK_SECONDS)
    rng = np.random.default_rng(seed)
    n, d = X.shape
    if W0 is None:
        W0 = rng.standard_normal((m, d)).astype(np.float32)
    W = torch.as_tensor(np.array(W0, dtype=np.float32), device=device)
    Xt = torch.as_tensor(np.ascontiguousarray(X, dtype=np.float32), device=device)
    bar = tqdm(range(epochs), desc=desc, disable=not verbose, leave=False)
    with torch.no_grad(), threads:
        for ep in bar:
            eps = lr * (1.0 - ep / epochs)
            perm = torch.as_tensor(rng.permutation(n), device=device)
            for s in range(0, n, batch_size):
                threads.tick()
                plasticity_step(W, Xt[perm[s : s + batch_size]], p, delta, r, eps)
            if callback is not None:
                callback(ep, W.cpu().numpy().copy())  # a snapshot, never a view of live W
    return W.cpu().numpy().astype(np.float32)
