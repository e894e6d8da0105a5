"""The encoder registry: names -> classes, and the class-level lookups by name (tags, presets).

``@register_encoder("name")`` adds a class (each family module registers its own when
:mod:`hashplug.encoders` imports it); :func:`get_encoder` builds one by name, :func:`encoder_class` finds
a class by its registry or display name, :func:`get_tags` / :func:`get_preset` read an encoder's tags and
presets from an instance, a class or a name. No other place keeps a list of encoder names.
"""

from __future__ import annotations

from typing import Any

from ..validation import HashplugError, HashplugTypeError
from .contract import BaseEncoder, EncoderTags, Preset, _check_param_names

__all__ = [
    "ENCODERS",
    "register_encoder",
    "unregister_encoder",
    "available_encoders",
    "get_encoder",
    "encoder_class",
    "get_tags",
    "get_preset",
]

ENCODERS: dict[str, type[BaseEncoder]] = {}


def register_encoder(name: str):
    """Class decorator adding an encoder class to the registry under ``name``."""

    def deco(cls: type[BaseEncoder]) -> type[BaseEncoder]:
        if name in ENCODERS and ENCODERS[name] is not cls:
            raise HashplugError(f"an encoder named {name!r} is already registered")
        cls.method_name = name
        ENCODERS[name] = cls
        return cls

    return deco


def unregister_encoder(name: str) -> type[BaseEncoder] | None:
    """Remove ``name`` from the registry (e.g. a test's encoder in teardown); returns its class or None."""
    return ENCODERS.pop(name, None)


def available_encoders() -> list[str]:
    """Names accepted by :func:`get_encoder`."""
    return sorted(ENCODERS)


def get_encoder(name: str, **params: Any) -> BaseEncoder:
    """Create an encoder by its registry name, e.g. ``get_encoder("biohash", k=16)``.

    Names are case-insensitive. An unknown name raises an error listing the known ones.
    """
    key = str(name).lower()
    lookup = {n.lower(): c for n, c in ENCODERS.items()}
    if key not in lookup:
        raise HashplugError(f"Unknown encoder {name!r}. Available encoders: {', '.join(available_encoders())}.")
    cls = lookup[key]
    _check_param_names(cls, params)
    return cls(**params)


def encoder_class(name: str) -> type[BaseEncoder]:
    """The registered class named ``name``: its registry name or its display name, case-insensitive.

    ``encoder_class("sh")`` and ``encoder_class("SH")`` are :class:`~hashplug.encoders.SpectralHash`; an
    unknown name raises :class:`~hashplug.validation.HashplugError` listing the known ones.
    """
    key = str(name).lower()
    for reg, cls in ENCODERS.items():
        if key in (reg.lower(), get_tags(cls).display_name.lower()):
            return cls
    raise HashplugError(f"Unknown encoder {name!r}. Available encoders: {', '.join(available_encoders())}.")


def _as_class(estimator: Any, caller: str) -> type[BaseEncoder]:
    """The encoder class of an instance, a class or a registered name (registry or display name)."""
    if isinstance(estimator, str):
        return encoder_class(estimator)
    cls = estimator if isinstance(estimator, type) else type(estimator)
    if not issubclass(cls, BaseEncoder):
        raise HashplugTypeError(
            f"{caller} expects a hashplug encoder, an encoder class or a registered name; got {cls.__name__}."
        )
    return cls


def get_tags(estimator: BaseEncoder | type[BaseEncoder] | str) -> EncoderTags:
    """The :class:`EncoderTags` of an encoder, an encoder class or a registered name (registry or display)."""
    return _as_class(estimator, "get_tags").__hashplug_tags__()


def get_preset(estimator: BaseEncoder | type[BaseEncoder] | str, dataset: str) -> Preset | None:
    """The :class:`Preset` of an encoder (instance, class or name) for ``dataset``, or None when it has none."""
    return _as_class(estimator, "get_preset").presets.get(str(dataset))
