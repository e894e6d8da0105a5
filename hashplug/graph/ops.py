"""Typed graph ops: one small class per op (numpy only at import; torch lazily).

Every op is a frozen dataclass whose array fields are float32 numpy arrays, and implements

``out_shape(*in_shapes) -> tuple``
    The per-sample output shape (no batch axis) from the per-sample input shapes; raises
    :class:`GraphError` when the inputs do not fit the op's parameters.
``numpy(*xs) -> ndarray``
    The batched numpy forward: inputs and output carry a leading batch axis ``n``; float32.
``torch(*xs, **arrays) -> Tensor``
    The batched torch forward. ``arrays`` are the op's array fields as torch tensors (the parameters or
    buffers of the module built by :meth:`Op.to_torch`); missing ones are taken from the op as constants.
``to_torch(trainable=False) -> torch.nn.Module``
    A module running :meth:`torch` whose array fields are ``nn.Parameter`` (``trainable=True``) or buffers;
    its ``to_op()`` writes the (trained) values back into a new op of the same class.
``describe() -> dict`` / ``arrays() -> dict``
    JSON-able description for the model card (op name, scalar parameters inline, ``<field>_shape`` for
    arrays) and the named arrays (for hashing).

Concrete ops register themselves by their ``name`` in :data:`OPS` (the model card accepts exactly these
names); a class declared ``class MyOp(Op, register=False)`` stays out of the registry (test doubles).

Images are ``(n, C, H, W)``; per-sample shapes are ``(C, H, W)``. Convolution-like ops use square kernels,
one stride and a symmetric zero padding. The cosine of every filter with the unit-normalised input patch,
``<W_f, p / max(||p||, eps)>``, is three ops (conv is linear, so dividing the output divides the patch)::

    Conv2d(W, stride, padding)(x)          (F, H', W')   <W_f, p>
    PatchL2Norm(K, stride, padding)(x)     (1, H', W')   ||p|| = sqrt(conv(x * x, ones(1, C, K, K)))
    SafeDiv(eps)(conv, norm)               (F, H', W')   conv / max(norm, eps)

Sums are float32 by default. ``MatMul``, ``Conv2d``, ``PatchL2Norm`` and ``L2Normalize`` take
``accumulate="float64"``: products and sums in double, each result rounded once to float32, so numpy, torch
and onnxruntime (which add in different orders) return the same bits and a top-k that follows breaks
near-ties the same way on every backend.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..modelcard import accept_op
from ..ranking import topk_mask
from ..validation import HashplugError

__all__ = [
    "GraphError",
    "Shape",
    "OPS",
    "Op",
    "Affine",
    "Divide",
    "L2Normalize",
    "MatMul",
    "Sin",
    "Cos",
    "Mul",
    "Add",
    "ReduceSum",
    "Conv2d",
    "PatchL2Norm",
    "SafeDiv",
    "TopKPerLocation",
    "MaxPool2d",
    "Reshape",
    "Flatten",
    "Relu",
    "Concat",
]

Shape = tuple[int, ...]

#: Registered op classes by name (the ``"op"`` of the model card's preprocessing entries).
OPS: dict[str, type[Op]] = {}


class GraphError(HashplugError):
    """An invalid graph: wrong shapes, unknown names, bad op parameters."""


def _f32(a: Any) -> np.ndarray:
    """``np.asarray(a, float32)``: no copy when ``a`` already is a float32 array (its layout is kept)."""
    return np.asarray(a, dtype=np.float32)


def _broadcasts_to(param: np.ndarray, shape: Shape, what: str) -> None:
    """Raise unless ``param`` broadcasts to the per-sample ``shape`` without growing it."""
    try:
        ok = np.broadcast_shapes(shape, param.shape) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise GraphError(
            f"{what} has shape {param.shape}; it must broadcast to the input shape {tuple(shape)} "
            f"(a scalar, or a trailing-aligned array such as {tuple(shape[-1:])})."
        )


def _same_rank_broadcast(a: Shape, b: Shape) -> Shape:
    """Broadcast two per-sample shapes of equal rank (equal rank keeps the batch axes aligned)."""
    if len(a) != len(b):
        raise GraphError(f"inputs of shapes {a} and {b} have different ranks; reshape one of them first.")
    try:
        return tuple(int(s) for s in np.broadcast_shapes(a, b))
    except ValueError:
        raise GraphError(f"inputs of shapes {a} and {b} do not broadcast.") from None


def _window_out(size: int, kernel: int, stride: int, padding: int, axis: str) -> int:
    out = (size + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise GraphError(
            f"kernel {kernel} with padding {padding} does not fit the input {axis} {size}; "
            "use a smaller kernel or more padding."
        )
    return out


def _check_window(kernel: int, stride: int, padding: int) -> None:
    if int(kernel) < 1 or int(stride) < 1 or int(padding) < 0:
        raise GraphError(f"kernel={kernel} and stride={stride} must be >= 1 and padding={padding} >= 0.")


def _windows(x: np.ndarray, kernel: int, stride: int, padding: int, pad_value: float) -> np.ndarray:
    """Strided view (n, C, H', W', K, K) of the K x K windows of x (n, C, H, W) after padding."""
    if padding:
        p = int(padding)
        x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=pad_value)
    v = np.lib.stride_tricks.sliding_window_view(x, (kernel, kernel), axis=(2, 3))
    return v[:, :, :: int(stride), :: int(stride)]


#: Float elements of one im2col block in the numpy convolution (bounds its memory: 32 MB in float64).
_COLS_BLOCK = 1 << 22

_ACCUMULATE = ("float32", "float64")


def _check_accumulate(op: str, value: str) -> None:
    if value not in _ACCUMULATE:
        raise GraphError(f"{op} accumulate={value!r}; use 'float32' or 'float64'.")


def _conv_numpy(
    x: np.ndarray, weight: np.ndarray, stride: int, padding: int, accumulate: str = "float32"
) -> np.ndarray:
    """Cross-correlation (torch/ONNX ``Conv``) of x (n, C, H, W) with weight (F, C, K, K) -> (n, F, H', W').

    The output has the ``accumulate`` dtype (float64 sums are returned unrounded). The patches are copied
    block by block (at most :data:`_COLS_BLOCK` values each), so memory stays bounded.
    """
    F, C, K, _ = weight.shape
    dt = np.dtype(accumulate)
    v = _windows(x, K, stride, padding, 0.0)
    n, _, Ho, Wo = v.shape[:4]
    Wt = np.ascontiguousarray(weight.reshape(F, C * K * K).T, dtype=dt)
    out = np.empty((n, F, Ho, Wo), dtype=dt)
    step = max(1, _COLS_BLOCK // max(1, Ho * Wo * C * K * K))
    for s in range(0, n, step):
        vb = v[s : s + step]
        cols = vb.transpose(0, 2, 3, 1, 4, 5).reshape(-1, C * K * K).astype(dt, copy=False)
        out[s : s + step] = (cols @ Wt).reshape(len(vb), Ho, Wo, F).transpose(0, 3, 1, 2)
    return out


def _unfold_cols_torch(x: Any, kernel: int, stride: int, padding: int, dtype: Any) -> Any:
    """The K x K x C patches of x (n, C, H, W) as (n, H' W', C K K) in ``dtype`` (torch ``unfold``)."""
    import torch.nn.functional as F

    return F.unfold(x.to(dtype), kernel, padding=padding, stride=stride).transpose(1, 2)


_OP_MODULE: Any = None


def _op_module_class() -> Any:
    """The torch ``nn.Module`` wrapping one op (defined on first use: importing this file needs no torch)."""
    global _OP_MODULE
    if _OP_MODULE is None:
        import torch

        class OpModule(torch.nn.Module):
            """Runs ``op.torch``; the op's arrays are parameters (trainable) or buffers, float32."""

            def __init__(self, op: Op, trainable: bool = False) -> None:
                super().__init__()
                self.op = op
                self.array_names = tuple(op.arrays())
                for key in self.array_names:
                    t = torch.tensor(np.array(getattr(op, key), dtype=np.float32))
                    if trainable:
                        self.register_parameter(key, torch.nn.Parameter(t))
                    else:
                        self.register_buffer(key, t)

            def forward(self, *xs: Any) -> Any:
                return self.op.torch(*xs, **{key: getattr(self, key) for key in self.array_names})

            def to_op(self) -> Op:
                """A new op of the same class holding this module's current array values."""
                vals = {key: getattr(self, key).detach().cpu().numpy().astype(np.float32) for key in self.array_names}
                return self.op.replace(**vals)

            def extra_repr(self) -> str:
                return repr(self.op)

        _OP_MODULE = OpModule
    return _OP_MODULE


