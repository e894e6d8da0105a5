"""The classical baselines of the BioHash paper, section 3.3 (numpy only).

Dense codes (``k`` bits): LSH (Charikar 2002), PCAHash and ITQ (Gong & Lazebnik 2011), Spectral
Hashing (Weiss et al. 2009). Sparse k-hot code: FlyHash (Dasgupta et al. 2017). NaiveBioHash lives
in :mod:`hashplug.encoders.biohash` since it shares the plasticity rule.

Their numpy/BLAS work runs under the one thread policy (:mod:`hashplug._threads_policy`), entered by
:meth:`BaseEncoder.fit` and ``encode``; ITQ's iterations are its ticks (an ``"auto"`` count follows the load).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .._threads_policy import tick as tick_threads
from ..graph import Affine, MatMul, Op, Sin
from ..validation import HashplugError, check_float_param, check_int_param
from .contract import BaseEncoder, EncoderTags, Preset
from .registry import register_encoder

__all__ = ["LSH", "PCAHash", "ITQ", "SpectralHash", "FlyHash"]


class _DenseProjection(BaseEncoder):
    """Dense code ``sign((x - mean) @ W)`` with a learned or random projection W (d, k)."""

    code_kind = "dense"
    _array_attrs = ("mean_", "W_")

    def _validate_k(self, n_features: int, max_k: int | None = None) -> int:
        name = type(self).__name__
        hi = max_k if max_k is not None else None
        rng = f"[1, n_features={max_k}]" if max_k is not None else None
        kk = check_int_param(self.k, "k", name, 1, hi, range_text=rng)
        if self.random_state is not None:
            check_int_param(self.random_state, "random_state", name, 0, None)
        self.m_ = self.k_ = kk
        return kk

    def _center(self, X: np.ndarray) -> np.ndarray:
        center = getattr(self, "center", True)
        self.mean_ = X.mean(axis=0).astype(np.float32) if center else np.zeros(X.shape[1], np.float32)
        return (X - self.mean_).astype(np.float64)

    def _ops(self) -> list[Op]:
        """``Affine(1, -mean_)`` then ``MatMul(W_)``: scores (x - mean) @ W."""
        return [
            Affine(scale=np.float32(1.0), shift=-self.mean_),
            MatMul(np.ascontiguousarray(self.W_, dtype=np.float32)),
        ]


def _paper_baseline(name: str) -> dict[str, Preset]:
    """The same preset on both paper datasets: the defaults, as the BioHash paper's baselines (sec. 3.3)."""
    src = f"{name} as a baseline of the BioHash paper (sec. 3.3): the class defaults, nothing tuned"
    return {"mnist": Preset({}, source=src), "cifar10": Preset({}, source=src)}


def _pca(Xc: np.ndarray, k: int) -> np.ndarray:
    """Top-k principal directions of centred data, shape (d, k), sign-fixed for determinism."""
    cov = Xc.T @ Xc / max(1, Xc.shape[0] - 1)
    vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(vals)[::-1][:k]
    P = vecs[:, order]
    signs = np.sign(P[np.argmax(np.abs(P), axis=0), np.arange(k)])
    return P * np.where(signs == 0, 1.0, signs)


@register_encoder("lsh")
class LSH(_DenseProjection):
    """Sign random projections: bit j = [ (x - mean) . w_j > 0 ], w_j ~ N(0, I).

    Parameters
    ----------
    k : int
        Code length in bits.
    center : bool
        Subtract the training mean first (default True).
    random_state : int or None
        Seed of the projections.
    """

    #: Small, fast settings for the test suite (a fit on scikit-learn digits in well under a second).
    _test_params = {"k": 8}

    presets = _paper_baseline("LSH (Charikar 2002)")

    @classmethod
    def __hashplug_tags__(cls) -> EncoderTags:
        return replace(super().__hashplug_tags__(), randomized=True)

    def __init__(self, k: int = 16, center: bool = True, random_state: int | None = None) -> None:
        self.k = k
        self.center = center
        self.random_state = random_state

    def _validate_params(self, n_features: int) -> None:
        self._validate_k(n_features)

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        self._center(X)
        rng = np.random.default_rng(self.random_state)
        self.W_ = rng.standard_normal((X.shape[1], self.k_)).astype(np.float32)


