"""File helpers shared by every room (standard library at import): the hashes of a file's bytes and of named
arrays, and the one atomic file write."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["file_sha256", "sha256_arrays", "atomic_write", "fsync_dir"]


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_arrays(arrays: dict) -> str:
    """A stable sha256 over named arrays (name, dtype, shape and bytes, in name order): the weights digest of
    saved encoders and model cards, and the integrity check of saved indexes."""
    import numpy as np

    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(key.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries to disk (so a rename into it survives a power cut); a no-op where folders
    cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    with contextlib.suppress(OSError):
        os.fsync(fd)
    os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` whole or not at all.

    ``write(f)`` fills a private temporary file beside ``path`` (a name of its own, created with ``O_EXCL`` and
    the permissions a plain ``open`` gives: 0o666 less the umask), which is flushed to disk, renamed over
    ``path`` (atomic: a reader, or a crash, sees the old file or the new one, never part of one) and its folder
    synced. Two writers at once each write their own temporary file; the last rename wins. On any error the
    temporary file is removed and the error (``OSError`` or ``write``'s own) propagates.
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