class Op:
    """Base class of graph ops (see the module docstring for the contract).

    Class attributes
    ----------------
    name : str
        Registry and model-card name (``"matmul"``); subclasses without their own name are abstract.
    n_inputs : int
        Number of graph values the op consumes.
    array_fields : tuple of str
        Fields holding float32 arrays (trainable in :meth:`to_torch`); ``None`` values are skipped.
    """

    name: ClassVar[str] = ""
    n_inputs: ClassVar[int] = 1
    array_fields: ClassVar[tuple[str, ...]] = ()
    registered: ClassVar[bool] = False

    def __init_subclass__(cls, register: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own_name = cls.__dict__.get("name", "")
        cls.registered = bool(register and own_name)
        if cls.registered:
            prev = OPS.get(own_name)
            if prev is not None and (prev.__module__, prev.__qualname__) != (cls.__module__, cls.__qualname__):
                raise GraphError(f"an op named {own_name!r} is already registered ({prev.__qualname__}).")
            OPS[own_name] = cls
            accept_op(own_name)  # model cards read in this process accept it

    # ------------------------------------------------------------------ contract
    def out_shape(self, *in_shapes: Shape) -> Shape:  # pragma: no cover - abstract
        """Per-sample output shape from the per-sample input shapes (no batch axis)."""
        raise NotImplementedError

    def numpy(self, *xs: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Batched numpy forward: float32 arrays (n, *in_shape) -> float32 (n, *out_shape)."""
        raise NotImplementedError

    def torch(self, *xs: Any, **arrays: Any) -> Any:  # pragma: no cover - abstract
        """Batched torch forward; ``arrays`` override the op's array fields (parameters of a module)."""
        raise NotImplementedError

    def macs(self, *in_shapes: Shape) -> int:
        """Multiply-adds per sample of the op's products and sums (0 for elementwise and selection ops,
        whose cost is memory traffic rather than arithmetic); ``2 * macs`` is its FLOP count."""
        return 0

    def work_bytes(self, *in_shapes: Shape) -> int:
        """Bytes per sample the op's output and scratch may hold while a backend runs it: the float32 output
        here; ops that copy their input out (patches) or widen it (float64 accumulation) count that too. An
        upper-side estimate, for sizing batches (:attr:`hashplug.modelcard.ModelCard.work_bytes`)."""
        return 4 * math.prod(self.out_shape(*in_shapes))

    # ------------------------------------------------------------------ shared
    def _t(self, key: str, arrays: dict[str, Any], like: Any) -> Any:
        """The array field ``key`` as a torch tensor: from ``arrays`` if given, else a constant on like's device."""
        if key in arrays:
            return arrays[key]
        import torch

        return torch.as_tensor(np.asarray(getattr(self, key), dtype=np.float32), device=like.device)

    def arrays(self) -> dict[str, np.ndarray]:
        """The op's float32 arrays by field name (``None`` fields left out)."""
        return {key: getattr(self, key) for key in self.array_fields if getattr(self, key) is not None}

    def describe(self) -> dict[str, Any]:
        """JSON-able description: ``{"op": name, <scalar fields>, "<array field>_shape": [...]}``."""
        out: dict[str, Any] = {"op": self.name}
        names = [f.name for f in dataclasses.fields(self)] if dataclasses.is_dataclass(self) else list(vars(self))
        for key in names:
            v = getattr(self, key)
            if v is None:
                continue
            if isinstance(v, np.ndarray):
                if v.ndim == 0:
                    out[key] = float(v)
                else:
                    out[f"{key}_shape"] = [int(s) for s in v.shape]
            elif isinstance(v, tuple):
                out[key] = [int(s) for s in v]
            elif isinstance(v, (bool, int, float, str)):
                out[key] = v
            else:
                out[key] = str(v)
        return out

    def replace(self, **changes: Any) -> Op:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def to_torch(self, trainable: bool = False) -> Any:
        """A ``torch.nn.Module`` running this op; arrays become ``nn.Parameter`` when ``trainable``."""
        return _op_module_class()(self, trainable)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "op")
        return f"{type(self).__name__}({args})"


_op = dataclass(frozen=True, eq=False, repr=False)


# ---------------------------------------------------------------------------------------------- elementwise
@_op
class Affine(Op):
    """``x * scale + shift`` in float32 (two roundings, in that order).

    Parameters
    ----------
    scale, shift : float or ndarray, float32
        Scalars or arrays broadcasting to the per-sample input shape (trailing-aligned, e.g. ``(d,)`` for
        vectors (d,) or ``(C, 1, 1)`` for images (C, H, W)).
    """

    name: ClassVar[str] = "affine"
    array_fields: ClassVar[tuple[str, ...]] = ("scale", "shift")
    scale: Any = 1.0
    shift: Any = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", _f32(self.scale))
        object.__setattr__(self, "shift", _f32(self.shift))

    def out_shape(self, s: Shape) -> Shape:
        _broadcasts_to(self.scale, s, "scale")
        _broadcasts_to(self.shift, s, "shift")
        return tuple(s)

    def numpy(self, x: np.ndarray) -> np.ndarray:
        return (x * self.scale + self.shift).astype(np.float32, copy=False)

    def torch(self, x: Any, **arrays: Any) -> Any:
        return x * self._t("scale", arrays, x) + self._t("shift", arrays, x)


@_op
class L2Normalize(Op):
    """``x / max(||x||_2, eps)`` per sample, the norm over all of the sample's axes.

    Parameters
    ----------
    eps : float
        Lower bound of the norm (a zero sample stays zero).
    accumulate : {"float32", "float64"}
        ``"float64"``: the norm is summed and square-rooted in double and rounded once to float32 (the
        division stays float32, correctly rounded everywhere), so every backend returns the same bits.
    """

    name: ClassVar[str] = "l2_normalize"
    eps: float = 1e-12
    accumulate: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", float(self.eps))
        _check_accumulate("l2_normalize", self.accumulate)

    def out_shape(self, s: Shape) -> Shape:
        return tuple(s)

    def macs(self, s: Shape) -> int:
        """The squared norm: one multiply-add per value."""
        return math.prod(s)

    def numpy(self, x: np.ndarray) -> np.ndarray:
        flat = x.reshape(x.shape[0], -1)
        if self.accumulate == "float64":
            fd = flat.astype(np.float64)
            nrm = np.sqrt(np.einsum("ij,ij->i", fd, fd)).astype(np.float32)
        else:
            nrm = np.sqrt(np.einsum("ij,ij->i", flat, flat, dtype=np.float32))
        nrm = nrm.reshape((x.shape[0],) + (1,) * (x.ndim - 1))
        return (x / np.maximum(nrm, np.float32(self.eps))).astype(np.float32, copy=False)

    def torch(self, x: Any, **arrays: Any) -> Any:
        import torch

        if self.accumulate == "float64":
            nrm = torch.linalg.vector_norm(x.flatten(1).double(), dim=1).to(x.dtype)
        else:
            nrm = torch.linalg.vector_norm(x.flatten(1), dim=1)
        return x / torch.clamp(nrm.reshape((-1,) + (1,) * (x.dim() - 1)), min=self.eps)


@_op
class Divide(Op):
    """``x / divisor`` in float32 (one rounding, as numpy's ``x / np.float32(divisor)`` and ONNX ``Div``).

    The scaling of raw inputs recorded in a model (``hashplug train --scale 255``): the first node of the
    graph, so the exported file takes raw inputs.

    Parameters
    ----------
    divisor : float
        Finite and > 0.
    """

    name: ClassVar[str] = "divide"
    divisor: float = 1.0

    def __post_init__(self) -> None:
        d = self.divisor
        if isinstance(d, bool) or not isinstance(d, (int, float, np.integer, np.floating)) or not np.isfinite(d) or d <= 0:
            raise GraphError(f"Divide needs a finite divisor > 0; got {d!r}.")
        if not np.isfinite(np.float32(d)) or np.float32(d) == 0:
            raise GraphError(f"Divide's divisor {d!r} is not representable in float32 (finite, nonzero).")
        object.__setattr__(self, "divisor", float(np.float32(d)))

    def out_shape(self, s: Shape) -> Shape:
        return tuple(s)

    def numpy(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, np.float32) / np.float32(self.divisor)).astype(np.float32, copy=False)

    def torch(self, x: Any, **arrays: Any) -> Any:
        import torch

        return x / torch.tensor(self.divisor, dtype=torch.float32, device=x.device)


