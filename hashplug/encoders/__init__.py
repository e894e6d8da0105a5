"""Encoders: one API (fit / encode / save / load) and a registry.

The contract (:mod:`.contract`), the registry (:mod:`.registry`) and the files (:mod:`.persistence`) are the
core (``base`` re-exports them under the 0.1 path). Importing this package imports every other module beside
them, each registering its methods, without
importing torch; torch loads only when an encoder that trains with it is fitted. A new family is one
file here. What each method is and can do is in its tags (:func:`get_tags`), its tuned hyperparameters
per dataset in its presets (:func:`get_preset`).
"""

from __future__ import annotations

from .contract import BaseEncoder, EncoderTags, Preset
from .persistence import load_encoder
from .registry import (
    ENCODERS,
    available_encoders,
    encoder_class,
    get_encoder,
    get_preset,
    get_tags,
    register_encoder,
    unregister_encoder,
)

__all__ = [
    "ENCODERS",
    "BaseEncoder",
    "EncoderTags",
    "Preset",
    "available_encoders",
    "encoder_class",
    "get_encoder",
    "get_preset",
    "get_tags",
    "load_encoder",
    "register_encoder",
    "unregister_encoder",
]


#: The modules of the package that are not encoder families.
_CORE = frozenset({"base", "contract", "registry", "persistence"})


def _import_families() -> None:
    """Import every encoder module of this package (each registers its methods): a new family is one file."""
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        if mod.name not in _CORE and not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


_import_families()

from .angulardistill import AngularDistillHash  # noqa: E402
from .baselines import ITQ, LSH, FlyHash, PCAHash, SpectralHash  # noqa: E402
from .bioconvhash import BioConvHash  # noqa: E402
from .biohash import BioHash, NaiveBioHash  # noqa: E402
from .dpsh import DPSH  # noqa: E402
from .mihash import MIHash  # noqa: E402

__all__ += ["BioHash", "NaiveBioHash", "BioConvHash", "LSH", "PCAHash", "ITQ", "SpectralHash", "FlyHash", "MIHash", "DPSH",
            "AngularDistillHash"]
