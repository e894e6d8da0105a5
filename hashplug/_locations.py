"""Where a model file lives: a local path, or any URI ``pyarrow.fs`` (or ``fsspec``) can open.

Standard library at import; ``pyarrow.fs`` (and ``fsspec``, for schemes pyarrow does not know, e.g.
``memory://``) only inside the functions that touch a URI, so ``import hashplug.runtime`` stays light.

:func:`is_uri`, :func:`join`
    Tell a URI (``s3://bucket/m.onnx``, ``gs://...``, ``memory://...``) from a local path, and join a folder
    and a relative name for either.
:func:`read_bytes`
    A file's bytes (at most ``max_bytes``), or :class:`~hashplug.validation.ModelNotFoundError` naming it.
:func:`write_once`
    Content-addressed, atomic, exactly-once write of a file whose name is its sha256: what the model store
    inside a database (``<db>/_hashplug/models/<sha256>.onnx``) is written with.

``file://`` URIs are local paths. Credentials for object stores come from the environment, as
``pyarrow.fs.FileSystem.from_uri`` (or ``fsspec``) reads them.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import uuid
from typing import Any

from ._files import fsync_dir
from .validation import HashplugError, ModelFileError, ModelNotFoundError

__all__ = ["is_uri", "local_path", "join", "parent", "exists", "read_bytes", "write_once", "describe"]

#: errno values of file systems that cannot make hard links (``os.link``).
_NO_LINKS = {getattr(errno, n) for n in ("EPERM", "ENOTSUP", "EOPNOTSUPP", "EMLINK", "ENOSYS") if hasattr(errno, n)}

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def is_uri(location: Any) -> bool:
    """Whether ``location`` is a URI with a scheme other than ``file://`` (``s3://b/m.onnx``, ``memory://m``)."""
    if not isinstance(location, str):
        return False
    m = _SCHEME.match(location)
    return m is not None and m.group(1).lower() != "file"


def local_path(location: str | os.PathLike) -> str:
    """A local path (``file://`` stripped, ``~`` expanded), made absolute."""
    text = os.fspath(location)
    if text.lower().startswith("file://"):
        from urllib.parse import unquote, urlparse

        text = unquote(urlparse(text).path)
    return os.path.abspath(os.path.expanduser(text))


def join(root: str, relative: str) -> str:
    """``root`` / ``relative`` for a local folder or a URI (``relative`` uses ``/``)."""
    if is_uri(root):
        prefix, rest = _split_scheme(root)
        rest = rest.rstrip("/")
        return f"{prefix}{rest}/{relative.lstrip('/')}" if rest else f"{prefix}{relative.lstrip('/')}"
    return os.path.join(local_path(root), *relative.split("/"))


def parent(location: str) -> str:
    """The folder holding ``location`` (a local path or a URI)."""
    if is_uri(location):
        prefix, rest = _split_scheme(location)
        rest = rest.rstrip("/")
        return prefix + (rest.rsplit("/", 1)[0] if "/" in rest else "")
    return os.path.dirname(local_path(location).rstrip(os.sep))


def _split_scheme(uri: str) -> tuple[str, str]:
    m = _SCHEME.match(uri)
    assert m is not None
    return m.group(0), uri[m.end():]


def describe(location: str) -> str:
    """``location`` for a message (a URI as given, a local path absolute)."""
    return location if is_uri(location) else local_path(location)