@_op
class Sin(Op):
    """Elementwise sine."""

    name: ClassVar[str] = "sin"

    def out_shape(self, s: Shape) -> Shape:
        return tuple(s)

    def numpy(self, x: np.ndarray) -> np.ndarray:
        return np.sin(x).astype(np.float32, copy=False)

    def torch(self, x: Any, **arrays: Any) -> Any:
        import torch

        return torch.sin(x)


@_op
class Cos(Op):
    """Elementwise cosine."""

    name: ClassVar[str] = "cos"

    def out_shape(self, s: Shape) -> Shape:
        return tuple(s)

    def numpy(self, x: np.ndarray) -> np.ndarray:
        return np.cos(x).astype(np.float32, copy=False)

    def torch(self, x: Any, **arrays: Any) -> Any:
        import torch

        return torch.cos(x)


@_op
class Mul(Op):
    """Elementwise product: of two inputs (``factor=None``), or of one input by a constant ``factor``.

    Parameters
    ----------
    factor : None or float or ndarray, float32
        ``None``: the op takes two inputs of equal rank whose shapes broadcast (e.g. (F, H, W) and
        (1, H, W)). Otherwise one input, multiplied by ``factor`` (broadcasting to its shape, as in
        :class:`Affine`).
    """

    name: ClassVar[str] = "mul"
    array_fields: ClassVar[tuple[str, ...]] = ("factor",)
    factor: Any = None

    def __post_init__(self) -> None:
        if self.factor is not None:
            object.__setattr__(self, "factor", _f32(self.factor))

    @property
    def n_inputs(self) -> int:  # type: ignore[override]
        return 2 if self.factor is None else 1

    def out_shape(self, *s: Shape) -> Shape:
        if self.factor is not None:
            _broadcasts_to(self.factor, s[0], "factor")
            return tuple(s[0])
        return _same_rank_broadcast(s[0], s[1])

    def numpy(self, *xs: np.ndarray) -> np.ndarray:
        other = self.factor if self.factor is not None else xs[1]
        return (xs[0] * other).astype(np.float32, copy=False)

    def torch(self, *xs: Any, **arrays: Any) -> Any:
        other = self._t("factor", arrays, xs[0]) if self.factor is not None else xs[1]
        return xs[0] * other


