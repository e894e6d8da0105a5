"""BioHash (Ryali, Hopfield, Grinberg, Krotov, ICML 2020), section 2.1.

Hidden units are trained with the local plasticity rule of eq. 1-2 (:mod:`hashplug.train.plasticity`);
the hash of eq. 6 keeps the k units with the largest p-norm inner product
``<W_mu, x>_mu = sum_i sign(W_mu i) |W_mu i|^(p-1) x_i`` active (k-hot code over m units). The same
score is used in training (ranking) and encoding.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..graph import Affine, MatMul, Op
from ..train.plasticity import INITS
from ..validation import HashplugError, check_choice, check_float_param, check_int_param
from .contract import BaseEncoder, EncoderTags, Preset
from .registry import register_encoder

__all__ = ["BioHash", "NaiveBioHash"]


class _PlasticityEncoder(BaseEncoder):
    """Shared parameter checks and training for encoders trained by the plasticity rule."""

    _array_attrs = ("W_", "mean_")
    #: Convergence facts recorded at fit and saved in the file's header when present (files written
    #: before they existed load without them).
    _convergence_attrs = ("row_norm_dev_max_", "row_norm_dev_median_", "units_ever_won_")

    @classmethod
    def __hashplug_tags__(cls) -> EncoderTags:
        return replace(super().__hashplug_tags__(), iterative=True, randomized=True)

    def _check_rule_params(self, m: int) -> None:
        name = type(self).__name__
        check_float_param(self.p, "p", name, 1.0, None)
        check_float_param(self.delta, "delta", name, 0.0, None)
        check_int_param(self.r, "r", name, 2, max(2, m))
        check_int_param(self.epochs, "epochs", name, 1, None)
        check_int_param(self.batch_size, "batch_size", name, 1, None)
        check_float_param(self.lr, "lr", name, 0.0, None, low_open=True)
        check_float_param(self.init_scale, "init_scale", name, 0.0, None, low_open=True)
        check_choice(self.init, "init", name, INITS)
        if self.random_state is not None:
            check_int_param(self.random_state, "random_state", name, 0, None)

    def _hidden_size(self) -> tuple[int, int]:
        """Checked (m, k) of a sparse-expansion encoder: ``m`` as given, or ``round(k / activity)``."""
        name = type(self).__name__
        if self.m is None:
            act = check_float_param(self.activity, "activity", name, 0.0, 1.0, low_open=True)
            kk = check_int_param(self.k, "k", name, 1, None)
            m = max(kk, int(round(kk / act)))
        else:
            m = check_int_param(self.m, "m", name, 1, None)
        return m, check_int_param(self.k, "k", name, 1, m, range_text=f"[1, m={m}]")

    def _train(self, Xc: np.ndarray, m: int) -> None:
        from .._torch import resolve_device
        from ..train.plasticity import init_weights, train_plasticity

        rng = np.random.default_rng(self.random_state)
        # "normal": N(0, init_scale) rows, as in the Krotov-Hopfield reference: their large initial norms are
        # what recruits idle units (Gaussian rows started on the unit sphere let a few winners take every
        # sample). "data": training samples (centred when ``center``) scaled to unit p-norm: already on the
        # sphere the rule converges to, and inside the data, so every unit can win.
        W0 = init_weights(Xc, m, float(self.p), self.init, float(self.init_scale), rng)
        stats: dict = {}
        self.W_ = train_plasticity(
            Xc,
            m,
            p=float(self.p),
            delta=float(self.delta),
            r=int(self.r),
            epochs=int(self.epochs),
            batch_size=int(self.batch_size),
            lr=float(self.lr),
            seed=self.random_state,
            device=resolve_device(self.device),
            W0=W0,
            verbose=bool(self.verbose),
            desc=type(self).__name__,
            stats=stats,
        )
        self.row_norm_dev_max_ = float(stats["row_norm_dev_max"])
        self.row_norm_dev_median_ = float(stats["row_norm_dev_median"])
        self.units_ever_won_ = float(stats["units_ever_won"])

    def _state(self):
        arrays, scalars = super()._state()
        for a in self._convergence_attrs:  # optional: absent from models saved before they were recorded
            if hasattr(self, a):
                scalars[a] = float(getattr(self, a))
        return arrays, scalars

    @property
    def convergence_(self) -> dict[str, float]:
        """The convergence facts recorded at fit (``{}`` for a model loaded from a file without them)."""
        return {a.rstrip("_"): float(getattr(self, a)) for a in self._convergence_attrs if hasattr(self, a)}

    def _center_input(self, X: np.ndarray) -> np.ndarray:
        self.mean_ = X.mean(axis=0).astype(np.float32) if self.center else np.zeros(X.shape[1], np.float32)
        return X - self.mean_ if self.center else X

    @property
    def row_norms_(self) -> np.ndarray:
        """p-norms of the learned rows, shape (m,), float32 (converge to 1 under the rule)."""
        from ..train.plasticity import row_pnorms

        return row_pnorms(self.W_, float(self.p)).astype(np.float32)

    def _ops(self) -> list[Op]:
        """``[Affine(1, -mean_)]`` when centring, then ``MatMul(sign(W)|W|^(p-1) .T)``: scores <W, x>_mu."""
        from ..train.plasticity import pnorm_weights

        ops: list[Op] = []
        if self.center:
            ops.append(Affine(scale=np.float32(1.0), shift=-self.mean_))
        ops.append(MatMul(np.ascontiguousarray(pnorm_weights(self.W_, float(self.p)).T)))
        return ops


@register_encoder("biohash")
class BioHash(_PlasticityEncoder):
    """BioHash: sparse expansion to m units trained by the plasticity rule, k-hot WTA code.

    Parameters
    ----------
    k : int
        Hash length: active units per code (1 <= k <= m).
    m : int or None
        Number of hidden units. ``None`` derives it from ``activity``: ``m = round(k / activity)``.
    activity : float
        Fraction of active units a = k / m when ``m`` is None (paper: 0.05 MNIST, 0.005 CIFAR-10).
    p : float
        Exponent of the p-norm inner product (>= 1).
    delta : float
        Strength of the anti-Hebbian update of the rank-r unit (Delta, >= 0).
    r : int
        Rank of the unit receiving the anti-Hebbian update (2 <= r <= m).
    epochs, batch_size, lr : int, int, float
        Minibatch training; the learning rate decays linearly from ``lr`` to 0.
    center : bool
        Subtract the training mean from inputs (part of the exported graph).
    init : {"normal", "data"}
        Initial synaptic rows: ``"normal"``, N(0, init_scale) entries (the Krotov-Hopfield reference);
        ``"data"``, m training samples chosen at random with ``random_state`` (centred when ``center``, as
        training sees them), each scaled to unit p-norm.
    init_scale : float
        Standard deviation of the Gaussian initial weights (``init="normal"`` only).
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    random_state : int or None
        Seed for initialisation and minibatch order.
    verbose : bool
        Show a progress bar.

    Attributes
    ----------
    W_ : ndarray of shape (m, d), dtype=float32
        Learned synapses.
    mean_ : ndarray of shape (d,), dtype=float32
        Training mean (zeros when ``center`` is False).
    row_norm_dev_max_, row_norm_dev_median_ : float
        Max and median over rows of |p-norm - 1| after training (the rule converges to unit rows).
    units_ever_won_ : float
        Share of the m units that ranked first for at least one training sample during training (units
        that never win never move). The three are saved with the model; files written before they were
        recorded load without them.
    m_, k_, n_features_in_, input_shape_ : learned sizes.
    """

    #: Small, fast settings for the test suite (a fit on scikit-learn digits in well under a second).
    _test_params = {"k": 4, "m": 40, "epochs": 5, "lr": 0.2, "device": "cpu"}

    code_kind = "khot"

    presets = {
        "mnist": Preset(
            {"activity": 0.05, "p": 1.75, "delta": 0.0, "r": 2, "epochs": 30, "batch_size": 100, "lr": 0.05,
             "center": False},
            by_k={2: {"p": 1.5}},
            source=(
                "activity 0.05: paper sec. 3.4 ('Effect of sparsity'). The rest: three validation searches "
                "(1,000 validation queries cut from the 69k training set; benchmarks/results/tune_mnist.json, "
                "tune_mnist_lr.json, tune_mnist_p.json): Delta x p x center, then lr x epochs x Delta, then p in "
                "[1.25, 2.5] x (Delta, r). p = 1.75 with Delta = 0 had the best mean over k = 2, 8, 32 "
                "(44.6 / 55.2 / 57.6); p = 1.5 was best at k = 2 (46.5). p < 2 with Delta > 0 collapsed at "
                "some k, so Delta stays 0. These searches used init 'normal' (the default)."
            ),
        ),
        "cifar10": Preset(
            {"activity": 0.00125, "p": 2.0, "delta": 0.0, "r": 2, "epochs": 20, "batch_size": 100, "lr": 0.02,
             "center": True, "init": "data"},
            by_k={2: {"activity": 0.0025}},
            source=(
                "k = 2 keeps activity 0.0025: tune_cifar10_activity_smallk.json, validation at k = 2 / 4 / 8: "
                "0.0025 21.41 / 23.07 / 23.72, 0.00125 20.62 / 23.17 / 23.83. "
                "activity 0.00125 and 20 epochs: validation searches benchmarks/results/tune_cifar10_activity.json "
                "(mean val mAP@1000 at k = 8 / 16 / 32: activity 0.01 23.22, 0.005 23.71, 0.0025 24.01, 0.0025 "
                "with 20 epochs 24.09; 0.005 with 20 epochs 23.76, with 30 epochs and lr 0.01 23.76) and "
                "tune_cifar10_activity2.json (k = 16 / 32, 20 epochs: activity 0.0025 24.24 / 24.40, 0.00125 "
                "24.38 / 24.86): sparser than the paper's Fig. 4 optimum (0.25 %; sec. 3.4 ran 0.5 %), at twice "
                "the units and training time of 0.25 %. p, Delta, centering: validation search "
                "(benchmarks/results/tune_cifar10.json, k = 2 and 8): Delta = 0 with centering was best; without "
                "centering it lost 5 points. init 'data' (rows = random centred training images at unit norm): "
                "with N(0, 1) rows 10 epochs left the rows far from unit norm (max |norm - 1| 4.7 to 56) and "
                "mAP@1000 4-5 points under the paper at k >= 4; data rows converge (max |norm - 1| < 0.02, every "
                "unit wins). lr 0.02 from benchmarks/results/tune_cifar10_datainit.json (mean val "
                "mAP@1000 at k = 4 and 16: lr 0.01 23.01, 0.02 23.27, 0.05 23.13; 20 epochs 23.29)."
            ),
        ),
        "ag_news": Preset(
            {"p": 2.0, "delta": 0.05, "r": 2, "epochs": 30, "lr": 0.03, "batch_size": 100, "init_scale": 0.3},
            source=(
                "the start of `hashplug bench ag-news`'s per-(m, k, center) validation search (its grid then "
                "picks init_scale and epochs). The embeddings have unit norm, so the rows must shrink from "
                "init_scale * sqrt(384) to 1: init_scale 1.0 does not converge in 30 epochs, 0.05 leaves units "
                "idle; a preliminary search (m=1000, k=16, center=False, 30 epochs; val P@10) gave init_scale "
                "0.05 -> 0.753, 0.2 -> 0.818, 0.3 -> 0.824, 0.5 -> 0.794 (lr 0.05 instead of 0.03: no gain)."
            ),
        ),
        "digits": Preset(
            {"activity": 0.05, "epochs": 60, "lr": 0.2, "delta": 0.05},
            source=(
                "hand-set for scikit-learn digits (8x8 pixels / 16): the demo, examples/01 and the README "
                "quick start; not chosen on a validation split."
            ),
        ),
    }

    #: Default grid of ``hashplug bench biohash-tune-*`` (Delta x p x center, the first search's axes); the
    #: grids actually run are recorded in benchmarks/results/tune_*.json.
    tuning_grid = {"delta": [0.0, 0.02, 0.05, 0.1, 0.2, 0.4], "p": [2.0, 3.0], "center": [False, True]}

    @classmethod
    def __hashplug_tags__(cls) -> EncoderTags:
        # the BioHash paper's Tables 1 and 2 stop at k = 32 for BioHash
        return replace(super().__hashplug_tags__(), paper_max_k=32)

    def __init__(
        self,
        k: int = 16,
        m: int | None = None,
        activity: float = 0.05,
        p: float = 2.0,
        delta: float = 0.1,
        r: int = 2,
        epochs: int = 30,
        batch_size: int = 100,
        lr: float = 0.02,
        center: bool = False,
        init_scale: float = 1.0,
        init: str = "normal",
        device: str = "auto",
        random_state: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.k = k
        self.m = m
        self.activity = activity
        self.p = p
        self.delta = delta
        self.r = r
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.center = center
        self.init_scale = init_scale
        self.init = init
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _validate_params(self, n_features: int) -> None:
        m, kk = self._hidden_size()
        self._check_rule_params(m)
        self.m_, self.k_ = m, kk

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        self._train(self._center_input(X), self.m_)


@register_encoder("naivebiohash")
class NaiveBioHash(_PlasticityEncoder):
    """NaiveBioHash (paper sec. 3.3): k dense units trained by the same rule, code = sign of the score.

    Parameters (including ``init``) are those of :class:`BioHash` without sparse expansion: ``k`` units
    give a k-bit code.
    ``center`` defaults to True so that the sign splits the data.
    """

    #: Small, fast settings for the test suite (a fit on scikit-learn digits in well under a second).
    _test_params = {"k": 8, "epochs": 5, "lr": 0.2, "device": "cpu"}

    code_kind = "dense"

    presets = {
        "mnist": Preset(
            {"p": 2.0, "delta": 0.05, "r": 2, "epochs": 10, "batch_size": 100, "lr": 0.02, "center": True},
            source=(
                "hand-set for the paper-table bench, not chosen on a validation split (no search in "
                "benchmarks/results/): 10 epochs, centred so that the sign splits the data"
            ),
        ),
        "cifar10": Preset(
            {"p": 2.0, "delta": 0.05, "r": 2, "epochs": 5, "batch_size": 100, "lr": 0.02, "center": True},
            source=(
                "hand-set for the paper-table bench, not chosen on a validation split (no search in "
                "benchmarks/results/): 5 epochs, centred so that the sign splits the data"
            ),
        ),
        "digits": Preset(
            {"epochs": 60, "lr": 0.2, "delta": 0.05},
            source="hand-set for scikit-learn digits (8x8 pixels / 16), as BioHash's; not chosen on validation",
        ),
    }

    def __init__(
        self,
        k: int = 16,
        p: float = 2.0,
        delta: float = 0.1,
        r: int = 2,
        epochs: int = 30,
        batch_size: int = 100,
        lr: float = 0.02,
        center: bool = True,
        init_scale: float = 1.0,
        init: str = "normal",
        device: str = "auto",
        random_state: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.k = k
        self.p = p
        self.delta = delta
        self.r = r
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.center = center
        self.init_scale = init_scale
        self.init = init
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _validate_params(self, n_features: int) -> None:
        kk = check_int_param(self.k, "k", type(self).__name__, 1, None)
        self._check_rule_params(max(kk, 2))
        if kk < 2 and self.delta:
            raise HashplugError("NaiveBioHash with k=1 has no rank-r unit; set delta=0.")
        self.m_ = self.k_ = kk

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        self._train(self._center_input(X), self.m_)
