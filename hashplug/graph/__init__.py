"""The encoder graph: how every encoder describes its inference once (numpy only at import).

An encoder's inference is a :class:`Graph`: named float32 inputs (``{"x": (28, 28)}``, images
``(C, H, W)``, possibly several), a DAG of typed ops (:mod:`hashplug.graph.ops`, one small class per
op with its output shape, numpy and torch implementations) ending in scores (n, m), and a head
(:mod:`hashplug.graph.heads`: :class:`PackedSign` sign bits or :class:`KHot` top-k with the lower-index
tie rule). numpy (``encoder.encode``), torch (:meth:`Graph.to_torch`, whose parameters can be trainable)
and the ONNX export (``hashplug.export.onnx_ops``: one emitter per op class) all run this one description.
torch is imported only inside the torch methods.
"""

from __future__ import annotations

from .core import DEFAULT_INPUT, Graph, Node
from .heads import HEADS, Head, KHot, PackedSign, head_for
from .ops import (
    OPS,
    Add,
    Affine,
    Concat,
    Conv2d,
    Cos,
    Divide,
    Flatten,
    GraphError,
    L2Normalize,
    MatMul,
    MaxPool2d,
    Mul,
    Op,
    PatchL2Norm,
    ReduceSum,
    Relu,
    Reshape,
    SafeDiv,
    Shape,
    Sin,
    TopKPerLocation,
)

__all__ = [
    "DEFAULT_INPUT",
    "Graph",
    "Node",
    "HEADS",
    "Head",
    "KHot",
    "PackedSign",
    "head_for",
    "OPS",
    "Op",
    "GraphError",
    "Shape",
    "Affine",
    "Divide",
    "L2Normalize",
    "MatMul",
    "Sin",
    "Cos",
    "Mul",
    "Add",
    "ReduceSum",
    "SafeDiv",
    "Conv2d",
    "PatchL2Norm",
    "TopKPerLocation",
    "MaxPool2d",
    "Reshape",
    "Flatten",
    "Relu",
    "Concat",
]
