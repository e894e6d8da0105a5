"""NeuroHash training (section III-B): the context-aware HDC encoder and multilinear hyperplane hashing.

Two stages, each a small torch loop:

1. **Context-aware HDC encoder** ``phi = E_gen(E_ext(f))`` (section III-B-3): ``E_ext`` a linear map
   ``z -> z'`` (``z' < z``), ``E_gen`` the random-feature encoder ``cos(u B + b) * sin(u B)`` of section
   III-A with ``B`` and ``b`` trainable, trained on object features with
   ``L_Enc = L_c + lambda_rec L_rec``: ``L_c`` the cross-entropy of ``softmax(phi(f)^T C)`` against
   pseudo-labels (eq. 1; the paper's parentheses are unbalanced, ``softmax(phi(f))^T C`` would push a
   10,000-way softmax through C, so we read it as the usual class-hypervector logits ``phi(f)^T C``),
   ``L_rec`` the squared error of a linear decoder ``E_rec: D -> z`` (eq. 2).
2. **Multilinear hyperplane hashing** ``f_h(H) = tanh(H P^T + b)`` on ``H = [Re H, Im H]`` (section
   III-B-5), ``P ~ N(0, 1)`` at the start, trained with the five terms of eq. 3-8
   (:func:`hyperplane_losses`), each switched off by a zero weight for the ablation. ``H`` is
   L2-normalised per image before the hyperplanes (a choice of ours: the MSE term compares code inner
   products with cosines, and without it ``H P^T`` would saturate ``tanh`` at the N(0, 1) start, where
   ``|H|`` is in the hundreds).

torch is imported inside the functions (training extra).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..validation import HashplugError

__all__ = [
    "LOSS_TERMS",
    "DEFAULT_LAMBDAS",
    "sign_pm1",
    "order_counts",
    "hyperplane_losses",
    "fit_hdc_encoder",
    "hdc_encode",
    "fit_hyperplanes",
]

#: The five terms of eq. 3, in the paper's order.
LOSS_TERMS: tuple[str, ...] = ("mse", "w", "q", "u", "o")

#: Default balance coefficients. The paper gives none; chosen on validation (``hashplug bench neurohash-tune``,
#: ``benchmarks/results/tune_neurohash.json``: 500 query / 5,000 database scenes of MNIST training digits,
#: 32 bits, D = 10,000, w = 1): over lambda_o, lambda_w in {0, 0.1, 1}, lambda_q in {0, 0.1} and lr in
#: {0.01, 0.003} these (with lr 0.01) scored best, 67.5 mAP@1000 against 53.0 for the random hyperplanes;
#: lambda_w = 1 was the worst choice (54-57), every term at 0 except MSE 65.9.
DEFAULT_LAMBDAS: dict[str, float] = {"mse": 1.0, "w": 0.1, "q": 0.1, "u": 0.001, "o": 0.1}


def sign_pm1(x: Any) -> Any:
    """``sign`` as the paper defines it: +1 for ``x >= 0``, else -1 (torch's ``sign(0)`` is 0)."""
    import torch

    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


def order_counts(S: Any) -> Any:
    """``c[i, j] = |{k : S[i, j] > S[i, k]}|``: how many items each j beats in row i (strictly).

    Parameters
    ----------
    S : Tensor of shape (M, M)

    Returns
    -------
    c : Tensor of shape (M, M), int64
    """
    import torch

    srt, _ = torch.sort(S, dim=1)
    return torch.searchsorted(srt.contiguous(), S.contiguous(), right=False)


def hyperplane_losses(codes: Any, S: Any, *, u_normalized: bool = False) -> dict[str, Any]:
    """The five loss terms of eq. 4-8 on a minibatch.

    Parameters
    ----------
    codes : Tensor of shape (M, L)
        Relaxed codes ``H' = tanh(H P^T + b)`` in [-1, 1].
    S : Tensor of shape (M, M)
        Cosine similarities of the hyperdimensional representations ``H_i H_j^T / (|H_i| |H_j|)`` (no grad).

    Returns
    -------
    losses : dict of str to scalar Tensor
        ``"mse"`` eq. 4: mean over all (i, j) of ``(S_ij - s_ij)^2`` with ``s = H' H'^T / L``;
        ``"w"`` eq. 5: mean of ``(s + 1)^2 (s - 1)^2`` (distances pushed to the ends);
        ``"q"`` eq. 7: mean of ``(H' - sign(H'))^2`` (the paper's 1/(NL) over a minibatch of M);
        ``"u"`` eq. 6: mean over i of ``(sum_j H'_ij)^2`` (each code balanced between +1 and -1);
        ``"o"`` eq. 8: ``C(i, j) . [(1 - s)^2, (1 + s)^2]`` averaged over (i, j), with ``C = [1, 0]`` when
        j beats fewer items in the code space than in hyperspace (pull it closer), ``[0, 1]`` when more
        (push it away), ``[0, 0]`` otherwise; C is computed without gradient.
        Sums run over all pairs including i = j, as written.
    u_normalized : bool
        Divide ``"u"`` by ``L^2`` (``(mean_j H'_ij)^2``): as printed it grows with ``L^2``, so one weight
        means a different balance at every length.
    """
    import torch

    if codes.ndim != 2 or S.shape != (codes.shape[0], codes.shape[0]):
        raise HashplugError(
            f"hyperplane_losses: codes {tuple(codes.shape)} and S {tuple(S.shape)}; pass codes (M, L) and S (M, M)."
        )
    L = codes.shape[1]
    s = codes @ codes.T / L
    out = {
        "mse": ((S - s) ** 2).mean(),
        "w": ((s + 1) ** 2 * (s - 1) ** 2).mean(),
        "q": ((codes - sign_pm1(codes.detach())) ** 2).mean(),
        "u": (codes.sum(1) ** 2).mean() / (L * L if u_normalized else 1),
    }
    with torch.no_grad():
        c_h = order_counts(S)
        c_b = order_counts(s)
        up = (c_b < c_h).to(codes.dtype)
        down = (c_b > c_h).to(codes.dtype)
    out["o"] = (up * (1 - s) ** 2 + down * (1 + s) ** 2).mean()
    return out


def _lambdas(lambdas: Mapping[str, float] | None) -> dict[str, float]:
    lam = dict(DEFAULT_LAMBDAS)
    for key, v in (lambdas or {}).items():
        if key not in LOSS_TERMS:
            raise HashplugError(f"Unknown NeuroHash loss term {key!r}; the terms are {list(LOSS_TERMS)}.")
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise HashplugError(f"The weight of loss term {key!r} must be a float >= 0. Got {v!r} instead.")
        lam[key] = float(v)
    return lam


# ---------------------------------------------------------------------------------------------- stage 1
def fit_hdc_encoder(
    F: np.ndarray,
    y: np.ndarray,
    *,
    z_prime: int,
    D: int,
    n_classes: int,
    lambda_rec: float = 1.0,
    epochs: int = 10,
    batch_size: int = 256,
    lr: float = 1e-3,
    device: Any = "cpu",
    random_state: int = 0,
    verbose: bool = False,
) -> tuple[dict[str, np.ndarray], list[dict[str, float]]]:
    """Train ``phi = E_gen(E_ext(f))`` with ``L_c + lambda_rec L_rec`` (eq. 1-2) by Adam.

    Parameters
    ----------
    F : ndarray of shape (M, z), float32
        Object features (standardised by the caller).
    y : ndarray of shape (M,), int
        Pseudo-labels in [0, n_classes).
    z_prime, D, n_classes : int
        Bottleneck width z', hypervector length D, number of pseudo-classes c.
    lambda_rec : float
        Weight of the reconstruction term.

    Returns
    -------
    arrays : dict
        ``W_ext`` (z, z'), ``b_ext`` (z',), ``B`` (z', D), ``b`` (D,), ``C`` (D, c), all float32.
    history : list of dict
        Per epoch: ``{"c": ..., "rec": ..., "acc": ...}`` (training accuracy of ``argmax phi^T C``).
    """
    import torch

    from .loop import Step, permutation_batches, run_epochs

    F = np.ascontiguousarray(F, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    z = F.shape[1]
    g = torch.Generator().manual_seed(int(random_state))
    rng = np.random.default_rng(random_state)
    W_ext = torch.nn.Linear(z, z_prime)
    with torch.no_grad():  # deterministic start
        bound = 1 / math.sqrt(z)
        W_ext.weight.uniform_(-bound, bound, generator=g)
        W_ext.bias.uniform_(-bound, bound, generator=g)
    B = torch.nn.Parameter(torch.randn(z_prime, D, generator=g))
    b = torch.nn.Parameter(torch.rand(D, generator=g) * (2 * math.pi))
    C = torch.nn.Parameter(torch.randn(D, n_classes, generator=g) / math.sqrt(D))
    rec = torch.nn.Linear(D, z)
    with torch.no_grad():
        rec.weight.uniform_(-1 / math.sqrt(D), 1 / math.sqrt(D), generator=g)
        rec.bias.zero_()
    mods = torch.nn.ModuleList([W_ext, rec]).to(device)
    B, b, C = (torch.nn.Parameter(p.detach().to(device)) for p in (B, b, C))
    opt = torch.optim.Adam([*mods.parameters(), B, b, C], lr=float(lr))
    Ft = torch.as_tensor(F, device=device)
    yt = torch.as_tensor(y, device=device)
    n = F.shape[0]
    M = min(int(batch_size), n)

    def step(epoch: int, idx: Any) -> Step:
        f = Ft[idx]
        u = W_ext(f)
        zz = u @ B
        h = torch.cos(zz + b) * torch.sin(zz)
        logits = h @ C
        l_c = torch.nn.functional.cross_entropy(logits, yt[idx])
        l_rec = ((f - rec(h)) ** 2).sum(1).mean()
        loss = l_c + float(lambda_rec) * l_rec
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return Step({"c": float(l_c.detach()) * len(idx), "rec": float(l_rec.detach()) * len(idx),
                     "acc": float((logits.argmax(1) == yt[idx]).float().sum())}, weight=len(idx))

    hist = run_epochs(
        step, permutation_batches(n, M, rng, device=device), epochs=int(epochs), desc="NeuroHash HDC encoder",
        verbose=verbose, recheck=None, metrics=("c", "rec", "acc"),
        postfix=lambda rec: {k: f"{v:.3f}" for k, v in rec.items()},
    )
    arrays = {
        "W_ext": W_ext.weight.detach().T.contiguous(),
        "b_ext": W_ext.bias.detach(),
        "B": B.detach(),
        "b": b.detach(),
        "C": C.detach(),
    }
    return {k: v.cpu().numpy().astype(np.float32) for k, v in arrays.items()}, hist


def hdc_encode(F: Any, arrays: Mapping[str, Any]) -> Any:
    """``phi(f) = cos(u B + b) * sin(u B)`` with ``u = f W_ext + b_ext`` (numpy or torch, last axis).

    Parameters
    ----------
    F : ndarray or Tensor of shape (..., z)
    arrays : mapping with ``W_ext`` (z, z'), ``b_ext`` (z',), ``B`` (z', D), ``b`` (D,)

    Returns
    -------
    h : ndarray or Tensor of shape (..., D)
    """
    if type(F).__module__.startswith("torch"):
        import torch

        def t(key: str) -> Any:
            return torch.as_tensor(arrays[key], dtype=F.dtype, device=F.device)

        zz = (F @ t("W_ext") + t("b_ext")) @ t("B")
        return torch.cos(zz + t("b")) * torch.sin(zz)
    F = np.asarray(F, dtype=np.float32)
    zz = (F @ arrays["W_ext"] + arrays["b_ext"]) @ arrays["B"]
    return (np.cos(zz + arrays["b"]) * np.sin(zz)).astype(np.float32)


# ---------------------------------------------------------------------------------------------- stage 2
def fit_hyperplanes(
    batch_H: Callable[[np.ndarray], Any],
    n: int,
    dim: int,
    n_bits: int,
    *,
    lambdas: Mapping[str, float] | None = None,
    train: bool = True,
    epochs: int = 20,
    batch_size: int = 256,
    lr: float = 1e-3,
    device: Any = "cpu",
    random_state: int = 0,
    verbose: bool = False,
    start: tuple[np.ndarray, np.ndarray] | None = None,
    u_normalized: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, float]]]:
    """Train ``f_h(H) = tanh(H P^T + b)`` with the weighted sum of eq. 3.

    Parameters
    ----------
    batch_H : callable
        ``batch_H(idx) -> Tensor (len(idx), dim)``: ``[Re H, Im H]`` of training images ``idx`` on
        ``device`` (built on the fly, so 2 D floats per image need not all sit in memory). Each row is
        L2-normalised here before the hyperplanes (encode the same way).
    n : int
        Number of training images.
    dim : int
        2 D.
    n_bits : int
        L.
    lambdas : mapping, optional
        Weights of the terms in :data:`LOSS_TERMS` (default :data:`DEFAULT_LAMBDAS`); 0 switches a term off.
    train : bool
        False returns the start untrained (with ``start`` None: the N(0, 1) hyperplanes and zero bias, the
        "random" row of Table II).
    start : (P, bias) of shapes (L, dim) and (L,), optional
        Where training starts instead of ``P ~ N(0, 1)``, zero bias (e.g. the PCA + ITQ hyperplanes).
    u_normalized : bool
        ``L_u`` divided by ``L^2`` (see :func:`hyperplane_losses`).

    Returns
    -------
    P : ndarray of shape (L, dim), float32
    b : ndarray of shape (L,), float32
    history : list of dict
        Per epoch, the mean of every term (also those weighted 0) and of the total.
    """
    import torch

    from .loop import Step, permutation_batches, run_epochs

    lam = _lambdas(lambdas)
    g = torch.Generator().manual_seed(int(random_state))
    P = torch.randn(int(n_bits), int(dim), generator=g).to(device)
    bias = torch.zeros(int(n_bits), device=device)
    if start is not None:
        P0, b0 = (np.asarray(a, dtype=np.float32) for a in start)
        if P0.shape != (int(n_bits), int(dim)) or b0.shape != (int(n_bits),):
            raise HashplugError(f"fit_hyperplanes: start shapes {P0.shape}, {b0.shape}; expected "
                                f"({int(n_bits)}, {int(dim)}) and ({int(n_bits)},).")
        P, bias = torch.as_tensor(P0, device=device).clone(), torch.as_tensor(b0, device=device).clone()
    hist: list[dict[str, float]] = []
    if not train:
        return P.cpu().numpy(), bias.cpu().numpy(), hist
    P.requires_grad_(True)
    bias.requires_grad_(True)
    opt = torch.optim.Adam([P, bias], lr=float(lr))
    rng = np.random.default_rng(random_state)
    M = min(int(batch_size), int(n))
    if M < 2:
        raise HashplugError(f"NeuroHash hashing needs at least 2 training images per batch; got n={n}.")

    def step(epoch: int, idx: np.ndarray) -> Step:
        H = batch_H(idx)
        with torch.no_grad():
            Hn = H / H.norm(dim=1, keepdim=True).clamp_min(1e-12)
            S = Hn @ Hn.T
        codes = torch.tanh(Hn @ P.T + bias)
        parts = hyperplane_losses(codes, S, u_normalized=u_normalized)
        total = sum(lam[k] * parts[k] for k in LOSS_TERMS if lam[k] > 0)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        return Step({**{k: float(parts[k].detach()) for k in LOSS_TERMS}, "total": float(total.detach())})

    hist.extend(run_epochs(
        step, permutation_batches(int(n), M, rng, drop_last=True), epochs=int(epochs),
        desc=f"NeuroHash hyperplanes L={n_bits}", verbose=verbose, recheck=None, metrics=(*LOSS_TERMS, "total"),
        postfix=lambda rec: {"loss": f"{rec['total']:.4f}"},
    ))
    return P.detach().cpu().numpy().astype(np.float32), bias.detach().cpu().numpy().astype(np.float32), hist
