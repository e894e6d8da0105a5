"""Serve an exported encoder: :class:`OnnxEncoder`, numpy + onnxruntime only.

This module never imports torch, onnx, ``hashplug.export`` or ``hashplug.encoders``: on the serving side
an encoder is only an ONNX file written by ``hashplug.export.to_onnx``, described by its model card
(:mod:`hashplug.modelcard`).

This module is the one session factory: every onnxruntime session hashplug opens is made here (hashplug's
own encoders through :class:`OnnxEncoder`, other ONNX files, such as object detectors and image encoders,
through :func:`onnx_session`). Sessions are cached per (resolved path, sha256 of the file bytes, providers),
so building ``OnnxEncoder`` objects repeatedly (LanceDB re-creates embedding functions often) costs one
session in total; a file rewritten in place gets a new session because its sha256 changes.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import codes as _codes
from ._batching import DEFAULT_BATCH_SIZE, RUN_BYTES, rows_for
from ._deprecation import renamed_kwargs
from ._domains import check_domains, nan_allowed
from ._files import file_sha256
from ._onnx_wire import DEFAULT_MAX_BYTES, DIGEST_KEY, verify_model_bytes, verify_model_file
from .modelcard import INPUT_NAME, OUTPUT_INDICES, OUTPUT_PACKED, ModelCard
from .validation import (
    HashplugError,
    ModelFileError,
    ModelMismatchError,
    ModelNotFoundError,
    check_array,
    check_int_param,
    check_path,
)

__all__ = ["DEFAULT_BATCH_SIZE", "RUN_BYTES", "OnnxEncoder", "clear_session_cache", "file_sha256", "onnx_session",
           "resolve_providers", "rows_per_run"]

def rows_per_run(card: ModelCard, run_bytes: int = RUN_BYTES) -> int:
    """Rows of one onnxruntime run of this model: ``run_bytes // card.work_bytes`` in [1, 8192]
    (:func:`hashplug._batching.rows_for`; 8,192 for a card without ``work_bytes``, files before issue 31).

    Parameters
    ----------
    card : ModelCard
    run_bytes : int
        The working memory a run may take.

    Returns
    -------
    int
    """
    return rows_for(int(card.work_bytes), run_bytes)



@dataclass(frozen=True)
class _Loaded:
    session: Any
    card: ModelCard
    file_sha256: str
    integrity: str = "digest"
    data: bytes = b""  # the verified bytes the session runs (what a pickled encoder ships)


_LOCK = threading.Lock()
_SESSIONS: dict[tuple[str, str, tuple[str, ...]], _Loaded] = {}
# (resolved path, size, mtime_ns, inode) -> sha256: avoids re-hashing an unchanged file on every rebuild.
_SHA_MEMO: dict[tuple[str, int, int, int], str] = {}
# Sessions of ONNX files that are not hashplug encoders (detectors, image encoders), by
# (resolved path, size, mtime_ns, inode, providers): a file rewritten in place gets a new session.
_PLAIN: dict[tuple[Any, ...], Any] = {}
# (sha256 of the bytes, providers) -> the verified model: every model this process has checked, by content
# (what a table whose model is referred to by its sha256 finds without reading it again).
_BY_SHA: dict[tuple[str, tuple[str, ...]], _Loaded] = {}


def clear_session_cache() -> None:
    """Drop every cached onnxruntime session (they are rebuilt on the next use)."""
    with _LOCK:
        _SESSIONS.clear()
        _SHA_MEMO.clear()
        _PLAIN.clear()
        _BY_SHA.clear()


def session_options() -> Any:
    """The ``onnxruntime.SessionOptions`` of every session hashplug opens (:func:`_new_session`).

    * every graph optimisation (``ORT_ENABLE_ALL``: constant folding, redundant-node elimination, op fusions
      and the CPU's blocked layouts), named rather than left to the library's default;
    * intra-op threads that sleep instead of spinning between ops (``session.intra_op.allow_spinning`` 0):
      on a machine shared with other work a spinning pool burns the cores its neighbours need. Measured on
      the 2-core machine of issue 31 with four other jobs running, BioConvHash's MNIST graph at batch 1,024
      took 2.10 ms of CPU per image instead of 2.89 with spinning, for the same or a shorter wall time.

    The number of intra-op threads stays onnxruntime's default (one per physical core).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _new_session(model: bytes | str, providers: tuple[str, ...]) -> Any:
    """The one place an ``onnxruntime.InferenceSession`` is constructed (a file's bytes, or its path),
    with :func:`session_options`."""
    import onnxruntime as ort

    return ort.InferenceSession(model, sess_options=session_options(), providers=list(providers))


def onnx_session(path: str | os.PathLike[str], providers: str | list[str] | None = None) -> Any:
    """A cached onnxruntime session for an ONNX file that is not a hashplug encoder.

    What :class:`hashplug.data.scenes.OnnxDetector` and :func:`hashplug.data.scenes.scene_inputs` run object
    detectors and image encoders with: the file is opened by onnxruntime from its path (so external data next
    to it is found), as it is; no model card is read or checked (use :class:`OnnxEncoder` for hashplug's own
    files). One session per (resolved path, file size, mtime, inode, providers) per process.

    Parameters
    ----------
    path : str or PathLike
        The ONNX file.
    providers : str, list of str or None
        onnxruntime execution providers (:func:`resolve_providers`; None is the CPU).

    Returns
    -------
    onnxruntime.InferenceSession

    Raises
    ------
    Exception
        Whatever onnxruntime raises for a file it cannot load (callers name the file in their own error).
    """
    prov = resolve_providers(providers)
    resolved = str(Path(path).expanduser().resolve())
    try:
        st = os.stat(resolved)
        key: tuple[Any, ...] = (resolved, st.st_size, st.st_mtime_ns, st.st_ino, prov)
    except OSError:
        key = ()  # missing: onnxruntime names the problem
    with _LOCK:
        hit = _PLAIN.get(key) if key else None
    if hit is not None:
        return hit
    session = _new_session(resolved if key else str(path), prov)
    if key:
        with _LOCK:
            for old in [k for k in _PLAIN if k[0] == resolved and k[-1] == prov and k != key]:
                del _PLAIN[old]
            session = _PLAIN.setdefault(key, session)
    return session


def resolve_providers(providers: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Turn the ``providers`` argument into an onnxruntime provider list.

    ``None`` -> CPU; ``"auto"`` -> CUDA when onnxruntime has it, then CPU; a string or a list is used as given.
    """
    import onnxruntime as ort

    if providers is None:
        return ("CPUExecutionProvider",)
    if isinstance(providers, str):
        if providers == "auto":
            avail = ort.get_available_providers()
            pick = [p for p in ("CUDAExecutionProvider",) if p in avail]
            return (*pick, "CPUExecutionProvider")
        providers = [providers]
    out = tuple(str(p) for p in providers)
    if not out:
        raise HashplugError("providers must name at least one onnxruntime execution provider.")
    return out


def _load(path: Path, providers: tuple[str, ...], max_bytes: int = DEFAULT_MAX_BYTES) -> _Loaded:
    """Session + validated card for ``path``; cached per (resolved path, file sha256, providers).

    The file's bytes go through :func:`hashplug._onnx_wire.verify_model_bytes` (size, structure, ops,
    outputs, digest) before onnxruntime sees them; onnxruntime then runs exactly the bytes that were checked.
    """
    resolved = str(path.resolve())
    try:
        st = os.stat(resolved)
    except OSError as exc:
        raise ModelNotFoundError(
            f"No ONNX model file at {str(path)!r} ({exc.strerror}); export one with "
            "hashplug.export.to_onnx(encoder, path) or `hashplug export model.npz --out model.onnx`."
        ) from None
    if not os.path.isfile(resolved):
        raise ModelFileError(f"{str(path)!r} is not a file; pass the path of an exported .onnx model.")
    if st.st_size > max_bytes:
        raise ModelFileError(
            f"{str(path)!r} is {st.st_size:,} bytes, over the limit of {max_bytes:,} (max_bytes); hashplug models "
            "are far smaller. Pass a larger max_bytes only for a file you trust."
        )
    stat_key = (resolved, st.st_size, st.st_mtime_ns, st.st_ino)
    with _LOCK:
        sha = _SHA_MEMO.get(stat_key)
        loaded = _SESSIONS.get((resolved, sha, providers)) if sha else None
    if loaded is not None:
        return loaded
    card, summary, data = verify_model_file(path, max_bytes=max_bytes)
    sha = hashlib.sha256(data).hexdigest()
    key = (resolved, sha, providers)
    with _LOCK:
        for old in [k for k in _SHA_MEMO if k[0] == resolved and k != stat_key]:
            del _SHA_MEMO[old]
        _SHA_MEMO[stat_key] = sha
        loaded = _SESSIONS.get(key)
        if loaded is not None:
            return loaded
        try:
            session = _new_session(data, providers)
        except Exception as exc:
            raise ModelFileError(
                f"{str(path)!r} could not be loaded as an ONNX model by onnxruntime "
                f"({type(exc).__name__}: {str(exc).strip()[:300]}). Is it a hashplug .onnx export?"
            ) from exc
        _check_signature(session, card, path)
        integrity = "digest" if DIGEST_KEY in summary.metadata else "legacy"
        loaded = _Loaded(session, card, sha, integrity, data)
        # a rewritten file replaces its stale session (objects built earlier keep their own reference)
        for old in [k for k in _SESSIONS if k[0] == resolved and k[2] == providers]:
            del _SESSIONS[old]
        _SESSIONS[key] = loaded
        _BY_SHA.setdefault((sha, providers), loaded)
        return loaded


def _load_bytes(data: bytes, source: str, providers: tuple[str, ...]) -> _Loaded:
    """Session + validated card for a model's bytes (read from a URI, or unpickled); cached by their sha256.

    The bytes go through the same :func:`hashplug._onnx_wire.verify_model_bytes` as a file's.
    """
    sha = hashlib.sha256(data).hexdigest()
    with _LOCK:
        loaded = _BY_SHA.get((sha, providers))
    if loaded is not None:
        return loaded
    card, summary = verify_model_bytes(data, source=source)
    try:
        session = _new_session(data, providers)
    except Exception as exc:
        raise ModelFileError(
            f"{source!r} could not be loaded as an ONNX model by onnxruntime "
            f"({type(exc).__name__}: {str(exc).strip()[:300]}). Is it a hashplug .onnx export?"
        ) from exc
    _check_signature(session, card, Path(source))
    integrity = "digest" if DIGEST_KEY in summary.metadata else "legacy"
    with _LOCK:
        return _BY_SHA.setdefault((sha, providers), _Loaded(session, card, sha, integrity, bytes(data)))


def _check_signature(session: Any, card: ModelCard, path: Path) -> None:
    """The ONNX inputs/outputs must match the card (its float32 inputs in order, the expected outputs)."""
    ins = session.get_inputs()
    specs = card.input_specs
    got = [(i.name, i.type) for i in ins]
    if [i.name for i in ins] != [nm for nm, _, _ in specs] or any(i.type != "tensor(float)" for i in ins):
        want = [nm for nm, _, _ in specs]
        raise ModelFileError(f"{str(path)!r}: expected float32 inputs named {want}; the graph has {got}.")
    for i, (nm, shp, _) in zip(ins, specs):
        tail = list(i.shape[1:])
        if tail != list(shp):
            key = "input_shape" if not card.multi_input else f"inputs[{nm!r}]"
            raise ModelFileError(
                f"{str(path)!r}: graph input {nm!r} per-sample shape {tail} does not match metadata {key} {list(shp)}."
            )
    outs = {o.name for o in session.get_outputs()}
    missing = [o for o in card.outputs if o not in outs]
    if missing:
        raise ModelFileError(
            f"{str(path)!r}: graph lacks outputs {missing} required for {card.code_kind} codes."
        )


def _check_sha(data: bytes, sha256: str | None, source: str) -> None:
    """``ModelMismatchError`` when ``sha256`` is given and ``data`` hashes to another digest."""
    if sha256 is None:
        return
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise ModelMismatchError(f"{source!r} is not the expected model: its sha256 is {got}, not {sha256}.")


class OnnxEncoder:
    """Encode with an exported hashplug ONNX file (numpy + onnxruntime only).

    Parameters
    ----------
    path : str or Path
        File written by ``hashplug.export.to_onnx``: a local path (or ``file://`` URI), or the URI of a copy on
        any file system ``pyarrow.fs`` opens (``s3://bucket/enc.onnx``, ``gs://...``; other schemes such as
        ``memory://`` through ``fsspec`` when it is installed). A URI's bytes are read once (at most
        ``max_bytes``) and checked like a file's.
    providers : None, "auto", str or list of str
        onnxruntime execution providers: ``None`` -> CPU, ``"auto"`` -> CUDA if available then CPU.
    batch_size : int or None
        Rows per onnxruntime call. None (the default): as many as fit :data:`RUN_BYTES` by the model card's
        ``work_bytes`` (the graph's working memory per row), at most :data:`DEFAULT_BATCH_SIZE`; 8,192 for
        files whose card does not say. A run holds about ``batch_size * card.work_bytes`` bytes.
    max_bytes : int
        Largest file opened (default 1 GiB, :data:`hashplug._onnx_wire.DEFAULT_MAX_BYTES`).
    sha256 : str or None
        Expected sha256 of the file's bytes; a file with another digest raises
        :class:`~hashplug.validation.ModelMismatchError` (checked before onnxruntime sees the bytes of a URI).

    Attributes
    ----------
    card : ModelCard
        Validated metadata.
    m, k, n_bytes : int
    code_kind : {"dense", "khot"}
    input_shape : tuple of int
        Per-sample input shape.
    location : str or None
        Where the model was read from: the resolved local path, or the URI; None for
        :meth:`from_bytes` (and for an encoder unpickled from its bytes, which keeps the original ``location``
        only in :attr:`origin`).
    origin : str
        ``location``, or where the bytes came from, for messages.
    path : Path
        The resolved local file; for a URI or bytes, a ``Path`` of the file's name only (for messages).
    file_sha256 : str
        sha256 of the file bytes.
    weights_sha256 : str
        sha256 of the exported encoder's learned arrays (from the metadata; the training trace).
    integrity : {"digest", "legacy"}
        ``"digest"``: the file's ``hashplug.digest`` matched its weights, graph and card; ``"legacy"``: a file
        written before digests existed (hashplug 0.1.0), whose structure, ops and outputs were checked but
        whose weights cannot be verified.

    Raises
    ------
    ModelFileError
        Missing, corrupt or non-hashplug file, metadata that does not match the graph, ops or domains hashplug
        never writes (control flow), a file over ``max_bytes``, or a digest mismatch (weights or card changed
        after export). See :mod:`hashplug._onnx_wire`.
    ModelMismatchError
        ``sha256`` given and the bytes hash to another digest.

    Notes
    -----
    Pickling (Ray, multiprocessing) ships the model, never a bare path: an encoder read from a local file or
    from bytes pickles with its verified bytes and sha256, so it unpickles in a process (or on a machine)
    where the file does not exist; one read from a URI pickles as the URI and its sha256, and the other side
    reads the URI again and refuses bytes with another digest. Either way the other side checks the bytes
    exactly as here.
    """

    def __init__(
        self,
        path: str | Path,
        providers: str | list[str] | None = None,
        batch_size: int | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        *,
        sha256: str | None = None,
    ) -> None:
        from ._locations import is_uri, read_bytes

        self._setup(providers, batch_size, max_bytes)
        if isinstance(path, str) and is_uri(path):
            data = read_bytes(path, self.max_bytes)
            _check_sha(data, sha256, path)
            self._take(_load_bytes(data, path, self.providers), path, path)
            return
        path = check_path(path, "path", "OnnxEncoder")
        loaded = _load(path, self.providers, self.max_bytes)
        if sha256 is not None and loaded.file_sha256 != sha256:
            raise ModelMismatchError(
                f"{str(path)!r} is not the expected model: its sha256 is {loaded.file_sha256}, not {sha256}."
            )
        resolved = str(path.resolve())
        self._take(loaded, resolved, resolved)

    def _setup(self, providers: Any, batch_size: Any, max_bytes: Any) -> None:
        self._given_batch = None if batch_size is None else check_int_param(batch_size, "batch_size",
                                                                              "OnnxEncoder", 1)
        self.batch_size = self._given_batch or DEFAULT_BATCH_SIZE
        self.max_bytes = check_int_param(max_bytes, "max_bytes", "OnnxEncoder", 1)
        self.providers = resolve_providers(providers)
        self._given_providers = providers

    def _take(self, loaded: _Loaded, location: str | None, origin: str) -> None:
        from ._locations import is_uri

        self._loaded = loaded
        self.location = location
        self.origin = origin
        if location is not None and not is_uri(location):
            self.path = Path(location)
        else:
            self.path = Path(origin.rstrip("/").rsplit("/", 1)[-1] or "model.onnx")
        self._session = loaded.session
        self.card = loaded.card
        if self._given_batch is None:
            self.batch_size = rows_per_run(self.card)
        self.file_sha256 = loaded.file_sha256
        self.integrity = loaded.integrity

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        sha256: str | None = None,
        origin: str = "<bytes>",
        providers: str | list[str] | None = None,
        batch_size: int | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> OnnxEncoder:
        """An encoder for a model's bytes (checked like a file's; ``sha256``, when given, must match).

        Parameters
        ----------
        data : bytes
            The ``.onnx`` file's content.
        sha256 : str or None
            Expected sha256 of ``data`` (:class:`~hashplug.validation.ModelMismatchError` otherwise).
        origin : str
            Where the bytes came from, for messages.
        providers, batch_size, max_bytes
            As for :class:`OnnxEncoder`.

        Returns
        -------
        OnnxEncoder
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise HashplugError(f"OnnxEncoder.from_bytes takes the model's bytes; got {type(data).__name__}.")
        self = cls.__new__(cls)
        self._setup(providers, batch_size, max_bytes)
        data = bytes(data)
        if len(data) > self.max_bytes:
            raise ModelFileError(
                f"{origin!r} is {len(data):,} bytes, over the limit of {self.max_bytes:,} (max_bytes); hashplug "
                "models are far smaller. Pass a larger max_bytes only for a file you trust."
            )
        _check_sha(data, sha256, origin)
        self._take(_load_bytes(data, origin, self.providers), None, origin)
        return self

    @classmethod
    def from_cache(
        cls,
        sha256: str,
        *,
        providers: str | list[str] | None = None,
        batch_size: int | None = None,
    ) -> OnnxEncoder | None:
        """The model of this ``sha256`` if this process has already read and checked it, else None.

        What lets a table that names its model by content (``file_sha256``) open without reading the file
        again, wherever the copy it was read from lives.
        """
        prov = resolve_providers(providers)
        with _LOCK:
            loaded = _BY_SHA.get((str(sha256), prov))
        if loaded is None:
            return None
        self = cls.__new__(cls)
        self._setup(providers, batch_size, DEFAULT_MAX_BYTES)
        self._take(loaded, None, f"<model sha256 {str(sha256)[:12]}...>")
        return self

    @property
    def model_bytes(self) -> bytes:
        """The verified bytes of the model (what onnxruntime runs and what pickling ships)."""
        return self._loaded.data

    # ------------------------------------------------------------------ description
    @property
    def m(self) -> int:
        """Number of hash units."""
        return int(self.card.m)

    @property
    def k(self) -> int:
        """Active units per code (``k == m`` for dense codes)."""
        return int(self.card.k)

    @property
    def n_bytes(self) -> int:
        """Bytes per packed code, ``ceil(m / 8)``."""
        return int(self.card.n_bytes)

    @property
    def code_kind(self) -> str:
        """``"dense"`` or ``"khot"``."""
        return self.card.code_kind

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample input shape."""
        return tuple(self.card.input_shape)

    @property
    def n_features_in_(self) -> int:
        """Flattened input width ``prod(input_shape)``."""
        return self.card.n_features

    @property
    def method_name(self) -> str:
        """Registry name of the exported encoder."""
        return self.card.method

    @property
    def weights_sha256(self) -> str:
        """sha256 of the exported encoder's learned arrays, as recorded in the metadata."""
        return self.card.weights_sha256

    def __repr__(self) -> str:
        return (
            f"OnnxEncoder({self.origin!r}, method={self.method_name!r}, m={self.m}, k={self.k}, "
            f"code_kind={self.code_kind!r})"
        )

    # pickling (Ray, multiprocessing): ship the bytes (or a URI) with the sha256, never a bare path
    def __getstate__(self) -> dict[str, Any]:
        from ._locations import is_uri

        state: dict[str, Any] = {"sha256": self.file_sha256, "providers": self._given_providers,
                                 "batch_size": self._given_batch, "max_bytes": self.max_bytes, "origin": self.origin}
        if self.location is not None and is_uri(self.location):
            state["uri"] = self.location
        else:
            state["bytes"] = self._loaded.data
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        providers, batch_size = state.get("providers"), state.get("batch_size")
        max_bytes = state.get("max_bytes", DEFAULT_MAX_BYTES)
        if "bytes" in state:
            other = OnnxEncoder.from_bytes(state["bytes"], sha256=state["sha256"], origin=state.get("origin", "<bytes>"),
                                           providers=providers, batch_size=batch_size, max_bytes=max_bytes)
        elif "uri" in state:
            other = OnnxEncoder(state["uri"], providers=providers, batch_size=batch_size, max_bytes=max_bytes,
                                sha256=state["sha256"])
        else:  # pickled by hashplug <= 0.2: a path
            other = OnnxEncoder(state["path"], providers=providers, batch_size=batch_size, max_bytes=max_bytes)
        self.__dict__.update(other.__dict__)

    # ------------------------------------------------------------------ encoding
    @property
    def input_names(self) -> tuple[str, ...]:
        """Names of the ONNX inputs (``("x",)`` for single-input encoders)."""
        return tuple(nm for nm, _, _ in self.card.input_specs)

    def check_input(self, X: Any, *, allow_empty: bool = False) -> Any:
        """Validate X and return float32 of shape (n, *input_shape).

        Accepts (n, *input_shape) or the flattened (n, d); numeric dtypes are cast to float32;
        NaN/infinity, a wrong width and (unless ``allow_empty``) an empty batch are rejected. Encoders with
        several named inputs (``card.multi_input``) take a mapping ``{name: (n, *shape)}`` instead and get a
        dict back; inputs with a default in the card may be left out.
        """
        if self.card.multi_input:
            return self._check_named(X, allow_empty)
        arr = check_array(
            X,
            ndim=tuple(sorted({2, 1 + len(self.input_shape)})),
            shape_tail=self.input_shape,
            owner="OnnxEncoder",
            allow_empty=allow_empty,
        )
        return arr.reshape((arr.shape[0], *self.input_shape))

    def _check_named(self, X: Any, allow_empty: bool, checked: bool = False) -> dict[str, np.ndarray]:
        """Named inputs checked, their defaults filled in and their value domains checked; ``checked``: arrays
        that are already float32, C-contiguous, non-empty and of the input's shape (validated at the serving
        pipeline's edge) are not checked a second time."""
        from collections.abc import Mapping

        specs = self.card.input_specs
        if not isinstance(X, Mapping):
            raise HashplugError(
                f"{self.path.name} ({self.method_name}) takes a mapping of named inputs {[nm for nm, _, _ in specs]}; "
                f"got {type(X).__name__}."
            )
        names = {nm for nm, _, _ in specs}
        unknown = sorted(set(X) - names)
        missing = [nm for nm, _, d in specs if d is None and nm not in X]
        if unknown or missing:
            raise HashplugError(
                f"{self.path.name}: inputs {unknown} are unknown and {missing} are missing; it takes "
                f"{[nm for nm, _, _ in specs]} (those with a default may be left out)."
            )
        out: dict[str, np.ndarray] = {}
        n = None
        for nm, shp, _ in specs:
            if X.get(nm) is None:
                continue
            arr = np.asarray(X[nm])
            if len(shp) == 1 and shp[0] == 1 and arr.ndim == 1:
                arr = arr[:, None]
            if not (checked and arr.dtype == np.float32 and arr.flags.c_contiguous and arr.shape[1:] == tuple(shp)
                    and arr.shape[0] > 0):
                arr = check_array(arr, name=nm, ndim=1 + len(shp), shape_tail=shp, owner="OnnxEncoder",
                                  allow_empty=allow_empty, finite=not nan_allowed(self.card.input_domains, nm))
            if n is not None and arr.shape[0] != n:
                raise HashplugError(f"{self.path.name}: input {nm!r} has {arr.shape[0]} rows but the others have {n}.")
            n = arr.shape[0]
            out[nm] = arr
        for nm, shp, d in specs:
            if nm not in out:
                out[nm] = np.full((n or 0, *shp), d, np.float32)
        # the card's value domains (e.g. a 0/1 mask, positions in range, NaN only at padding): the same check
        # the encoder's numpy encode runs (hashplug._domains)
        return check_domains(out, self.card.input_domains, "OnnxEncoder")

    @renamed_kwargs(format="layout")
    def encode(self, X: Any, layout: str = "packed", batch_size: int | None = None) -> np.ndarray:
        """Encode X into binary codes (same contract as ``BaseEncoder.encode``).

        Parameters
        ----------
        X : array-like of shape (n, *input_shape) or (n, d), or a mapping of named inputs
            Raw inputs; cast to float32 (a mapping ``{name: (n, *shape)}`` for encoders with several inputs).
        layout : {"packed", "indices", "pm1"}
            How the codes are stored (0.1.0 name: ``format``, deprecated).
            ``packed``: ndarray of shape (n, ceil(m/8)), dtype=uint8 (np.packbits order);
            ``indices``: ndarray of shape (n, k), dtype=int32, ascending (k-hot encoders only; the graph's
            int64 output cast once, :data:`hashplug.codes.INDEX_DTYPE`);
            ``pm1``: ndarray of shape (n, m), dtype=int8 of +-1.
        batch_size : int or None
            Rows per onnxruntime call (default: the encoder's ``batch_size``).

        Returns
        -------
        ndarray
            Codes in the requested layout.
        """
        self._check_layout(layout)
        bs = (
            self.batch_size
            if batch_size is None
            else check_int_param(batch_size, "batch_size", "OnnxEncoder", 1)
        )
        return self._run(self.check_input(X), layout, bs)

    @renamed_kwargs(format="layout")
    def encode_checked(self, X: np.ndarray, layout: str = "packed") -> np.ndarray:
        """:meth:`encode` of samples a caller has already validated, without validating them again.

        For the serving pipeline, which checks and converts a column once at its edge
        (:func:`hashplug.integrations.arrow.column_to_numpy`): ``X`` must be a C-contiguous float32 array of
        shape ``(n, *input_shape)`` with finite values (what ``check_input`` returns). A mapping of named inputs
        has its defaults filled in and its value domains checked (the card's), each array checked again only when
        it is not already float32 of its input's shape.
        """
        self._check_layout(layout)
        if self.card.multi_input:
            X = self._check_named(X, False, checked=True)
        elif not (
            isinstance(X, np.ndarray) and X.dtype == np.float32 and X.shape[1:] == self.input_shape
            and X.flags.c_contiguous and X.shape[0] > 0
        ):
            X = self.check_input(X)
        return self._run(X, layout, self.batch_size)

    def _check_layout(self, layout: str) -> None:
        _codes.check_layout(
            layout, self.code_kind, f"{self.path.name} holds a {self.method_name!r} encoder with dense codes"
        )

    def _run(self, Xs: Any, layout: str, bs: int) -> np.ndarray:
        """The kernel: checked inputs through the onnxruntime session, ``bs`` rows per call."""
        feed = Xs if isinstance(Xs, dict) else {INPUT_NAME: Xs}
        n = next(iter(feed.values())).shape[0]
        output = OUTPUT_INDICES if layout == "indices" else OUTPUT_PACKED
        parts = []
        width, dtype = (self.k, np.int64) if layout == "indices" else (self.n_bytes, np.uint8)
        for s in range(0, n, bs):
            (res,) = self._session.run([output], {nm: v[s : s + bs] for nm, v in feed.items()})
            rows = min(bs, n - s)
            if res.shape != (rows, width) or res.dtype != dtype:
                raise ModelFileError(
                    f"{self.path.name}: the graph returned {output!r} of shape {res.shape} {res.dtype} for {rows} rows; "
                    f"its card promises ({rows}, {width}) {np.dtype(dtype)}. The file is not a faithful hashplug export."
                )
            if layout == "pm1":
                res = _codes.packed_to_pm1(res, self.m)
            elif layout == "indices":
                res = res.astype(_codes.INDEX_DTYPE)  # the graph's wire type (TopK's int64) -> hashplug's one type
            parts.append(res)
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    @renamed_kwargs(format="layout")
    def __call__(self, X: Any, layout: str = "packed") -> np.ndarray:
        """Alias of :meth:`encode`."""
        return self.encode(X, layout=layout)