@register_encoder("pcahash")
class PCAHash(_DenseProjection):
    """Sign of the top-k principal components of the centred data (k <= n_features).

    ``random_state`` is accepted for a uniform interface and not used (the fit is deterministic).
    """

    #: Small, fast settings for the test suite (a fit on scikit-learn digits in well under a second).
    _test_params = {"k": 8}

    presets = _paper_baseline("PCAHash (Gong & Lazebnik 2011)")

    @classmethod
    def __hashplug_tags__(cls) -> EncoderTags:
        return replace(super().__hashplug_tags__(), k_at_most_n_features=True)

    def __init__(self, k: int = 16, random_state: int | None = None) -> None:
        self.k = k
        self.random_state = random_state

    def _validate_params(self, n_features: int) -> None:
        self._validate_k(n_features, n_features)

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        self.W_ = _pca(self._center(X), self.k_).astype(np.float32)


@register_encoder("itq")
class ITQ(_DenseProjection):
    """Iterative Quantization: PCA to k dims, then an orthogonal rotation R minimising the
    quantisation loss ||B - V R||_F by alternating B = sign(V R) and Procrustes (``n_iter`` rounds).
    """

    #: Small, fast settings for the test suite (a fit on scikit-learn digits in well under a second).
    _test_params = {"k": 8, "n_iter": 10}

    _array_attrs = ("mean_", "W_", "R_")
    presets = _paper_baseline("ITQ (Gong & Lazebnik 2011)")

    @classmethod
    def __hashplug_tags__(cls) -> EncoderTags:
        return replace(super().__hashplug_tags__(), randomized=True, k_at_most_n_features=True)

    def __init__(self, k: int = 16, n_iter: int = 50, random_state: int | None = None) -> None:
        self.k = k
        self.n_iter = n_iter
        self.random_state = random_state

    def _validate_params(self, n_features: int) -> None:
        self._validate_k(n_features, n_features)
        check_int_param(self.n_iter, "n_iter", "ITQ", 0, None)

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        P = _pca(self._center(X), self.k_)
        V = (X - self.mean_).astype(np.float64) @ P
        rng = np.random.default_rng(self.random_state)
        R, _ = np.linalg.qr(rng.standard_normal((self.k_, self.k_)))
        for _ in range(int(self.n_iter)):
            tick_threads()  # fit runs under the thread policy (BaseEncoder.fit): an "auto" count follows the load
            B = np.where(V @ R >= 0, 1.0, -1.0)
            U, _, Vt = np.linalg.svd(B.T @ V)
            R = (U @ Vt).T
        self.R_ = R.astype(np.float32)
        self.W_ = (P @ R).astype(np.float32)


@register_encoder("sh")
class SpectralHash(_DenseProjection):
    """Spectral Hashing (Weiss, Torralba, Fergus 2009), the uniform-distribution eigenfunctions:
    PCA to ``min(k, d)`` dims, then the k smallest-eigenvalue 1-D modes; bit j is
    ``sin(pi/2 + omega_j (v_{dim_j} - mn_{dim_j})) > 0`` with ``omega_j = mode_j pi / (mx - mn)``.
    """

    #: Small, fast settings for the test suite (a fit on scikit-learn digits in well under a second).
    _test_params = {"k": 8}

    _array_attrs = ("mean_", "W_", "shift_")
    presets = _paper_baseline("SH (Weiss, Torralba, Fergus 2009)")

    @classmethod
    def __hashplug_tags__(cls) -> EncoderTags:
        # the BioHash paper's tables call it SH; random_state is accepted and unused (deterministic fit)
        return replace(super().__hashplug_tags__(), display_name="SH")

    def __init__(self, k: int = 16, random_state: int | None = None) -> None:
        self.k = k
        self.random_state = random_state

    def _validate_params(self, n_features: int) -> None:
        self._validate_k(n_features)

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        k = self.k_
        npca = min(k, X.shape[1])
        P = _pca(self._center(X), npca)
        V = (X - self.mean_).astype(np.float64) @ P
        mn, mx = V.min(axis=0) - 1e-9, V.max(axis=0) + 1e-9
        rngs = mx - mn
        max_mode = np.ceil((k + 1) * rngs / rngs.max()).astype(int)
        # candidate modes: (dim, mode) with mode >= 1; eigenvalue ~ (mode * pi / range)^2
        cand = [(dim, mode) for dim in range(npca) for mode in range(1, max_mode[dim] + 1)]
        omegas = np.array([mode * np.pi / rngs[dim] for dim, mode in cand])
        order = np.argsort(omegas, kind="stable")[:k]
        if len(order) < k:
            raise HashplugError(f"SpectralHash found only {len(order)} modes for k={k}; lower k.")
        dims = np.array([cand[i][0] for i in order])
        om = omegas[order]
        self.W_ = (P[:, dims] * om[None, :]).astype(np.float32)
        self.shift_ = (np.pi / 2 - om * mn[dims]).astype(np.float32)

    def _ops(self) -> list[Op]:
        """The projection, then ``Affine(1, shift_)`` and ``Sin``: the eigenfunctions' sign."""
        return [*super()._ops(), Affine(scale=np.float32(1.0), shift=self.shift_), Sin()]


