"""Encoder files: ``.npz`` archives of the learned arrays plus a JSON header, never pickle.

:func:`save_encoder` (``encoder.save``) writes atomically (a temporary file in the target folder, flushed to
disk, then renamed over the target: a reader sees the old file or the new one, never half of one);
:func:`load_encoder` (``Encoder.load``) checks format, method, every header value and the sha256 of the
arrays before it builds the fitted encoder (:func:`_restore`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_write, sha256_arrays
from ..validation import HashplugError, ModelFileError, ModelNotFoundError, check_path
from .contract import BaseEncoder, _check_divisor, _jsonable
from .registry import ENCODERS, available_encoders

__all__ = ["FILE_FORMAT", "save_encoder", "load_encoder"]

FILE_FORMAT = "hashplug-encoder/1"


def save_encoder(encoder: BaseEncoder, path: str | Path) -> Path:
    """Write a fitted encoder to ``path`` (``.npz`` appended when missing); returns the path written.

    Atomic: the archive is written to a temporary file of its own (a unique name in the target folder),
    flushed to disk, then renamed over ``path``. A reader, or a crash, sees the previous file or the new one,
    never a half-written model; two saves to one path never write into the same temporary file; a failed
    write leaves no temporary file behind.

    Raises
    ------
    ModelFileError
        ``path`` is a folder or cannot be written (the message names it).
    """
    from .._version import __version__

    path = check_path(path, "path", f"{type(encoder).__name__}.save")
    if path.is_dir():
        raise ModelFileError(f"{str(path)!r} is a folder; pass the path of the .npz file to write.")
    arrays, scalars = encoder._state()
    header = {
        "format": FILE_FORMAT,
        "hashplug_version": __version__,
        "method": encoder.method_name,
        "class": type(encoder).__name__,
        "params": {k: _jsonable(v) for k, v in encoder.get_params().items()},
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
        atomic_write(path, lambda f: np.savez(f, **payload))  # a reader never sees a half-written model
    except OSError as exc:
        raise ModelFileError(
            f"cannot write the model file {str(path)!r} ({exc.strerror or exc}); pass a path in a writable folder."
        ) from None
    return path


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


