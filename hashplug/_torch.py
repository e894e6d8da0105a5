"""Lazy torch import and device resolution (training side only)."""

from __future__ import annotations

from typing import Any

from .validation import HashplugError


def require_torch() -> Any:
    """Import torch or explain which extra to install."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise ImportError(
            "Training hashplug encoders needs PyTorch. Install the training extra: "
            "pip install 'torch==2.13.0' 'hashplug[train]'."
        ) from exc
    return torch


def resolve_device(device: str | Any = "auto") -> Any:
    """``"auto"`` -> CUDA when available, else CPU; otherwise ``torch.device(device)``."""
    torch = require_torch()
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except Exception as exc:
        raise HashplugError(f"Invalid device {device!r}; use 'auto', 'cpu' or 'cuda[:N]'.") from exc


def torch_generator(seed: int | None, device: Any) -> Any:
    torch = require_torch()
    g = torch.Generator(device="cpu")
    g.manual_seed(0 if seed is None else int(seed))
    return g
