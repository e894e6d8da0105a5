"""AngularDistillHash: sign codes trained to keep each item's cosine ranking (beyond the papers).

For top-R search without labels (LanceDB's use: keep an embedding's exact cosine neighbours among the
Hamming candidates). The network is :class:`~hashplug.encoders.MIHash`'s (standardisation, a linear layer or
an MLP, the sign; trained through the typed graph that is exported), started by default from ITQ's rotated
principal directions; only the objective and the minibatches differ. For every anchor i of a minibatch:

- the teacher's distribution over the other items j is the softmax, at temperature ``tau``, of
  ``a_ij = 1 - 2 arccos(cos(x_i, x_j)) / pi``: the expected share of agreeing bits of random-hyperplane codes
  at the angle of x_i and x_j (Charikar 2002), so teacher and student live on the same [-1, 1] scale;
- the student's is the softmax, at the same temperature, of the relaxed codes' agreement
  ``s_ij = phi_i . phi_j / k`` with ``phi = 2 sigmoid(gamma f) - 1`` (MIHash's eq. 19), i.e. ``1 - 2 d_ij / k``
  for the relaxed Hamming distance d;
- the objective (maximised) is minus the mean over anchors of KL(teacher || student); the anchor itself is in
  neither distribution.

A small ``tau`` puts the weight on each anchor's nearest items: the ranking a top-R search has to keep.
Minibatches are built as MIHash's ``knn`` neighbourhood builds them (groups of an item and ``group_size - 1``
of its ``n_neighbours`` exact nearest training items, cosine), so that every anchor meets some of its near
neighbours and some items just past them, not only random items.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..validation import HashplugError, check_float_param, check_int_param
from .contract import EncoderTags, Preset
from .mihash import _PairwiseTrainedHash
from .registry import register_encoder

__all__ = ["AngularDistillHash", "angular_agreement", "angular_distill_objective"]


def angular_agreement(x: Any) -> Any:
    """``1 - 2 arccos(cos(x_i, x_j)) / pi`` for the rows of x (M, d), a torch (M, M) matrix in [-1, 1]."""
    import torch

    x = x.to(torch.float64)
    xn = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = (xn @ xn.T).clamp(-1.0, 1.0)
    return 1.0 - 2.0 * torch.arccos(cos) / torch.pi


def angular_distill_objective(phi: Any, teacher: Any, tau: float) -> Any:
    """Minus the mean over anchors of KL(softmax(teacher / tau) || softmax(phi phi^T / (k tau))), diagonal out.

    Parameters
    ----------
    phi : torch.Tensor of shape (M, k)
        Relaxed codes in [-1, 1].
    teacher : torch.Tensor of shape (M, M)
        The teacher's agreements (:func:`angular_agreement`).
    tau : float
        Temperature (> 0) of both softmaxes.

    Returns
    -------
    torch scalar (<= 0; 0 when the student's agreements equal the teacher's up to a constant per anchor).
    """
    import torch

    M, k = phi.shape
    eye = torch.eye(M, dtype=torch.bool, device=phi.device)
    s = (phi @ phi.T) / float(k)
    t = teacher.to(phi.dtype)
    log_q = torch.log_softmax((s / tau).masked_fill(eye, float("-inf")), dim=1)
    log_p = torch.log_softmax((t / tau).masked_fill(eye, float("-inf")), dim=1)
    p = log_p.exp()
    kl = (p * (log_p - log_q)).masked_fill(eye, 0.0).sum(1)
    return -kl.mean()


class _AngularTeacher:
    """The minibatches (kNN groups) and each minibatch's teacher matrix for :class:`AngularDistillHash`."""

    def __init__(self, X: np.ndarray, n_neighbours: int, group_size: int) -> None:
        from ..train.mihash import Neighbourhood

        self.groups = Neighbourhood.from_knn(X, n_neighbours, "cosine", group_size)

    def batches(self, n: int, M: int, rng: np.random.Generator) -> list[np.ndarray]:
        return self.groups.batches(n, M, rng)

    def matrix(self, targets: Any) -> Any:
        return angular_agreement(targets)

    def describe(self) -> dict[str, Any]:
        return {"kind": "angular", "metric": "cosine", "n_neighbours": int(np.asarray(self.groups.table).shape[1]),
                "group_size": int(self.groups.group_size)}