def _filesystem(uri: str) -> tuple[Any, str]:
    """``(pyarrow FileSystem, path inside it)`` for a URI: pyarrow's own schemes, else fsspec's."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except pa.ArrowInvalid as exc:
        if "Unrecognized filesystem type" not in str(exc) and "unrecognized" not in str(exc).lower():
            raise HashplugError(f"cannot open {uri!r}: {exc}") from None
    except (OSError, pa.ArrowException) as exc:
        raise HashplugError(
            f"cannot reach {uri!r} ({type(exc).__name__}: {str(exc).strip()[:200]}); check the URI and the "
            "credentials in the environment (pyarrow.fs.FileSystem.from_uri reads them)."
        ) from None
    scheme = _SCHEME.match(uri).group(1)  # type: ignore[union-attr]
    try:
        import fsspec
    except ImportError:
        raise HashplugError(
            f"no filesystem for {scheme}:// URIs ({uri!r}): pyarrow knows file://, s3://, gs://, hdfs:// and abfs://; "
            "for other schemes install fsspec (and its backend, e.g. `pip install fsspec`)."
        ) from None
    try:
        fs, path = fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as exc:
        raise HashplugError(f"no filesystem for {scheme}:// URIs ({uri!r}): {exc}") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def exists(location: str) -> bool:
    """Whether a file is at ``location`` (False for anything that cannot be reached)."""
    if not is_uri(location):
        return os.path.isfile(local_path(location))
    import pyarrow.fs as pafs

    try:
        fs, path = _filesystem(location)
        return fs.get_file_info(path).type == pafs.FileType.File
    except (HashplugError, OSError):
        return False


def read_bytes(location: str, max_bytes: int, what: str = "ONNX model") -> bytes:
    """The bytes of the file at ``location`` (a local path or a URI), at most ``max_bytes``.

    Raises
    ------
    ModelNotFoundError
        Nothing at ``location``.
    ModelFileError
        Not a file, larger than ``max_bytes``, or unreadable.
    """
    if not is_uri(location):
        p = local_path(location)
        try:
            size = os.stat(p).st_size
        except OSError as exc:
            raise ModelNotFoundError(f"No {what} file at {p!r} ({exc.strerror}).") from None
        if not os.path.isfile(p):
            raise ModelFileError(f"{p!r} is not a file; pass the path of an exported .onnx model.")
        _check_size(p, size, max_bytes)
        try:
            with open(p, "rb") as fh:
                data = fh.read(min(size, max_bytes) + 1)  # a file that grew past max_bytes is caught below
        except OSError as exc:
            raise ModelFileError(f"{p!r} cannot be read ({exc.strerror}).") from None
        _check_size(p, len(data), max_bytes)
        return data
    import pyarrow as pa
    import pyarrow.fs as pafs

    fs, path = _filesystem(location)
    try:
        info = fs.get_file_info(path)
    except (OSError, pa.ArrowException) as exc:
        raise ModelFileError(f"cannot reach {location!r}: {str(exc).strip()[:200]}") from None
    if info.type == pafs.FileType.NotFound:
        raise ModelNotFoundError(f"No {what} file at {location!r}.")
    if info.type != pafs.FileType.File:
        raise ModelFileError(f"{location!r} is not a file; pass the URI of an exported .onnx model.")
    if info.size is not None:
        _check_size(location, info.size, max_bytes)
    try:
        with fs.open_input_stream(path) as fh:
            data = fh.read(min(info.size, max_bytes) + 1 if info.size is not None else max_bytes + 1)
    except (OSError, pa.ArrowException) as exc:
        raise ModelFileError(f"{location!r} cannot be read: {str(exc).strip()[:200]}") from None
    _check_size(location, len(data), max_bytes)
    return bytes(data)


def _check_size(where: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise ModelFileError(
            f"{where!r} is {size:,} bytes, over the limit of {max_bytes:,} (max_bytes); hashplug models are far "
            "smaller. Pass a larger max_bytes only for a file you trust."
        )


def write_once(folder: str, data: bytes, suffix: str = ".onnx") -> tuple[str, bool]:
    """Store ``data`` as ``<folder>/<sha256 of data><suffix>``, atomically and exactly once.

    Local folders: the bytes go to a private temporary file in ``folder``, are flushed to disk, and are linked
    to their final name with ``os.link``, which fails if the name exists: of several writers at once exactly
    one creates the file, and a reader never sees part of one (a file system without hard links gets an
    atomic ``os.replace`` of the same bytes instead). A file already there is checked (its sha256 must
    be its name) and kept. URIs (object stores): the object is written only if absent; an object store makes a
    whole object visible at once, and two first writers at once write the same bytes (the name is their hash).

    Returns
    -------
    (location, created)
        Where the file is, and whether this call wrote it.

    Raises
    ------
    ModelFileError
        The file at the name does not hash to its name (corrupt: delete it and store again), or the folder
        cannot be written.
    """
    sha = hashlib.sha256(data).hexdigest()
    name = f"{sha}{suffix}"
    final = join(folder, name)
    if not is_uri(folder):
        d = local_path(folder)
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as exc:
            raise ModelFileError(f"cannot create the model store {d!r}: {exc.strerror}.") from None
        if os.path.isfile(final):
            _check_existing(final, sha)
            return final, False
        tmp = os.path.join(d, f".{name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "xb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, final)
                created = True
            except FileExistsError:
                created = False
            except OSError as exc:
                if exc.errno not in _NO_LINKS:
                    raise
                # a file system without hard links: an atomic rename of the same bytes (the name is their hash,
                # so a second writer at once replaces the file with identical content)
                os.replace(tmp, final)
                created = True
        except OSError as exc:
            raise ModelFileError(f"cannot write the model store {d!r}: {exc.strerror}.") from None
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if created:
            fsync_dir(d)
        else:
            _check_existing(final, sha)
        return final, created
    import pyarrow as pa
    import pyarrow.fs as pafs

    fs, path = _filesystem(final)
    try:
        if fs.get_file_info(path).type == pafs.FileType.File:
            _check_existing(final, sha)
            return final, False
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path) as fh:
            fh.write(data)
    except (OSError, pa.ArrowException) as exc:
        raise ModelFileError(f"cannot write {final!r}: {str(exc).strip()[:200]}") from None
    return final, True


def _check_existing(location: str, sha: str) -> None:
    from ._onnx_wire import DEFAULT_MAX_BYTES

    data = read_bytes(location, DEFAULT_MAX_BYTES, "stored model")
    got = hashlib.sha256(data).hexdigest()
    if got != sha:
        raise ModelFileError(
            f"the stored model {location!r} is corrupt: its sha256 is {got}, not its name. Delete it; the next "
            "store (hashplug.relocate_model, create_table, ingest) writes it again."
        )
