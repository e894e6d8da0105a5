"""Export an arbitrary torch network that outputs hash scores (the path for networks the typed graph does
not describe, e.g. :func:`hashplug.train.mihash_module.fit_mihash_module`'s backbone + hashing layer).

``torch.onnx.export`` traces the whole module (input ``x``, output ``scores`` of shape (N, bits)); hashplug
then appends its own sign head (the ``PackedSign`` emitter of :mod:`hashplug.export.onnx_ops`, output
``packed`` uint8 in ``np.packbits`` order) and writes the model card, so the file is served by
:class:`hashplug.runtime.OnnxEncoder` and LanceDB exactly like an encoder's. :func:`check_module_parity`
compares the torch module's codes with onnxruntime's.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..graph.heads import PackedSign
from ..modelcard import INPUT_NAME, ModelCard
from ..validation import HashplugError, HashplugTypeError, check_array, check_path
from .onnx_export import DEFAULT_OPSET, _check_opset, save_model, seal_model
from .onnx_ops import Builder, head_emitter_for

__all__ = ["export_module", "check_module_parity", "module_sha256"]

SCORES = "scores"


def module_sha256(module: Any) -> str:
    """sha256 of a torch module's state (parameters and buffers, by name) as float32/int arrays."""
    from .._files import sha256_arrays

    return sha256_arrays({k: v.detach().cpu().numpy() for k, v in module.state_dict().items()})


def export_module(
    module: Any,
    path: str | Path,
    input_shape: tuple[int, ...],
    *,
    method: str = "mihash-module",
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export ``module`` (scores (N, bits) from inputs (N, *input_shape)) with hashplug's sign head and card.

    Parameters
    ----------
    module : torch.nn.Module
        Returns real scores; bit i of the code is ``score_i > 0``.
    path : str or Path
        Destination (``.onnx`` appended when the name has no suffix).
    input_shape : tuple of int
        Per-sample input shape.
    method : str
        Recorded in the model card.
    opset : int
        ONNX opset (13 to 22).
    """
    import onnx
    import torch
    from onnx import helper

    opset = _check_opset(opset)
    if not isinstance(module, torch.nn.Module):
        raise HashplugTypeError(
            f"export_module exports a torch.nn.Module returning scores (N, bits); got {type(module).__name__} "
            f"{module!r:.60}. Export hashplug encoders with to_onnx(encoder, path)."
        )
    path = check_path(path, "path", "export_module")
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if not shape or any(s < 1 for s in shape) or any(isinstance(s, bool) for s in input_shape):
        raise HashplugError(f"input_shape must be a tuple of positive ints; got {input_shape!r}.")
    was_training = module.training
    module.eval()
    try:
        dev = next((p.device for p in module.parameters()), torch.device("cpu"))
        dummy = torch.zeros((2, *shape), dtype=torch.float32, device=dev)
        with torch.no_grad():
            out = module(dummy)
        if out.ndim != 2:
            raise HashplugError(f"the module must return scores of shape (N, bits); got {tuple(out.shape)}.")
        bits = int(out.shape[1])
        buf = io.BytesIO()
        # The TorchScript exporter (dynamo=False): the torch.export-based default needs the onnxscript
        # package, which the training extra does not pull in; its deprecation notice is not the user's concern.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                module, (dummy,), buf, input_names=[INPUT_NAME], output_names=[SCORES],
                dynamic_axes={INPUT_NAME: {0: "N"}, SCORES: {0: "N"}}, opset_version=opset, dynamo=False,
            )
    finally:
        module.train(was_training)
    model = onnx.load_model_from_string(buf.getvalue())
    b = Builder(opset)
    outputs = head_emitter_for(PackedSign())(b, PackedSign(), SCORES, bits)
    g = model.graph
    g.node.extend(b.nodes)
    g.initializer.extend(b.inits)
    del g.output[:]
    g.output.extend(outputs)
    card = ModelCard(method=str(method), input_shape=shape, m=bits, k=bits, code_kind="dense",
                     weights_sha256=module_sha256(module), preprocessing=[])
    helper.set_model_props(model, card.to_metadata())
    model.producer_name = "hashplug"
    model.producer_version = card.hashplug_version
    onnx.checker.check_model(model, full_check=True)
    return save_model(seal_model(model), path)  # save_model refuses ops hashplug's runtime would refuse


def check_module_parity(module: Any, onnx_path: str | Path, X: Any, *, batch_size: int = 1024,
                        rtol: float = 1e-5) -> dict[str, Any]:
    """Codes of the torch module (``scores > 0``, packed) against the ONNX file run by onnxruntime.

    Returns ``n_rows``, ``rows_differing``, ``rows_differing_at_ties`` (every differing bit has a score within
    ``rtol`` of the row's largest |score| from 0: float rounding between backends), ``weights_sha256_match``
    and ``identical``.
    """
    import torch

    from ..codes import pack_bits, unpack_bits
    from ..runtime import OnnxEncoder

    Xc = check_array(X, ndim=None, owner="check_module_parity")
    onx = OnnxEncoder(onnx_path, batch_size=batch_size)
    dev = next((p.device for p in module.parameters()), torch.device("cpu"))
    module.eval()
    scores = []
    with torch.no_grad():
        for s in range(0, len(Xc), batch_size):
            scores.append(module(torch.as_tensor(Xc[s : s + batch_size], device=dev)).cpu().numpy())
    sc = np.concatenate(scores).astype(np.float64)
    ref = pack_bits(sc > 0)
    got = onx.encode(Xc, layout="packed")
    xor = ref ^ got
    rows = np.flatnonzero(np.any(xor, axis=1))
    at_ties = 0
    if rows.size:
        bad = unpack_bits(xor[rows], sc.shape[1])
        tol = rtol * np.maximum(np.abs(sc[rows]).max(axis=1, keepdims=True), 1e-30)
        at_ties = int(np.all((np.abs(sc[rows]) <= tol) | ~bad, axis=1).sum())
    sha_ok = onx.weights_sha256 == module_sha256(module)
    return {"n_rows": int(len(Xc)), "rows_differing": int(rows.size), "rows_differing_at_ties": at_ties,
            "weights_sha256_match": bool(sha_ok), "identical": bool(rows.size == 0 and sha_ok)}
