"""The encoder contract, registry and files, under their 0.1 import path.

The three ideas live in their own modules: :mod:`hashplug.encoders.contract` (``BaseEncoder``,
``EncoderTags``, ``Preset``), :mod:`hashplug.encoders.registry` (``register_encoder``, ``get_encoder``,
``encoder_class``, ``get_tags``, ``get_preset``, ...) and :mod:`hashplug.encoders.persistence`
(``save_encoder``, ``load_encoder``, ``FILE_FORMAT``). This module re-exports every name it used to define,
so ``from hashplug.encoders.base import BaseEncoder`` keeps working; new code imports from
:mod:`hashplug.encoders` or the modules above.
"""

from __future__ import annotations

from .._files import sha256_arrays
from .contract import (
    CODE_KINDS,
    INPUT_KINDS,
    BaseEncoder,
    EncoderTags,
    Preset,
    _check_divisor,
    _check_param_names,
    _jsonable,
)
from .persistence import (
    _ARRAY_NAME,
    _MAKE_MODEL,
    FILE_FORMAT,
    _json_value_ok,
    _npy_holds_objects,
    _read_npz,
    _restore,
    _strict_int,
    load_encoder,
    save_encoder,
)
from .registry import (
    ENCODERS,
    _as_class,
    available_encoders,
    encoder_class,
    get_encoder,
    get_preset,
    get_tags,
    register_encoder,
    unregister_encoder,
)

__all__ = [
    "BaseEncoder",
    "EncoderTags",
    "Preset",
    "register_encoder",
    "unregister_encoder",
    "get_encoder",
    "encoder_class",
    "available_encoders",
    "get_tags",
    "get_preset",
    "load_encoder",
    "save_encoder",
    "ENCODERS",
    "FILE_FORMAT",
    "INPUT_KINDS",
    "CODE_KINDS",
    "sha256_arrays",
    "_ARRAY_NAME",
    "_MAKE_MODEL",
    "_as_class",
    "_check_divisor",
    "_check_param_names",
    "_json_value_ok",
    "_jsonable",
    "_npy_holds_objects",
    "_read_npz",
    "_restore",
    "_strict_int",
]