@_op
class Add(Op):
    """Elementwise sum of two inputs of equal rank whose shapes broadcast (e.g. (D,) and (D,), (K, D) and (K, 1))."""

    name: ClassVar[str] = "add"
    n_inputs: ClassVar[int] = 2

    def out_shape(self, a: Shape, b: Shape) -> Shape:
        return _same_rank_broadcast(a, b)

    def numpy(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a + b).astype(np.float32, copy=False)

    def torch(self, a: Any, b: Any, **arrays: Any) -> Any:
        return a + b


@_op
class ReduceSum(Op):
    """Sum over one per-sample axis, which is dropped: e.g. (K, D) -> (D,) with ``axis=0`` (bundling K objects).

    Parameters
    ----------
    axis : int
        Per-sample axis (0 is the first axis after the batch axis); negative counts from the end.
    """

    name: ClassVar[str] = "reduce_sum"
    axis: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "axis", int(self.axis))

    def _axis(self, s: Shape) -> int:
        if not s or not -len(s) <= self.axis < len(s):
            raise GraphError(f"reduce_sum axis {self.axis} is out of range for a per-sample shape {tuple(s)}.")
        return self.axis % len(s)

    def out_shape(self, s: Shape) -> Shape:
        ax = self._axis(s)
        return tuple(v for i, v in enumerate(s) if i != ax)

    def numpy(self, x: np.ndarray) -> np.ndarray:
        return np.sum(x, axis=1 + self._axis(x.shape[1:]), dtype=np.float32).astype(np.float32, copy=False)

    def torch(self, x: Any, **arrays: Any) -> Any:
        return x.sum(dim=1 + self._axis(tuple(x.shape[1:])))


