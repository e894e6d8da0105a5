"""The encoder contract shared by every hashplug method.

scikit-learn style: ``__init__`` only stores parameters; ``fit(X, y=None)`` validates them,
learns attributes ending in ``_`` and returns ``self``; ``encode(X, format=...)`` produces codes.
Every encoder describes its inference once as a typed graph (:class:`hashplug.graph.Graph`): ops
from the raw input to scores and a head (:class:`~hashplug.graph.PackedSign` sign bits or
:class:`~hashplug.graph.KHot` top-k). ``encode``, the torch path and the ONNX export all run that one
description.

Capabilities are class-level tags (:class:`EncoderTags`, from :meth:`BaseEncoder.__hashplug_tags__`,
read with :func:`get_tags`), tuned hyperparameters per dataset are :class:`Preset` s in the class's
``presets`` (read with :func:`get_preset`): the CLI, the benchmarks and the examples ask these and never
keep lists of encoder names.

Models are saved without pickle as a single ``.npz``: learned arrays plus a JSON header
(parameters, scalar attributes, format version, sha256 of the arrays).
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from .. import codes as _codes
from .._files import sha256_arrays
from ..graph import Divide, Flatten, Graph, Op, head_for
from ..validation import (
    HashplugError,
    HashplugTypeError,
    ModelFileError,
    ModelNotFoundError,
    check_array,
    check_int_param,
    check_is_fitted,
    check_path,
)

__all__ = [
    "BaseEncoder",
    "EncoderTags",
    "Preset",
    "register_encoder",
    "unregister_encoder",
    "get_encoder",
    "encoder_class",
    "available_encoders",
    "get_tags",
    "get_preset",
    "load_encoder",
    "ENCODERS",
]

ENCODERS: dict[str, type[BaseEncoder]] = {}
FILE_FORMAT = "hashplug-encoder/1"


def register_encoder(name: str):
    """Class decorator adding an encoder class to the registry under ``name``."""

    def deco(cls: type[BaseEncoder]) -> type[BaseEncoder]:
        if name in ENCODERS and ENCODERS[name] is not cls:
            raise HashplugError(f"an encoder named {name!r} is already registered")
        cls.method_name = name
        ENCODERS[name] = cls
        return cls

    return deco


def unregister_encoder(name: str) -> type[BaseEncoder] | None:
    """Remove ``name`` from the registry (e.g. a test's encoder in teardown); returns its class or None."""
    return ENCODERS.pop(name, None)


def available_encoders() -> list[str]:
    """Names accepted by :func:`get_encoder`."""
    return sorted(ENCODERS)


def get_encoder(name: str, **params: Any) -> BaseEncoder:
    """Create an encoder by its registry name, e.g. ``get_encoder("biohash", k=16)``.

    Names are case-insensitive. An unknown name raises an error listing the known ones.
    """
    key = str(name).lower()
    lookup = {n.lower(): c for n, c in ENCODERS.items()}
    if key not in lookup:
        raise HashplugError(f"Unknown encoder {name!r}. Available encoders: {', '.join(available_encoders())}.")
    cls = lookup[key]
    _check_param_names(cls, params)
    return cls(**params)


def encoder_class(name: str) -> type[BaseEncoder]:
    """The registered class named ``name``: its registry name or its display name, case-insensitive.

    ``encoder_class("sh")`` and ``encoder_class("SH")`` are :class:`~hashplug.encoders.SpectralHash`; an
    unknown name raises :class:`~hashplug.validation.HashplugError` listing the known ones.
    """
    key = str(name).lower()
    for reg, cls in ENCODERS.items():
        if key in (reg.lower(), get_tags(cls).display_name.lower()):
            return cls
    raise HashplugError(f"Unknown encoder {name!r}. Available encoders: {', '.join(available_encoders())}.")


def _check_param_names(cls: type[BaseEncoder], params: dict[str, Any]) -> None:
    """Raise :class:`HashplugTypeError` naming unknown parameters, the closest valid name and all of them."""
    import difflib

    valid = cls._param_names()
    unknown = [p for p in params if p not in valid]
    if unknown:
        close = difflib.get_close_matches(unknown[0], valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise HashplugTypeError(
            f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} for "
            f"{cls.__name__}.{hint} Valid parameters: {', '.join(valid)}."
        )


INPUT_KINDS = ("vectors", "images", "structured")
CODE_KINDS = ("dense", "khot")


@dataclass(frozen=True)
class EncoderTags:
    """What an encoder class is and can do, in the spirit of scikit-learn's ``__sklearn_tags__``.

    Read them with :func:`get_tags`; a class states them in :meth:`BaseEncoder.__hashplug_tags__`. Code
    that must treat encoders differently (the CLI, the benchmarks, the examples) asks the tags, never a
    list of names.

    Parameters
    ----------
    display_name : str
        The name shown in tables and used as the key of the papers' numbers (``"BioHash"``, ``"SH"``).
    code_kind : {"dense", "khot"}
        ``dense``: m = k sign bits; ``khot``: k active units out of m (the class's ``code_kind``).
    input_kind : {"vectors", "images", "structured"}
        What ``fit`` / ``encode`` take per sample: a feature vector (images are flattened), an image
        ``(C, H, W)`` kept in its shape, or several named inputs.
    iterative : bool
        Trained over epochs; the class then takes the parameters ``epochs``, ``verbose`` and ``device``.
    randomized : bool
        The learned weights depend on the ``random_state`` parameter (PCAHash and SH take the parameter
        but do not use it).
    k_independent : bool
        For a fixed seed the learned weights do not depend on ``k`` (FlyHash's wiring): one fit ranks the
        units for every hash length.
    k_at_most_n_features : bool
        ``k`` cannot exceed the number of input features (projections onto principal components).
    paper_max_k : int or None
        The largest hash length the paper's tables report for the method (BioHash: 32); the table
        benchmark skips larger ``k``. None: no limit.
    uses_labels : bool
        ``fit(X, y)`` learns from labels when given (neighbours = same label); without ``y`` the encoder
        falls back to its unsupervised rule. Encoders without the tag ignore ``y``.
    """

    display_name: str
    code_kind: str = "dense"
    input_kind: str = "vectors"
    iterative: bool = False
    randomized: bool = False
    k_independent: bool = False
    k_at_most_n_features: bool = False
    paper_max_k: int | None = None
    uses_labels: bool = False

    def __post_init__(self) -> None:
        if self.code_kind not in CODE_KINDS:
            raise HashplugError(f"EncoderTags.code_kind must be one of {CODE_KINDS}; got {self.code_kind!r}.")
        if self.input_kind not in INPUT_KINDS:
            raise HashplugError(f"EncoderTags.input_kind must be one of {INPUT_KINDS}; got {self.input_kind!r}.")


@dataclass(frozen=True)
class Preset:
    """Tuned hyperparameters of one encoder on one dataset, and where they came from.

    Parameters
    ----------
    params : mapping
        Constructor parameters (never ``k`` or ``random_state``: the caller sets those).
    source : str
        Where the values come from, e.g. ``"validation search, benchmarks/results/tune_mnist_p.json"`` or
        ``"paper sec. 3.1"``.
    by_k : mapping of int to mapping
        Per-hash-length overrides of ``params`` (also chosen on validation), e.g. ``{2: {"p": 1.5}}``.
    """

    params: Mapping[str, Any]
    source: str
    by_k: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        object.__setattr__(
            self, "by_k", MappingProxyType({int(k): MappingProxyType(dict(v)) for k, v in self.by_k.items()})
        )

    def for_k(self, k: int) -> dict[str, Any]:
        """The parameters at hash length ``k``: ``params`` updated with ``by_k[k]``."""
        return {**self.params, **self.by_k.get(int(k), {})}

    def as_dict(self) -> dict[str, Any]:
        """``params`` plus ``"by_k": {"2": {...}}`` when there are per-k overrides (the benchmarks' JSON form)."""
        out: dict[str, Any] = dict(self.params)
        if self.by_k:
            out["by_k"] = {str(k): dict(v) for k, v in self.by_k.items()}
        return out


def _as_class(estimator: Any, caller: str) -> type[BaseEncoder]:
    """The encoder class of an instance, a class or a registered name (registry or display name)."""
    if isinstance(estimator, str):
        return encoder_class(estimator)
    cls = estimator if isinstance(estimator, type) else type(estimator)
    if not issubclass(cls, BaseEncoder):
        raise HashplugTypeError(
            f"{caller} expects a hashplug encoder, an encoder class or a registered name; got {cls.__name__}."
        )
    return cls


def get_tags(estimator: BaseEncoder | type[BaseEncoder] | str) -> EncoderTags:
    """The :class:`EncoderTags` of an encoder, an encoder class or a registered name (registry or display)."""
    return _as_class(estimator, "get_tags").__hashplug_tags__()


def get_preset(estimator: BaseEncoder | type[BaseEncoder] | str, dataset: str) -> Preset | None:
    """The :class:`Preset` of an encoder (instance, class or name) for ``dataset``, or None when it has none."""
    return _as_class(estimator, "get_preset").presets.get(str(dataset))


class BaseEncoder:
    """Base class of all encoders.

    Subclasses set ``code_kind`` (``"dense"`` or ``"khot"``), implement ``_validate_params`` (which sets
    the learned sizes ``m_`` and ``k_``), ``_fit`` and ``_ops`` (or ``_build_graph`` for a graph that is not
    a chain over the flattened input), and list their learned array attributes in ``_array_attrs``. They
    state what differs from the default tags in :meth:`__hashplug_tags__` and may keep tuned
    hyperparameters per dataset in ``presets``.

    ``k`` (and ``m`` where an encoder takes it) are plain parameters, as given, before and after fit (``m``
    may be None: derived at fit); the fitted sizes are ``k_`` and ``m_`` (also ``encoder.graph.k`` / ``.m``).
    """

    method_name: ClassVar[str] = "base"
    code_kind: ClassVar[str] = "dense"
    #: Tuned hyperparameters per dataset name (``"mnist"``, ``"cifar10"``, ``"digits"``, ...).
    presets: ClassVar[Mapping[str, Preset]] = MappingProxyType({})
    _array_attrs: ClassVar[tuple[str, ...]] = ()
    _scalar_attrs: ClassVar[tuple[str, ...]] = ()

    #: Default validation grid of ``hashplug bench biohash-tune-*`` (parameter -> candidate values), if any.
    tuning_grid: ClassVar[Mapping[str, list[Any]] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Freeze the class's presets and check that they name constructor parameters only."""
        super().__init_subclass__(**kwargs)
        if "presets" not in cls.__dict__:
            return
        names = set(cls._param_names()) - {"k", "random_state"}
        for dataset, preset in cls.presets.items():
            if not isinstance(preset, Preset):
                raise HashplugTypeError(f"{cls.__name__}.presets[{dataset!r}] must be a Preset; got {preset!r}.")
            bad = sorted({*preset.params, *(p for v in preset.by_k.values() for p in v)} - names)
            if bad:
                raise HashplugTypeError(
                    f"{cls.__name__}.presets[{dataset!r}] sets {bad}, which are not parameters of {cls.__name__} "
                    f"(k and random_state are set by the caller); valid: {sorted(names)}."
                )
        cls.presets = MappingProxyType(dict(cls.presets))

    # ------------------------------------------------------------------ tags
    @classmethod
    def __hashplug_tags__(cls) -> EncoderTags:
        """The class's :class:`EncoderTags`. Defaults: display name = class name, ``code_kind`` from the class.

        Subclasses override what differs, e.g.
        ``return replace(super().__hashplug_tags__(), iterative=True, randomized=True)``.
        """
        return EncoderTags(display_name=cls.__name__, code_kind=cls.code_kind)

    # ------------------------------------------------------------------ parameters
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Parameters as given to ``__init__`` or :meth:`set_params` (``m`` / ``k`` as passed, not as fitted)."""
        return {p: getattr(self, p) for p in self._param_names()}

    def set_params(self, **params: Any) -> BaseEncoder:
        """Set parameters (scikit-learn contract); returns self."""
        _check_param_names(type(self), params)
        for key, val in params.items():
            setattr(self, key, val)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ contract
    def _validate_params(self, n_features: int) -> None:
        """Check parameters at fit time; raise with the value and the allowed range."""

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _ops(self) -> list[Op]:  # pragma: no cover - abstract
        """The ops from the flattened input (n, d) to the scores (n, m), applied in order."""
        raise NotImplementedError

    def _build_graph(self) -> Graph:
        """The inference graph: input ``x`` of shape ``input_shape_``, flattened, then :meth:`_ops`, then the head.

        Override for graphs that are not a chain over the flattened input (images, several inputs).
        """
        shape = tuple(int(s) for s in self.input_shape_)
        pre: list[Op] = [Flatten()] if len(shape) != 1 else []
        return Graph.chain([*pre, *self._ops()], shape, head_for(self.code_kind, self.k_))

    @property
    def n_bytes(self) -> int:
        """Bytes per packed code of the fitted encoder, ``ceil(m_ / 8)``."""
        check_is_fitted(self, ["m_"])
        return _codes.n_bytes(self.m_)

    def _check_X(self, X: Any, *, fitting: bool = False, allow_empty: bool = False) -> np.ndarray:
        """The input check every entry point uses; returns float32 of shape (n, d)."""
        owner = type(self).__name__
        if fitting:
            arr = check_array(X, ndim=(2, 3, 4), owner=owner)
            self.__dict__.pop("input_divisor_", None)  # a new fit takes its input as given
            self.input_shape_ = tuple(int(s) for s in arr.shape[1:])
            self.n_features_in_ = int(np.prod(self.input_shape_))
        else:
            check_is_fitted(self, ["n_features_in_"])
            arr = check_array(
                X, ndim=(2, 3, 4), shape_tail=self.input_shape_, owner=owner, allow_empty=allow_empty
            )
        return arr.reshape(arr.shape[0], int(np.prod(arr.shape[1:])))  # -1 is ambiguous for an empty batch

    def fit(self, X: Any, y: Any = None) -> BaseEncoder:
        """Learn the encoder from X of shape (n_samples, ...) (flattened to (n, d)); returns self.

        A fit that fails (bad input, bad parameter, interrupted training) leaves an already fitted
        encoder exactly as it was.
        """
        before = dict(self.__dict__)
        try:
            Xf = self._check_X(X, fitting=True)
            self._validate_params(Xf.shape[1])
            yy = None if y is None else np.asarray(y)
            if yy is not None and yy.shape[0] != Xf.shape[0]:
                raise HashplugError(f"y has {yy.shape[0]} rows but X has {Xf.shape[0]}; they must match.")
            self._fit(Xf, yy)
            m = self._build_graph().m
            if m != self.m_:
                raise HashplugError(f"internal: graph width {m} != m_ {self.m_}")
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise
        return self

    @property
    def graph(self) -> Graph:
        """The inference graph (:class:`hashplug.graph.Graph`): input ``x``, ops, head; built from the fitted state.

        When the encoder records an input divisor (:meth:`set_input_divisor`, ``hashplug train --scale``), the
        graph's first node divides the raw input by it, so ``encode``, ``scores`` and the ONNX export all take
        raw inputs.
        """
        check_is_fitted(self, ["m_"])
        graph = self._build_graph()
        divisor = getattr(self, "input_divisor_", None)
        return graph if divisor is None else graph.with_input_op(Divide(divisor))

    def set_input_divisor(self, divisor: float | None) -> BaseEncoder:
        """Record that the encoder was fitted on ``X / divisor``: from now on it takes raw ``X``.

        The division becomes the first node of :attr:`graph` (op ``divide``), hence part of ``encode``, of the
        saved ``.npz`` and of the exported ONNX file and its model card (``preprocessing``), so serving needs
        no ``--scale``. ``None`` removes it. A later :meth:`fit` forgets it (the new fit's input is taken as
        given). Returns self.

        Raises
        ------
        HashplugError
            ``divisor`` is not a finite number > 0, the encoder is not fitted, or it takes named inputs.
        """
        check_is_fitted(self, ["m_"])
        if divisor is None:
            self.__dict__.pop("input_divisor_", None)
            return self
        if get_tags(self).input_kind == "structured":
            raise HashplugError(f"{type(self).__name__} takes named inputs; an input divisor applies to one array.")
        self.input_divisor_ = _check_divisor(divisor, f"{type(self).__name__}.set_input_divisor")
        return self

    def _graph_input(self, Xf: np.ndarray) -> np.ndarray:
        """Checked rows (n, d) back in the graph's input shape (n, *input_shape_) (a view)."""
        return Xf.reshape(Xf.shape[0], *self.input_shape_)

    def scores(self, X: Any) -> np.ndarray:
        """Real-valued unit activations before binarisation, shape (n, m), float32."""
        Xf = self._check_X(X)  # first: raises NotFittedError before any learned attribute is read
        return self.graph.numpy(x=self._graph_input(Xf))

    def encode(self, X: Any, format: str = "packed", batch_size: int = 8192) -> np.ndarray:
        """Encode X into binary codes.

        Parameters
        ----------
        X : array-like of shape (n, *input_shape)
            Raw inputs, same per-sample shape as at fit.
        format : {"packed", "indices", "pm1"}
            ``packed``: ndarray of shape (n, ceil(m/8)), dtype=uint8 (np.packbits order);
            ``indices``: ndarray of shape (n, k), dtype=int64, ascending (k-hot encoders only);
            ``pm1``: ndarray of shape (n, m), dtype=int8 of +-1.
        batch_size : int
            Rows per chunk; memory stays bounded by ``batch_size * m``.
        """
        if format not in _codes.FORMATS:
            raise HashplugError(f"Unknown code format {format!r}; use one of {list(_codes.FORMATS)}.")
        if format == "indices" and self.code_kind != "khot":
            raise HashplugError(
                f"{type(self).__name__} produces dense codes; format='indices' is only for k-hot encoders. "
                "Use format='packed' or 'pm1'."
            )
        batch_size = check_int_param(batch_size, "batch_size", f"{type(self).__name__}.encode", 1, None)
        Xf = self._check_X(X)
        graph = self.graph
        out = []
        for s in range(0, Xf.shape[0], int(batch_size)):
            bits = graph.bits(x=self._graph_input(Xf[s : s + batch_size]))
            if format == "packed":
                out.append(_codes.pack_bits(bits))
            elif format == "pm1":
                out.append(np.where(bits, np.int8(1), np.int8(-1)))
            else:
                out.append(np.nonzero(bits)[1].reshape(bits.shape[0], self.k_).astype(np.int64))
        return np.concatenate(out, axis=0)

    def fit_encode(self, X: Any, y: Any = None, format: str = "packed") -> np.ndarray:
        """``fit(X, y).encode(X, format)``."""
        return self.fit(X, y).encode(X, format=format)

    # ------------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        check_is_fitted(self, ["m_", "k_", "n_features_in_"])
        arrays = {a: np.asarray(getattr(self, a)) for a in self._array_attrs}
        scalars = {a: _jsonable(getattr(self, a)) for a in ("m_", "k_", "n_features_in_", *self._scalar_attrs)}
        scalars["input_shape_"] = list(self.input_shape_)
        if getattr(self, "input_divisor_", None) is not None:
            scalars["input_divisor_"] = float(self.input_divisor_)
        return arrays, scalars

    def weights_sha256(self) -> str:
        """sha256 of the learned arrays (recorded in saved files and ONNX metadata)."""
        return sha256_arrays(self._state()[0])

    def save(self, path: str | Path) -> Path:
        """Save to ``path`` (``.npz``; arrays + JSON header, no pickle). Returns the path written."""
        from .._version import __version__

        path = check_path(path, "path", f"{type(self).__name__}.save")
        if path.is_dir():
            raise ModelFileError(f"{str(path)!r} is a folder; pass the path of the .npz file to write.")
        arrays, scalars = self._state()
        header = {
            "format": FILE_FORMAT,
            "hashplug_version": __version__,
            "method": self.method_name,
            "class": type(self).__name__,
            "params": {k: _jsonable(v) for k, v in self.get_params().items()},
            "attrs": scalars,
            "sha256": sha256_arrays(arrays),
        }
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
        payload = {f"a__{k}": v for k, v in arrays.items()}
        payload["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        if path.is_dir():
            raise ModelFileError(f"{str(path)!r} is a folder; pass the path of the .npz file to write.")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp.npz")
            np.savez(tmp, **payload)
            tmp.replace(path)  # atomic: a reader never sees a half-written model
        except OSError as exc:
            raise ModelFileError(
                f"cannot write the model file {str(path)!r} ({exc.strerror or exc}); pass a path in a writable folder."
            ) from None
        return path

    @classmethod
    def load(cls, path: str | Path) -> BaseEncoder:
        """Load an encoder saved by :meth:`save`, validating format, method and checksum."""
        return load_encoder(path, expect=cls if cls is not BaseEncoder else None)


_MAKE_MODEL = (
    "Create one with `hashplug train <method> --data ... --k ... --out model.npz` or encoder.save('model.npz')."
)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a model file, never unpickling anything; a clear error for files that are not ``.npz``.

    numpy's own messages for such files suggest ``allow_pickle=True``, which hashplug never uses (a pickle
    can run arbitrary code), so the file is classified by its first bytes first.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise ModelFileError(f"{str(path)!r} cannot be read ({exc.strerror}).") from None
    bad = f"{str(path)!r} is not a valid hashplug model file"
    refuse = (
        "which hashplug refuses to load for safety (models are saved as plain arrays plus a JSON header, "
        f"without pickle). {_MAKE_MODEL}"
    )
    if head.startswith(b"\x93NUMPY"):
        if _npy_holds_objects(path):
            raise ModelFileError(f"{bad}: it is a .npy array of pickled Python objects, {refuse}")
        raise ModelFileError(f"{bad}: it is a single numpy array (.npy), not a model (.npz). {_MAKE_MODEL}")
    if head[:1] == b"\x80":
        raise ModelFileError(f"{bad}: it is a Python pickle, {refuse}")
    if not head.startswith(b"PK"):
        kind = (
            "an ONNX file; load it with hashplug.OnnxEncoder(path), or pass the .npz model it was exported from"
            if path.suffix.lower() == ".onnx"
            else "not a numpy .npz archive"
        )
        raise ModelFileError(f"{bad}: it is {kind}. {_MAKE_MODEL}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as exc:
        if "pickle" not in str(exc):
            raise ModelFileError(f"{bad}: {exc}") from exc
        raise ModelFileError(f"{bad}: it contains pickled Python objects (object arrays), {refuse}") from None
    except Exception as exc:
        raise ModelFileError(f"{bad}: the .npz archive is corrupt ({exc}).") from exc


def _npy_holds_objects(path: Path) -> bool:
    """Whether a ``.npy`` file's header declares an object (pickled) dtype; reads the header only."""
    try:
        with open(path, "rb") as f:
            major, _ = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            _, _, dtype = read(f)
        return bool(dtype.hasobject)
    except Exception:
        return False


def load_encoder(path: str | Path, expect: type[BaseEncoder] | None = None) -> BaseEncoder:
    """Load any saved encoder; the file's header says which class it is."""
    path = check_path(path, "path", "load_encoder")
    if not path.is_file():
        raise ModelNotFoundError(
            f"No model file at {str(path)!r}; pass the path of a model saved with encoder.save(path) or "
            "`hashplug train ... --out model.npz`."
        )
    files = _read_npz(path)
    if "__header__" not in files:
        raise ModelFileError(f"{str(path)!r} has no hashplug header; it was not written by Encoder.save().")
    try:
        header = json.loads(files.pop("__header__").tobytes().decode())
    except Exception as exc:
        raise ModelFileError(f"{str(path)!r} has a corrupt header: {exc}") from exc
    if header.get("format") != FILE_FORMAT:
        raise ModelFileError(f"{str(path)!r} has format {header.get('format')!r}; expected {FILE_FORMAT!r}.")
    method = header.get("method")
    if method not in ENCODERS:
        raise ModelFileError(f"{str(path)!r} holds unknown method {method!r}; known: {available_encoders()}.")
    klass = ENCODERS[method]
    if expect is not None and not issubclass(klass, expect):
        raise ModelFileError(f"{str(path)!r} holds a {klass.__name__}, not a {expect.__name__}.")
    arrays = {k[3:]: v for k, v in files.items() if k.startswith("a__")}
    missing = set(klass._array_attrs) - set(arrays)
    if missing:
        raise ModelFileError(f"{str(path)!r} lacks arrays {sorted(missing)} needed by {klass.__name__}.")
    digest = sha256_arrays(arrays)
    if digest != header.get("sha256"):
        raise ModelFileError(
            f"{str(path)!r} is corrupt: weights sha256 {digest[:12]}... != recorded {str(header.get('sha256'))[:12]}..."
        )
    return _restore(klass, header, arrays, str(path))


_ARRAY_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*_$")


def _restore(klass: type[BaseEncoder], header: dict[str, Any], arrays: dict[str, np.ndarray], where: str) -> BaseEncoder:
    """Build a fitted ``klass`` from a checked header and arrays; any inconsistency is a ModelFileError.

    Only the class's parameters (validated by its own ``_validate_params``) and its declared learned
    attributes are set: the sizes, ``input_shape_``, the class's ``_scalar_attrs``, an optional
    ``input_divisor_`` and exactly the arrays the fitted encoder saves (``_state``); any other key in the
    header or the archive is refused, never set on the instance.
    """
    params, attrs = header.get("params"), header.get("attrs")
    if not isinstance(params, dict) or not isinstance(attrs, dict):
        raise ModelFileError(f"{where!r} has a corrupt header: 'params' and 'attrs' must both be JSON objects.")
    unknown = sorted(set(params) - set(klass._param_names()))
    if unknown:
        raise ModelFileError(
            f"{where!r} has parameters {unknown} that {klass.__name__} does not take "
            f"(valid: {klass._param_names()}); the file was written by another version or edited."
        )
    need = {"m_", "k_", "n_features_in_", "input_shape_", *klass._scalar_attrs}
    if need - set(attrs):
        raise ModelFileError(f"{where!r} lacks attributes {sorted(need - set(attrs))} in its header.")
    # optional attributes (training history, timings) are allowed when the class's own _state writes them back
    optional = {key: v for key, v in attrs.items() if key not in need and key != "input_divisor_"}
    bad_attrs = sorted(key for key in optional if not _ARRAY_NAME.match(key) or hasattr(klass, key) or key in arrays)
    if bad_attrs:
        raise ModelFileError(
            f"{where!r} has header attributes {bad_attrs} that {klass.__name__} does not save (it saves {sorted(need)}); "
            "the file was edited or written by another program. Save the encoder again with encoder.save(path)."
        )
    bad_names = sorted(k for k in arrays if not _ARRAY_NAME.match(k) or hasattr(klass, k) or k in need)
    if bad_names:
        raise ModelFileError(
            f"{where!r} holds arrays {bad_names} that are not learned attributes of {klass.__name__}; "
            "the file was edited. Save the encoder again with encoder.save(path)."
        )
    try:
        m, k, d = (_strict_int(attrs[key]) for key in ("m_", "k_", "n_features_in_"))
        if not isinstance(attrs["input_shape_"], list):
            raise TypeError("input_shape_ must be a list")
        shape = tuple(_strict_int(s) for s in attrs["input_shape_"])
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{where!r} has non-integer sizes in its header: {exc}") from exc
    if not 1 <= k <= m:
        raise ModelFileError(f"{where!r} is inconsistent: k_={k} must be in [1, m_={m}].")
    if not shape or min(shape) < 1 or int(np.prod(shape)) != d:
        raise ModelFileError(f"{where!r} is inconsistent: input_shape_ {list(shape)} does not flatten to {d} features.")
    for key in [*klass._scalar_attrs, *optional]:
        if not _json_value_ok(attrs[key]):
            raise ModelFileError(f"{where!r} has a non-finite or malformed header attribute {key}={attrs[key]!r}.")
    divisor = attrs.get("input_divisor_")
    if divisor is not None:
        try:
            divisor = _check_divisor(divisor, "load_encoder")
        except HashplugError as exc:
            raise ModelFileError(f"{where!r} has a bad input_divisor_ in its header: {exc}") from None
    for key, v in arrays.items():
        if v.dtype.kind not in "fiub" or (v.dtype.kind == "f" and not np.isfinite(v).all()):
            raise ModelFileError(f"{where!r}: learned array {key} is {v.dtype} with non-finite or non-numeric values.")
    # JSON has no tuples: sequence parameters (kernel sizes, image shapes) come back as lists
    try:
        est = klass(**{key: tuple(v) if isinstance(v, list) else v for key, v in params.items()})
    except Exception as exc:
        raise ModelFileError(f"{where!r} has parameters {klass.__name__} rejects ({exc}).") from None
    est.input_shape_, est.n_features_in_ = shape, d
    for key in klass._scalar_attrs:
        setattr(est, key, attrs[key])
    try:
        est._validate_params(d)
    except HashplugError as exc:
        raise ModelFileError(f"{where!r} has invalid parameters: {exc}") from None
    for key, v in arrays.items():
        setattr(est, key, v)
    est.m_, est.k_ = m, k
    for key, v in optional.items():
        setattr(est, key, v)
    if divisor is not None:
        est.input_divisor_ = divisor
    try:
        declared, declared_attrs = (set(part) for part in est._state())
        width = est._build_graph().m
    except Exception as exc:
        raise ModelFileError(f"{where!r} is inconsistent: its weights do not fit its header ({exc}).") from exc
    if declared != set(arrays):
        raise ModelFileError(
            f"{where!r} holds arrays {sorted(set(arrays) - declared)} that {klass.__name__} does not save "
            f"(it saves {sorted(declared)}); the file was edited."
        )
    if set(optional) - declared_attrs:
        raise ModelFileError(
            f"{where!r} has header attributes {sorted(set(optional) - declared_attrs)} that {klass.__name__} does not "
            f"save (it saves {sorted(declared_attrs)}); the file was edited or written by another program."
        )
    if width != m:
        raise ModelFileError(f"{where!r} is inconsistent: its weights give {width} units but the header says m_={m}.")
    return est


def _strict_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{v!r} is not an integer")
    return int(v)


def _json_value_ok(v: Any) -> bool:
    """A JSON header value without NaN or infinity (at any depth)."""
    if isinstance(v, float):
        return bool(np.isfinite(v))
    if isinstance(v, list):
        return all(_json_value_ok(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(key, str) and _json_value_ok(x) for key, x in v.items())
    return v is None or isinstance(v, (bool, int, str))


def _check_divisor(value: Any, owner: str) -> float:
    """An input divisor (``--scale``): a finite number > 0, else :class:`HashplugError` naming it."""
    from ..modelcard import check_input_divisor

    return check_input_divisor(value, f"{owner}: the input divisor (scale)")


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, tuple):
        return list(v)
    return v
