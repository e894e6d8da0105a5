"""Hyperdimensional computing (HDC) operations: NeuroHash section III-A, in one module.

Hypervectors are the last axis of an array. Every function takes numpy arrays **or** torch tensors and
returns the same kind (torch is never imported here: a tensor brings its own namespace), so the
training side (torch, autograd) and the serving side (numpy) run the same lines.

- **bundling** ``+``: element-wise (optionally weighted) sum; the result is similar to each term;
- **binding** ``*``: element-wise product; dissimilar to both factors, but similarity-preserving:
  ``similarity(v * a, v * b) == similarity(a, b)`` exactly when ``|v_j| = 1`` for every j (bipolar or
  FHRR phasor ``v``), approximately for other random ``v``;
- **permutation** ``rho``: a cyclic rotation of the elements; ``similarity(rho(h), h) ~ 0`` for a random
  ``h``;
- **similarity** ``delta``: cosine, ``Re(a . conj(b)) / (|a| |b|)`` for complex hypervectors.

Encoders:

- :class:`RandomFeatureEncoder`: ``phi(F) = cos(F B + b) * sin(F B)`` with ``B ~ N(0, 1)`` of shape
  ``(n_features, D)`` and ``b ~ U[0, 2 pi)`` (section III-A-1);
- :func:`positional_hypervectors` (FHRR, section III-B-4): ``h_p = exp(i x B_X / w) * exp(i y B_Y / w)`` with
  ``B_X, B_Y ~ N(0, 1)^D`` and the length scale ``w``; for two positions at distance ``d``,
  ``E[similarity] = exp(-d^2 / (2 w^2))``: positional similarity falls with distance, faster for
  smaller ``w``. :func:`positional_phases` gives the angles, so a graph without complex numbers computes
  ``h * h_p`` as ``(h cos theta, h sin theta)`` (:func:`bind_phases`).

The random-feature encoder is not shift-invariant: two unrelated inputs keep a similarity near 1/2 (the
product ``cos(z + b) sin(z)`` has a positive mean square part), so "dissimilar" means "near the floor",
not "near 0" (``tests/test_hdc.py`` checks the exact kernel).

:func:`spatial_hypervectors` is section III-B-4's ``H = eta_glob h_glob + sum_k eta_k (h_k^f * h_k^p)`` in
real form ``[Re H, Im H]``, with a mask for images with fewer objects than the maximum.

numpy only at import.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .validation import HashplugError, check_array, check_float_param, check_int_param

__all__ = [
    "bundle",
    "bind",
    "permute",
    "similarity",
    "similarity_matrix",
    "random_bipolar",
    "random_phasors",
    "RandomFeatureEncoder",
    "positional_bases",
    "positional_phases",
    "positional_hypervectors",
    "bind_phases",
    "expected_positional_similarity",
    "spatial_hypervectors",
    "conditional_eta",
]


def _is_torch(a: Any) -> bool:
    return type(a).__module__.startswith("torch")


def _as_array(a: Any, name: str, owner: str) -> Any:
    """Tensors pass through; anything else becomes a checked numpy array (float or complex)."""
    if _is_torch(a):
        return a
    arr = np.asarray(a)
    if np.iscomplexobj(arr):
        if arr.size and not np.all(np.isfinite(arr)):
            raise HashplugError(f"{owner}: {name} holds NaN or infinity; hypervectors must be finite.")
        return arr
    return check_array(arr, name=name, ndim=None, dtype=None, owner=owner)


def bundle(hypervectors: Any, weights: Any = None, axis: int = 0) -> Any:
    """Bundling (``+``): the (weighted) element-wise sum of hypervectors along ``axis``.

    Parameters
    ----------
    hypervectors : ndarray or Tensor of shape (..., n, ..., D)
        The hypervectors to bundle, stacked along ``axis``.
    weights : array-like of shape (n,) or broadcastable to ``hypervectors`` without the last axis, optional
        Per-hypervector weights (NeuroHash's eta); default all 1.
    axis : int, default=0
        The stacking axis (not the last, hypervector axis).

    Returns
    -------
    h : ndarray or Tensor of shape ``hypervectors.shape`` without ``axis``
    """
    h = _as_array(hypervectors, "hypervectors", "bundle")
    nd = h.ndim
    ax = axis % nd
    if ax == nd - 1:
        raise HashplugError("bundle: axis is the hypervector (last) axis; bundle along the stacking axis instead.")
    if weights is not None:
        w = weights if _is_torch(weights) else np.asarray(weights, dtype=np.float64)
        if w.ndim == 1:
            if w.shape[0] != h.shape[ax]:
                raise HashplugError(
                    f"bundle: {w.shape[0]} weights for {h.shape[ax]} hypervectors along axis {axis}; pass one "
                    "weight per hypervector."
                )
            shape = [1] * nd
            shape[ax] = w.shape[0]
            w = w.reshape(shape)
        else:
            w = w[..., None]
        if not _is_torch(h) and not _is_torch(w):
            w = w.astype(h.dtype if np.iscomplexobj(h) or h.dtype.kind == "f" else np.float64)
        elif _is_torch(h) and not _is_torch(w):
            import torch

            w = torch.as_tensor(w, dtype=h.real.dtype if h.is_complex() else h.dtype, device=h.device)
        h = h * w
    return h.sum(ax) if _is_torch(h) else h.sum(axis=ax)


def bind(a: Any, b: Any) -> Any:
    """Binding (``*``): the element-wise product (broadcasting), complex for FHRR hypervectors.

    Parameters
    ----------
    a, b : ndarray or Tensor of shape (..., D)

    Returns
    -------
    h : ndarray or Tensor of shape broadcast(a, b)
    """
    a = _as_array(a, "a", "bind")
    b = _as_array(b, "b", "bind")
    if a.shape[-1] != b.shape[-1]:
        raise HashplugError(f"bind: hypervectors of length {a.shape[-1]} and {b.shape[-1]}; bind equal lengths.")
    return a * b


def permute(h: Any, shifts: int = 1) -> Any:
    """Permutation ``rho``: rotate the hypervector elements by ``shifts`` places (``rho^-1`` is -shifts).

    Parameters
    ----------
    h : ndarray or Tensor of shape (..., D)
    shifts : int, default=1

    Returns
    -------
    rho_h : ndarray or Tensor of shape (..., D)
    """
    h = _as_array(h, "h", "permute")
    shifts = int(shifts)
    if _is_torch(h):
        import torch

        return torch.roll(h, shifts=shifts, dims=-1)
    return np.roll(h, shifts, axis=-1)


def _real_inner(a: Any, b: Any) -> Any:
    """``Re(sum_j a_j conj(b_j))`` over the last axis."""
    if _is_torch(a) or _is_torch(b):
        prod = a * (b.conj() if _is_torch(b) and b.is_complex() else b)
        prod = prod.real if prod.is_complex() else prod
        return prod.sum(-1)
    return np.real(np.sum(a * np.conj(b), axis=-1))


def _norm(a: Any) -> Any:
    if _is_torch(a):
        return a.abs().pow(2).sum(-1).sqrt()
    return np.sqrt(np.sum(np.abs(a) ** 2, axis=-1))


def similarity(a: Any, b: Any) -> Any:
    """Similarity ``delta``: cosine of the angle, ``Re(a . conj(b)) / (|a| |b|)``, along the last axis.

    Parameters
    ----------
    a, b : ndarray or Tensor of shape (..., D), real or complex (broadcasting)

    Returns
    -------
    delta : ndarray or Tensor of shape broadcast(a, b).shape[:-1], float in [-1, 1]
        0 where either hypervector is all zeros.
    """
    a = _as_array(a, "a", "similarity")
    b = _as_array(b, "b", "similarity")
    if a.shape[-1] != b.shape[-1]:
        raise HashplugError(
            f"similarity: hypervectors of length {a.shape[-1]} and {b.shape[-1]}; compare equal lengths."
        )
    den = _norm(a) * _norm(b)
    num = _real_inner(a, b)
    if _is_torch(den):
        return num / den.clamp_min(1e-30)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def similarity_matrix(A: Any, B: Any) -> Any:
    """Pairwise similarities of two sets of hypervectors.

    Parameters
    ----------
    A : ndarray or Tensor of shape (n_a, D)
    B : ndarray or Tensor of shape (n_b, D)

    Returns
    -------
    S : ndarray or Tensor of shape (n_a, n_b), float in [-1, 1]
    """
    A = _as_array(A, "A", "similarity_matrix")
    B = _as_array(B, "B", "similarity_matrix")
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[1]:
        raise HashplugError(
            f"similarity_matrix: A has shape {tuple(A.shape)} and B {tuple(B.shape)}; pass two 2-D arrays with "
            "the same number of columns D."
        )
    na, nb = _norm(A), _norm(B)
    if _is_torch(A):
        Bc = B.conj() if B.is_complex() else B
        G = A @ Bc.T
        G = G.real if G.is_complex() else G
        return G / (na[:, None] * nb[None, :]).clamp_min(1e-30)
    G = np.real(A @ np.conj(B).T)
    den = na[:, None] * nb[None, :]
    return np.where(den > 0, G / np.where(den > 0, den, 1.0), 0.0)


def random_bipolar(n: int, D: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Random bipolar hypervectors, ``ndarray of shape (n, D), dtype=float32`` with entries +-1."""
    g = np.random.default_rng(rng)
    return (g.integers(0, 2, size=(int(n), int(D))) * 2 - 1).astype(np.float32)


def random_phasors(n: int, D: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Random FHRR hypervectors ``exp(i theta)``, theta ~ U[0, 2 pi): ``ndarray (n, D), dtype=complex128``."""
    g = np.random.default_rng(rng)
    return np.exp(1j * g.uniform(0.0, 2 * np.pi, size=(int(n), int(D))))


class RandomFeatureEncoder:
    """The HDC random-feature encoder ``phi(F) = cos(F B + b) * sin(F B)`` (NeuroHash section III-A-1).

    Parameters
    ----------
    n_features : int
        Input length n.
    D : int
        Hypervector length.
    random_state : int or None
        Seed of ``B ~ N(0, 1)`` (n_features, D) and ``b ~ U[0, 2 pi)`` (D,).

    Attributes
    ----------
    B_ : ndarray of shape (n_features, D), dtype=float32
    b_ : ndarray of shape (D,), dtype=float32
    """

    def __init__(self, n_features: int, D: int, random_state: int | None = 0) -> None:
        self.n_features = check_int_param(n_features, "n_features", "RandomFeatureEncoder", low=1)
        self.D = check_int_param(D, "D", "RandomFeatureEncoder", low=1)
        g = np.random.default_rng(random_state)
        self.B_ = g.standard_normal((self.n_features, self.D)).astype(np.float32)
        self.b_ = g.uniform(0.0, 2 * np.pi, size=self.D).astype(np.float32)

    def __call__(self, F: Any) -> Any:
        """Encode features.

        Parameters
        ----------
        F : ndarray or Tensor of shape (..., n_features)

        Returns
        -------
        h : ndarray of shape (..., D), dtype=float32 (a Tensor for a Tensor input, on its device)
        """
        if _is_torch(F):
            import torch

            B = torch.as_tensor(self.B_, device=F.device, dtype=F.dtype)
            b = torch.as_tensor(self.b_, device=F.device, dtype=F.dtype)
            z = F @ B
            return torch.cos(z + b) * torch.sin(z)
        F = check_array(F, name="F", ndim=None, dtype=np.float32, owner="RandomFeatureEncoder")
        if F.shape[-1] != self.n_features:
            raise HashplugError(
                f"RandomFeatureEncoder: F has {F.shape[-1]} features but the encoder was built for "
                f"{self.n_features}; build it with n_features={F.shape[-1]}."
            )
        z = F @ self.B_
        return (np.cos(z + self.b_) * np.sin(z)).astype(np.float32)


def positional_bases(D: int, rng: np.random.Generator | int | None = 0) -> np.ndarray:
    """The positional base hypervectors ``B_X, B_Y ~ N(0, 1)^D``: ``ndarray (2, D), dtype=float32``."""
    D = check_int_param(D, "D", "positional_bases", low=1)
    return np.random.default_rng(rng).standard_normal((2, D)).astype(np.float32)


def positional_phases(xy: Any, bases: Any, w: float) -> Any:
    """Phases ``theta = (x B_X + y B_Y) / w`` of the positional hypervectors ``exp(i theta)``.

    Parameters
    ----------
    xy : ndarray or Tensor of shape (..., 2)
        Positions (x, y), normalised coordinates (e.g. box centres / image size).
    bases : ndarray or Tensor of shape (2, D)
        ``B_X`` and ``B_Y`` (:func:`positional_bases`).
    w : float > 0
        The length scale: smaller ``w`` makes positions decorrelate over shorter distances.

    Returns
    -------
    theta : ndarray or Tensor of shape (..., D), float
    """
    w = check_float_param(w, "w", "positional_phases", low=0.0, low_open=True)
    if not _is_torch(xy):
        xy = check_array(xy, name="xy", ndim=None, dtype=np.float64, owner="positional_phases")
        bases = check_array(bases, name="bases", ndim=2, dtype=np.float64, owner="positional_phases")
    if xy.shape[-1] != 2 or bases.shape[0] != 2:
        raise HashplugError(
            f"positional_phases: xy has shape {tuple(xy.shape)} and bases {tuple(bases.shape)}; pass xy of shape "
            "(..., 2) and bases of shape (2, D)."
        )
    return (xy @ bases) / w


def positional_hypervectors(xy: Any, bases: Any, w: float) -> np.ndarray:
    """FHRR positional hypervectors ``h_p = exp(i x B_X / w) * exp(i y B_Y / w)`` (section III-B-4).

    Parameters
    ----------
    xy : ndarray of shape (..., 2)
    bases : ndarray of shape (2, D)
    w : float > 0

    Returns
    -------
    h_p : ndarray of shape (..., D), dtype=complex128, unit magnitude everywhere
    """
    theta = positional_phases(xy, bases, w)
    if _is_torch(theta):
        import torch

        return torch.polar(torch.ones_like(theta), theta)
    return np.exp(1j * theta)


def bind_phases(h: Any, theta: Any) -> tuple[Any, Any]:
    """Bind a real hypervector to the phasor ``exp(i theta)`` without complex numbers.

    Parameters
    ----------
    h : ndarray or Tensor of shape (..., D), real
    theta : ndarray or Tensor of shape (..., D)

    Returns
    -------
    re, im : ndarray or Tensor of shape broadcast(h, theta)
        ``h cos theta`` and ``h sin theta``: the real and imaginary parts of ``h * exp(i theta)``.
    """
    if _is_torch(h) or _is_torch(theta):
        import torch

        return h * torch.cos(theta), h * torch.sin(theta)
    return h * np.cos(theta), h * np.sin(theta)


def expected_positional_similarity(d: Any, w: float) -> np.ndarray:
    """``E[similarity(h_p(p1), h_p(p2))] = exp(-d^2 / (2 w^2))`` for positions at distance ``d``.

    With ``B ~ N(0, 1)`` each element's phase difference is ``N(0, d^2 / w^2)``, whose cosine has that mean.

    Parameters
    ----------
    d : array-like of float
        Euclidean distances between positions.
    w : float > 0

    Returns
    -------
    s : ndarray of the shape of ``d``, float64 in (0, 1]
    """
    w = check_float_param(w, "w", "expected_positional_similarity", low=0.0, low_open=True)
    d = np.asarray(d, dtype=np.float64)
    return np.exp(-(d**2) / (2 * w**2))



def spatial_hypervectors(
    h_global: Any, h_objects: Any, theta: Any, mask: Any, eta: Any = None, eta_global: Any = None
) -> Any:
    """``[Re H, Im H]`` with ``H = eta_glob h_glob + sum_k eta_k mask_k (h_k^f * exp(i theta_k))``.

    Parameters
    ----------
    h_global : ndarray or Tensor of shape (n, D), real
        Global feature hypervectors.
    h_objects : ndarray or Tensor of shape (n, K, D), real
        Object feature hypervectors (any values at masked slots).
    theta : ndarray or Tensor of shape (n, K, D)
        Phases of the objects' positional hypervectors (:func:`positional_phases`).
    mask : ndarray or Tensor of shape (n, K), 0/1 or bool
        1 where the slot holds an object.
    eta : ndarray or Tensor of shape (n, K), optional
        Object weights (default 1): a large weight focuses the representation on that object.
    eta_global : ndarray or Tensor of shape (n,), optional
        Weight of the global hypervector (default 1).

    Returns
    -------
    H : ndarray or Tensor of shape (n, 2 D), float
        Real parts then imaginary parts.
    """
    torch_mode = any(_is_torch(a) for a in (h_global, h_objects, theta))
    if not torch_mode:
        h_global = check_array(h_global, name="h_global", ndim=2, dtype=np.float32, owner="spatial_hypervectors")
        n, D = h_global.shape
        h_objects = check_array(h_objects, name="h_objects", ndim=3, dtype=np.float32, owner="spatial_hypervectors")
        theta = check_array(theta, name="theta", ndim=3, dtype=np.float32, owner="spatial_hypervectors")
        if h_objects.shape[0] != n or h_objects.shape[2] != D or theta.shape != h_objects.shape:
            raise HashplugError(
                f"spatial_hypervectors: h_global {h_global.shape}, h_objects {h_objects.shape}, theta {theta.shape}; "
                "pass (n, D), (n, K, D) and (n, K, D)."
            )
        K = h_objects.shape[1]
        mask = check_array(mask, name="mask", ndim=2, dtype=np.float32, owner="spatial_hypervectors")
        eta = np.ones((n, K), np.float32) if eta is None else check_array(
            eta, name="eta", ndim=2, dtype=np.float32, owner="spatial_hypervectors")
        eta_global = np.ones(n, np.float32) if eta_global is None else check_array(
            eta_global, name="eta_global", ndim=1, dtype=np.float32, owner="spatial_hypervectors")
        if mask.shape != (n, K) or eta.shape != (n, K) or eta_global.shape != (n,):
            raise HashplugError(
                f"spatial_hypervectors: mask {mask.shape}, eta {eta.shape}, eta_global {eta_global.shape}; pass "
                f"({n}, {K}), ({n}, {K}) and ({n},)."
            )
        wk = (eta * mask)[..., None]
        re = eta_global[:, None] * h_global + np.sum(wk * h_objects * np.cos(theta), axis=1)
        im = np.sum(wk * h_objects * np.sin(theta), axis=1)
        return np.concatenate([re, im], axis=1).astype(np.float32, copy=False)
    import torch

    n, K = h_objects.shape[0], h_objects.shape[1]
    like = h_objects

    def t(a: Any, shape: tuple[int, ...]) -> Any:
        if a is None:
            return torch.ones(shape, dtype=like.dtype, device=like.device)
        return torch.as_tensor(a, dtype=like.dtype, device=like.device)

    wk = (t(eta, (n, K)) * t(mask, (n, K)))[..., None]
    re = t(eta_global, (n,))[:, None] * h_global + (wk * h_objects * torch.cos(theta)).sum(1)
    im = (wk * h_objects * torch.sin(theta)).sum(1)
    return torch.cat([re, im], dim=1)


def conditional_eta(
    positions: Any,
    mask: Any,
    *,
    focus: Any = None,
    region: Any = None,
    weight: float = 10.0,
) -> np.ndarray:
    """Per-object weights ``eta`` for conditional queries (section III-B-4).

    Parameters
    ----------
    positions : ndarray of shape (n, K, 2)
        Normalised box centres.
    mask : ndarray of shape (n, K)
        1 where a slot holds an object.
    focus : int or ndarray of shape (n,), optional
        The slot of the object to focus on in each image (weight ``weight``, the others 1).
    region : sequence of 4 floats (x0, y0, x1, y1), optional
        A normalised box: objects whose centre lies inside get ``weight``.
    weight : float
        The focused weight (the paper's conditional example uses a large eta on the chosen object).

    Returns
    -------
    eta : ndarray of shape (n, K), dtype=float32
        1 for the other objects (0 at padding: masked anyway).
    """
    pos = check_array(positions, name="positions", ndim=3, dtype=np.float32, owner="conditional_eta", finite=False)
    msk = check_array(mask, name="mask", ndim=2, dtype=np.float32, owner="conditional_eta")
    weight = check_float_param(weight, "weight", "conditional_eta", 0.0, None)
    n, K = msk.shape
    if pos.shape != (n, K, 2):
        raise HashplugError(f"conditional_eta: positions has shape {pos.shape}; expected ({n}, {K}, 2) for mask {msk.shape}.")
    if (focus is None) == (region is None):
        raise HashplugError("conditional_eta: give exactly one of focus= (object slots) or region= (x0, y0, x1, y1).")
    eta = msk.copy()
    if focus is not None:
        f = np.broadcast_to(np.asarray(focus), (n,)).astype(np.int64)
        if np.any((f < 0) | (f >= K)):
            raise HashplugError(f"conditional_eta: focus slots must be in [0, {K}); got {sorted(set(f.tolist()))}.")
        if not np.all(msk[np.arange(n), f] > 0):
            raise HashplugError("conditional_eta: a focus slot holds no object (its mask is 0); focus a real object.")
        eta[np.arange(n), f] = weight
    else:
        r = np.asarray(region, dtype=np.float64).reshape(-1)
        if r.shape != (4,) or not np.all(np.isfinite(r)) or r[0] > r[2] or r[1] > r[3]:
            raise HashplugError(f"conditional_eta: region must be (x0, y0, x1, y1) with x0 <= x1, y0 <= y1; got {region!r}.")
        x, y = pos[..., 0], pos[..., 1]
        inside = (x >= r[0]) & (x <= r[2]) & (y >= r[1]) & (y <= r[3]) & (msk > 0)
        eta[inside] = weight
    return eta.astype(np.float32)
