"""A small fully convolutional image encoder for NeuroHash's offline pipeline (training side).

The paper embeds images and object crops with DINOv2 ViT-g/14, which cannot be had here. The offline
default is a three-layer CNN trained to classify MNIST digits (the training split only), whose
global-average-pooled last feature map is the embedding ``phi_vis`` (``z`` = ``width`` features): it
accepts any image size, so the same network embeds a 28 x 28 object crop and a whole 64 x 64 scene, as the
paper uses one encoder for both. Colour images are reduced to one channel by their channel maximum (the
scenes composite digits by maximum over a dimmed CIFAR-10 background).

Why not BioConvHash's features: its pooled representation is ~20,000 wide on MNIST and its forward pass
takes minutes per 10,000 images here, against seconds for this network, whose 64 features separate the
digit classes (test accuracy reported by :func:`train_digit_cnn`).

The network is exported whole by ``torch.onnx.export`` (:func:`export_image_encoder`) so the serving side
embeds images with onnxruntime only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..validation import HashplugError, check_array

__all__ = ["build_digit_cnn", "train_digit_cnn", "image_features", "to_gray01", "to_unit_images",
           "export_image_encoder"]


def build_digit_cnn(width: int = 64, n_classes: int = 10, in_channels: int = 1) -> Any:
    """``conv(c->32) relu pool2, conv(32->64) relu pool2, conv(64->width) relu, global mean`` + a linear head.

    ``in_channels`` 1 for grey images (digits), 3 for colour (CIFAR-10's backbone of the NeuroHash bench).

    Returns
    -------
    module : torch.nn.Module
        ``module.features(x)`` maps (n, in_channels, H, W) in [0, 1] to (n, width); ``module(x)`` gives class
        logits; ``module.in_channels`` says which images it takes.
    """
    import torch
    from torch import nn

    class DigitCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.in_channels = int(in_channels)
            self.body = nn.Sequential(
                nn.Conv2d(int(in_channels), 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(64, width, 3, padding=1), nn.ReLU(),
            )
            self.head = nn.Linear(width, n_classes)

        def features(self, x: Any) -> Any:
            return torch.mean(self.body(x), dim=(2, 3))

        def forward(self, x: Any) -> Any:
            return self.head(self.features(x))

    return DigitCNN()


def to_gray01(images: Any) -> np.ndarray:
    """Images as float32 (n, 1, H, W) in [0, 1]: uint8 is divided by 255, colour reduced by channel max.

    Parameters
    ----------
    images : ndarray of shape (n, H, W), (n, 1, H, W) or (n, 3, H, W), uint8 or float in [0, 1]
    """
    X = np.asarray(images)
    if X.ndim == 3:
        X = X[:, None]
    if X.ndim != 4 or X.shape[1] not in (1, 3):
        raise HashplugError(
            f"Images must be (n, H, W), (n, 1, H, W) or (n, 3, H, W); got shape {X.shape}. Stack them as such."
        )
    scale = 255.0 if X.dtype == np.uint8 else 1.0
    X = check_array(X, name="images", ndim=4, dtype=np.float32, owner="image encoder", allow_empty=True) / scale
    if X.shape[1] == 3:
        X = X.max(axis=1, keepdims=True)
    return np.ascontiguousarray(X, dtype=np.float32)


def to_unit_images(images: Any, channels: int) -> np.ndarray:
    """Images as float32 (n, channels, H, W) in [0, 1] for a network taking ``channels`` channels: 1 is
    :func:`to_gray01`; 3 keeps colour, from (n, 3, H, W) or (n, H, W, 3) uint8 or float in [0, 1]."""
    if int(channels) == 1:
        return to_gray01(images)
    X = np.asarray(images)
    if X.ndim == 4 and X.shape[-1] == 3 and X.shape[1] != 3:
        X = X.transpose(0, 3, 1, 2)
    if X.ndim != 4 or X.shape[1] != 3:
        raise HashplugError(f"A colour image encoder takes (n, 3, H, W) or (n, H, W, 3) images; got shape {X.shape}.")
    scale = 255.0 if X.dtype == np.uint8 else 1.0
    X = check_array(X, name="images", ndim=4, dtype=np.float32, owner="image encoder", allow_empty=True) / scale
    return np.ascontiguousarray(X, dtype=np.float32)


def train_digit_cnn(
    X: np.ndarray,
    y: np.ndarray,
    *,
    channels: int = 1,
    width: int = 64,
    epochs: int = 3,
    batch_size: int = 128,
    lr: float = 3e-3,
    device: Any = "cpu",
    random_state: int = 0,
    X_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    verbose: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """Train :func:`build_digit_cnn` on digits by Adam and cross-entropy.

    Parameters
    ----------
    X : ndarray of shape (n, 28, 28) or (n, 1, 28, 28), uint8; with ``channels=3`` (n, 32, 32, 3) or
        (n, 3, 32, 32) colour images
    y : ndarray of shape (n,), int in [0, 10)
    channels : {1, 3}
        Grey (colour reduced by the channel maximum) or colour input.
    X_test, y_test : optional held-out digits for the reported accuracy

    Returns
    -------
    module : torch.nn.Module (eval mode, on CPU)
    info : dict
        ``train_loss`` per epoch, ``test_accuracy`` (when test digits are given), ``seconds``.
    """
    import time

    import torch

    from .loop import Step, permutation_batches, run_epochs

    t0 = time.perf_counter()
    torch.manual_seed(int(random_state))
    net = build_digit_cnn(width, in_channels=channels).to(device)
    Xt = torch.as_tensor(to_unit_images(X, channels))
    yt = torch.as_tensor(np.asarray(y, dtype=np.int64))
    opt = torch.optim.Adam(net.parameters(), lr=float(lr))
    rng = np.random.default_rng(random_state)

    def step(epoch: int, idx: Any) -> Step:
        logits = net(Xt[idx].to(device))
        loss = torch.nn.functional.cross_entropy(logits, yt[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return Step({"loss": float(loss.detach()) * len(idx)}, weight=len(idx))

    net.train()
    records = run_epochs(step, permutation_batches(len(Xt), int(batch_size), rng, device="cpu"), epochs=int(epochs),
                         desc="digit CNN", verbose=verbose, recheck=None, metrics=("loss",))
    losses = [rec["loss"] for rec in records]
    net = net.cpu().eval()
    info: dict[str, Any] = {"train_loss": [round(v, 4) for v in losses]}
    if X_test is not None and y_test is not None:
        with torch.no_grad():
            pred = np.concatenate([
                net(torch.as_tensor(to_unit_images(X_test[s : s + 2048], channels))).argmax(1).numpy()
                for s in range(0, len(X_test), 2048)
            ])
        info["test_accuracy"] = round(float(np.mean(pred == np.asarray(y_test))), 4)
    info["seconds"] = round(time.perf_counter() - t0, 1)
    return net, info


def image_features(net: Any, images: Any, batch_size: int = 1024) -> np.ndarray:
    """Embed images with ``net.features``.

    Parameters
    ----------
    images : ndarray of shape (n, H, W) or (n, C, H, W), uint8 or float in [0, 1]

    Returns
    -------
    F : ndarray of shape (n, width), dtype=float32
    """
    import torch

    X = to_unit_images(images, getattr(net, "in_channels", 1))
    out = []
    with torch.no_grad():
        for s in range(0, len(X), int(batch_size)):
            out.append(net.features(torch.as_tensor(X[s : s + int(batch_size)])).numpy())
    width = net.head.in_features
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, width), np.float32)


def export_image_encoder(net: Any, path: str, opset: int = 17) -> str:
    """Write ``net.features`` as an ONNX file with input ``images`` (n, 1, H, W) (dynamic n, H, W) and output
    ``features`` (n, width); returns the path. Needs the training extra (torch, onnx)."""
    import torch

    class Features(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> Any:
            return self.inner.features(x)

    dummy = torch.zeros(1, 1, 28, 28)
    torch.onnx.export(
        Features(net).eval(), (dummy,), str(path), input_names=["images"], output_names=["features"],
        dynamic_axes={"images": {0: "n", 2: "h", 3: "w"}, "features": {0: "n"}}, opset_version=opset, dynamo=False,
    )
    return str(path)
