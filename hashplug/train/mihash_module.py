"""MIHash on any torch backbone: ``backbone -> Linear(features, bits)``, trained end to end (fine-tuning).

The typed graph describes linear layers and MLPs (:class:`hashplug.encoders.MIHash`); an arbitrary
``torch.nn.Module`` (a CNN, a transformer, a pretrained feature extractor) is trained here with the same
objective and loop (:func:`hashplug.train.mihash.train_minibatches`), the backbone's learning rate scaled by
``backbone_lr_scale`` (0.01, as the paper fine-tunes pretrained layers, section 5.1), and exported by
:func:`hashplug.export.export_module` (``torch.onnx.export`` of the whole network plus hashplug's sign head
and model card), checked by :func:`hashplug.export.check_module_parity`.

    >>> net = fit_mihash_module(backbone, X, y, bits=32, epochs=20)      # doctest: +SKIP
    >>> export_module(net, "model.onnx", input_shape=X.shape[1:])          # doctest: +SKIP
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..validation import HashplugError, check_array, check_float_param, check_int_param

__all__ = ["fit_mihash_module"]  # MIHashNet: module attribute, defined on first use (needs torch)


def _net_class() -> Any:
    import torch

    class MIHashNet(torch.nn.Module):
        """``backbone`` then the hashing layer ``Linear(n_features, bits)``; ``forward`` returns the scores f.

        The code is ``f > 0`` (hashplug's ``PackedSign`` head); ``history_`` holds the MI per epoch after
        :func:`fit_mihash_module`.
        """

        def __init__(self, backbone: Any, n_features: int, bits: int) -> None:
            super().__init__()
            self.backbone = backbone
            self.hash = torch.nn.Linear(int(n_features), int(bits))
            self.bits = int(bits)
            self.history_: dict[str, list[float]] = {}

        def forward(self, x: Any) -> Any:
            h = self.backbone(x)
            return self.hash(h.reshape(h.shape[0], -1))

    return MIHashNet


def __getattr__(name: str) -> Any:
    if name == "MIHashNet":  # defined on first use: importing this module needs no torch
        return _net_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def fit_mihash_module(
    backbone: Any,
    X: Any,
    y: Any = None,
    *,
    bits: int = 32,
    gamma: float = 1.0,
    n_bins: int | None = None,
    neighbours: str = "auto",
    distance_metric: str = "euclidean",
    distance_percentile: float = 5.0,
    batch_size: int = 256,
    epochs: int = 20,
    lr: float = 0.05,
    backbone_lr_scale: float = 0.01,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    lr_step: int | None = None,
    lr_decay: float = 0.5,
    device: str = "auto",
    random_state: int | None = 0,
    verbose: bool = False,
) -> Any:
    """Fine-tune ``backbone`` with a new hashing layer under the MIHash objective; returns an ``MIHashNet``.

    Parameters
    ----------
    backbone : torch.nn.Module
        Maps a batch of inputs (n, *input_shape) to features (n, ...) (flattened for the hashing layer).
    X : array-like of shape (n, *input_shape)
        Training inputs (float32).
    y : array-like of shape (n,) or (n, n_labels), or None
        Labels (same class / at least one shared label = neighbours); None: the distance rule on X
        (``distance_metric``, ``distance_percentile``).
    bits : int
        Code length.
    backbone_lr_scale : float
        The backbone's learning rate is ``lr * backbone_lr_scale`` (0 freezes it; the paper: 0.01).
    gamma, n_bins, batch_size, epochs, lr, optimizer, momentum, weight_decay, lr_step, lr_decay, device,
    random_state, verbose
        As in :class:`hashplug.encoders.MIHash`.

    Returns
    -------
    MIHashNet
        In eval mode on ``device``; ``history_["mi"]`` is the mean training MI per epoch, ``fit_seconds_``
        the training time.
    """
    from .._torch import require_torch, resolve_device
    from .mihash import Neighbourhood, mutual_information, relaxed_codes, train_minibatches

    torch = require_torch()
    if not isinstance(backbone, torch.nn.Module):
        raise HashplugError(f"backbone must be a torch.nn.Module; got {type(backbone).__name__}.")
    owner = "fit_mihash_module"
    Xa = check_array(X, ndim=None, owner=owner)
    if Xa.ndim < 2:
        raise HashplugError(f"{owner}: X must have shape (n, *input_shape); got {Xa.shape}.")
    bits = check_int_param(bits, "bits", owner, 1, None)
    check_float_param(gamma, "gamma", owner, 0.0, None, low_open=True)
    check_float_param(backbone_lr_scale, "backbone_lr_scale", owner, 0.0, None)
    rng = np.random.default_rng(random_state)
    if random_state is not None:
        torch.manual_seed(int(random_state))
    if neighbours == "labels" or (neighbours == "auto" and y is not None):
        if y is None:
            raise HashplugError(f"{owner}: neighbours='labels' needs y.")
        targets = np.asarray(y)
        if targets.shape[0] != Xa.shape[0]:
            raise HashplugError(f"{owner}: y has {targets.shape[0]} rows but X has {Xa.shape[0]}.")
        nb = Neighbourhood.from_labels(targets)
    elif neighbours in ("distance", "auto"):
        flat = Xa.reshape(Xa.shape[0], -1)
        nb = Neighbourhood.from_distances(flat, distance_percentile, distance_metric, seed=random_state)
        targets = flat
    else:
        raise HashplugError(f"{owner}: neighbours must be 'auto', 'labels' or 'distance'; got {neighbours!r}.")
    device_t = resolve_device(device)
    backbone = backbone.to(device_t)
    with torch.no_grad():
        feats = backbone(torch.as_tensor(Xa[:2], device=device_t))
    n_feat = int(np.prod(feats.shape[1:]))
    net = _net_class()(backbone, n_feat, bits).to(device_t)
    with torch.no_grad():
        # LSH start on the backbone's features: Gaussian directions scaled to unit-variance scores, the bias at
        # minus each score's median so that every bit splits the (sample of the) training set in half
        sample = torch.as_tensor(Xa[rng.choice(len(Xa), min(len(Xa), 2048), replace=False)], device=device_t)
        h = backbone(sample).reshape(len(sample), -1)
        net.hash.weight.normal_(0.0, 1.0)
        s0 = h @ net.hash.weight.T
        sd = s0.std(dim=0).clamp_min(1e-12)
        net.hash.weight.div_(sd[:, None])
        net.hash.bias.copy_(-(s0 / sd).median(dim=0).values)
    net.train()
    groups = [{"params": list(net.hash.parameters())}]
    bb = [p for p in backbone.parameters() if p.requires_grad]
    if bb and backbone_lr_scale > 0:
        groups.append({"params": bb, "lr_scale": float(backbone_lr_scale)})
    elif bb:
        for p in bb:
            p.requires_grad_(False)

    def objective(scores: Any, S: Any) -> Any:
        return mutual_information(relaxed_codes(scores, float(gamma)), S, n_bins)

    t0 = time.perf_counter()
    history = train_minibatches(
        net, groups, Xa, targets, nb, objective, epochs=int(epochs), batch_size=int(batch_size),
        optimizer=optimizer, lr=float(lr), momentum=float(momentum), weight_decay=float(weight_decay),
        lr_step=lr_step, lr_decay=float(lr_decay), rng=rng, device=device_t, verbose=verbose, desc="MIHashNet",
    )
    net.eval()
    net.history_ = {"mi": history}
    net.fit_seconds_ = time.perf_counter() - t0
    net.neighbourhood_ = nb.describe()
    if not all(torch.isfinite(p).all() for p in net.parameters()):
        raise HashplugError(f"{owner}: training diverged (non-finite weights); lower lr={lr}.")
    return net
