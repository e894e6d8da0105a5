"""How many rows one run of an encoder's graph takes (numpy and onnxruntime alike): by its working memory.

A BioConvHash image can hold 10 MB of patches and maps while it is encoded, a BioHash row a few kB; a fixed
8,192 rows per run would need 80 GB for the first. Both :meth:`hashplug.encoders.BaseEncoder.encode` and
:class:`hashplug.runtime.OnnxEncoder` size their default runs here.
"""

from __future__ import annotations

__all__ = ["DEFAULT_BATCH_SIZE", "RUN_BYTES", "rows_for"]

#: Rows per run at most (and for models whose working memory is not known).
DEFAULT_BATCH_SIZE = 8192
#: Working memory one run aims at by default (1 GiB).
RUN_BYTES = 1 << 30


def rows_for(work_bytes: int, run_bytes: int = RUN_BYTES) -> int:
    """Rows of one run: ``run_bytes // work_bytes`` in [1, :data:`DEFAULT_BATCH_SIZE`].

    Parameters
    ----------
    work_bytes : int
        Bytes per row a run may hold (:meth:`hashplug.graph.Graph.work_bytes`); 0 for unknown, which gives
        :data:`DEFAULT_BATCH_SIZE`.
    run_bytes : int
        The working memory a run may take.

    Returns
    -------
    int
    """
    if not work_bytes:
        return DEFAULT_BATCH_SIZE
    return int(max(1, min(DEFAULT_BATCH_SIZE, int(run_bytes) // int(work_bytes))))
