"""Heads: how a graph's scores (n, m) become bits (numpy only).

A head is the last step of an encoder's inference. Each head class registers itself by its
``code_kind`` (the model card's ``hashplug.code_kind``) in :data:`HEADS`; its ONNX emitter lives in
``hashplug.export.onnx_ops``.

:class:`PackedSign` (``"dense"``)
    bit ``i`` is 1 iff ``score_i > 0`` (strictly: a score of exactly 0 is bit 0).
:class:`KHot` (``"khot"``)
    the ``k`` largest scores are 1 (winner-take-all, eq. 6 of the BioHash paper). **Tie rule:** among equal
    scores the lower unit index wins (:mod:`hashplug.ranking`, exactly as ONNX ``TopK`` orders equal values).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..ranking import topk_mask, topk_units
from .ops import GraphError

__all__ = ["HEADS", "Head", "PackedSign", "KHot", "head_for"]

#: Registered head classes by code kind.
HEADS: dict[str, type[Head]] = {}


class Head:
    """Base class of heads.

    Class attributes
    ----------------
    code_kind : str
        ``"dense"`` or ``"khot"`` (model card ``code_kind``).
    tie_rule : str
        The model card's ``tie_rule`` for this head.
    """

    code_kind: ClassVar[str] = ""
    tie_rule: ClassVar[str] = ""

    def __init_subclass__(cls, register: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("code_kind", "")
        if register and kind:
            HEADS[kind] = cls

    @classmethod
    def from_k(cls, k: int) -> Head:  # pragma: no cover - abstract
        """The head for codes with ``k`` active units (dense heads ignore ``k``)."""
        raise NotImplementedError

    def check(self, m: int) -> None:
        """Raise :class:`GraphError` when the head cannot apply to ``m`` scores."""

    def k_for(self, m: int) -> int:
        """Active units per code for ``m`` scores."""
        return int(m)

    def bits(self, scores: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Bits of scores (n, m): ndarray (n, m), dtype=bool."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """JSON-able description: ``{"head": code_kind, ...parameters}``."""
        return {"head": self.code_kind}


@dataclass(frozen=True)
class PackedSign(Head):
    """Dense sign bits: bit ``i`` = ``score_i > 0``; packed into ``ceil(m/8)`` bytes by the exporter."""

    code_kind: ClassVar[str] = "dense"
    tie_rule: ClassVar[str] = "score>0"

    @classmethod
    def from_k(cls, k: int) -> PackedSign:
        return cls()

    def bits(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) > 0


@dataclass(frozen=True)
class KHot(Head):
    """k-hot winner-take-all: the ``k`` largest scores are 1, ties to the lower unit index.

    Parameters
    ----------
    k : int
        Active units per code, in [1, m].
    """

    code_kind: ClassVar[str] = "khot"
    tie_rule: ClassVar[str] = "lower-index"
    k: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", int(self.k))

    @classmethod
    def from_k(cls, k: int) -> KHot:
        return cls(int(k))

    def check(self, m: int) -> None:
        if not 1 <= self.k <= int(m):
            raise GraphError(f"k-hot head k={self.k} must be in [1, m={m}].")

    def k_for(self, m: int) -> int:
        return self.k

    def bits(self, scores: np.ndarray) -> np.ndarray:
        return topk_mask(scores, self.k)

    def indices(self, scores: np.ndarray) -> np.ndarray:
        """The k winners of scores (n, m), ascending: ndarray (n, k), dtype=int64."""
        return topk_units(scores, self.k)

    def describe(self) -> dict[str, Any]:
        return {"head": self.code_kind, "k": self.k}


def head_for(code_kind: str, k: int) -> Head:
    """The registered head for ``code_kind`` with ``k`` active units, e.g. ``head_for("khot", 16)``."""
    if code_kind not in HEADS:
        raise GraphError(f"unknown head {code_kind!r}; known heads are {sorted(HEADS)}.")
    return HEADS[code_kind].from_k(k)
