"""ONNX export of hashplug encoders (training side; imports ``onnx``).

``to_onnx(encoder, path)`` translates any encoder's graph into an ONNX file that carries its model card;
``graph_model(graph)`` translates any :class:`hashplug.graph.Graph` (several inputs, or no head); the
emitters, one per op class and head class, live in :mod:`hashplug.export.onnx_ops`.
``export_module(module, path, input_shape)`` exports any torch network that outputs hash scores (a user
backbone + hashing layer) with the same head and card; ``check_module_parity`` checks it.
``read_metadata(path)`` reads the card back; ``check_parity(encoder, path, X)`` compares numpy and
onnxruntime codes. Serve the file with :class:`hashplug.runtime.OnnxEncoder` (no onnx or torch needed).
"""

from __future__ import annotations

from .module_export import check_module_parity, export_module, module_sha256
from .onnx_export import (
    DEFAULT_OPSET,
    SUPPORTED_OPSETS,
    build_model,
    check_parity,
    graph_model,
    read_metadata,
    to_onnx,
)

__all__ = [
    "to_onnx",
    "build_model",
    "graph_model",
    "read_metadata",
    "check_parity",
    "export_module",
    "check_module_parity",
    "module_sha256",
    "DEFAULT_OPSET",
    "SUPPORTED_OPSETS",
]