@_op
class SafeDiv(Op):
    """``x / max(d, eps)`` for two inputs of equal rank, ``d`` broadcasting (e.g. (F, H, W) / (1, H, W)).

    With :class:`PatchL2Norm` as ``d`` and :class:`Conv2d` as ``x`` it gives the inner product of each
    filter with the unit-normalised input patch.

    Parameters
    ----------
    eps : float
        Lower bound of the divisor.
    """

    name: ClassVar[str] = "safe_div"
    n_inputs: ClassVar[int] = 2
    eps: float = 1e-12

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", float(self.eps))

    def out_shape(self, x: Shape, d: Shape) -> Shape:
        return _same_rank_broadcast(x, d)

    def numpy(self, x: np.ndarray, d: np.ndarray) -> np.ndarray:
        return (x / np.maximum(d, np.float32(self.eps))).astype(np.float32, copy=False)

    def torch(self, x: Any, d: Any, **arrays: Any) -> Any:
        import torch

        return x / torch.clamp(d, min=self.eps)


@_op
class Relu(Op):
    """``max(x, 0)`` elementwise (torch ``relu`` / ONNX ``Relu``); -0.0 and NaN follow ``np.maximum``."""

    name: ClassVar[str] = "relu"

    def out_shape(self, s: Shape) -> Shape:
        return tuple(s)

    def numpy(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, np.float32(0)).astype(np.float32, copy=False)

    def torch(self, x: Any, **arrays: Any) -> Any:
        import torch

        return torch.relu(x)


# ---------------------------------------------------------------------------------------------- linear
@_op
class MatMul(Op):
    """``x @ weight`` over the last axis: (..., d) -> (..., m).

    Parameters
    ----------
    weight : ndarray of shape (d, m), float32
    accumulate : {"float32", "float64"}
        ``"float64"`` casts x and the weight to double, sums there and rounds once to float32, so scores that
        are mathematically equal (0/1 weights, as in FlyHash) tie on every backend whatever order it adds in.
    """

    name: ClassVar[str] = "matmul"
    array_fields: ClassVar[tuple[str, ...]] = ("weight",)
    weight: Any = None
    accumulate: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", _f32(self.weight))
        if self.accumulate not in ("float32", "float64"):
            raise GraphError(f"matmul accumulate={self.accumulate!r}; use 'float32' or 'float64'.")

    def out_shape(self, s: Shape) -> Shape:
        W = self.weight
        width = s[-1] if s else None
        if W.ndim != 2 or not s or W.shape[0] != width:
            raise GraphError(f"weight has shape {W.shape}; expected ({width}, m).")
        return (*s[:-1], int(W.shape[1]))

    def macs(self, s: Shape) -> int:
        """``d * m`` per row of the input (rows: every axis but the last)."""
        d, m = self.weight.shape
        return math.prod(s[:-1]) * int(d) * int(m)

    def work_bytes(self, s: Shape) -> int:
        """The output, and for float64 accumulation the input and output in double."""
        out = 4 * math.prod(self.out_shape(s))
        return out + (8 * math.prod(s) + 2 * out if self.accumulate == "float64" else 0)

    def numpy(self, x: np.ndarray) -> np.ndarray:
        if self.accumulate == "float64":
            return (x.astype(np.float64) @ np.asarray(self.weight, np.float64)).astype(np.float32)
        return (x @ self.weight).astype(np.float32, copy=False)

    def torch(self, x: Any, **arrays: Any) -> Any:
        W = self._t("weight", arrays, x)
        if self.accumulate == "float64":
            return (x.double() @ W.double()).float()
        return x @ W


