"""The encoder graph: how every encoder describes its inference once.

An encoder's inference is a short list of *steps* that map the raw input (flattened to
``(n, d)`` and cast to float32) to real-valued *scores* of shape (n, m), followed by a
*head* that turns scores into bits:

``{"op": "affine", "scale": s, "shift": t}``
    ``x * s + t``; ``s`` and ``t`` are scalars or vectors over the last axis.
``{"op": "l2_normalize", "eps": e}``
    ``x / max(||x||_2, e)`` per row.
``{"op": "matmul", "weight": W, "accumulate": "float32" | "float64"}``
    ``x @ W`` with ``W`` of shape (d_in, d_out), float32. ``accumulate="float64"`` sums in double and
    rounds once to float32, so scores that tie exactly (FlyHash's 0/1 weights) tie on every backend,
    whatever order the backend adds in.
``{"op": "sin"}``
    elementwise sine.

Heads (``code_kind``):

``"dense"``
    bit ``i`` is 1 iff ``score_i > 0`` (strictly).
``"khot"``
    the ``k`` largest scores are 1 (winner-take-all, eq. 6 of the BioHash paper). **Tie rule:** among
    equal scores the unit with the lower index wins, exactly as ONNX ``TopK`` orders equal values.

This module is numpy only. The same description is interpreted by numpy here (``encoder.encode``),
by torch (:func:`run_steps_torch`, training side) and translated to ONNX by ``hashplug.export``, so
the three cannot drift apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .ranking import topk_mask
from .validation import HashplugError

__all__ = ["STEP_OPS", "HEADS", "run_steps", "topk_mask", "scores_to_bits", "check_steps", "run_steps_torch"]

STEP_OPS = ("affine", "l2_normalize", "matmul", "sin")
HEADS = ("dense", "khot")


def check_steps(steps: list[dict[str, Any]], d: int) -> int:
    """Validate a step list for input width ``d``; return the output width ``m``."""
    width = int(d)
    for i, st in enumerate(steps):
        op = st.get("op")
        if op not in STEP_OPS:
            raise HashplugError(f"graph step {i} has unknown op {op!r}; known ops are {list(STEP_OPS)}.")
        if op == "matmul":
            W = np.asarray(st["weight"])
            if W.ndim != 2 or W.shape[0] != width:
                raise HashplugError(f"graph step {i} (matmul) weight has shape {W.shape}; expected ({width}, m).")
            width = W.shape[1]
        elif op == "affine":
            for key in ("scale", "shift"):
                v = np.asarray(st[key])
                if v.ndim > 1 or (v.ndim == 1 and v.shape[0] != width):
                    raise HashplugError(f"graph step {i} (affine) {key} has shape {v.shape}; expected () or ({width},).")
    return width


def run_steps(steps: list[dict[str, Any]], X: np.ndarray) -> np.ndarray:
    """Apply the steps to X of shape (n, d) float32; return scores (n, m) float32."""
    x = np.asarray(X, dtype=np.float32)
    for st in steps:
        op = st["op"]
        if op == "affine":
            x = x * np.asarray(st["scale"], dtype=np.float32) + np.asarray(st["shift"], dtype=np.float32)
        elif op == "l2_normalize":
            nrm = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float32))[:, None]
            x = x / np.maximum(nrm, np.float32(st.get("eps", 1e-12)))
        elif op == "matmul":
            if st.get("accumulate") == "float64":
                x = (x.astype(np.float64) @ np.asarray(st["weight"], np.float64)).astype(np.float32)
            else:
                x = x @ np.asarray(st["weight"], dtype=np.float32)
        elif op == "sin":
            x = np.sin(x)
        else:  # pragma: no cover - check_steps rejects it first
            raise HashplugError(f"unknown graph op {op!r}")
        x = x.astype(np.float32, copy=False)
    return x


def scores_to_bits(scores: np.ndarray, head: str, k: int | None) -> np.ndarray:
    """Apply a head to scores: dense sign (score > 0) or k-hot top-k."""
    if head == "dense":
        return np.asarray(scores) > 0
    if head == "khot":
        return topk_mask(scores, int(k))
    raise HashplugError(f"unknown head {head!r}; known heads are {list(HEADS)}.")


def run_steps_torch(steps: list[dict[str, Any]], x: Any, cache: dict | None = None) -> Any:
    """Torch twin of :func:`run_steps` (training side; ``x`` a float32 torch tensor).

    ``cache`` (a dict) keeps the converted parameter tensors between calls.
    """
    import torch

    cache = {} if cache is None else cache

    def t(i: int, key: str) -> Any:
        ck = (i, key, x.device)
        if ck not in cache:
            cache[ck] = torch.as_tensor(np.asarray(steps[i][key], dtype=np.float32), device=x.device)
        return cache[ck]

    for i, st in enumerate(steps):
        op = st["op"]
        if op == "affine":
            x = x * t(i, "scale") + t(i, "shift")
        elif op == "l2_normalize":
            x = x / torch.clamp(torch.linalg.vector_norm(x, dim=1, keepdim=True), min=float(st.get("eps", 1e-12)))
        elif op == "matmul":
            if st.get("accumulate") == "float64":
                x = (x.double() @ t(i, "weight").double()).float()
            else:
                x = x @ t(i, "weight")
        elif op == "sin":
            x = torch.sin(x)
    return x
