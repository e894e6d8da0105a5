"""NeuroHash: hyperdimensional, spatially-aware image hashing (Yun, Masukawa, Jeong, Imani), section III.

The encoder takes **several named inputs per image** (tag ``input_kind="structured"``), the output of an
image encoder and an object detector (:func:`hashplug.data.scenes.scene_inputs`):

``global_features`` (z,)
    The embedding of the whole image.
``object_features`` (K, z)
    The embedding of each detected object's crop (K = the most objects per image; padded).
``object_positions`` (K, 2)
    Box centres (x, y) normalised to [0, 1] by the image width and height.
``object_mask`` (K,)
    1 where the slot holds an object, 0 for padding.
``eta`` (K,), optional (default 1)
    Per-object weights for conditional queries (a focused object, or the objects in a region).
``eta_global`` (1,), optional (default 1)
    The weight of the global embedding.

Inference is one typed graph (exported as one ONNX file with these six inputs):

1. standardise the features, then the context-aware HDC encoder ``phi(f) = cos(u B + b) * sin(u B)`` with
   ``u = f W_ext + b_ext`` (section III-B-3; trained with eq. 1-2 on pseudo-labels: the detector's classes
   when given as ``y``, else k-means clusters of the object features);
2. FHRR positions ``theta_k = (x_k B_X + y_k B_Y) / w`` and the spatial bundle
   ``H = eta_glob h_glob + sum_k eta_k mask_k h_k e^{i theta_k}`` in real form ``[Re H, Im H]``
   (section III-B-4; complex arithmetic as cos / sin);
3. ``H`` centred on the training mean and L2-normalised (our choice, measured on validation: the
   random-feature encoder gives every hypervector a common component ``-sin(b) / 2``, so uncentred
   cosines all sit near 1/2 and the MSE term of eq. 4 then teaches the hyperplanes to agree on every image:
   trained hashing fell below random hyperplanes without centring, and rose ~8 mAP points above them with it);
4. multilinear hyperplane hashing ``sign(H P^T + b)`` (section III-B-5), ``P ~ N(0, 1)`` trained with the
   five terms of eq. 3-8 (:mod:`hashplug.train.neurohash`), each switchable (``lambdas``) for the ablation;
   ``train_hyperplanes=False`` keeps the random hyperplanes (Table II's first row).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from .. import codes as _codes
from .._deprecation import renamed_kwargs, spelled
from .._domains import check_domains, nan_allowed
from ..graph import (
    Add,
    Affine,
    Concat,
    Cos,
    Graph,
    L2Normalize,
    MatMul,
    Mul,
    Node,
    ReduceSum,
    Reshape,
    Sin,
    head_for,
)
from ..hdc import conditional_eta
from ..validation import HashplugError, check_array, check_float_param, check_int_param, check_is_fitted
from .contract import BaseEncoder, EncoderTags
from .registry import register_encoder

__all__ = ["NeuroHash", "SCENE_INPUTS", "REQUIRED_INPUTS", "conditional_eta"]

#: The graph's named inputs, in order.
SCENE_INPUTS: tuple[str, ...] = (
    "global_features",
    "object_features",
    "object_positions",
    "object_mask",
    "eta",
    "eta_global",
)
#: Inputs a caller must give (``eta`` and ``eta_global`` default to ones).
REQUIRED_INPUTS: tuple[str, ...] = SCENE_INPUTS[:4]


#: Starts of the hyperplanes (the ``init`` parameter).
INITS: tuple[str, ...] = ("gaussian", "pca_itq")


def principal_directions(X: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """The top ``n`` principal directions of ``X`` (rows centred here), exact to solver tolerance.

    Parameters
    ----------
    X : ndarray of shape (n_samples, d), float
    n : int
        ``1 <= n < min(n_samples, d)``.
    seed : int
        Seed of the Lanczos start vector (the result does not depend on it beyond the solver's tolerance).

    Returns
    -------
    V : ndarray of shape (d, n), float64
        Orthonormal columns, by decreasing variance, each with its largest-magnitude entry positive.
    """
    from scipy.sparse.linalg import LinearOperator, svds

    X = np.asarray(X)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if not 1 <= int(n) < min(X.shape):
        raise HashplugError(f"principal_directions: n={n} must be in [1, {min(X.shape) - 1}] for X of shape {X.shape}.")
    mu = X.mean(0, dtype=np.float64)
    dt = X.dtype

    def mv(v: np.ndarray) -> np.ndarray:  # (X - 1 mu^T) v without a centred copy of X (hypervectors: 0.8 GB each)
        v = np.asarray(v, dtype=np.float64).reshape(X.shape[1], -1)
        return (X @ v.astype(dt)).astype(np.float64) - mu @ v

    def rmv(u: np.ndarray) -> np.ndarray:  # (X - 1 mu^T)^T u
        u = np.asarray(u, dtype=np.float64).reshape(X.shape[0], -1)
        return (X.T @ u.astype(dt)).astype(np.float64) - np.outer(mu, u.sum(0))

    A = LinearOperator(X.shape, matvec=mv, rmatvec=rmv, matmat=mv, rmatmat=rmv, dtype=np.float64)
    v0 = np.random.default_rng(int(seed)).standard_normal(min(X.shape))
    _, s, Vt = svds(A, k=int(n), v0=v0, tol=0, random_state=int(seed))
    V = Vt[np.argsort(-s)].T
    sign = np.sign(V[np.abs(V).argmax(0), np.arange(V.shape[1])])
    return V * np.where(sign == 0, 1.0, sign)


_DIRECTIONS: dict[tuple[str, int], np.ndarray] = {}


def _cached_directions(X: np.ndarray, n: int, seed: int, keep: int = 64) -> np.ndarray:
    """:func:`principal_directions` of ``X``, remembered for the last matrix by a digest of its bytes: the top
    ``max(n, keep)`` are computed once and a shorter request takes their first ``n`` (the directions are
    nested), so a grid of fits at several lengths on the same hypervectors solves one eigenproblem."""
    import hashlib

    key = (hashlib.blake2b(np.ascontiguousarray(X).view(np.uint8), digest_size=16).hexdigest() + str(X.shape), seed)
    V = _DIRECTIONS.get(key)
    if V is None or V.shape[1] < n:
        V = principal_directions(X, max(n, min(keep, min(X.shape) - 1)), seed)
        _DIRECTIONS.clear()
        _DIRECTIONS[key] = V
    return V[:, :n]


def pca_itq_start(Hc: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``init="pca_itq"`` start of NeuroHash's hyperplanes on centred hypervectors ``Hc`` (n, 2 D).

    The hyperplanes see rows normalised to unit length (:func:`hashplug.train.neurohash.fit_hyperplanes`),
    so PCA + ITQ runs on those rows: ``P = alpha (V_k R)^T``, ``bias = -alpha (mu V_k + m) R`` with ``V_k``
    the top ``k`` principal directions, ``mu`` the rows' mean, ``R``/``m`` ITQ's rotation and mean of the
    scores (``hashplug.encoders.ITQ``) and ``alpha`` the inverse standard deviation of the projections (so
    ``tanh`` starts in its working range; a positive scale changes no bit).

    Returns
    -------
    P : ndarray of shape (k, 2 D), float32
    bias : ndarray of shape (k,), float32
    """
    from .baselines import ITQ

    Hn = np.asarray(Hc, dtype=np.float32)
    Hn = Hn / np.maximum(np.linalg.norm(Hn, axis=1, keepdims=True), 1e-12)
    V = _cached_directions(Hn, int(k), seed)
    mu = Hn.mean(0, dtype=np.float64)
    Z = (Hn - mu) @ V
    itq = ITQ(k=int(k), random_state=int(seed)).fit(Z.astype(np.float32))
    W = itq.W_.astype(np.float64)
    P = (V @ W).T
    bias = -(mu @ V + itq.mean_) @ W
    proj = Hn @ P.T + bias
    alpha = 1.0 / max(float(proj.std()), 1e-12)
    return (alpha * P).astype(np.float32), (alpha * bias).astype(np.float32)


@register_encoder("neurohash")
class NeuroHash(BaseEncoder):
    """NeuroHash (section III): HDC encoding of global and object features with their positions, then trained
    multilinear hyperplane hashing into ``k`` dense bits.

    Parameters
    ----------
    k : int
        Bits per code (L).
    D : int
        Hypervector length (paper: 10,000).
    z_prime : int
        Width of ``E_ext`` (z' < z).
    w : float
        Length scale of the positional hypervectors: smaller w separates nearby positions more
        (strong spatial awareness), large w ignores positions.
    lambda_rec : float
        Weight of the reconstruction term (eq. 2).
    n_clusters : int
        Pseudo-classes for ``L_c`` when ``fit`` gets no object labels (k-means of the object features).
    hdc_epochs, hdc_lr, hdc_batch_size
        Training of the HDC encoder (Adam).
    lambdas : dict or None
        Weights of the hashing loss terms ``{"mse", "w", "q", "u", "o"}`` (None: the defaults of
        :data:`hashplug.train.neurohash.DEFAULT_LAMBDAS`); 0 switches a term off.
    u_normalized : bool
        False: ``L_u`` as printed (eq. 6, ``(sum_j H'_ij)^2``, which grows with ``L^2``); True: divided by
        ``L^2`` (``(mean_j H'_ij)^2``), so one ``lambda_u`` means the same at every length.
    init : {"gaussian", "pca_itq"}
        Start of the hyperplanes: ``"gaussian"`` the paper's ``P ~ N(0, 1)``, zero bias; ``"pca_itq"`` the
        PCA + ITQ hyperplanes of the normalised centred hypervectors (the top ``k`` principal directions,
        exact, by Lanczos, rotated by ITQ), scaled so the projections have unit standard deviation: training
        starts from the untrained projection the learned one has to beat.
    train_hyperplanes : bool
        False: the start (``init``), untrained.
    epochs, lr, batch_size
        Training of the hyperplanes (Adam).
    device : {"auto", "cpu", "cuda", ...}
    random_state : int or None
    verbose : bool

    Attributes
    ----------
    feat_mean_, feat_scale_ : ndarray of shape (z,), float32
        Standardisation of the features (object features' statistics).
    W_ext_ (z, z'), b_ext_ (z',), B_ (z', D), b_ (D,), C_ (D, c) : ndarray, float32
        The HDC encoder and its class hypervectors.
    bases_ : ndarray of shape (2, D), float32
        ``B_X``, ``B_Y`` ~ N(0, 1).
    H_mean_ : ndarray of shape (2 D,), float32
        Mean ``[Re H, Im H]`` of the training images.
    P_ : ndarray of shape (k, 2 D), float32 ; bias_ : ndarray of shape (k,), float32
        The hyperplanes.
    history_ : dict
        Per-epoch losses of both stages and timings (not saved).
    """

    #: Small, fast settings for the test suite (a fit on scikit-learn digits in well under a second).
    _test_params = {"k": 8, "D": 128, "z_prime": 8, "hdc_epochs": 2, "epochs": 2, "device": "cpu"}

    method_name = "neurohash"
    code_kind = "dense"
    _array_attrs = ("feat_mean_", "feat_scale_", "W_ext_", "b_ext_", "B_", "b_", "C_", "bases_", "H_mean_", "P_", "bias_")
    _scalar_attrs = ("max_objects_", "n_pseudo_classes_")
    #: Inputs callers may leave out, and their value (the model card records it for the runtime).
    input_defaults: dict[str, float] = {"eta": 1.0, "eta_global": 1.0}  # noqa: RUF012
    #: The values each input may hold (:mod:`hashplug._domains`); the model card records them, and numpy
    #: ``encode`` and :class:`~hashplug.runtime.OnnxEncoder` check a batch with the same function.
    input_domains: dict[str, dict[str, Any]] = {  # noqa: RUF012
        "object_mask": {"values": [0, 1], "hint": "Mark object slots with 1 and padding with 0."},
        "object_positions": {
            "range": [-0.5, 1.5],
            "where": "object_mask",
            "hint": "Positions are box centres normalised by the image size (about [0, 1]); divide pixel "
            "centres by the image width and height. Padding slots (object_mask 0) may hold anything, NaN included.",
        },
    }

    @classmethod
    def __hashplug_tags__(cls) -> EncoderTags:
        return replace(
            super().__hashplug_tags__(), input_kind="structured", iterative=True, randomized=True, uses_labels=True
        )

    def __init__(
        self,
        k: int = 32,
        *,
        D: int = 10_000,
        z_prime: int = 32,
        w: float = 1.0,
        lambda_rec: float = 1.0,
        n_clusters: int = 10,
        hdc_epochs: int = 10,
        hdc_lr: float = 3e-3,
        hdc_batch_size: int = 256,
        lambdas: dict[str, float] | None = None,
        u_normalized: bool = False,
        init: str = "gaussian",
        train_hyperplanes: bool = True,
        epochs: int = 20,
        lr: float = 1e-2,
        batch_size: int = 64,
        device: str = "auto",
        random_state: int | None = 0,
        verbose: bool = False,
    ) -> None:
        self.k = k
        self.D = D
        self.z_prime = z_prime
        self.w = w
        self.lambda_rec = lambda_rec
        self.n_clusters = n_clusters
        self.hdc_epochs = hdc_epochs
        self.hdc_lr = hdc_lr
        self.hdc_batch_size = hdc_batch_size
        self.lambdas = lambdas
        self.u_normalized = u_normalized
        self.init = init
        self.train_hyperplanes = train_hyperplanes
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ inputs
    def _check_X(self, X: Any, *, fitting: bool = False, allow_empty: bool = False) -> dict[str, np.ndarray]:  # type: ignore[override]
        """The structured input check: a mapping of the named inputs -> float32 arrays with a batch axis."""
        owner = type(self).__name__
        if not isinstance(X, Mapping):
            raise HashplugError(
                f"{owner} takes a mapping of named inputs {list(REQUIRED_INPUTS)} (+ optional 'eta', 'eta_global'), "
                f"e.g. from hashplug.data.scenes.scene_inputs(images, ...); got {type(X).__name__}."
            )
        unknown = sorted(set(X) - set(SCENE_INPUTS))
        missing = [k for k in REQUIRED_INPUTS if k not in X]
        if unknown or missing:
            raise HashplugError(
                f"{owner}: inputs {unknown} are unknown and {missing} are missing; the inputs are {list(SCENE_INPUTS)} "
                "(eta and eta_global optional)."
            )
        g = check_array(X["global_features"], name="global_features", ndim=2, owner=owner, allow_empty=allow_empty)
        f = check_array(X["object_features"], name="object_features", ndim=3, owner=owner, allow_empty=allow_empty)
        n, z = g.shape
        if fitting:
            K = f.shape[1]
        else:
            check_is_fitted(self, ["n_features_in_"])
            K = int(self.max_objects_)
            if z != self.n_features_in_:
                raise HashplugError(
                    f"{owner}: global_features has {z} features but the encoder was fitted on {self.n_features_in_}; "
                    "embed with the same image encoder."
                )
        want = {
            "object_features": (n, K, z),
            "object_positions": (n, K, 2),
            "object_mask": (n, K),
            "eta": (n, K),
            "eta_global": (n, 1),
        }
        out = {"global_features": g, "object_features": f}
        for name in SCENE_INPUTS[2:]:
            if name not in X or X[name] is None:
                out[name] = np.ones(want[name], np.float32) if name.startswith("eta") else None  # type: ignore[assignment]
                continue
            arr = np.asarray(X[name])
            if name == "eta_global" and arr.ndim == 1:
                arr = arr[:, None]
            out[name] = check_array(arr, name=name, ndim=len(want[name]), owner=owner, allow_empty=allow_empty,
                                    finite=not nan_allowed(self.input_domains, name))
        for name, shape in want.items():
            if out[name].shape != shape:
                raise HashplugError(
                    f"{owner}: {name} has shape {out[name].shape}; expected {shape} (n={n} images, K={K} object slots, "
                    f"z={z} features). Pad every image to K slots and mark padding with object_mask 0."
                )
        # value domains: the one check the ONNX runtime also runs from the model card (hashplug._domains)
        out = check_domains(out, self.input_domains, owner)
        if fitting:
            self.n_features_in_ = int(z)
            self.input_shape_ = (int(z),)
            self.max_objects_ = int(K)
        return out

    # ------------------------------------------------------------------ parameters
    def _validate_params(self, n_features: int) -> None:
        name = type(self).__name__
        self.k_ = self.m_ = check_int_param(self.k, "k", name, 1, None)
        check_int_param(self.D, "D", name, 1, None)
        check_int_param(self.z_prime, "z_prime", name, 1, None)
        check_float_param(self.w, "w", name, 0.0, None, low_open=True)
        check_float_param(self.lambda_rec, "lambda_rec", name, 0.0, None)
        check_int_param(self.n_clusters, "n_clusters", name, 2, None)
        check_int_param(self.hdc_epochs, "hdc_epochs", name, 0, None)
        check_float_param(self.hdc_lr, "hdc_lr", name, 0.0, None, low_open=True)
        check_int_param(self.hdc_batch_size, "hdc_batch_size", name, 1, None)
        check_int_param(self.epochs, "epochs", name, 0, None)
        check_float_param(self.lr, "lr", name, 0.0, None, low_open=True)
        check_int_param(self.batch_size, "batch_size", name, 2, None)
        for flag in ("train_hyperplanes", "u_normalized"):
            if not isinstance(getattr(self, flag), (bool, np.bool_)):
                raise HashplugError(f"The {flag!r} parameter of {name} must be a bool. Got {getattr(self, flag)!r} instead.")
        if self.init not in INITS:
            raise HashplugError(f"The 'init' parameter of {name} must be one of {list(INITS)}. Got {self.init!r} instead.")
        if self.lambdas is not None and not isinstance(self.lambdas, Mapping):
            raise HashplugError(f"The 'lambdas' parameter of {name} must be a dict of loss weights or None. Got {self.lambdas!r} instead.")
        from ..train.neurohash import _lambdas

        _lambdas(self.lambdas)
        if self.random_state is not None:
            check_int_param(self.random_state, "random_state", name, 0, None)

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any = None) -> NeuroHash:
        """Learn the HDC encoder and the hyperplanes.

        Parameters
        ----------
        X : mapping of named inputs (see the module docstring), n images
        y : ndarray of shape (n, K), int, optional
            Object classes (the detector's), -1 at padding. None: pseudo-labels by k-means of the object
            features (``n_clusters``).

        Returns
        -------
        self
        """
        before = dict(self.__dict__)
        try:
            Xc = self._check_X(X, fitting=True)
            self._validate_params(self.n_features_in_)
            self._fit_structured(Xc, None if y is None else np.asarray(y))
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise
        return self

    def _pseudo_labels(self, F: np.ndarray, valid: np.ndarray, y: np.ndarray | None) -> tuple[np.ndarray, int]:
        if y is not None:
            if y.shape != valid.shape:
                raise HashplugError(f"y has shape {y.shape}; expected {valid.shape} (one class per object slot, -1 at padding).")
            lab = y[valid]
            if not np.issubdtype(y.dtype, np.integer) or (lab.size and lab.min() < 0):
                raise HashplugError("y must hold integer classes >= 0 at every object slot (object_mask 1); use None for k-means pseudo-labels.")
            return lab.astype(np.int64), int(lab.max()) + 1 if lab.size else 1
        from sklearn.cluster import KMeans

        c = int(min(self.n_clusters, max(2, F.shape[0])))
        km = KMeans(n_clusters=c, n_init=3, random_state=self.random_state or 0).fit(F)
        return km.labels_.astype(np.int64), c

    def _fit_structured(self, X: dict[str, np.ndarray], y: np.ndarray | None) -> None:
        from .._torch import require_torch, resolve_device
        from ..hdc import positional_bases
        from ..train import neurohash as nh

        torch = require_torch()
        device = resolve_device(self.device)
        t0 = time.perf_counter()
        valid = X["object_mask"] > 0
        F_obj = X["object_features"][valid]
        if F_obj.shape[0] < 2:
            raise HashplugError(f"NeuroHash needs at least 2 objects to train its HDC encoder; got {F_obj.shape[0]}.")
        self.feat_mean_ = F_obj.mean(0).astype(np.float32)
        self.feat_scale_ = (F_obj.std(0) + 1e-6).astype(np.float32)
        Fs = (F_obj - self.feat_mean_) / self.feat_scale_
        labels, c = self._pseudo_labels(Fs, valid, y)
        self.n_pseudo_classes_ = int(c)
        seed = 0 if self.random_state is None else int(self.random_state)
        arrays, hist_enc = nh.fit_hdc_encoder(
            Fs, labels, z_prime=int(self.z_prime), D=int(self.D), n_classes=c, lambda_rec=float(self.lambda_rec),
            epochs=int(self.hdc_epochs), batch_size=int(self.hdc_batch_size), lr=float(self.hdc_lr), device=device,
            random_state=seed, verbose=bool(self.verbose),
        )
        self.W_ext_, self.b_ext_, self.B_, self.b_, self.C_ = (arrays[k] for k in ("W_ext", "b_ext", "B", "b", "C"))
        self.bases_ = positional_bases(int(self.D), np.random.default_rng([seed, 1]))
        t1 = time.perf_counter()
        # H of the training images, from the spatial part of the graph (centring and hyperplanes not yet known)
        self.H_mean_ = np.zeros(2 * int(self.D), np.float32)
        spatial = self._spatial_graph()
        n = X["global_features"].shape[0]
        H = np.concatenate([spatial.numpy(**self._feed(X, s, s + 1024)) for s in range(0, n, 1024)])
        self.H_mean_ = H.mean(0).astype(np.float32)
        Ht = torch.as_tensor(H - self.H_mean_, device=device)

        def batch(idx: np.ndarray) -> Any:
            return Ht[torch.as_tensor(idx, device=device)]

        self.history_ = {
            "hdc_encoder": hist_enc,
            "pseudo_labels": "given" if y is not None else f"k-means ({c} clusters)",
            "seconds": {"hdc_encoder": round(t1 - t0, 2)},
        }
        self._train_hyperplanes(Ht, device, seed)

    def _train_hyperplanes(self, Hc: Any, device: Any, seed: int) -> None:
        """Stage 2 on the centred hypervectors ``Hc`` (a torch tensor (n, 2 D) on ``device``)."""
        import torch

        from ..train import neurohash as nh

        t1 = time.perf_counter()

        def batch(idx: np.ndarray) -> Any:
            return Hc[torch.as_tensor(idx, device=device)]

        start = None if self.init == "gaussian" else pca_itq_start(Hc.cpu().numpy(), int(self.k), seed)
        self.P_, self.bias_, hist_hash = nh.fit_hyperplanes(
            batch, Hc.shape[0], Hc.shape[1], int(self.k), lambdas=self.lambdas, train=bool(self.train_hyperplanes),
            epochs=int(self.epochs), batch_size=int(self.batch_size), lr=float(self.lr), device=device,
            random_state=seed, verbose=bool(self.verbose), start=start, u_normalized=bool(self.u_normalized),
        )
        self.k_ = self.m_ = int(self.k)
        self.history_["hyperplanes"] = hist_hash
        self.history_["seconds"]["hyperplanes"] = round(time.perf_counter() - t1, 2)

    def refit_hyperplanes(self, X: Any = None, *, H: np.ndarray | None = None, **params: Any) -> NeuroHash:
        """Retrain only the hyperplanes (stage 2), keeping the HDC encoder: e.g. another ``k``, ``lambdas``
        or ``train_hyperplanes`` (the ablation), at the cost of one hashing run.

        Parameters
        ----------
        X : mapping of named inputs, optional
            The training images (as at fit); or give ``H``.
        H : ndarray of shape (n, 2 D), optional
            Their :meth:`hypervectors` (uncentred), to skip recomputing them.
        **params
            Stage-2 parameters to change: ``k``, ``lambdas``, ``u_normalized``, ``init``,
            ``train_hyperplanes``, ``epochs``, ``lr``, ``batch_size``, ``random_state``.

        Returns
        -------
        self
        """
        from .._torch import require_torch, resolve_device

        check_is_fitted(self, ["P_"])
        allowed = {"k", "lambdas", "u_normalized", "init", "train_hyperplanes", "epochs", "lr", "batch_size",
                   "random_state", "verbose"}
        bad = sorted(set(params) - allowed)
        if bad:
            raise HashplugError(
                f"refit_hyperplanes changes only the hashing stage {sorted(allowed)}; {bad} need a full fit."
            )
        before = dict(self.__dict__)
        try:
            self.set_params(**params)
            self._validate_params(self.n_features_in_)
            if H is None:
                if X is None:
                    raise HashplugError("refit_hyperplanes needs the training images X or their hypervectors H.")
                H = self.hypervectors(X)
            H = check_array(H, name="H", ndim=2, n_features=2 * int(self.D), owner="NeuroHash.refit_hyperplanes")
            torch = require_torch()
            device = resolve_device(self.device)
            Hc = torch.as_tensor(H - self.H_mean_, device=device)
            self._train_hyperplanes(Hc, device, 0 if self.random_state is None else int(self.random_state))
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise
        return self

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:  # pragma: no cover - fit is overridden
        raise NotImplementedError

    # ------------------------------------------------------------------ graph
    def _phi_nodes(self, src: str, tag: str) -> list[Node]:
        """Standardise + ``phi`` on the last axis of input ``src`` -> value ``h_{tag}``."""
        return [
            Node(Affine(1.0 / self.feat_scale_, -self.feat_mean_ / self.feat_scale_), (src,), f"s_{tag}"),
            Node(MatMul(self.W_ext_), (f"s_{tag}",), f"u0_{tag}"),
            Node(Affine(1.0, self.b_ext_), (f"u0_{tag}",), f"u_{tag}"),
            Node(MatMul(self.B_), (f"u_{tag}",), f"z_{tag}"),
            Node(Affine(1.0, self.b_), (f"z_{tag}",), f"zb_{tag}"),
            Node(Cos(), (f"zb_{tag}",), f"c_{tag}"),
            Node(Sin(), (f"z_{tag}",), f"s2_{tag}"),
            Node(Mul(), (f"c_{tag}", f"s2_{tag}"), f"h_{tag}"),
        ]

    def _spatial_nodes(self) -> list[Node]:
        K = int(self.max_objects_)
        return [
            *self._phi_nodes("global_features", "g"),
            *self._phi_nodes("object_features", "o"),
            Node(MatMul(self.bases_ / np.float32(self.w)), ("object_positions",), "theta"),
            Node(Cos(), ("theta",), "cos_theta"),
            Node(Sin(), ("theta",), "sin_theta"),
            Node(Mul(), ("object_mask", "eta"), "wk"),
            Node(Reshape((K, 1)), ("wk",), "wk1"),
            Node(Mul(), ("h_o", "wk1"), "hw"),
            Node(Mul(), ("hw", "cos_theta"), "re_o"),
            Node(Mul(), ("hw", "sin_theta"), "im_o"),
            Node(ReduceSum(0), ("re_o",), "re_sum"),
            Node(ReduceSum(0), ("im_o",), "im"),
            Node(Mul(), ("h_g", "eta_global"), "hg_w"),
            Node(Add(), ("hg_w", "re_sum"), "re"),
            Node(Concat(2), ("re", "im"), "H"),
        ]

    def _inputs(self) -> dict[str, tuple[int, ...]]:
        z, K = int(self.n_features_in_), int(self.max_objects_)
        return {
            "global_features": (z,),
            "object_features": (K, z),
            "object_positions": (K, 2),
            "object_mask": (K,),
            "eta": (K,),
            "eta_global": (1,),
        }

    def _spatial_graph(self) -> Graph:
        """The graph up to ``[Re H, Im H]`` (n, 2 D) (no head)."""
        return Graph(self._inputs(), self._spatial_nodes(), None, output="H")

    def _hash_nodes(self) -> list[Node]:
        """``H`` -> centred, normalised, hyperplane scores (value ``scores``)."""
        return [
            Node(Affine(1.0, -self.H_mean_), ("H",), "Hc"),
            Node(L2Normalize(), ("Hc",), "Hn"),
            Node(MatMul(np.ascontiguousarray(self.P_.T)), ("Hn",), "proj"),
            Node(Affine(1.0, self.bias_), ("proj",), "scores"),
        ]

    def _build_graph(self) -> Graph:
        nodes = [*self._spatial_nodes(), *self._hash_nodes()]
        return Graph(self._inputs(), nodes, head_for("dense", int(self.k_)), output="scores")

    def encode_hypervectors(self, H: Any, batch_size: int = 4096) -> np.ndarray:
        """Packed codes of precomputed :meth:`hypervectors` ``H`` (n, 2 D) float32: the hashing part of the
        same graph, so ``encode_hypervectors(hypervectors(X)) == encode(X)`` bit for bit (a grid of
        hyperplane fits need not recompute ``H``).

        Returns
        -------
        codes : ndarray of shape (n, ceil(k / 8)), dtype=uint8
        """
        check_is_fitted(self, ["P_"])
        H = check_array(H, name="H", ndim=2, n_features=2 * int(self.D), owner="NeuroHash.encode_hypervectors",
                        allow_empty=True)
        g = Graph({"H": (2 * int(self.D),)}, self._hash_nodes(), head_for("dense", int(self.k_)), output="scores")
        parts = [_codes.pack_bits(g.bits(H=H[s : s + batch_size])) for s in range(0, H.shape[0], batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, (int(self.k_) + 7) // 8), np.uint8)

    @staticmethod
    def _feed(X: Mapping[str, np.ndarray], s: int, e: int) -> dict[str, np.ndarray]:
        return {k: np.ascontiguousarray(X[k][s:e], dtype=np.float32) for k in SCENE_INPUTS}

    # ------------------------------------------------------------------ inference
    def hypervectors(self, X: Any, batch_size: int = 1024) -> np.ndarray:
        """``[Re H, Im H]`` of each image, before centring: ndarray of shape (n, 2 D), dtype=float32."""
        Xc = self._check_X(X)
        g = self._spatial_graph()
        n = Xc["global_features"].shape[0]
        parts = [g.numpy(**self._feed(Xc, s, s + batch_size)) for s in range(0, n, batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, 2 * int(self.D)), np.float32)

    def scores(self, X: Any) -> np.ndarray:
        """Hyperplane scores ``H P^T + b`` (n, k), float32 (the bits are ``scores > 0``)."""
        Xc = self._check_X(X)
        return self.graph.numpy(**self._feed(Xc, 0, Xc["global_features"].shape[0]))

    @renamed_kwargs(format="layout")
    def encode(self, X: Any, layout: str = "packed", batch_size: int = 1024) -> np.ndarray:
        """Encode images given as named inputs.

        Parameters
        ----------
        X : mapping of named inputs, n images
        layout : {"packed", "pm1"}
            How the codes are stored (0.1.0 name: ``format``, deprecated).
            ``packed``: ndarray of shape (n, ceil(k / 8)), dtype=uint8; ``pm1``: (n, k) int8 of +-1.
        batch_size : int

        Returns
        -------
        codes : ndarray
        """
        if layout not in ("packed", "pm1"):
            raise HashplugError(
                f"NeuroHash produces dense codes; {spelled('layout')} must be 'packed' or 'pm1', got {layout!r}."
            )
        batch_size = check_int_param(batch_size, "batch_size", "NeuroHash.encode", 1, None)
        Xc = self._check_X(X, allow_empty=True)
        graph = self.graph
        n = Xc["global_features"].shape[0]
        out = []
        for s in range(0, n, batch_size):
            bits = graph.bits(**self._feed(Xc, s, s + batch_size))
            out.append(_codes.pack_bits(bits) if layout == "packed" else np.where(bits, np.int8(1), np.int8(-1)))
        if not out:
            k = int(self.k_)
            return np.zeros((0, _codes.n_bytes(k)), np.uint8) if layout == "packed" else np.zeros((0, k), np.int8)
        return np.concatenate(out)

    @renamed_kwargs(format="layout")
    def fit_encode(self, X: Any, y: Any = None, layout: str = "packed") -> np.ndarray:
        return self.fit(X, y).encode(X, layout=layout)