@_op
class Conv2d(Op):
    """2-D cross-correlation without bias (torch ``conv2d`` / ONNX ``Conv``): (C, H, W) -> (F, H', W').

    ``H' = (H + 2 padding - K) // stride + 1`` (likewise W'); padding is zeros on all four sides.

    Parameters
    ----------
    weight : ndarray of shape (F, C, K, K), float32
    stride : int
    padding : int
    accumulate : {"float32", "float64"}
        ``"float64"`` multiplies and sums every patch in double and rounds each output once to float32, so
        backends that add in different orders (numpy's matrix product, torch, onnxruntime's ``Conv``) agree
        to the last bit except on a double-precision near-tie of a float32 rounding, and a per-location
        top-k that follows picks the same filters everywhere. In ONNX (whose CPU ``Conv`` has no double
        kernel) the patches are copied out exactly by a one-hot ``Conv``, then a double ``MatMul``.
    """

    name: ClassVar[str] = "conv2d"
    array_fields: ClassVar[tuple[str, ...]] = ("weight",)
    weight: Any = None
    stride: int = 1
    padding: int = 0
    accumulate: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", _f32(self.weight))
        object.__setattr__(self, "stride", int(self.stride))
        object.__setattr__(self, "padding", int(self.padding))
        _check_accumulate("conv2d", self.accumulate)
        W = self.weight
        if W.ndim != 4 or W.shape[2] != W.shape[3]:
            raise GraphError(f"conv2d weight has shape {W.shape}; expected (F, C, K, K).")
        _check_window(W.shape[2], self.stride, self.padding)

    @property
    def kernel(self) -> int:
        """Kernel size K."""
        return int(self.weight.shape[2])

    def out_shape(self, s: Shape) -> Shape:
        F, C, K, _ = self.weight.shape
        if len(s) != 3 or s[0] != C:
            raise GraphError(f"weight has shape {self.weight.shape}; expected an input of shape ({C}, H, W), got {s}.")
        return (
            int(F),
            _window_out(s[1], K, self.stride, self.padding, "height"),
            _window_out(s[2], K, self.stride, self.padding, "width"),
        )

    def macs(self, s: Shape) -> int:
        """``F * C * K * K`` per output location."""
        F, Ho, Wo = self.out_shape(s)
        return int(F) * Ho * Wo * math.prod(self.weight.shape[1:])

    def work_bytes(self, s: Shape) -> int:
        """The patch matrix (locations x C K K, float32 and its accumulation copy) and the output (with its
        float64 twin when accumulating in double)."""
        F, Ho, Wo = self.out_shape(s)
        wide = 8 if self.accumulate == "float64" else 0
        return Ho * Wo * (math.prod(self.weight.shape[1:]) * (4 + wide) + int(F) * (4 + wide))

    def numpy(self, x: np.ndarray) -> np.ndarray:
        return _conv_numpy(x, self.weight, self.stride, self.padding, self.accumulate).astype(np.float32, copy=False)

    def torch(self, x: Any, **arrays: Any) -> Any:
        # As one matrix product of the unfolded patches: the result comes out channels last (one contiguous
        # row of F values per location), the layout the per-location top-k that usually follows needs, and
        # the product beat mkldnn's convolution here (0.10 against 0.19 s for 256 x 1 x 28 x 28 -> 500 maps).
        import torch

        w = self._t("weight", arrays, x)
        n, (Fo, C, K, _) = x.shape[0], w.shape
        Ho = (x.shape[2] + 2 * self.padding - K) // self.stride + 1
        Wo = (x.shape[3] + 2 * self.padding - K) // self.stride + 1
        dt = torch.float64 if self.accumulate == "float64" else x.dtype
        cols = _unfold_cols_torch(x, K, self.stride, self.padding, dt)  # (n, Ho Wo, C K K)
        out = (cols @ w.to(dt).reshape(Fo, C * K * K).t()).to(x.dtype)  # (n, Ho Wo, F)
        return out.reshape(n, Ho, Wo, Fo).permute(0, 3, 1, 2)


@_op
class PatchL2Norm(Op):
    """The L2 norm of every K x K x C input patch: (C, H, W) -> (1, H', W').

    Computed as ``sqrt(conv(x * x, ones(1, C, K, K)))`` with the window geometry of :class:`Conv2d`
    (same kernel, stride and zero padding give the patches that convolution sees). The op has no
    parameters; note that the torch gradient with respect to an all-zero patch is not finite (sqrt at 0).

    Parameters
    ----------
    kernel, stride, padding : int
    accumulate : {"float32", "float64"}
        ``"float64"``: squares and sums in double, rounds the norm once to float32 (see :class:`Conv2d`).
    """

    name: ClassVar[str] = "patch_l2_norm"
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    accumulate: str = "float32"

    def __post_init__(self) -> None:
        for key in ("kernel", "stride", "padding"):
            object.__setattr__(self, key, int(getattr(self, key)))
        _check_window(self.kernel, self.stride, self.padding)
        _check_accumulate("patch_l2_norm", self.accumulate)

    def ones(self, channels: int) -> np.ndarray:
        """The summing filter, ndarray (1, channels, K, K) of float32 ones."""
        return np.ones((1, int(channels), self.kernel, self.kernel), dtype=np.float32)

    def out_shape(self, s: Shape) -> Shape:
        if len(s) != 3:
            raise GraphError(f"expects an image input (C, H, W); got shape {s}.")
        return (
            1,
            _window_out(s[1], self.kernel, self.stride, self.padding, "height"),
            _window_out(s[2], self.kernel, self.stride, self.padding, "width"),
        )

    def macs(self, s: Shape) -> int:
        """``C * K * K`` (the squared patch norm) per output location."""
        _, Ho, Wo = self.out_shape(s)
        return Ho * Wo * int(s[0]) * self.kernel * self.kernel

    def work_bytes(self, s: Shape) -> int:
        """The squared patches (locations x C K K, in the accumulation type) and the norms."""
        _, Ho, Wo = self.out_shape(s)
        wide = 8 if self.accumulate == "float64" else 4
        return Ho * Wo * (int(s[0]) * self.kernel * self.kernel * wide + 4)

    def numpy(self, x: np.ndarray) -> np.ndarray:
        if self.accumulate == "float64":  # float32 squares are exact in double
            xd = x.astype(np.float64)
            sq = _conv_numpy(xd * xd, self.ones(x.shape[1]), self.stride, self.padding, "float64")
            return np.sqrt(sq).astype(np.float32)
        return np.sqrt(_conv_numpy(x * x, self.ones(x.shape[1]), self.stride, self.padding))

    def torch(self, x: Any, **arrays: Any) -> Any:
        import torch
        import torch.nn.functional as F

        if self.accumulate == "float64":
            cols = _unfold_cols_torch(x, self.kernel, self.stride, self.padding, torch.float64)
            out_shape = self.out_shape(tuple(x.shape[1:]))
            return torch.sqrt((cols * cols).sum(dim=2)).to(x.dtype).reshape(x.shape[0], *out_shape)
        ones = torch.ones((1, x.shape[1], self.kernel, self.kernel), dtype=x.dtype, device=x.device)
        return torch.sqrt(F.conv2d(x * x, ones, stride=self.stride, padding=self.padding))


