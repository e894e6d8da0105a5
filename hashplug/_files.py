"""Hashes shared by every room (standard library at import): of a file's bytes, and of named arrays."""

from __future__ import annotations

import hashlib
import os

__all__ = ["file_sha256", "sha256_arrays"]


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
