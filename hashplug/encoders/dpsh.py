"""A pairwise affinity-matching baseline for MIHash: the DPSH loss (Li, Wang, Kang, IJCAI 2016).

The same networks, data, neighbourhoods and training loop as :class:`hashplug.encoders.MIHash` (the
shared base in :mod:`hashplug.encoders.mihash`); only the objective differs. DPSH fits the inner products of
the real outputs u to the neighbour relation with a logistic likelihood and pulls u towards its sign:

    loss = mean_{i != j} [ log(1 + exp(Theta_ij)) - s_ij Theta_ij ] + eta mean_i ||sign(u_i) - u_i||^2 / k

with ``Theta_ij = u_i . u_j / 2``. This is the "affinity matching" family of the MIHash paper (sec. 1 and
eq. 5): it constrains individual distances (through inner products) rather than the overlap of the two
distance distributions.
"""

from __future__ import annotations

from typing import Any

from ..validation import check_float_param
from .contract import Preset
from .mihash import _PairwiseTrainedHash
from .registry import register_encoder

__all__ = ["DPSH"]


@register_encoder("dpsh")
class DPSH(_PairwiseTrainedHash):
    """DPSH: pairwise logistic loss on inner products of the outputs plus a quantisation term; sign code.

    Parameters are those of :class:`~hashplug.encoders.MIHash` without ``gamma`` and ``n_bins``, plus

    eta : float
        Weight of the quantisation term (>= 0).

    ``history_["neg_loss"]`` holds minus the training loss per epoch.
    """

    #: Small, fast settings for the test suite (a fit on scikit-learn digits in well under a second).
    _test_params = {"k": 8, "epochs": 3, "batch_size": 64, "optimizer": "adam", "lr": 0.01, "device": "cpu"}

    _objective_name = "neg_loss"

    #: The quantisation weight on validation (``hashplug bench mihash-*`` crosses it with the optimiser and
    #: learning rate, the same budget as MIHash's gamma).
    tuning_grid = {"eta": [0.1, 1.0]}

    presets = {
        "digits": Preset(
            {"epochs": 30, "lr": 0.01, "optimizer": "adam", "batch_size": 128},
            source="hand-set for scikit-learn digits so that the tests fit in a few seconds.",
        ),
    }

    def __init__(
        self,
        k: int = 32,
        hidden: Any = (),
        eta: float = 0.1,
        batch_size: int = 256,
        epochs: int = 50,
        lr: float = 0.05,
        optimizer: str = "sgd",
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        dropout: float = 0.0,
        lr_step: int | None = None,
        lr_decay: float = 0.5,
        neighbours: str = "auto",
        distance_metric: str = "euclidean",
        distance_percentile: float = 5.0,
        n_neighbours: int = 10,
        group_size: int = 4,
        standardize: bool = True,
        init: str = "lsh",
        device: str = "auto",
        random_state: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.k = k
        self.hidden = hidden
        self.eta = eta
        self.batch_size = batch_size
        self.epochs = epochs
        self.lr = lr
        self.optimizer = optimizer
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.lr_step = lr_step
        self.lr_decay = lr_decay
        self.neighbours = neighbours
        self.distance_metric = distance_metric
        self.distance_percentile = distance_percentile
        self.n_neighbours = n_neighbours
        self.group_size = group_size
        self.standardize = standardize
        self.init = init
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _check_objective_params(self) -> None:
        check_float_param(self.eta, "eta", "DPSH", 0.0, None)

    def _objective(self, scores: Any, S: Any) -> Any:
        """Minus the DPSH loss of the outputs u = scores (M, k) under the relation S (M, M)."""
        return -dpsh_loss(scores, S, float(self.eta))


def dpsh_loss(u: Any, S: Any, eta: float) -> Any:
    """The DPSH loss (mean over ordered pairs i != j, plus eta times the mean squared quantisation error)."""
    import torch

    M, k = u.shape
    theta = 0.5 * (u @ u.T)
    off = ~torch.eye(M, dtype=torch.bool, device=u.device)
    s = S.to(u.dtype)
    nll = torch.nn.functional.softplus(theta) - s * theta
    quant = ((torch.sign(u).detach() - u) ** 2).sum(1).mean() / k
    return nll[off].mean() + eta * quant