# ---------------------------------------------------------------------------------------------- selection
@_op
class TopKPerLocation(Op):
    """Keep the ``k`` largest of the channel values (axis 1) at every location, zero the others.

    Input (F, *spatial) (e.g. (F, H, W), or (F,) for a plain top-k), output the same shape. Ties go to the
    lower channel index (:func:`hashplug.ranking.topk_mask`, ONNX ``TopK``). Kept values are copied exactly;
    the others are +0.0.

    Parameters
    ----------
    k : int
        Winners per location, in [1, F].
    """

    name: ClassVar[str] = "topk_per_location"
    k: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", int(self.k))

    def out_shape(self, s: Shape) -> Shape:
        if not s or not 1 <= self.k <= s[0]:
            raise GraphError(f"k={self.k} must be in [1, F] for an input of shape {s} (F channels first).")
        return tuple(s)

    def work_bytes(self, s: Shape) -> int:
        """The output, a channels-last copy of the input and the k values and int64 indices per location."""
        locations = math.prod(s[1:])
        return 8 * math.prod(s) + 12 * self.k * locations

    def numpy(self, x: np.ndarray) -> np.ndarray:
        F = x.shape[1]
        moved = np.moveaxis(x, 1, -1)
        xt = np.ascontiguousarray(moved).reshape(-1, F)
        if self.k < F:
            kth = np.partition(xt, F - self.k, axis=1)[:, F - self.k : F - self.k + 1]
            mask = xt >= kth
            # Where more than k values reach the k-th, keep the lower channel indices only. Ties at 0 need
            # no fix-up: every value they could keep is a zero (blank patches tie everywhere at 0).
            rows = np.nonzero((mask.sum(axis=1) > self.k) & (kth[:, 0] != 0))[0]
            if rows.size:
                mask[rows] = topk_mask(xt[rows], self.k)
            xt = np.where(mask & (xt != 0), xt, np.float32(0))  # +0.0 for every zero, kept or not
        return np.ascontiguousarray(np.moveaxis(xt.reshape(moved.shape), -1, 1), dtype=np.float32)

    def torch(self, x: Any, **arrays: Any) -> Any:
        import torch

        # The lower channel index wins ties (the ONNX TopK / numpy rule). Channels go last (one contiguous
        # row of F values per location: torch's topk along a strided axis was 5x slower); topk of k + 1
        # tells which rows tie at the k-th value, and only those rows are re-ranked by a stable sort (lower
        # index first). Ties at 0 need no fix-up: every value they could keep is a zero (blank patches tie
        # everywhere at 0). The result keeps the channels-last memory layout (same shape and values).
        xd = x.detach()
        F, k = xd.shape[1], self.k
        if k >= F:
            return torch.where(x != 0, x, torch.zeros((), dtype=x.dtype, device=x.device))
        moved = xd.movedim(1, -1).contiguous()
        rows = moved.reshape(-1, F)
        vals, idx = torch.topk(rows, k + 1, dim=1)
        kth = vals[:, k - 1]
        tied = torch.nonzero((kth == vals[:, k]) & (kth != 0)).squeeze(1)
        top = idx[:, :k].contiguous()
        if tied.numel():
            order = torch.sort(rows.index_select(0, tied), dim=1, descending=True, stable=True)[1]
            top.index_copy_(0, tied, order[:, :k])
        # gather from x itself when it needs gradients (they flow to the kept values); else from the copy
        src = x.movedim(1, -1).reshape(-1, F) if x.requires_grad else rows
        kept = src.gather(1, top)
        out = torch.zeros(rows.shape, dtype=x.dtype, device=x.device)
        out.scatter_(1, top, torch.where(kept != 0, kept, torch.zeros_like(kept)))
        return out.reshape(moved.shape).movedim(-1, 1)


