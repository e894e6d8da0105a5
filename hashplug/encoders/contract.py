"""The encoder contract: the base class every hashplug method derives from, its tags and its presets.

scikit-learn style: ``__init__`` only stores parameters; ``fit(X, y=None)`` validates them,
learns attributes ending in ``_`` and returns ``self``; ``encode(X, layout=...)`` produces codes and
``transform(X)`` the same codes as one column per unit (so an encoder is a step of a scikit-learn
``Pipeline``; ``sklearn.utils.validation.check_is_fitted`` reads ``__sklearn_is_fitted__``).
Every encoder describes its inference once as a typed graph (:class:`hashplug.graph.Graph`): ops
from the raw input to scores and a head (:class:`~hashplug.graph.PackedSign` sign bits or
:class:`~hashplug.graph.KHot` top-k). ``encode``, the torch path and the ONNX export all run that one
description.

Capabilities are class-level tags (:class:`EncoderTags`, from :meth:`BaseEncoder.__hashplug_tags__`,
read with :func:`~hashplug.encoders.get_tags`), tuned hyperparameters per dataset are :class:`Preset` s in
the class's ``presets`` (read with :func:`~hashplug.encoders.get_preset`), the small settings of the test
suite are the class's ``_test_params``: the CLI, the benchmarks, the examples and the tests ask these and
never keep lists of encoder names.

The registry (names -> classes) is :mod:`hashplug.encoders.registry`; files (``save`` / ``load``) are
:mod:`hashplug.encoders.persistence`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from .. import codes as _codes
from .._deprecation import renamed_kwargs
from .._files import sha256_arrays
from .._threads_policy import numeric_threads
from ..graph import Divide, Flatten, Graph, Op, head_for
from ..validation import (
    HashplugError,
    HashplugTypeError,
    check_array,
    check_int_param,
    check_is_fitted,
)

__all__ = ["BaseEncoder", "EncoderTags", "Preset", "INPUT_KINDS", "CODE_KINDS"]


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

    #: Small, fast constructor parameters for the test suite (``k`` included, ``random_state`` not): the tests
    #: parametrized over the registry build every encoder with them, so a new encoder states its own here and
    #: no test keeps a list of names. ``{}``: the defaults.
    _test_params: ClassVar[Mapping[str, Any]] = MappingProxyType({})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Freeze the class's presets and test settings and check that they name constructor parameters only."""
        super().__init_subclass__(**kwargs)
        if "_test_params" in cls.__dict__:
            bad = sorted(set(cls._test_params) - (set(cls._param_names()) - {"random_state"}))
            if bad:
                raise HashplugTypeError(
                    f"{cls.__name__}._test_params sets {bad}, which are not parameters of {cls.__name__} "
                    f"(random_state is set by the test); valid: {sorted(set(cls._param_names()) - {'random_state'})}."
                )
            cls._test_params = MappingProxyType(dict(cls._test_params))
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
        if type(X).__module__.startswith("scipy.sparse"):
            raise HashplugTypeError(
                f"{owner}: X is a scipy sparse {type(X).__name__}; sparse input is not supported (hashplug encoders "
                "take dense arrays). Pass X.toarray()."
            )
        if fitting:
            arr = check_array(X, ndim=(2, 3, 4), owner=owner)
            if 0 in arr.shape[1:]:
                raise HashplugError(
                    f"{owner}: X has 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required; pass samples "
                    "with at least one value each."
                )
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
            # the one thread policy (hashplug._threads_policy) over numpy's BLAS; a trainer's torch policy nests
            with numeric_threads(work=float(Xf.shape[0]) * Xf.shape[1] * Xf.shape[1]):
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
        if type(self).__hashplug_tags__().input_kind == "structured":
            raise HashplugError(f"{type(self).__name__} takes named inputs; an input divisor applies to one array.")
        self.input_divisor_ = _check_divisor(divisor, f"{type(self).__name__}.set_input_divisor")
        return self

    def _graph_input(self, Xf: np.ndarray) -> np.ndarray:
        """Checked rows (n, d) back in the graph's input shape (n, *input_shape_) (a view)."""
        return Xf.reshape(Xf.shape[0], *self.input_shape_)

    def scores(self, X: Any) -> np.ndarray:
        """Real-valued unit activations before binarisation, shape (n, m), float32."""
        Xf = self._check_X(X)  # first: raises NotFittedError before any learned attribute is read
        with numeric_threads(work=float(Xf.shape[0]) * Xf.shape[1] * self.m_, recheck=None, start="one_core"):
            return self.graph.numpy(x=self._graph_input(Xf))

    @renamed_kwargs(format="layout")
    def encode(self, X: Any, layout: str = "packed", batch_size: int | None = None) -> np.ndarray:
        """Encode X into binary codes.

        Parameters
        ----------
        X : array-like of shape (n, *input_shape)
            Raw inputs, same per-sample shape as at fit.
        layout : {"packed", "indices", "pm1"}
            How the codes are stored (0.1.0 name: ``format``, deprecated).
            ``packed``: ndarray of shape (n, ceil(m/8)), dtype=uint8 (np.packbits order);
            ``indices``: ndarray of shape (n, k), dtype=int32, ascending (k-hot encoders only;
            :data:`hashplug.codes.INDEX_DTYPE`);
            ``pm1``: ndarray of shape (n, m), dtype=int8 of +-1.
        batch_size : int or None
            Rows per chunk. None: as many as fit 1 GiB of the graph's working memory per row
            (:meth:`hashplug.graph.Graph.work_bytes`), at most 8,192.
        """
        _codes.check_layout(layout, self.code_kind, f"{type(self).__name__} produces dense codes")
        if batch_size is not None:
            batch_size = check_int_param(batch_size, "batch_size", f"{type(self).__name__}.encode", 1, None)
        Xf = self._check_X(X)
        graph = self.graph
        if batch_size is None:
            from .._batching import rows_for

            batch_size = rows_for(graph.work_bytes())
        out = []
        # no measuring pause (an encode is often shorter): one thread until a tick between batches has read the load
        with numeric_threads(work=float(Xf.shape[0]) * Xf.shape[1] * self.m_, start="one_core") as threads:
            for s in range(0, Xf.shape[0], int(batch_size)):
                threads.tick()
                bits = graph.bits(x=self._graph_input(Xf[s : s + batch_size]))
                if layout == "packed":
                    out.append(_codes.pack_bits(bits))
                elif layout == "pm1":
                    out.append(np.where(bits, np.int8(1), np.int8(-1)))
                else:
                    out.append(np.nonzero(bits)[1].reshape(bits.shape[0], self.k_).astype(_codes.INDEX_DTYPE))
        return np.concatenate(out, axis=0)

    @renamed_kwargs(format="layout")
    def fit_encode(self, X: Any, y: Any = None, layout: str = "packed") -> np.ndarray:
        """``fit(X, y).encode(X, layout)``."""
        return self.fit(X, y).encode(X, layout=layout)

    # ------------------------------------------------------------------ scikit-learn conventions
    def transform(self, X: Any) -> np.ndarray:
        """The codes of X as one column per unit: ndarray of shape (n, m_), dtype int8, +1 / -1 (``layout="pm1"``).

        The transformer face of :meth:`encode`, so an encoder is a step of a scikit-learn ``Pipeline``; a
        downstream estimator sees every bit (Hamming distance = squared Euclidean distance / 4). Storage
        layouts (``packed``, ``indices``) come from :meth:`encode`.
        """
        return self.encode(X, layout="pm1")

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """``fit(X, y).transform(X)``."""
        return self.fit(X, y).transform(X)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the columns of :meth:`transform`: ``"<method><i>"`` for unit i (scikit-learn convention)."""
        check_is_fitted(self, ["m_"])
        return np.asarray([f"{self.method_name}{i}" for i in range(int(self.m_))], dtype=object)

    def __sklearn_is_fitted__(self) -> bool:
        """Fitted once ``fit`` (or a load) has set the sizes: read by ``sklearn.utils.validation.check_is_fitted``."""
        return "m_" in self.__dict__

    def __sklearn_tags__(self) -> Any:
        """scikit-learn's tags (``sklearn.utils.Tags``, scikit-learn >= 1.6), from the encoder's own tags.

        A transformer that needs no target (labels are optional), whose output dtype (int8) is not the input's.
        Inputs: vector encoders take any 2-D array; image encoders take images (3-D or 4-D; 2-D only as flat
        images of their ``image_shape``, not tables of any width); structured encoders a mapping of named
        inputs. scikit-learn is imported here only, when scikit-learn asks.
        """
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags

        kind = type(self).__hashplug_tags__().input_kind
        return Tags(
            estimator_type=None,
            target_tags=TargetTags(required=False),
            transformer_tags=TransformerTags(preserves_dtype=[]),
            input_tags=InputTags(
                two_d_array=kind == "vectors", three_d_array=kind == "images", dict=kind == "structured"
            ),
        )

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
        """Save to ``path`` (``.npz``; arrays + JSON header, no pickle), atomically. Returns the path written.

        See :func:`hashplug.encoders.persistence.save_encoder`.
        """
        from .persistence import save_encoder

        return save_encoder(self, path)

    @classmethod
    def load(cls, path: str | Path) -> BaseEncoder:
        """Load an encoder saved by :meth:`save`, validating format, method and checksum."""
        from .persistence import load_encoder

        return load_encoder(path, expect=cls if cls is not BaseEncoder else None)


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
