"""Query transforms: what a model card declares a raw query may be changed by before it is encoded.

:func:`hashplug.search` is one generic call (a raw query in, the code of the table's function, one search
path); a transform rewrites the query first, and a model declares which transforms it takes through its
card's inputs, never through names in the search code. One transform exists today:

:class:`ObjectWeighting`
    Conditional queries of models that encode a set of objects (NeuroHash): per-object weights given
    directly (``eta``), or from one focused object (``focus``) or a region of the image (``region``). A card
    declares it with three inputs: a 0/1 *mask* of object slots (domain ``"values"`` within ``[0, 1]``),
    per-object *positions* ``(*mask shape, 2)`` whose domain applies ``"where"`` the mask is set, and one
    per-object *weight* input of the mask's shape with a default (left out, every object weighs the same).

Serving side: numpy only (and :mod:`hashplug.hdc`'s ``conditional_eta``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..validation import HashplugError
from .function import Query

__all__ = ["ObjectWeighting", "object_weighting"]


@dataclass(frozen=True)
class ObjectWeighting:
    """Set a query's per-object weights: the conditional query of a model over a set of objects.

    Parameters
    ----------
    mask : str
        The input marking object slots (1) and padding (0).
    positions : str
        The input holding each object's normalised ``(x, y)`` centre.
    weight : str
        The per-object weight input the transform fills.
    """

    mask: str
    positions: str
    weight: str

    @classmethod
    def from_card(cls, card: Any) -> ObjectWeighting | None:
        """The transform a model card declares through its inputs (None when it declares none)."""
        if not getattr(card, "multi_input", False):
            return None
        shapes = {nm: tuple(shp) for nm, shp, _ in card.input_specs}
        defaults = {nm: d for nm, _, d in card.input_specs}
        domains = card.input_domains or {}
        masks = [nm for nm, dom in domains.items()
                 if nm in shapes and dom.get("values") and set(dom["values"]) <= {0, 1}]
        for mask in masks:
            pos = [nm for nm, dom in domains.items()
                   if dom.get("where") == mask and shapes.get(nm) == (*shapes[mask], 2)]
            weights = [nm for nm, shp in shapes.items()
                       if shp == shapes[mask] and defaults.get(nm) is not None and nm != mask and nm not in domains]
            if len(pos) == 1 and len(weights) == 1:
                return cls(mask=mask, positions=pos[0], weight=weights[0])
        return None

    def __call__(self, query: Query, *, eta: Any = None, focus: int | None = None,
                 region: Sequence[float] | None = None, eta_weight: float = 10.0) -> Query:
        """The query with its object weights set: given (``eta``), or ``eta_weight`` for the focused slot or the
        objects whose centre lies in ``region`` and 1 for the others (:func:`hashplug.hdc.conditional_eta`)."""
        if query.named is None or self.mask not in query.named or self.positions not in query.named:
            raise _not_named()
        if sum(v is not None for v in (eta, focus, region)) != 1:
            raise HashplugError("hashplug.search: give one of eta=, focus= or region=.")
        named = dict(query.named)
        if eta is None:
            from ..hdc import conditional_eta

            mask, pos = named[self.mask], named[self.positions]
            one = mask.ndim == 1
            w = conditional_eta(pos[None] if one else pos, mask[None] if one else mask, focus=focus, region=region,
                                weight=eta_weight)
            eta = w[0] if one else w
        named[self.weight] = np.asarray(eta, dtype=np.float32)
        return Query(named)


def _not_named() -> HashplugError:
    return HashplugError(
        "eta=, focus= and region= weight the objects of a query with named inputs (object_positions, "
        "object_mask, ...), as NeuroHash takes; this query is a plain array."
    )


def object_weighting(card: Any) -> ObjectWeighting:
    """The card's :class:`ObjectWeighting`, or the error :func:`hashplug.search` raises when there is none."""
    found = ObjectWeighting.from_card(card)
    if found is None:
        raise _not_named()
    return found