@_op
class MaxPool2d(Op):
    """2-D max-pooling: (C, H, W) -> (C, H', W'), padding with -inf (torch ``max_pool2d`` / ONNX ``MaxPool``).

    Parameters
    ----------
    kernel : int
    stride : int or None
        Defaults to ``kernel``.
    padding : int
        At most ``kernel // 2`` (torch's limit).
    """

    name: ClassVar[str] = "max_pool2d"
    kernel: int = 2
    stride: int | None = None
    padding: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel", int(self.kernel))
        object.__setattr__(self, "stride", int(self.kernel if self.stride is None else self.stride))
        object.__setattr__(self, "padding", int(self.padding))
        _check_window(self.kernel, self.stride, self.padding)
        if self.padding > self.kernel // 2:
            raise GraphError(f"max_pool2d padding={self.padding} must be <= kernel // 2 = {self.kernel // 2}.")

    def out_shape(self, s: Shape) -> Shape:
        if len(s) != 3:
            raise GraphError(f"expects an image input (C, H, W); got shape {s}.")
        return (
            int(s[0]),
            _window_out(s[1], self.kernel, int(self.stride), self.padding, "height"),
            _window_out(s[2], self.kernel, int(self.stride), self.padding, "width"),
        )

    def numpy(self, x: np.ndarray) -> np.ndarray:
        v = _windows(x, self.kernel, int(self.stride), self.padding, -np.inf)
        return v.max(axis=(-2, -1)).astype(np.float32, copy=False)

    def torch(self, x: Any, **arrays: Any) -> Any:
        import torch.nn.functional as F

        return F.max_pool2d(x, self.kernel, stride=self.stride, padding=self.padding)


# ---------------------------------------------------------------------------------------------- shape
@_op
class Reshape(Op):
    """Reshape every sample to ``shape`` (at most one entry -1, inferred); the batch axis is kept.

    Parameters
    ----------
    shape : tuple of int
    """

    name: ClassVar[str] = "reshape"
    shape: tuple[int, ...] = (-1,)

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        if sum(s == -1 for s in shape) > 1 or any(s < 1 and s != -1 for s in shape) or not shape:
            raise GraphError(f"reshape shape {shape} must be positive ints with at most one -1.")
        object.__setattr__(self, "shape", shape)

    def out_shape(self, s: Shape) -> Shape:
        total = math.prod(s)
        known = math.prod(v for v in self.shape if v != -1)
        if -1 in self.shape:
            if total % known:
                raise GraphError(f"cannot reshape {tuple(s)} to {self.shape}.")
            return tuple(total // known if v == -1 else v for v in self.shape)
        if known != total:
            raise GraphError(f"cannot reshape {tuple(s)} ({total} values) to {self.shape} ({known} values).")
        return self.shape

    def numpy(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[0], *self.out_shape(x.shape[1:]))

    def torch(self, x: Any, **arrays: Any) -> Any:
        return x.reshape(x.shape[0], *self.out_shape(tuple(x.shape[1:])))


@_op
class Flatten(Op):
    """Flatten every sample: (*s) -> (prod(s),), C order (as ``np.reshape``, ONNX ``Flatten(axis=1)``)."""

    name: ClassVar[str] = "flatten"

    def out_shape(self, s: Shape) -> Shape:
        return (math.prod(s),)

    def numpy(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))

    def torch(self, x: Any, **arrays: Any) -> Any:
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))


@_op
class Concat(Op):
    """Concatenate ``n`` inputs along the first per-sample axis (ONNX ``Concat(axis=1)``).

    The inputs have equal rank and agree on every other axis, e.g. flattened feature vectors (d1,), (d2,)
    -> (d1 + d2,), or feature maps (F1, H, W), (F2, H, W) -> (F1 + F2, H, W).

    Parameters
    ----------
    n : int
        Number of inputs (>= 1).
    """

    name: ClassVar[str] = "concat"
    n: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", int(self.n))
        if self.n < 1:
            raise GraphError(f"concat needs n >= 1 inputs; got n={self.n}.")

    @property
    def n_inputs(self) -> int:  # type: ignore[override]
        return self.n

    def out_shape(self, *s: Shape) -> Shape:
        first = tuple(s[0])
        if not first:
            raise GraphError("concat inputs need at least one axis per sample; got scalars.")
        for other in s[1:]:
            if len(other) != len(first) or tuple(other[1:]) != first[1:]:
                raise GraphError(f"concat inputs must agree on every axis but the first; got {list(map(tuple, s))}.")
        return (int(sum(o[0] for o in s)), *first[1:])

    def numpy(self, *xs: np.ndarray) -> np.ndarray:
        return np.concatenate(xs, axis=1).astype(np.float32, copy=False)

    def torch(self, *xs: Any, **arrays: Any) -> Any:
        import torch

        return torch.cat(xs, dim=1)