@register_encoder("flyhash")
class FlyHash(BaseEncoder):
    """FlyHash (Dasgupta, Stevens, Navlakha 2017): sparse binary random expansion + WTA.

    Each of ``m = expansion * d`` units sums a random ``sampling`` fraction of the inputs (binary
    weights, the same count per unit); the k largest sums are active.

    Parameters
    ----------
    k : int
        Active units per code.
    expansion : int
        m = expansion * n_features (paper: 10).
    sampling : float
        Fraction of inputs wired to each unit (paper: 0.1).
    center : bool
        Subtract the training mean first. (Per-sample mean removal does not change a WTA over
        units that all sum the same number of inputs, so it is not offered.)
    random_state : int or None
        Seed of the wiring.
    """

    #: Small, fast settings for the test suite (a fit on scikit-learn digits in well under a second).
    _test_params = {"k": 8, "expansion": 2}

    code_kind = "khot"
    _array_attrs = ("mean_", "W_")
    presets = {
        ds: Preset(
            {"expansion": 10, "sampling": 0.1},
            source="paper sec. 3.3, as in Dasgupta et al. 2017: sampling rate 0.1 and m = 10 d; nothing tuned",
        )
        for ds in ("mnist", "cifar10")
    }

    @classmethod
    def __hashplug_tags__(cls) -> EncoderTags:
        # the wiring depends on the seed and d, not on k: one fit ranks the units for every k
        return replace(super().__hashplug_tags__(), randomized=True, k_independent=True)

    def __init__(
        self, k: int = 16, expansion: int = 10, sampling: float = 0.1, center: bool = False, random_state: int | None = None
    ) -> None:
        self.k = k
        self.expansion = expansion
        self.sampling = sampling
        self.center = center
        self.random_state = random_state

    def _validate_params(self, n_features: int) -> None:
        e = check_int_param(self.expansion, "expansion", "FlyHash", 1, None)
        check_float_param(self.sampling, "sampling", "FlyHash", 0.0, 1.0, low_open=True)
        m = e * n_features
        kk = check_int_param(self.k, "k", "FlyHash", 1, m, range_text=f"[1, m={m}]")
        self.m_, self.k_ = m, kk

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        d = X.shape[1]
        rng = np.random.default_rng(self.random_state)
        c = max(1, int(round(self.sampling * d)))
        W = np.zeros((d, self.m_), dtype=np.float32)
        for j in range(self.m_):
            W[rng.choice(d, size=c, replace=False), j] = 1.0
        self.W_ = W
        self.mean_ = X.mean(axis=0).astype(np.float32) if self.center else np.zeros(d, np.float32)

    def _ops(self) -> list[Op]:
        """``[Affine(1, -mean_)]`` when centring, then the binary wiring summed in float64 (exact ties)."""
        ops: list[Op] = []
        if self.center:
            ops.append(Affine(scale=np.float32(1.0), shift=-self.mean_))
        ops.append(MatMul(self.W_, accumulate="float64"))
        return ops
