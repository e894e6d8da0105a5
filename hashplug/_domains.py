"""Value domains of named inputs, and the one check of a batch against them (numpy only).

An encoder with several named inputs may declare, per input, which values are meaningful (its
``input_domains``); the exporter writes them into the model card's ``hashplug.inputs`` entries
(``"domain"``), and both paths check a batch with :func:`check_domains`: the encoder's numpy ``encode``
and :class:`hashplug.runtime.OnnxEncoder` (so LanceDB ingestion too). The runtime knows no encoder by name:
it reads the domains from the card.

A domain is a JSON object with any of:

``"values"``: list of numbers
    The only values allowed (e.g. ``[0, 1]`` for a mask).
``"range"``: [low, high]
    Values must lie in the closed interval.
``"where"``: name of another input (a 0/1 mask of the leading per-sample axes)
    The rules apply only at slots where that input is nonzero; at the other slots (padding) any value,
    including NaN, is allowed and is replaced by 0 before encoding.
``"hint"``: str
    What the values mean and how to fix them (ends the error message).

Without ``"where"``, NaN and infinity are refused everywhere (as for every input).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .validation import HashplugError

__all__ = ["check_domain_spec", "check_domains", "nan_allowed"]

_KEYS = {"values", "range", "where", "hint"}


def check_domain_spec(name: str, spec: Any, inputs: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    """Validate one input's domain spec against the input shapes; returns it as a plain dict.

    Raises
    ------
    ValueError
        A malformed spec (callers turn it into the error their context needs).
    """
    if not isinstance(spec, Mapping) or not spec or set(spec) - _KEYS:
        raise ValueError(f"domain of {name!r} must be an object with keys among {sorted(_KEYS)}; got {spec!r}")
    out = dict(spec)
    if "values" in out:
        vals = out["values"]
        if not isinstance(vals, list) or not vals or not all(_is_num(v) for v in vals):
            raise ValueError(f"domain of {name!r}: 'values' must be a non-empty list of numbers; got {vals!r}")
    if "range" in out:
        rng = out["range"]
        if not (isinstance(rng, list) and len(rng) == 2 and all(_is_num(v) for v in rng) and rng[0] <= rng[1]):
            raise ValueError(f"domain of {name!r}: 'range' must be [low, high] with low <= high; got {rng!r}")
    if "where" in out:
        w = out["where"]
        if w not in inputs or w == name:
            raise ValueError(f"domain of {name!r}: 'where' must name another input; got {w!r}")
        ms, xs = tuple(inputs[w]), tuple(inputs[name])
        if xs[: len(ms)] != ms:
            raise ValueError(f"domain of {name!r}: mask {w!r} of shape {ms} is not a leading part of {xs}")
    if "hint" in out and not isinstance(out["hint"], str):
        raise ValueError(f"domain of {name!r}: 'hint' must be a string")
    return out


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))


def nan_allowed(domains: Mapping[str, Mapping[str, Any]] | None, name: str) -> bool:
    """Whether input ``name`` may hold NaN (at masked slots): its domain has a ``"where"``."""
    return bool(domains) and "where" in (domains.get(name) or {})


def check_domains(
    batch: dict[str, np.ndarray], domains: Mapping[str, Mapping[str, Any]] | None, owner: str
) -> dict[str, np.ndarray]:
    """Check a batch ``{name: (n, *shape)}`` against ``domains``; returns the batch with masked slots of
    inputs that have a ``"where"`` set to 0 (a copy; the caller's arrays are not changed).

    Inputs with a ``"where"`` are expected unchecked for finiteness (``check_array(..., finite=False)``):
    NaN or infinity at a slot the mask marks as used is refused here.

    Raises
    ------
    HashplugError
        A value outside its domain (the message names the input, the first bad index, the value and the hint).
    """
    if not domains:
        return batch
    out = dict(batch)
    # plain domains (e.g. the masks) first, so a "where" mask is known to be 0/1 when it is used
    for name, spec in sorted(domains.items(), key=lambda kv: "where" in kv[1]):
        if name not in out or out[name] is None:
            continue
        arr = out[name]
        hint = f" {spec['hint']}" if spec.get("hint") else ""
        used = np.ones(arr.shape, bool)
        if "where" in spec:
            mask = out.get(spec["where"])
            if mask is not None:
                m = np.asarray(mask) != 0
                used = np.broadcast_to(m.reshape(m.shape + (1,) * (arr.ndim - m.ndim)), arr.shape)
                if not used.all():
                    arr = np.where(used, arr, np.float32(0)).astype(arr.dtype, copy=False)
                    out[name] = arr
            bad = used & ~np.isfinite(arr)
            if bad.any():
                idx = tuple(int(i) for i in np.argwhere(bad)[0])
                raise HashplugError(
                    f"{owner}: {name} contains NaN or infinity at index {idx}, a slot where {spec['where']!r} is 1 "
                    f"(NaN is allowed only at padding, where {spec['where']!r} is 0).{hint}"
                )
        if "values" in spec:
            allowed = np.asarray(spec["values"], dtype=np.float64)
            bad = used & ~np.isin(arr, allowed)
            if bad.any():
                idx = tuple(int(i) for i in np.argwhere(bad)[0])
                raise HashplugError(
                    f"{owner}: {name} must hold only the values {spec['values']}; got {arr[idx]!r} at index {idx}.{hint}"
                )
        if "range" in spec:
            lo, hi = spec["range"]
            bad = used & ((arr < lo) | (arr > hi))
            if bad.any():
                idx = tuple(int(i) for i in np.argwhere(bad)[0])
                vals = arr[used]
                raise HashplugError(
                    f"{owner}: {name} must lie in [{lo}, {hi}]; got {arr[idx]:.6g} at index {idx} (values in "
                    f"[{vals.min():.3g}, {vals.max():.3g}]).{hint}"
                )
    return out