@register_encoder("angulardistill")
class AngularDistillHash(_PairwiseTrainedHash):
    """Sign codes of a linear layer or MLP trained to reproduce each item's cosine ranking (listwise distillation).

    Parameters
    ----------
    k : int
        Code length (bits).
    hidden : tuple of int
        Hidden ReLU layer sizes; ``()`` is the linear model.
    gamma : float
        Steepness of the relaxation ``phi = 2 sigmoid(gamma f) - 1`` (> 0).
    temperature : float
        ``tau`` of both softmaxes (> 0); smaller puts more weight on each anchor's nearest items.
    n_neighbours : int
        K: the exact nearest training items (cosine) a group draws from.
    group_size : int
        Items per group in a minibatch (an item and ``group_size - 1`` of its K nearest).
    batch_size, epochs, lr, optimizer, momentum, weight_decay, dropout, lr_step, lr_decay
        As :class:`~hashplug.encoders.MIHash` (default: Adam, lr 1e-4, 20 epochs: a gentle move from ITQ;
        the defaults are the ``ag_news`` preset, chosen on validation).
    standardize : bool
        Subtract the training mean and divide by the RMS deviation first; part of the exported graph.
    init : {"itq", "pca", "lsh"}
        Starting weights of the hashing layer (``itq``/``pca`` need the linear model and k <= d).
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda:N"``.
    random_state : int or None
        Seed of the initial weights and the minibatch order.
    verbose : bool
        Progress bar with the objective value.

    Attributes
    ----------
    As :class:`~hashplug.encoders.MIHash`; ``history_["neg_kl"]`` holds the objective per epoch.
    """

    #: Small, fast settings for the test suite (a fit on scikit-learn digits in well under a second).
    _test_params = {
        "k": 8, "epochs": 3, "batch_size": 64, "n_neighbours": 8, "group_size": 4, "lr": 0.01, "device": "cpu",
    }

    _objective_name = "neg_kl"

    @classmethod
    def __hashplug_tags__(cls) -> EncoderTags:
        return replace(super().__hashplug_tags__(), uses_labels=False, k_at_most_n_features=True)

    presets = {
        "digits": Preset(
            {"epochs": 10, "lr": 0.001, "batch_size": 128},
            source="hand-set for scikit-learn digits so that the tests fit in a few seconds.",
        ),
        "ag_news": Preset(
            {"temperature": 0.01, "epochs": 20, "lr": 1e-4, "n_neighbours": 32, "group_size": 8, "init": "itq"},
            source="validation at 256 bits, 3 splits of 400 queries cut from the AG News database "
                   "(benchmarks/results/angulardistill_unsupervised_3seeds.json, _long.json; mean rescored "
                   "recall@10): the ITQ start 0.9603; Adam 1e-4, 5 epochs, temperature 0.005 / 0.01 / 0.02: 0.9621 / "
                   "0.9658 / 0.9651; 20 epochs at 0.01: 0.9686 (50 / 100 epochs: 0.9681 / 0.9662; lr 3e-4: "
                   "0.9647-0.9682; gamma 3: 0.9628; K = 64 with groups of 16: 0.9633).",
        ),
    }

    def __init__(
        self,
        k: int = 256,
        hidden: Any = (),
        gamma: float = 1.0,
        temperature: float = 0.01,
        n_neighbours: int = 32,
        group_size: int = 8,
        batch_size: int = 256,
        epochs: int = 20,
        lr: float = 1e-4,
        optimizer: str = "adam",
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        dropout: float = 0.0,
        lr_step: int | None = None,
        lr_decay: float = 0.5,
        standardize: bool = True,
        init: str = "itq",
        device: str = "auto",
        random_state: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.k = k
        self.hidden = hidden
        self.gamma = gamma
        self.temperature = temperature
        self.n_neighbours = n_neighbours
        self.group_size = group_size
        self.batch_size = batch_size
        self.epochs = epochs
        self.lr = lr
        self.optimizer = optimizer
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.lr_step = lr_step
        self.lr_decay = lr_decay
        self.standardize = standardize
        self.init = init
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _check_objective_params(self) -> None:
        name = type(self).__name__
        check_float_param(self.gamma, "gamma", name, 0.0, None, low_open=True)
        check_float_param(self.temperature, "temperature", name, 0.0, None, low_open=True)

    def _check_neighbourhood_params(self) -> None:
        name = type(self).__name__
        check_int_param(self.n_neighbours, "n_neighbours", name, 1, None)
        check_int_param(self.group_size, "group_size", name, 1, None)

    def _neighbourhood(self, X: np.ndarray, y: np.ndarray | None):
        # labels are not used: the teacher is the inputs' cosine geometry
        return _AngularTeacher(X, self._n_neighbours_for(len(X)), int(self.group_size)), np.asarray(X, np.float32)

    def _objective(self, scores: Any, S: Any) -> Any:
        from ..train.mihash import relaxed_codes

        return angular_distill_objective(relaxed_codes(scores, float(self.gamma)), S, float(self.temperature))

    def mutual_information(self, X: Any, y: Any = None, *, batch_size: int | None = None, seed: int = 0) -> float:
        """Not defined: this encoder has no neighbour relation (its teacher is graded). Use MIHash."""
        raise HashplugError(f"{type(self).__name__} has a graded teacher, not a neighbour relation: it has no mutual "
                            "information objective. Use MIHash for that.")
